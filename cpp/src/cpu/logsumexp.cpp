// CPU implementation of logsumexp.hpp. See the header for what each kernel computes.
#include "isa_begin.hpp"
#include "kernels.hpp"
#include "row_primitives.hpp"

namespace thermossl {
namespace THERMOSSL_ISA_NS {
namespace detail {
namespace {

// One read of each row of a (and b) from memory; per row: pass 1 the max, pass 2 the two sums
// (count at the max, in integer lanes, and the rest), from cache, over explicit vectors
// (row_sweep). Pass 2 prefetches the next row (row_sweep's `ahead`), so the next pass 1 reads
// from cache while memory streams during the exp: the passes overlap memory and compute. The max
// pass is a vector max, one instruction per vector (double rows too: the max of a, not of
// scale * a, see with_row_frame); an online max-and-sum would fold it into pass 2 but rescale the
// sums whenever a lane's max grows, and memory traffic is one read either way. The pivot-frame
// forms below (float rows at AVX2 and AVX-512, unshifted double rows at AVX-512) fold pass 1 of
// the next row into pass 2 instead (NextRowPivot: one more load and max per vector, from L2) and
// prefetch the row after it, so each row is one pass. Pass 2 per vector (objdump of the loops):
// float rows in the pivot frame take the base-2 forms below, 22 instructions per 16 elements at
// AVX-512 (the table exp 8) and 26 per 8 at AVX2, loop control and the next row's load and max
// included; other float rows 24 per 16 at AVX-512 (the exp 12, the count at the max and the sum
// one merge-masked add each); double 31 per 8 at AVX-512 (the table exp 18), fewer for unshifted
// rows (vscalefpd's mask, below).
#if (defined(THERMOSSL_ISA_AVX512) || defined(THERMOSSL_ISA_AVX2)) && THERMOSSL_VECTOR_EXT
/// The chunk loop of the explicit-vector pass-2 forms below (one read of the row): the full
/// vectors of kL lanes in chunks of LaneSums<T, 1>::kChunkVectors, each chunk's lanes summed into
/// `part` by `add(j, part)` and flushed to the double sums once, the next row prefetched a chunk
/// ahead when `next` is given; then the partial last vector (k - j < kL elements) by
/// `add_tail(j, part)`, a chunk of its own.
template <class T, std::int64_t kL, class Part, class Add, class AddTail>
inline void chunked_lane_sums(const std::int64_t k, const T* next, LaneSums<T, 1>& sums, const Add& add,
                              const AddTail& add_tail) {
    constexpr std::int64_t kChunkElems = kL * LaneSums<T, 1>::kChunkVectors;
    const std::int64_t full = k - k % kL;
    const char* const ahead = reinterpret_cast<const char*>(next);
    for (std::int64_t j0 = 0; j0 < full; j0 += kChunkElems) {
        const std::int64_t j1 = j0 + kChunkElems < full ? j0 + kChunkElems : full;
        if (ahead != nullptr) prefetch_bytes<kChunkElems * sizeof(T)>(ahead + j0 * sizeof(T));
        Part part{};  // zeros
        for (std::int64_t j = j0; j < j1; j += kL) add(j, part);
        sums.part[0] = (vec_t<T>)part;
        sums.flush();
    }
    if (full < k) {
        if (ahead != nullptr) prefetch_bytes<kL * sizeof(T)>(ahead + full * sizeof(T));
        Part part{};
        add_tail(full, part);
        sums.part[0] = (vec_t<T>)part;
        sums.flush();
    }
}

/// The frame of the base-2 float forms (with_row_frame's PivotArg): false where it does not apply
/// (scale not a moderate normal number, or m = scale * a* not finite); else the pivot a* (max a
/// for scale > 0, min a for scale < 0: `*known_pivot` where the previous row's pass gathered it,
/// NextRowPivot, else a pivot pass over the row), m, and c = float(-scale log2 e), the factor of
/// d = a* - a.
inline bool base2_pivot_frame(const float* a, const std::int64_t k, const Exponent ex, const float* known_pivot,
                              float& pivot, double& m, float& c) {
    const double mag = std::fabs(ex.scale);
    if (!(mag >= 0x1p-60 && mag <= 0x1p60)) return false;
    pivot = row_pivot_raw(a, k, ex.scale, known_pivot);
    m = ex.scale * static_cast<double>(pivot);
    c = static_cast<float>(-ex.scale * 1.4426950408889634074);
    return std::isfinite(m);
}

/// The pivot of the next row (its max for kDir > 0, its min for kDir < 0; kDir = 0: nothing),
/// gathered vector by vector during this row's exp pass: one load (the row is in L2, prefetched
/// a row earlier) and one max or min per vector, so the next row needs no pivot pass of its own,
/// which read it from L2 at about 2 cycles per 64 bytes on an AMD Zen 4 while the FMA pipes
/// idled. The same value as row_max_raw / row_min_raw: max and min are exact, and a nan lane is
/// skipped as there (max_lanes(v, m) keeps m where v is nan).
template <class T, int kDir>
struct NextRowPivot {
    using V = vec_t<T>;
    static constexpr T kFill = kDir > 0 ? -infinity<T>() : infinity<T>();
    const T* row = nullptr;
    V acc = splat<V>(kFill);
    void add(const std::int64_t j) {
        if constexpr (kDir != 0) fold(load<V>(row + j));
    }
    // the r < kLanes elements from j on
    void add_tail(const std::int64_t j, const std::int64_t r) {
        if constexpr (kDir != 0) fold(load_partial<T>(row + j, r, kFill));
    }
    T value() const { return kDir > 0 ? lane_max(acc, kFill) : lane_min(acc, kFill); }

private:
    void fold(const V v) { acc = kDir > 0 ? max_lanes(v, acc) : min_lanes(v, acc); }
};

/// Runs sums_of(direction, known_pivot, next_pivot) for `row` (one of the row-sum forms below,
/// taking std::integral_constant<int, kDir>) and hands the next row's pivot on: `known_pivot`
/// is `carried` where pivot_row == row (the previous call gathered it), and the call gathers the
/// pivot of `next` (the next row, nullptr where the rows are not contiguous or this is the last)
/// into `carried`, its max for scale > 0 and its min for scale < 0. pivot_row is left at `next`
/// only where the call summed the row (a form that returns false gathers nothing). Returns what
/// sums_of returns.
template <class T, class SumsOf>
inline bool sums_carrying_pivot(const T* row, const T* next, const double scale, const T*& pivot_row, T& carried,
                                const SumsOf& sums_of) {
    const T* known = pivot_row == row ? &carried : nullptr;
    T next_pivot = T(0);
    bool summed;
    if (next == nullptr) {
        summed = sums_of(std::integral_constant<int, 0>{}, known, next_pivot);
    } else if (scale > 0) {
        summed = sums_of(std::integral_constant<int, 1>{}, known, next_pivot);
    } else {
        summed = sums_of(std::integral_constant<int, -1>{}, known, next_pivot);
    }
    pivot_row = summed ? next : nullptr;
    carried = next_pivot;
    return summed;
}
// The flush of the base-2 forms, 2^kBase2Lowest: float products, as y at scale 1, so the same t as
// exp_nonpositive_f32's flush at -86.9 (AVX2: its integer scale needs a normal result; AVX-512:
// vscalefps would scale to the subnormals, but every level flushes the same terms).
constexpr float kBase2Lowest = -86.9f * 1.44269504f;
#endif

#if defined(THERMOSSL_ISA_AVX512) && THERMOSSL_VECTOR_EXT
/// Pass 2 of a float row at AVX-512 in the pivot frame (with_row_frame's PivotArg: scale a
/// moderate normal number, max finite), with the exponent in base 2: d = a* - a (exact max/min
/// pivot, one rounding), y = d * c with c = float(-scale log2 e), and e = 2^y by the 16-entry
/// table form (exp2_nonpositive_f32_table), so the natural-log reduction (a multiply-add for n,
/// a subtraction, a multiply-add for r) and the clamp are gone. y carries the same three
/// roundings as PivotArg's t (d, the constant, the product: <= 3 2^-24 |y|, i.e. a relative error
/// <= 3 2^-24 |t| of e^t, as before) and no reduction error. Terms at the max (d == 0) and
/// terms below 2^ly (ly = float(-86.9) * float(log2 e): the flush of exp_nonpositive_f32, at the
/// same t when scale = 1) are zeroed by vscalefps's mask, built by one compare and one masked
/// compare; the count at the max is k less the count of the other lanes (a popcount, scalar
/// pipes). kDir != 0: the pivot of `next_row` (NextRowPivot) is gathered on the way and returned
/// in next_pivot. Per 16 elements: load-subtract, multiply, 2 compares, add, vreduceps, 3 FMA,
/// multiply, vpermps, vscalefps, add, count (+ load, max with kDir). Returns false (nothing
/// done, no next pivot) where PivotArg does not apply.
template <int kDir>
inline bool pivot_row_sums(const float* a, const std::int64_t k, const Exponent ex, const float* ahead,
                           const float* known_pivot, const float* next_row, float& next_pivot, double& m,
                           double& weight_at_max, double& rest) {
    float pivot, c;
    if (!base2_pivot_frame(a, k, ex, known_pivot, pivot, m, c)) return false;
    const __m512 pv = _mm512_set1_ps(pivot);
    // d is formed as a* - a (the load folds into the subtraction), so the constant is negated
    const __m512 cv = _mm512_set1_ps(c);
    const __m512 low = _mm512_set1_ps(kBase2Lowest);
    std::int64_t below_count = 0;  // how many terms are not at the max
    LaneSums<float, 1> sums;
    NextRowPivot<float, kDir> next{next_row};
    const auto term = [&](const __m512 d, __m512& part) {
        const __m512 y = _mm512_mul_ps(d, cv);
        const __mmask16 not_max = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_UQ);  // nan: set
        const __mmask16 keep = _mm512_mask_cmp_ps_mask(not_max, y, low, _CMP_NLT_UQ);     // nan: set
        part = _mm512_add_ps(part, exp2_nonpositive_f32_table(y, keep));
        below_count += __builtin_popcount(static_cast<unsigned>(not_max));
    };
    chunked_lane_sums<float, 16, __m512>(
        k, ahead, sums,
        [&](const std::int64_t j, __m512& part) {
            term(_mm512_sub_ps(pv, _mm512_loadu_ps(a + j)), part);
            next.add(j);
        },
        [&](const std::int64_t j, __m512& part) {
            // lanes past the row load the pivot: d = 0, neither counted nor summed
            const __mmask16 valid = static_cast<__mmask16>((1u << (k - j)) - 1u);
            term(_mm512_sub_ps(pv, _mm512_mask_loadu_ps(pv, valid, a + j)), part);
            next.add_tail(j, k - j);
        });
    weight_at_max = static_cast<double>(k - below_count);
    rest = sums[0];
    next_pivot = next.value();
    return true;
}
#elif defined(THERMOSSL_ISA_AVX2) && THERMOSSL_VECTOR_EXT
/// Pass 2 of a float row at AVX2 in the pivot frame, exponent in base 2 as at AVX-512 (see
/// there): d = a* - a (the load folded), y = d * (-c), e = 2^y (exp2_nonpositive_f32_unmasked:
/// the rounding trick, no reduction multiply-adds, no clamp), and the terms at the max (d == 0)
/// and below 2^ly zeroed by one and-not with the or of two compares. The count at the max stays
/// in integer lanes (one subtraction of the compare mask). Per 8 elements: load-subtract,
/// multiply, 2 conversions, subtraction, 6 FMA, shift, add, 2 compares, or, and-not, add, count
/// (+ load, max with kDir: the next row's pivot, NextRowPivot, as at AVX-512).
template <int kDir>
inline bool pivot_row_sums(const float* a, const std::int64_t k, const Exponent ex, const float* ahead,
                           const float* known_pivot, const float* next_row, float& next_pivot, double& m,
                           double& weight_at_max, double& rest) {
    float pivot, c;
    if (!base2_pivot_frame(a, k, ex, known_pivot, pivot, m, c)) return false;
    const __m256 pv = _mm256_set1_ps(pivot);
    const __m256 cv = _mm256_set1_ps(c);
    const __m256 low = _mm256_set1_ps(kBase2Lowest);
    __m256i minus_at_max = _mm256_setzero_si256();
    LaneSums<float, 1> sums;
    NextRowPivot<float, kDir> next{next_row};
    const auto term = [&](const __m256 d, __m256& part) {
        const __m256 y = _mm256_mul_ps(d, cv);
        const __m256 at_max = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_EQ_OQ);
        const __m256 drop = _mm256_or_ps(at_max, _mm256_cmp_ps(y, low, _CMP_LT_OQ));  // nan: kept
        part = _mm256_add_ps(part, _mm256_andnot_ps(drop, exp2_nonpositive_f32_unmasked(y)));
        minus_at_max = _mm256_add_epi32(minus_at_max, _mm256_castps_si256(at_max));
    };
    constexpr std::int64_t kL = 8;
    chunked_lane_sums<float, kL, __m256>(
        k, ahead, sums,
        [&](const std::int64_t j, __m256& part) {
            term(_mm256_sub_ps(pv, _mm256_loadu_ps(a + j)), part);
            next.add(j);
        },
        [&](const std::int64_t j, __m256& part) {
            // the lanes past the row are zeroed after the term (they hold the pivot: d = 0, at the
            // max, so they add -1 to the count, taken back below)
            const TailLanes<float> tail(k - j);
            term(_mm256_sub_ps(pv, (__m256)tail.load(a + j, pivot)), part);
            next.add_tail(j, k - j);
        });
    const std::int64_t padded = (k + kL - 1) / kL * kL;
    std::int64_t at_max = 0;
    alignas(32) std::int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), minus_at_max);
    for (int l = 0; l < 8; ++l) at_max -= lanes[l];
    weight_at_max = static_cast<double>(at_max - (padded - k));
    rest = sums[0];
    next_pivot = next.value();
    return true;
}
#endif
#if defined(THERMOSSL_ISA_AVX512) && THERMOSSL_VECTOR_EXT

