// CPU implementation of thermo.hpp.
#include "isa_begin.hpp"
#include "kernels.hpp"
#include "log_positive.hpp"
#include "row_primitives.hpp"

namespace thermossl {
namespace THERMOSSL_ISA_NS {
namespace detail {
namespace {

/// The per-row sums of the ledger (the outputs are formed from them, see ledger_rows_impl).
struct LedgerSums {
    double m = 0.0;  // max_j x_j
    double z = 0.0, ea = 0.0, et = 0.0;  // Z' = sum e, sum e a, sum e t
    double qa = 0.0, qlogq = 0.0, qlogp = 0.0, kl = 0.0, mass = 0.0;
};

/// LaneSums flushed to double every 16 vectors instead of 8 for float (16 terms per float lane
/// sum): the unmasked form's 3 + 5 sums cost 5 instructions each per flush (two conversions, an
/// extract, two adds), a tenth of its loop at 8 vectors.
template <class T, int kN>
struct WideChunkSums : LaneSums<T, kN> {
    static constexpr int kChunkVectors = 16;
};

/// Passes 2 and 3 of one ledger row without masks (see ledger_rows_impl), for rows whose every
/// t_j = x_j - max is finite (so e_j = exp(t_j) = 1 exactly at the max, no select, and e a, e t
/// are 0 where e = 0) and whose q_j are >= 0 and not nan (log_unchecked is finite at q = 0, so
/// q a, q log q, q log p and the KL terms are 0 where q = 0). Every sum is a plain FMA. Returns
/// false when those conditions fail in a way the sums show: a nan in a or q or a negative q
/// (a nan sum, or min q < 0), so the caller redoes the row with the masked form.
template <class T, class Arg>
bool ledger_row_unmasked(const T* row, const T* q_row, std::int64_t k, const Arg& arg, const void* next_row,
                         LedgerSums& s) {
    using V = vec_t<T>;
    WideChunkSums<T, 3> p_sums;
    // Pass 2: e = exp(t); Z' = sum e; sum e a; sum e t.
    row_sweep(k, arg, p_sums, [&](std::int64_t j, const V t, const mask_t<T>, const auto& lanes) {
        const V e = lanes.keep(exp_lanes(t));
        const V aj = lanes.load(row + j, T(0));
        p_sums.part[0] += e;
        p_sums.part[1] = fmadd(e, aj, p_sums.part[1]);
        p_sums.part[2] = fmadd(e, t, p_sums.part[2]);
    }, q_row);  // pass 3 reads q: from cache
    s.z = p_sums[0];
    s.ea = p_sums[1];
    s.et = p_sums[2];
    const V log_zr = splat<V>(static_cast<T>(std::log(s.z)));
    // Pass 3: the label sums, with log p = t - log Z' (each KL term a difference of logs: D keeps
    // its accuracy near 0, so this pass needs log Z' first).
    WideChunkSums<T, 5> q_sums;
    // below AVX-512 the log of a negative q is finite: its min is checked instead
#if THERMOSSL_VECTOR_EXT && defined(THERMOSSL_ISA_AVX512)
    constexpr bool kCheckMin = false;
#else
    constexpr bool kCheckMin = true;
#endif
    V q_min = splat<V>(0);
    row_sweep(k, arg, q_sums, [&](std::int64_t j, const V t, const mask_t<T>, const auto& lanes) {
        const V qj = lanes.load(q_row + j, T(0));  // past the row: q = 0, no terms
        const V aj = lanes.load(row + j, T(0));
        const V log_p = t - log_zr;
        V log_q;
        if constexpr (std::is_same<T, float>::value) {
            log_q = log_unchecked_f32(qj);
        } else {
            log_q = log_unchecked_f64(qj);
        }
        q_sums.part[0] = fmadd(qj, aj, q_sums.part[0]);
        q_sums.part[1] = fmadd(qj, log_q, q_sums.part[1]);
        q_sums.part[2] = fmadd(qj, log_p, q_sums.part[2]);
        q_sums.part[3] = fmadd(qj, log_q - log_p, q_sums.part[3]);
        q_sums.part[4] += qj;
        if constexpr (kCheckMin) q_min = clamp_above(qj, q_min);
    }, next_row);  // the next row's max pass: from cache
    s.qa = q_sums[0];
    s.qlogq = q_sums[1];
    s.qlogp = q_sums[2];
    s.kl = q_sums[3];
    s.mass = q_sums[4];
    if constexpr (kCheckMin) {
        if (lane_min(q_min, T(0)) < T(0)) return false;
    }
    // a nan in any sum: a nan a or q, 0 * inf or a negative q (AVX-512: log q = nan)
    return !std::isnan(s.ea + s.et + s.qa + s.qlogq + s.qlogp + s.kl + s.mass);
}

/// Passes 1-3 of one ledger row with every term masked (see ledger_rows_impl): any row, shifted or
/// not, with +-inf or nan energies, forbidden states (e = 0 where t = -inf), zero, negative or nan
/// labels.
template <class T, bool kShift>
LedgerSums ledger_row_masked(const T* row, const T* q_row, std::int64_t k, const Exponent ex,
                             const void* next_row) {
    LedgerSums s;
    // t_j = x_j - max in T: float rows without a shift take float lanes (PivotArg), the others
    // double lanes (ExactArg); see with_row_frame.
    with_row_frame<T, kShift>(row, k, ex, [&](const double m_row, const auto arg) {
        using V = vec_t<T>;
        const V zero = splat<V>(0);
        s.m = m_row;
        // Pass 2: e = exp(t); Z' = sum e; sum e a; sum e t.
        LaneSums<T, 3> p_sums;
        row_sweep(k, arg, p_sums, [&](std::int64_t j, const V t, const mask_t<T> at_max, const auto& lanes) {
            const V e = lanes.keep(select(at_max, splat<V>(1), exp_lanes(t)));
            const V aj = lanes.load(row + j, T(0));
            const auto positive = e > zero;
            p_sums.part[0] += e;
            // one masked FMA each at AVX-512 (madd_where), mul + and + add elsewhere
            p_sums.part[1] = madd_where(p_sums.part[1], positive, e, aj);
            p_sums.part[2] = madd_where(p_sums.part[2], positive, e, t);
        }, q_row);  // pass 3 reads q: from cache
        s.z = p_sums[0];
        s.ea = p_sums[1];
        s.et = p_sums[2];
        const V log_zr = splat<V>(static_cast<T>(std::log(s.z)));
        // Pass 3: the label sums, with log p = t - log Z'.
        LaneSums<T, 5> q_sums;
        row_sweep(k, arg, q_sums, [&](std::int64_t j, const V t, const mask_t<T>, const auto& lanes) {
            const V qj = lanes.load(q_row + j, T(0));  // past the row: q = 0, no terms
            const V aj = lanes.load(row + j, T(0));
            const V log_p = t - log_zr;
            const V log_q = log_lanes_for_terms(qj);
            const auto on = qj != zero;
            q_sums.part[0] = madd_where(q_sums.part[0], on, qj, aj);
            q_sums.part[1] = madd_where(q_sums.part[1], on, qj, log_q);
            q_sums.part[2] = madd_where(q_sums.part[2], on, qj, log_p);
            q_sums.part[3] = madd_where(q_sums.part[3], on, qj, log_q - log_p);
            q_sums.part[4] += qj;
        }, next_row);  // the next row's max pass: from cache
        s.qa = q_sums[0];
        s.qlogq = q_sums[1];
        s.qlogp = q_sums[2];
        s.kl = q_sums[3];
        s.mass = q_sums[4];
    });
    return s;
}

/// The unmasked form of a row without a shift (ledger_row_unmasked), when the row's frame allows
/// it: its min and max found in one pass, the max x finite and t finite at the far end (so at
/// every j: t is monotone in a). float rows take the float-lane pivot frame (PivotArg, the scale
/// a normal float of moderate size, as with_row_frame), double rows the exact one. Returns false
/// (nothing written) when the row needs the masked form.
template <class T>
bool ledger_row_fast(const T* row, const T* q_row, std::int64_t k, const Exponent ex, const void* next_row,
                     LedgerSums& s) {
    const double scale = ex.scale;
    if (!(scale != 0.0 && std::isfinite(scale))) return false;
    T lo, hi;
    row_min_max_raw(row, k, lo, hi);
    const T pivot = scale > 0 ? hi : lo;
    const T far = scale > 0 ? lo : hi;
    const double m = scale * static_cast<double>(pivot);
    if (!std::isfinite(m)) return false;
    s.m = m;
    if constexpr (std::is_same<T, float>::value) {
        const double mag = std::fabs(scale);
        if (!(mag >= 0x1p-60 && mag <= 0x1p60)) return false;
        const float s_float = static_cast<float>(scale);
        if (!std::isfinite(s_float * (far - pivot))) return false;  // t at the far end, as PivotArg
        return ledger_row_unmasked(row, q_row, k, PivotArg{row, pivot, s_float}, next_row, s);
    } else {
        if (!std::isfinite(static_cast<T>(scale * static_cast<double>(far) - m))) return false;
        return ledger_row_unmasked(row, q_row, k, ExactArg<T, false>{row, ex, m}, next_row, s);
    }
}

// The ledger rows (thermo.hpp). Memory: one read of each row of a and q (and the weights); per
// row, three passes over the row in cache, over explicit vectors (row_sweep): 1. the max of x
// (for float rows without a shift the float max/min of a, see with_row_frame); 2. e = exp(t),
// Z' = sum e, sum e a, sum e t; 3. the label sums sum q a, sum q log q, sum q log p, the KL terms
// q (log q - log p) and sum q, with log p = t - log Z' (so pass 3 waits for Z'). One exp and one
// log per element. Pass 2 prefetches this row of q and pass 3 the next row of a, so the reads
// from memory overlap the exp and log passes instead of alternating with them. The charges add w_i q_i to per-thread column sums (float rows: in float
// over groups of 8 rows, FloatCharges). Each masked term (e a, e t over e > 0; q a, q log q,
// q log p, q (log q - log p) over q != 0) is one merge-masked FMA at AVX-512 (madd_where), and
// the float log there takes vgetmant/vgetexp: per 16 float elements pass 2 is 26 instructions and
// pass 3 49 at AVX-512 (objdump of the loops; 29 and 57 before).
template <class T, bool kShift>
void ledger_rows_impl(const MatrixView<T>& q, const MatrixView<T>& a, const Exponent ex_shared, const T* weights,
                      const LedgerRows& out, double* charges) {
    const std::int64_t n = a.rows;
    const std::int64_t k = a.cols;
    const std::int64_t tile = tile_rows<T>(k);
    const std::int64_t n_tiles = (n + tile - 1) / tile;
    const int n_threads = pass_threads(n * k, n_tiles);
    ColumnSums column_sums(charges != nullptr ? n_threads : 0, k);
    const double uniform_weight = 1.0 / static_cast<double>(n);

#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
    {
        const Exponent ex = ex_shared;  // a local copy: stores cannot alias it
        double* acc = charges != nullptr ? column_sums.of_thread(thread_index()) : nullptr;
        RowReader<T> ra(a);
        RowReader<T> rq(q);
        // float charges: summed in float over groups of rows (FloatCharges), then in double
        FloatCharges<T> float_acc(std::is_same<T, float>::value && acc != nullptr ? k : 0);
        for_row_tiles(n, tile, [&](std::int64_t i0, std::int64_t i1) {
            ra.load(i0, i1);
            rq.load(i0, i1);
            for (std::int64_t i = i0; i < i1; ++i) {
                const T* row = ra.row(i);
                const T* q_row = rq.row(i);
                LedgerSums sums;
                bool done = false;
                if constexpr (!kShift) done = ledger_row_fast(row, q_row, k, ex, ra.next_row(i), sums);
                if (!done) sums = ledger_row_masked<T, kShift>(row, q_row, k, ex, ra.next_row(i));
                const double m = sums.m, z = sums.z, ea = sums.ea, et = sums.et;
                const double qa = sums.qa, qlogq = sums.qlogq, qlogp = sums.qlogp, kl = sums.kl, mass = sums.mass;
                const double log_zr = std::log(z);
                const bool finite_max = std::isfinite(m);
                const double nan = quiet_nan<double>();
                if (out.energy_q != nullptr) out.energy_q[i] = qa;
                if (out.energy_p != nullptr) out.energy_p[i] = finite_max ? ea / z : nan;
                if (out.log_z != nullptr) out.log_z[i] = m + log_zr;
                if (out.entropy_q != nullptr) out.entropy_q[i] = -qlogq;
                if (out.entropy_p != nullptr) out.entropy_p[i] = finite_max ? log_zr - et / z : nan;
                if (out.relative_entropy != nullptr) out.relative_entropy[i] = finite_max ? kl : nan;
                if (out.loss != nullptr) out.loss[i] = finite_max ? -qlogp : nan;
                if (out.label_mass != nullptr) out.label_mass[i] = mass;
                if (acc != nullptr) {
                    const double wi = weights != nullptr ? static_cast<double>(weights[i]) : uniform_weight;
                    if constexpr (std::is_same<T, float>::value) {
                        float_acc.add(static_cast<T>(wi), q_row, k, acc);
                    } else {
#pragma omp simd
                        for (std::int64_t y = 0; y < k; ++y) acc[y] += wi * static_cast<double>(q_row[y]);
                    }
                }
            }
        });
        if (acc != nullptr) float_acc.flush(k, acc);
    }
    if (charges != nullptr) column_sums.merge_into(charges);
}

// The label rows: one read of q; one pass per row (in float or double lanes) for sum q log q and
// sum q, and the charges.
template <class T>
void label_rows_impl(const MatrixView<T>& q, const T* weights, double* entropy_q, double* label_mass,
                     double* charges) {
    const std::int64_t n = q.rows;
    const std::int64_t k = q.cols;
    const std::int64_t tile = tile_rows<T>(k);
    const std::int64_t n_tiles = (n + tile - 1) / tile;
    const int n_threads = pass_threads(n * k, n_tiles);
    ColumnSums column_sums(charges != nullptr ? n_threads : 0, k);
    const double uniform_weight = 1.0 / static_cast<double>(n);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
    {
        double* acc = charges != nullptr ? column_sums.of_thread(thread_index()) : nullptr;
        RowReader<T> rq(q);
        for_row_tiles(n, tile, [&](std::int64_t i0, std::int64_t i1) {
            rq.load(i0, i1);
            for (std::int64_t i = i0; i < i1; ++i) {
                const T* q_row = rq.row(i);
                using V = vec_t<T>;
                constexpr int kL = Vec<T>::kLanes;
                const V zero = splat<V>(0);
                LaneSums<T, 2> sums;  // sum q log q, sum q
                const auto add = [&](const V qj) {
                    sums.part[0] = madd_where(sums.part[0], qj != zero, qj, log_lanes_for_terms(qj));
                    sums.part[1] += qj;
                };
                const std::int64_t full = k - k % kL;
                for (std::int64_t j0 = 0; j0 < full; j0 += kL * LaneSums<T, 2>::kChunkVectors) {
                    const std::int64_t j1 = std::min(full, j0 + kL * LaneSums<T, 2>::kChunkVectors);
                    for (std::int64_t j = j0; j < j1; j += kL) add(load<V>(q_row + j));
                    sums.flush();
                }
                if (full < k) {
                    add(load_partial<T>(q_row + full, k - full, T(0)));  // past the row: q = 0
                    sums.flush();
                }
                const double qlogq = sums[0], mass = sums[1];
                if (entropy_q != nullptr) entropy_q[i] = -qlogq;
                if (label_mass != nullptr) label_mass[i] = mass;
                if (acc != nullptr) {
                    const double wi = weights != nullptr ? static_cast<double>(weights[i]) : uniform_weight;
#pragma omp simd
                    for (std::int64_t y = 0; y < k; ++y) acc[y] += wi * static_cast<double>(q_row[y]);
                }
            }
        });
    }
    if (charges != nullptr) column_sums.merge_into(charges);
}

}  // namespace
}  // namespace detail

template <class T>
void label_rows(const MatrixView<T>& q, const Same<T>* weights, double* entropy_q, double* label_mass,
                double* charges) {
    detail::label_rows_impl<T>(q, weights, entropy_q, label_mass, charges);
}

template <class T>
void ledger_rows(const MatrixView<T>& q, const MatrixView<T>& a, double scale, const double* shift,
                 const Same<T>* weights, const LedgerRows& out, double* charges) {
    const detail::Exponent ex{scale, shift};
    if (shift != nullptr) {
        detail::ledger_rows_impl<T, true>(q, a, ex, weights, out, charges);
    } else {
        detail::ledger_rows_impl<T, false>(q, a, ex, weights, out, charges);
    }
}

// sum_y u_y (v_y - w_y) per row (0 where u = 0 or v = w): one read of u, v and w, one pass.
template <class T>
void row_difference_dot(const MatrixView<T>& u, const MatrixView<T>& v, const MatrixView<T>& w, double* out) {
    const std::int64_t k = u.cols;
    detail::parallel_row_tiles(u.rows, detail::tile_rows<T>(k), u.rows * k, [&] {
        return [&, ru = detail::RowReader<T>(u), rv = detail::RowReader<T>(v),
                rw = detail::RowReader<T>(w)](std::int64_t i0, std::int64_t i1) mutable {
            ru.load(i0, i1);
            rv.load(i0, i1);
            rw.load(i0, i1);
            for (std::int64_t i = i0; i < i1; ++i) {
                const T* ur = ru.row(i);
                const T* vr = rv.row(i);
                const T* wr = rw.row(i);
                double total = 0.0;
                for (std::int64_t j0 = 0; j0 < k; j0 += detail::kChunk) {
                    const std::int64_t j1 = std::min(k, j0 + detail::kChunk);
                    T part = 0;
#pragma omp simd reduction(+ : part)
                    for (std::int64_t j = j0; j < j1; ++j)
                        part += ((ur[j] != T(0)) & (vr[j] != wr[j])) ? ur[j] * (vr[j] - wr[j]) : T(0);
                    total += static_cast<double>(part);
                }
                out[i] = total;
            }
        };
    });
}

THERMOSSL_INSTANTIATE_KERNELS(THERMOSSL_THERMO_KERNELS)

}  // namespace THERMOSSL_ISA_NS
}  // namespace thermossl

#include "isa_end.hpp"
