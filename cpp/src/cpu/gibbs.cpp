// CPU implementation of gibbs.hpp. See the header for what each kernel computes; the pass
// counts below are over one row, which stays in cache between passes (memory traffic is one
// read of each input and one write of each output). The exp pass of each kernel prefetches the
// next row of its inputs (and of its N x K output), so memory and compute overlap.
#include "isa_begin.hpp"
#include "kernels.hpp"
#include "row_primitives.hpp"

namespace thermossl {
namespace THERMOSSL_ISA_NS {
namespace detail {
namespace {

template <class T>
void fill_row(T* row, std::int64_t k, T value) {
    for (std::int64_t j = 0; j < k; ++j) row[j] = value;
}

/// Runs row_body(i, row_pointer, next) for each row of `a` in parallel; the body gets contiguous
/// rows of the compute type T (In: the stored element type, T or a half type) and the next row it
/// will read from memory, or null (RowReader::next_row), to prefetch during its exp pass.
template <class T, class In, class RowBody>
void for_each_row(const MatrixView<In>& a, RowBody&& row_body) {
    parallel_row_tiles(a.rows, tile_rows<T>(a.cols), a.rows * a.cols, [&] {
        return [&, reader = RowReader<T, In>(a)](std::int64_t i0, std::int64_t i1) mutable {
            reader.load(i0, i1);
            for (std::int64_t i = i0; i < i1; ++i) row_body(i, reader.row(i), reader.next_row(i));
        };
    });
}

/// The output row after row i of an n-row output of k columns (prefetched for writing), or null.
template <class T>
const T* next_out_row(const T* out_row, std::int64_t i, std::int64_t n, std::int64_t k) {
    return i + 1 < n ? out_row + k : nullptr;
}

/// Whether a kernel's N x K output of T streams to memory (thermossl/stores.hpp): then each row is
/// computed in a per-thread staging row in cache and written out by store_row_streaming.
template <class T>
bool stream_rows_of(std::int64_t rows, std::int64_t cols) {
    return streams_output(rows * cols * static_cast<std::int64_t>(sizeof(T)));
}

// Passes: max; exp and sum (e written into p, or into the staging row); p = e * (1/Z).
template <class T, bool kShift, class In>
void softmax_impl(const MatrixView<In>& a, const Exponent ex_shared, T* p, T* log_z) {
    const std::int64_t k = a.cols;
    const bool stream = stream_rows_of<T>(a.rows, k);
    parallel_row_tiles(a.rows, tile_rows<T>(k), a.rows * k, [&] {
        return [&, reader = RowReader<T, In>(a), staging = std::vector<T>()](std::int64_t i0, std::int64_t i1) mutable {
            const Exponent ex = ex_shared;  // a local copy: stores to outputs cannot alias it
            reader.load(i0, i1);
            if (stream) staging.resize(static_cast<std::size_t>(k));
            for (std::int64_t i = i0; i < i1; ++i) {
                T* p_row = p + i * k;
                T* e_row = stream ? staging.data() : p_row;
                double m = 0.0, z = 0.0;
                with_row_frame<T, kShift>(reader.row(i), k, ex, [&](const double m_row, const auto arg) {
                    m = m_row;
                    // the next output row is prefetched only where it is written by plain stores
                    z = row_exp_sum<T>(k, arg, e_row, reader.next_row(i),
                                       stream ? nullptr : next_out_row<T>(p_row, i, a.rows, k));
                });
                if (log_z != nullptr) log_z[i] = static_cast<T>(m + std::log(z));
                if (!std::isfinite(m)) {
                    fill_row(p_row, k, quiet_nan<T>());
                    continue;
                }
                const T inv_z = static_cast<T>(1.0 / z);  // nan when the row holds a nan
                if (stream) {
                    const T* const e = e_row;
                    store_row_streaming(p_row, k, [&](std::int64_t j) { return load<vec_t<T>>(e + j) * splat<vec_t<T>>(inv_z); },
                                        [&](std::int64_t j) { return e[j] * inv_z; });
                } else {
#pragma omp simd
                    for (std::int64_t j = 0; j < k; ++j) p_row[j] *= inv_z;
                }
            }
            if (stream) streaming_stores_done();
        };
    });
}

// Passes: max; exp and sum; write x - max - log Z.
template <class T, bool kShift, class In>
void log_softmax_impl(const MatrixView<In>& a, const Exponent ex_shared, T* log_p) {
    const std::int64_t k = a.cols;
    for_each_row<T>(a, [&](std::int64_t i, const T* row, const T* next) {
        const Exponent ex = ex_shared;  // a local copy: stores to outputs cannot alias it
        T* out = log_p + i * k;
        // The sum in the row's frame (float lanes for float rows, see with_row_frame); the
        // output keeps the double exponent x - m - log Z (m is the same to the bit in both).
        double m = 0.0, z = 0.0;
        with_row_frame<T, kShift>(row, k, ex, [&](const double m_row, const auto arg) {
            m = m_row;
            z = row_exp_sum<T>(k, arg, static_cast<T*>(nullptr), next, out);
        });
        if (std::isfinite(m)) {
            const double log_z = std::log(z);  // nan when the row holds a nan
#pragma omp simd
            for (std::int64_t j = 0; j < k; ++j) {
                out[j] = static_cast<T>((exponent_at<T, kShift>(ex, row, j) - m) - log_z);
            }
            return;
        }
        // scipy.special.log_softmax with a non-finite max shifts by 0 instead: an x = +inf gives
        // inf - inf = nan and every other entry -inf; an all -inf row gives nan; nan poisons all.
        const bool has_nan = std::isnan(z);
        for (std::int64_t j = 0; j < k; ++j) {
            const double x = exponent_at<T, kShift>(ex, row, j);
            out[j] = (has_nan || m < 0 || x == m) ? quiet_nan<T>() : -infinity<T>();
        }
    });
}

// Passes: max; sums of e and e * (x - max). S = log Z' - sum(e (x - max)) / Z'.
template <class T, bool kShift, class In>
void entropy_impl(const MatrixView<In>& a, const Exponent ex_shared, T* entropy, T* log_z) {
    const std::int64_t k = a.cols;
    for_each_row<T>(a, [&](std::int64_t i, const T* row, const T* next) {
        const Exponent ex = ex_shared;  // a local copy: stores to outputs cannot alias it
        double m = 0.0;
        double z = 0.0;
        double ez = 0.0;  // sum_y e_y (x_y - max); 0 log 0 = 0
        with_row_frame<T, kShift>(row, k, ex, [&](const double m_row, const auto arg) {
            using V = vec_t<T>;
            m = m_row;
            LaneSums<T, 2> sums;
            using Arg = decltype(arg);
            row_sweep(k, arg, sums, [&](std::int64_t, const V t, const mask_t<T> at_max, const auto& lanes) {
                const V e = frame_exp<Arg>(t, at_max, lanes);  // as in row_exp_sum
                sums.part[0] += e;
                sums.part[1] = madd_in_frame<Arg>(sums.part[1], e > splat<V>(0), e, t);  // 0 log 0 = 0
            }, next);
            z = sums[0];
            ez = sums[1];
        });
        if (log_z != nullptr) log_z[i] = static_cast<T>(m + std::log(z));
        entropy[i] = std::isfinite(m) ? static_cast<T>(std::log(z) - ez / z) : quiet_nan<T>();
    });
}

// Passes over the row of a: max; exp and sums (e stored in grad, or in scratch where the
// gradient streams); gradient (reads q again).
// InQ, InA: the stored element types of the labels and the scores (each T or a half type; half
// scores with float labels: row_cross_entropy_float_labels), converted as each tile is read.
template <class T, bool kShift, class InQ, class InA>
void cross_entropy_impl(const MatrixView<InQ>& q, const MatrixView<InA>& a, const Exponent ex_shared,
                        T* loss, T* grad, T* log_z) {
    const std::int64_t k = a.cols;
    const bool stream = grad != nullptr && stream_rows_of<T>(a.rows, k);
    parallel_row_tiles(a.rows, tile_rows<T>(k), a.rows * k, [&] {
        return [&, ra = RowReader<T, InA>(a), rq = RowReader<T, InQ>(q),
                scratch = std::vector<T>()](std::int64_t i0, std::int64_t i1) mutable {
            const Exponent ex = ex_shared;  // a local copy: stores to outputs cannot alias it
            ra.load(i0, i1);
            rq.load(i0, i1);
            for (std::int64_t i = i0; i < i1; ++i) {
                const T* row = ra.row(i);
                const T* q_row = rq.row(i);
                T* g_row = grad != nullptr ? grad + i * k : nullptr;
                // exp(x - max) goes to the gradient row, or to scratch when there is none or the
                // gradient streams, so the store in the loop below is unconditional (a
                // conditional one blocks vectorising).
                const bool e_in_scratch = g_row == nullptr || stream;
                if (e_in_scratch && scratch.size() < static_cast<std::size_t>(k)) scratch.resize(k);
                T* e_row = e_in_scratch ? scratch.data() : g_row;
                double m = 0.0;
                double z = 0.0;
                double q_sum = 0.0;
                double q_dot_t = 0.0;  // sum_y q_y (x_y - max), 0 where q_y = 0
                with_row_frame<T, kShift>(row, k, ex, [&](const double m_row, const auto arg) {
                    using V = vec_t<T>;
                    m = m_row;
                    LaneSums<T, 3> sums;  // z, sum q, sum q t
                    using Arg = decltype(arg);
                    // locals: the vector stores cannot alias them (with_row_frame calls this
                    // body out of line, where the captured pointers are references)
                    T* const e_out = e_row;
                    const T* const q_in = q_row;
                    row_sweep(k, arg, sums, [&](std::int64_t j, const V t, const mask_t<T> at_max,
                                                const auto& lanes) {
                        const V e = frame_exp<Arg>(t, at_max, lanes);  // as in row_exp_sum
                        const V qj = lanes.load(q_in + j, T(0));
                        lanes.store(e_out + j, e);
                        sums.part[0] += e;
                        sums.part[1] += qj;
                        sums.part[2] = madd_in_frame<Arg>(sums.part[2], qj != splat<V>(0), qj, t);  // 0 where q = 0
                    }, ra.next_row(i), rq.next_row(i));
                    z = sums[0];
                    q_sum = sums[1];
                    q_dot_t = sums[2];
                });
                const double log_zr = std::log(z);
                if (log_z != nullptr) log_z[i] = static_cast<T>(m + log_zr);
                const bool finite_max = std::isfinite(m);
                loss[i] = finite_max ? static_cast<T>(q_sum * log_zr - q_dot_t) : quiet_nan<T>();
                if (g_row == nullptr) continue;
                if (!finite_max) {
                    fill_row(g_row, k, quiet_nan<T>());
                    continue;
                }
                // d loss / d x_y = p_y * sum(q) - q_y; d x / d a = scale.
                const T p_weight = static_cast<T>(q_sum / z);
                const T minus_scale = static_cast<T>(-ex.scale);
                if (stream) {
                    using V = vec_t<T>;
                    const T* const e = e_row;
                    store_row_streaming(g_row, k, [&](std::int64_t j) {
                        return splat<V>(minus_scale) * (load<V>(q_row + j) - load<V>(e + j) * splat<V>(p_weight));
                    }, [&](std::int64_t j) { return minus_scale * (q_row[j] - e[j] * p_weight); });
                    continue;
                }
#pragma omp simd
                for (std::int64_t j = 0; j < k; ++j) g_row[j] = minus_scale * (q_row[j] - g_row[j] * p_weight);
            }
            if (stream) streaming_stores_done();
        };
    });
}

// Passes over the row (in cache): max; exp and the sums (e stored in grad); the gradient from
// the stored e and t (recomputed in the row's frame). dS/dx_y = -p_y (log p_y + S).
template <class T, bool kShift, class In>
void entropy_grad_impl(const MatrixView<In>& a, const Exponent ex_shared, T* grad, T* entropy, T* log_z) {
    const std::int64_t k = a.cols;
    for_each_row<T>(a, [&](std::int64_t i, const T* row, const T* next) {
        const Exponent ex = ex_shared;  // a local copy: stores to outputs cannot alias it
        T* g_row = grad + i * k;
        double m = 0.0;
        double z = 0.0;
        double ez = 0.0;  // sum_y e_y (x_y - max); 0 log 0 = 0
        with_row_frame<T, kShift>(row, k, ex, [&](const double m_row, const auto arg) {
            using V = vec_t<T>;
            m = m_row;
            LaneSums<T, 2> sums;
            using Arg = decltype(arg);
            T* const g_out = g_row;  // a local: the vector stores cannot alias it (with_row_frame
                                     // calls this body out of line, where g_row is a reference)
            row_sweep(k, arg, sums, [&](std::int64_t j, const V t, const mask_t<T> at_max, const auto& lanes) {
                const V e = frame_exp<Arg>(t, at_max, lanes);  // as in row_exp_sum
                lanes.store(g_out + j, e);
                sums.part[0] += e;
                sums.part[1] = madd_in_frame<Arg>(sums.part[1], e > splat<V>(0), e, t);  // 0 log 0 = 0
            }, next, next_out_row<T>(g_out, i, a.rows, k));
            z = sums[0];
            ez = sums[1];
            if (!std::isfinite(m)) return;
            // Pass 3: the gradient -scale p (log p + S) from e (in g_row) and t. With p = e / Z',
            // log p = t - log Z' and S = log Z' - sum(e t) / Z', log p + S = t - sum(e t) / Z', so
            // g = e (a1 t + b1), a1 = -scale / Z', b1 = scale sum(e t) / Z'^2: one FMA and one
            // multiply per vector (the form before took p, log p, log p + S and two multiplies,
            // and its log Z' cancelled in float). Float rows: t carries <= 3 2^-24 |t| (PivotArg)
            // and a1, b1 one rounding each, well inside the stated bound.
            const T a1_scalar = static_cast<T>(-ex.scale / z);
            const V a1 = splat<V>(a1_scalar);
            const V b1 = splat<V>(static_cast<T>(ex.scale * (ez / z) / z));
            // what a term with e = 0 gets: 0, or nan where Z' is nan (a nan in the row makes the
            // whole row's gradient nan, as p = e / Z' did)
            const V dead = splat<V>(a1_scalar - a1_scalar);
            LaneSums<T, 1> unused;
            row_sweep(k, arg, unused, [&](std::int64_t j, const V t, const mask_t<T>, const auto& lanes) {
                const V e = lanes.load(g_out + j, T(0));
                V g = e * fmadd(a1, t, b1);
                // `dead` where e = 0 (t may be -inf there: 0 * inf; a nan e stays nan); an
                // in-range frame's t is finite
                if constexpr (!in_range_v<Arg>) g = select(e != splat<V>(0), g, dead);
                lanes.store(g_out + j, g);
            });
        });
        const double log_zr = std::log(z);
        const double s = log_zr - ez / z;
        if (log_z != nullptr) log_z[i] = static_cast<T>(m + log_zr);
        if (entropy != nullptr) entropy[i] = std::isfinite(m) ? static_cast<T>(s) : quiet_nan<T>();
        if (!std::isfinite(m)) fill_row(g_row, k, quiet_nan<T>());
    });
}

}  // namespace
}  // namespace detail

#define THERMOSSL_DISPATCH_SHIFT(impl, ...)                       \
    do {                                                          \
        const detail::Exponent ex{scale, shift};               \
        if (shift != nullptr) {                                   \
            detail::impl<Real<T>, true>(__VA_ARGS__);             \
        } else {                                                  \
            detail::impl<Real<T>, false>(__VA_ARGS__);            \
        }                                                         \
    } while (0)

template <class T>
void row_softmax(const MatrixView<T>& a, double scale, const double* shift, Real<T>* p, Real<T>* log_z) {
    THERMOSSL_DISPATCH_SHIFT(softmax_impl, a, ex, p, log_z);
}

template <class T>
void row_log_softmax(const MatrixView<T>& a, double scale, const double* shift, Real<T>* log_p) {
    THERMOSSL_DISPATCH_SHIFT(log_softmax_impl, a, ex, log_p);
}

template <class T>
void row_entropy(const MatrixView<T>& a, double scale, const double* shift, Real<T>* entropy, Real<T>* log_z) {
    THERMOSSL_DISPATCH_SHIFT(entropy_impl, a, ex, entropy, log_z);
}

template <class T>
void row_cross_entropy(const MatrixView<T>& q, const MatrixView<T>& a, double scale, const double* shift,
                       Real<T>* loss, Real<T>* grad, Real<T>* log_z) {
    THERMOSSL_DISPATCH_SHIFT(cross_entropy_impl, q, a, ex, loss, grad, log_z);
}

template <class T>
void row_cross_entropy_float_labels(const MatrixView<Real<T>>& q, const MatrixView<T>& a, double scale,
                                    const double* shift, Real<T>* loss, Real<T>* grad, Real<T>* log_z) {
    THERMOSSL_DISPATCH_SHIFT(cross_entropy_impl, q, a, ex, loss, grad, log_z);
}

template <class T>
void row_entropy_grad(const MatrixView<T>& a, double scale, const double* shift, Real<T>* grad,
                      Real<T>* entropy, Real<T>* log_z) {
    THERMOSSL_DISPATCH_SHIFT(entropy_grad_impl, a, ex, grad, entropy, log_z);
}

#undef THERMOSSL_DISPATCH_SHIFT

THERMOSSL_INSTANTIATE_KERNELS(THERMOSSL_GIBBS_KERNELS)
THERMOSSL_INSTANTIATE_HALF_INPUT_KERNELS(THERMOSSL_GIBBS_KERNELS)
THERMOSSL_INSTANTIATE_HALF_INPUT_KERNELS(THERMOSSL_HALF_SCORE_KERNELS)

}  // namespace THERMOSSL_ISA_NS
}  // namespace thermossl

#include "isa_end.hpp"