/// Pass 2 of an unshifted double row at AVX-512: x = scale * a (the load folded into the
/// multiply), t = x - m, and the table exp with the terms at the max (x >= m) and below the flush
/// (t < -708) zeroed by vscalefpd's mask (one compare and one masked compare), so the sum is a
/// plain add and the count at the max is k less a popcount of the other lanes (scalar pipes). The
/// same terms, added in the same order and chunks, as the generic sweep (ExactArg and add_where):
/// the same bits. Returns false where the generic frame's max is not finite.
template <int kDir>
inline bool pivot_row_sums(const double* a, const std::int64_t k, const Exponent ex, const double* ahead,
                           const double* known_pivot, const double* next_row, double& next_pivot, double& m,
                           double& weight_at_max, double& rest) {
    if (!(ex.scale != 0.0 && std::isfinite(ex.scale))) return false;
    const double pivot = row_pivot_raw(a, k, ex.scale, known_pivot);
    m = ex.scale * pivot;
    if (!std::isfinite(m)) return false;
    const __m512d sv = _mm512_set1_pd(ex.scale);
    const __m512d mv = _mm512_set1_pd(m);
    const __m512d low = _mm512_set1_pd(-708.0);
    std::int64_t below_count = 0;
    LaneSums<double, 1> sums;
    NextRowPivot<double, kDir> next{next_row};
    const auto term = [&](const __m512d x, __m512d& part) {
        const __m512d t = _mm512_sub_pd(x, mv);
        const __mmask8 not_max = _mm512_cmp_pd_mask(x, mv, _CMP_NGE_UQ);             // nan: set
        const __mmask8 keep = _mm512_mask_cmp_pd_mask(not_max, t, low, _CMP_NLT_UQ);  // nan: set
        part = _mm512_add_pd(part, exp_nonpositive_f64_table_where(t, keep));
        below_count += __builtin_popcount(static_cast<unsigned>(not_max));
    };
    chunked_lane_sums<double, 8, __m512d>(
        k, ahead, sums,
        [&](const std::int64_t j, __m512d& part) {
            term(_mm512_mul_pd(sv, _mm512_loadu_pd(a + j)), part);
            next.add(j);
        },
        [&](const std::int64_t j, __m512d& part) {
            // lanes past the row load the pivot: x = m, neither counted nor summed
            const __mmask8 valid = static_cast<__mmask8>((1u << (k - j)) - 1u);
            term(_mm512_mul_pd(sv, _mm512_mask_loadu_pd(_mm512_set1_pd(pivot), valid, a + j)), part);
            next.add_tail(j, k - j);
        });
    next_pivot = next.value();
    weight_at_max = static_cast<double>(k - below_count);
    rest = sums[0];
    return true;
}
#endif

