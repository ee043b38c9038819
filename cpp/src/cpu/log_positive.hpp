// log(x) for x >= 0, written branch-free and generic over its lanes (scalar or a simd_vec.hpp
// vector, as exp_nonpositive), without -ffast-math and without libmvec.
//
// Method: x = 2^e m with m in [sqrt(1/2), sqrt(2)), plus e ln 2 split in two parts. float: a
// division-free polynomial in u = m - 1 (Cephes logf, relative error ~1e-7). double:
// log m = 2 atanh(z) with z = (m-1)/(m+1), |z| <= 0.1716, as the odd series
// 2 z (1 + z^2/3 + z^4/5 + ...) truncated at z^21 (6e-19).
// Relative accuracy is kept near x = 1 (where log x ~ 2z), which relative entropies need.
// Special values: log 0 = -inf, log(+inf) = +inf, x < 0 or nan -> nan; subnormal x are scaled
// into the normal range first. The integer-to-float step uses the 1.5 * 2^(mantissa bits) trick
// (SSE2/AVX2 have no int64 -> double conversion).
#pragma once

#include <cstdint>
#include <limits>

#include "exp_nonpositive.hpp"  // bit_cast

namespace thermossl::THERMOSSL_ISA_NS::detail {

/// log(2^ef m) for m in [sqrt(1/2), sqrt(2)] and ef an integer held as a float: the step of
/// log_positive_f32 after its reduction, shared by its generic and AVX-512 forms (same bits for
/// the same m and ef). Division-free (Cephes logf): with u = m - 1 (exact),
/// log m = u - u^2/2 + u^3 P(u), P a degree-8 minimax polynomial (relative error ~1e-7 on the
/// interval; relative accuracy near x = 1 is kept since log m ~ u there), and ef ln 2 in two
/// parts (0.693359375 exact in float, the rest -2.12194440e-4 folded into the small terms).
template <class V>
inline V log_of_reduced_f32(const V m, const V ef) {
    const V u = m - lane_splat<V>(1.0f);
    const V u2 = u * u;
    V poly = lane_splat<V>(7.0376836292e-2f);
    poly = lane_fma(poly, u, lane_splat<V>(-1.1514610310e-1f));
    poly = lane_fma(poly, u, lane_splat<V>(1.1676998740e-1f));
    poly = lane_fma(poly, u, lane_splat<V>(-1.2420140846e-1f));
    poly = lane_fma(poly, u, lane_splat<V>(1.4249322787e-1f));
    poly = lane_fma(poly, u, lane_splat<V>(-1.6668057665e-1f));
    poly = lane_fma(poly, u, lane_splat<V>(2.0000714765e-1f));
    poly = lane_fma(poly, u, lane_splat<V>(-2.4999993993e-1f));
    poly = lane_fma(poly, u, lane_splat<V>(3.3333331174e-1f));
    V y = u * u2 * poly;
    y = lane_fma(ef, lane_splat<V>(-2.12194440e-4f), y);
    y = lane_fma(lane_splat<V>(-0.5f), u2, y);
    return lane_fma(ef, lane_splat<V>(0.693359375f), u + y);
}

/// log_positive for float lanes: V is float or a vector of floats (simd_vec.hpp), so the scalar
/// function below and the explicit vector loops compute the same bits.
///
/// kExact = false is the cheaper form for terms x * f(log x) whose callers drop x = 0 (the
/// ledger's label sums): no scaling of subnormal x (their log is off by up to 23 ln 2, so
/// x log x by less than 2e-37 absolute) and no special results for x = 0 and x = +inf (finite
/// values; inf * finite stays inf); x < 0 and nan still give nan. At AVX-512 (16 lanes) it takes
/// the mantissa and exponent from vgetmantps / vgetexpps: subnormals exact, x = 0 gives -inf and
/// x = +inf gives +inf; ~22 instructions per vector against ~30.
template <class V, bool kExact = true>
inline V log_positive_f32(const V x) {
    using I = decltype(bits_of_lanes(x));
    const V inf = lane_splat<V>(std::numeric_limits<float>::infinity());
#if defined(THERMOSSL_ISA_AVX512) && THERMOSSL_VECTOR_EXT
    if constexpr (!kExact && sizeof(V) == 64) {
        // AVX-512: the mantissa in [1, 2) and the exponent as a float by vgetmantps / vgetexpps
        // (exact, subnormals included), instead of ~8 integer and convert steps; then the same
        // reduction to [sqrt(1/2), sqrt(2)) and the same polynomial as below. x = 0 gives
        // e = -inf (callers drop it), x = +inf gives +inf, nan stays nan.
        const __m512 xv = (__m512)x;
        const __m512 m1 = _mm512_getmant_ps(xv, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src);
        const __m512 e1 = _mm512_getexp_ps(xv);
        const __mmask16 high = _mm512_cmp_ps_mask(m1, _mm512_set1_ps(1.41421356237309505f), _CMP_GT_OQ);
        const V m = (V)_mm512_mask_mul_ps(m1, high, m1, _mm512_set1_ps(0.5f));
        const V ef = (V)_mm512_mask_add_ps(e1, high, e1, _mm512_set1_ps(1.0f));
        const V result = log_of_reduced_f32(m, ef);
        return x >= lane_splat<V>(0.0f) ? result : lane_splat<V>(std::numeric_limits<float>::quiet_NaN());
    }
#endif
    I bits, e;
    if constexpr (kExact) {
        const auto subnormal = x < lane_splat<V>(std::numeric_limits<float>::min());
        const V xs = subnormal ? x * lane_splat<V>(8388608.0f) : x;  // 2^23
        bits = bits_of_lanes(xs);
        e = ((bits >> 23) & 0xff) - (subnormal ? lane_splat<I>(127 + 23) : lane_splat<I>(127));
    } else {
        bits = bits_of_lanes(x);
        e = ((bits >> 23) & 0xff) - 127;
    }
    V m = floats_of_lanes<V>((bits & 0x007fffff) | 0x3f800000);  // [1, 2)
    const auto high = m > lane_splat<V>(1.41421356237309505f);
    m = high ? m * lane_splat<V>(0.5f) : m;
    e = high ? e + 1 : e;
    V result = log_of_reduced_f32(m, lane_convert<V>(e));
    if constexpr (kExact) {
        result = x == inf ? x : result;
        result = x == lane_splat<V>(0.0f) ? -inf : result;
    }
    // x >= 0 is false for x < 0 and for nan
    return x >= lane_splat<V>(0.0f) ? result : lane_splat<V>(std::numeric_limits<float>::quiet_NaN());
}

/// log(2^ef m) for m in [sqrt(1/2), sqrt(2)] and ef an integer held as a double: the step of
/// log_positive_f64 after its reduction (2 atanh((m - 1)/(m + 1)), see the header).
template <class V>
inline V log_of_reduced_f64(const V m, const V ed) {
    const V z = (m - lane_splat<V>(1.0)) / (m + lane_splat<V>(1.0));
    const V z2 = z * z;
    V poly = lane_splat<V>(1.0 / 21.0);
    poly = lane_fma(poly, z2, lane_splat<V>(1.0 / 19.0));
    poly = lane_fma(poly, z2, lane_splat<V>(1.0 / 17.0));
    poly = lane_fma(poly, z2, lane_splat<V>(1.0 / 15.0));
    poly = lane_fma(poly, z2, lane_splat<V>(1.0 / 13.0));
    poly = lane_fma(poly, z2, lane_splat<V>(1.0 / 11.0));
    poly = lane_fma(poly, z2, lane_splat<V>(1.0 / 9.0));
    poly = lane_fma(poly, z2, lane_splat<V>(1.0 / 7.0));
    poly = lane_fma(poly, z2, lane_splat<V>(1.0 / 5.0));
    poly = lane_fma(poly, z2, lane_splat<V>(1.0 / 3.0));
    const V log_m = lane_splat<V>(2.0) * z + lane_splat<V>(2.0) * z * z2 * poly;
    return (ed * lane_splat<V>(1.90821492927058770002e-10) + log_m) + ed * lane_splat<V>(6.93147180369123816490e-01);
}

/// log_positive for double lanes (V: double or a vector of doubles).
template <class V>
inline V log_positive_f64(const V x) {
    using I = decltype(bits_of_lanes(x));
    const V inf = lane_splat<V>(std::numeric_limits<double>::infinity());
    const V round = lane_splat<V>(6755399441055744.0);  // 1.5 * 2^52
    const auto subnormal = x < lane_splat<V>(std::numeric_limits<double>::min());
    const V xs = subnormal ? x * lane_splat<V>(4503599627370496.0) : x;  // 2^52
    const I bits = bits_of_lanes(xs);
    I e = ((bits >> 52) & 0x7ff) - (subnormal ? lane_splat<I>(1023 + 52) : lane_splat<I>(1023));
    V m = floats_of_lanes<V>((bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);  // [1, 2)
    const auto high = m > lane_splat<V>(1.41421356237309504880);
    m = high ? m * lane_splat<V>(0.5) : m;
    e = high ? e + 1 : e;
    const V ed = floats_of_lanes<V>(e + bits_of_lanes(round)) - round;
    V result = log_of_reduced_f64(m, ed);
    result = x == inf ? x : result;
    result = x == lane_splat<V>(0.0) ? -inf : result;
    return x >= lane_splat<V>(0.0) ? result : lane_splat<V>(std::numeric_limits<double>::quiet_NaN());
}

/// log x for the label terms x log x, x (log x - log p) of the ledger's unmasked row pass
/// (thermo.cpp), whose sums are not masked by x != 0: finite for x = 0 (so 0 log 0 adds 0) and
/// for subnormal x (off by up to 23 ln 2 there, so x log x by < 2e-37 absolute, as
/// log_positive_f32<V, false>); x = +inf gives a finite value (inf * finite stays inf). x < 0
/// gives nan at AVX-512 (vgetmantps's sign control) and a finite value elsewhere, so the caller
/// checks the row's min(x) there; nan stays nan. Normal x > 0: the bits of log_positive_f32.
template <class V>
inline V log_unchecked_f32(const V x) {
#if defined(THERMOSSL_ISA_AVX512) && THERMOSSL_VECTOR_EXT
    if constexpr (sizeof(V) == 64) {
        const __m512 xv = (__m512)x;
        const __m512 m1 = _mm512_getmant_ps(xv, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_nan);  // x < 0: nan
        // x = 0: the exponent -inf clamped, so the log is finite (0 * log 0 adds 0)
        const __m512 e1 = _mm512_max_ps(_mm512_set1_ps(-200.0f), _mm512_getexp_ps(xv));
        const __mmask16 high = _mm512_cmp_ps_mask(m1, _mm512_set1_ps(1.41421356237309505f), _CMP_GT_OQ);
        const V m = (V)_mm512_mask_mul_ps(m1, high, m1, _mm512_set1_ps(0.5f));
        const V ef = (V)_mm512_mask_add_ps(e1, high, e1, _mm512_set1_ps(1.0f));
        return log_of_reduced_f32(m, ef);
    }
#endif
    using I = decltype(bits_of_lanes(x));
    const I bits = bits_of_lanes(x);
    I e = ((bits >> 23) & 0xff) - 127;
    V m = floats_of_lanes<V>((bits & 0x007fffff) | 0x3f800000);  // [1, 2); x = 0: 1
    const auto high = m > lane_splat<V>(1.41421356237309505f);
    m = high ? m * lane_splat<V>(0.5f) : m;
    e = high ? e + 1 : e;
    return log_of_reduced_f32(m, lane_convert<V>(e));
}

/// The double form of log_unchecked_f32 (the same contract; subnormal x off by up to 52 ln 2).
/// Normal x > 0: the bits of log_positive_f64.
template <class V>
inline V log_unchecked_f64(const V x) {
#if defined(THERMOSSL_ISA_AVX512) && THERMOSSL_VECTOR_EXT
    if constexpr (sizeof(V) == 64) {
        const __m512d xv = (__m512d)x;
        const __m512d m1 = _mm512_getmant_pd(xv, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_nan);
        const __m512d e1 = _mm512_max_pd(_mm512_set1_pd(-2000.0), _mm512_getexp_pd(xv));
        const __mmask8 high = _mm512_cmp_pd_mask(m1, _mm512_set1_pd(1.41421356237309504880), _CMP_GT_OQ);
        const V m = (V)_mm512_mask_mul_pd(m1, high, m1, _mm512_set1_pd(0.5));
        const V ed = (V)_mm512_mask_add_pd(e1, high, e1, _mm512_set1_pd(1.0));
        return log_of_reduced_f64(m, ed);
    }
#endif
    using I = decltype(bits_of_lanes(x));
    const V round = lane_splat<V>(6755399441055744.0);  // 1.5 * 2^52
    const I bits = bits_of_lanes(x);
    I e = ((bits >> 52) & 0x7ff) - 1023;
    V m = floats_of_lanes<V>((bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);  // [1, 2)
    const auto high = m > lane_splat<V>(1.41421356237309504880);
    m = high ? m * lane_splat<V>(0.5) : m;
    e = high ? e + 1 : e;
    const V ed = floats_of_lanes<V>(e + bits_of_lanes(round)) - round;
    return log_of_reduced_f64(m, ed);
}

inline float log_positive(float x) { return log_positive_f32(x); }
inline double log_positive(double x) { return log_positive_f64(x); }

}  // namespace thermossl::THERMOSSL_ISA_NS::detail