/// Whether this level has a pivot_row_sums form for T (float rows at AVX2 and AVX-512, double
/// rows at AVX-512); the other rows take with_row_frame and the generic sweep.
template <class T>
inline constexpr bool has_pivot_row_sums =
#if (defined(THERMOSSL_ISA_AVX512) || defined(THERMOSSL_ISA_AVX2)) && THERMOSSL_VECTOR_EXT
    std::is_same<T, float>::value ||
#endif
#if defined(THERMOSSL_ISA_AVX512) && THERMOSSL_VECTOR_EXT
    std::is_same<T, double>::value ||
#endif
    false;

// T: the compute type; In: the stored element type of a and b (T, or a half type).
template <class T, bool kShift, class In>
void logsumexp_rows(const MatrixView<In>& a, const Exponent ex_shared, const MatrixView<In>* b, T* out,
                    T* sign) {
    const std::int64_t k = a.cols;
    const MatrixView<In> no_weights{};
    parallel_row_tiles(a.rows, tile_rows<T>(k), a.rows * k, [&] {
        // The pivot of the row at pivot_row, gathered during the pass over the row before it
        // (sums_carrying_pivot: the float base-2 forms at AVX2 / AVX-512, the double form at
        // AVX-512); kept across this thread's tiles (a thread takes consecutive tiles), used only
        // for that row.
        return [&, ra = RowReader<T, In>(a), rb = RowReader<T, In>(b ? *b : no_weights),
                pivot_row = static_cast<const T*>(nullptr),
                carried_pivot = T(0)](std::int64_t i0, std::int64_t i1) mutable {
            const Exponent ex = ex_shared;  // a local copy: the compiler need not reload it
            ra.load(i0, i1);
            if (b != nullptr) rb.load(i0, i1);
            for (std::int64_t i = i0; i < i1; ++i) {
                const T* row = ra.row(i);
                const T* next = ra.next_row(i);  // read (its pivot) or prefetched during this row's pass
                if (k == 0) {
                    out[i] = -infinity<T>();
                    if (sign != nullptr) sign[i] = T(-1);  // scipy: sign(-inf) for empty input
                    continue;
                }
                double weight_at_max = 0.0;
                double rest = 0.0;
                double m;
                bool summed = false;
#if (defined(THERMOSSL_ISA_AVX512) || defined(THERMOSSL_ISA_AVX2)) && THERMOSSL_VECTOR_EXT
                // the next row (contiguous rows only) is read during this row's pass for its pivot,
                // so the prefetch reaches one row further
                const T* ahead = next != nullptr ? ra.next_row(i + 1) : nullptr;
                if constexpr (!kShift && has_pivot_row_sums<T>) {
                    if (b == nullptr) {
                        summed = sums_carrying_pivot(row, next, ex.scale, pivot_row, carried_pivot,
                                                     [&](auto dir, const T* known, T& next_pivot) {
                                                         return pivot_row_sums<decltype(dir)::value>(
                                                             row, k, ex, ahead, known, next, next_pivot, m,
                                                             weight_at_max, rest);
                                                     });
                    }
                }
#endif
                if (b == nullptr) {
                    if (!summed) with_row_frame<T, kShift>(row, k, ex, [&](const double m_row, const auto arg) {
                        using V = vec_t<T>;
                        m = m_row;
                        LaneCount<T> at_max_count;  // integer lanes: no float flush
                        LaneSums<T, 1> sums;        // the rest
                        row_sweep(k, arg, sums, [&](std::int64_t, const V t, const mask_t<T> at_max,
                                                    const auto& lanes) {
                            const V e = exp_lanes(t);  // unconditional: no masked lanes
                            at_max_count.add(at_max);
                            // one masked add at AVX-512 (add_where), an and + add elsewhere
                            sums.part[0] = add_where(sums.part[0], lanes.keep(mask_not(at_max)), e);
                        }, next);
                        weight_at_max = at_max_count.total();
                        rest = sums[0];
                    });
                    finish_logsumexp<T>(weight_at_max, rest, m, [&] {
                        T total = 0;
                        for (std::int64_t j = 0; j < k; ++j) total += std::exp(static_cast<T>(exponent_at<T, kShift>(ex, row, j)));
                        return total;
                    }, out + i, sign ? sign + i : nullptr);
                } else {
                    // Terms with b == 0 are dropped, even where x is +-inf or nan (scipy).
                    const T* w = rb.row(i);
                    m = -infinity<double>();
#pragma omp simd reduction(max : m)
                    for (std::int64_t j = 0; j < k; ++j) {
                        const double x = w[j] != T(0) ? exponent_at<T, kShift>(ex, row, j) : -infinity<double>();
                        m = x > m ? x : m;
                    }
                    for (std::int64_t j0 = 0; j0 < k; j0 += kChunk) {
                        const std::int64_t j1 = std::min(k, j0 + kChunk);
                        T weight = 0;
                        T part = 0;
#pragma omp simd reduction(+ : weight, part)
                        for (std::int64_t j = j0; j < j1; ++j) {
                            const double x = w[j] != T(0) ? exponent_at<T, kShift>(ex, row, j) : -infinity<double>();
                            const bool at_max = x >= m;
                            weight += at_max ? w[j] : T(0);
                            part += at_max ? T(0) : w[j] * exp_nonpositive(static_cast<T>(x - m));
                        }
                        weight_at_max += static_cast<double>(weight);
                        rest += static_cast<double>(part);
                    }
                    finish_logsumexp<T>(weight_at_max, rest, m, [&] {
                        T total = 0;
                        for (std::int64_t j = 0; j < k; ++j) total += w[j] * std::exp(static_cast<T>(exponent_at<T, kShift>(ex, row, j)));
                        return total;
                    }, out + i, sign ? sign + i : nullptr);
                }
            }
        };
    });
}

// Rows per block of the column kernel: the block is read twice (max, then sums), so it should
// stay in the per-core cache (~128 KiB) between the two reads.
template <class T>
std::int64_t col_block_rows(std::int64_t cols) {
    const std::int64_t budget = (128 * 1024) / static_cast<std::int64_t>(sizeof(T));
    return std::max<std::int64_t>(1, std::min<std::int64_t>(32, budget / std::max<std::int64_t>(cols, 1)));
}

template <class T, bool kShift>
void logsumexp_cols(const MatrixView<T>& a, const Exponent ex_shared, T* out) {
    const std::int64_t n = a.rows;
    const std::int64_t k = a.cols;
    if (k == 0) return;
    const std::int64_t block = col_block_rows<T>(k);
    const std::int64_t n_blocks = (n + block - 1) / block;
    const int n_threads = pass_threads(n * k, n_blocks);
    // Per-thread running max and sum of exp(x - max) for every column; merged once at the end.
    std::vector<double> maxes(static_cast<std::size_t>(n_threads * k), -infinity<double>());
    std::vector<double> sums(static_cast<std::size_t>(n_threads * k), 0.0);

#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
    {
        const Exponent ex = ex_shared;  // a local copy: stores to the accumulators cannot alias it
        const int thread = thread_index();
        double* m = maxes.data() + thread * k;
        double* s = sums.data() + thread * k;
        std::vector<double> block_max(static_cast<std::size_t>(k));
        std::vector<T> block_sum(static_cast<std::size_t>(k));
        RowReader<T> reader(a);
        for_row_tiles(n, block, [&](std::int64_t i0, std::int64_t i1) {
            reader.load(i0, i1);
            std::copy(m, m + k, block_max.begin());
            double* bm = block_max.data();
            for (std::int64_t i = i0; i < i1; ++i) {
                const T* row = reader.row(i);
                const double sh = kShift ? ex.shift[i] : 0.0;
#pragma omp simd
                for (std::int64_t y = 0; y < k; ++y) {
                    const double x = ex.scale * static_cast<double>(row[y]) + sh;
                    bm[y] = x > bm[y] ? x : bm[y];
                }
            }
            // Rescale the running sums to the new max (exp(-inf) = 0 covers the first block).
#pragma omp simd
            for (std::int64_t y = 0; y < k; ++y) {
                const bool grows = bm[y] > m[y];
                const double shift_down = grows ? m[y] - bm[y] : 0.0;
                s[y] *= exp_nonpositive(shift_down);
                m[y] = grows ? bm[y] : m[y];
            }
            // Block sums in T (at most 32 terms each), folded into the double running sums.
            std::fill(block_sum.begin(), block_sum.end(), T(0));
            T* bs = block_sum.data();
            for (std::int64_t i = i0; i < i1; ++i) {
                const T* row = reader.row(i);
                const double sh = kShift ? ex.shift[i] : 0.0;
#pragma omp simd
                for (std::int64_t y = 0; y < k; ++y) {
                    const double x = ex.scale * static_cast<double>(row[y]) + sh;
                    bs[y] += x >= m[y] ? T(1) : exp_nonpositive(static_cast<T>(x - m[y]));
                }
            }
#pragma omp simd
            for (std::int64_t y = 0; y < k; ++y) s[y] += static_cast<double>(bs[y]);
        });
    }

    for (std::int64_t y = 0; y < k; ++y) {
        double m = -infinity<double>();
        for (int t = 0; t < n_threads; ++t) m = std::max(m, maxes[t * k + y]);
        double s = 0.0;
        for (int t = 0; t < n_threads; ++t) {
            const double mt = maxes[t * k + y];
            s += mt >= m ? sums[t * k + y] : sums[t * k + y] * exp_nonpositive(mt - m);
        }
        out[y] = static_cast<T>(m + std::log(s));
    }
}

}  // namespace
}  // namespace detail

template <class T>
void row_logsumexp(const MatrixView<T>& a, double scale, const double* shift, const MatrixView<Same<T>>* b,
                   Real<T>* out, Real<T>* sign) {
    const detail::Exponent ex{scale, shift};
    if (shift != nullptr) {
        detail::logsumexp_rows<Real<T>, true>(a, ex, b, out, sign);
    } else {
        detail::logsumexp_rows<Real<T>, false>(a, ex, b, out, sign);
    }
}

template <class T>
void col_logsumexp(const MatrixView<T>& a, double scale, const double* shift, Same<T>* out) {
    const detail::Exponent ex{scale, shift};
    if (shift != nullptr) {
        detail::logsumexp_cols<T, true>(a, ex, out);
    } else {
        detail::logsumexp_cols<T, false>(a, ex, out);
    }
}

THERMOSSL_INSTANTIATE_KERNELS(THERMOSSL_LOGSUMEXP_KERNELS)
THERMOSSL_INSTANTIATE_HALF_INPUT_KERNELS(THERMOSSL_ROW_LOGSUMEXP_KERNELS)

}  // namespace THERMOSSL_ISA_NS
}  // namespace thermossl

#include "isa_end.hpp"
