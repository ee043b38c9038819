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
#include <cstring>
#include <limits>
#include <type_traits>

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

/// The lanes of I as unsigned integers of the same width (wrapping arithmetic, logical shifts).
template <class I>
struct UnsignedLanes {
    using type = std::make_unsigned_t<I>;
};
#if THERMOSSL_VECTOR_EXT
template <>
struct UnsignedLanes<mask_t<float>> {
    typedef std::uint32_t type __attribute__((vector_size(sizeof(mask_t<float>))));
};
template <>
struct UnsignedLanes<mask_t<double>> {
    typedef std::uint64_t type __attribute__((vector_size(sizeof(mask_t<double>))));
};
#endif

/// x = 2^e m with m in [sqrt(1/2), sqrt(2)] for x > 0 (the reduction of log_positive_f32 and
/// _f64, the same m and e for normal x) in integer steps without a compare: with
/// u = bits(x) + (bits(1) - bits(first m above sqrt(1/2))), u >> (mantissa bits) is the biased e
/// (the offset carries into the exponent field exactly when m > sqrt(2)), and bits(m) =
/// bits(x) - (that << mantissa bits) + bits(1). e comes back as a float / double (through the
/// 1.5 * 2^(mantissa bits) trick for double). x = 0 gives m = 1, e = -bias (finite); subnormal x
/// a wrong but finite m and e; x < 0 and nan give finite garbage or nan (callers check).
template <class T, class V>
inline void reduce_to_sqrt_half(const V x, V& m, V& e) {
    using I = decltype(bits_of_lanes(x));
    using U = typename UnsignedLanes<I>::type;
    U bits;
    std::memcpy(&bits, &x, sizeof(U));
    if constexpr (std::is_same<T, float>::value) {
        const U biased = (bits + 0x004afb0cu) >> 23;  // 0x3f800000 - 0x3f3504f4
        const U m_bits = bits - (biased << 23) + 0x3f800000u;
        std::memcpy(&m, &m_bits, sizeof(U));
        e = lane_convert<V>((I)biased) - lane_splat<V>(127.0f);
    } else {
        const U biased = (bits + 0x00095f619980c432ull) >> 52;  // 0x3ff0... - 0x3fe6a09e667f3bce
        const U m_bits = bits - (biased << 52) + 0x3ff0000000000000ull;
        std::memcpy(&m, &m_bits, sizeof(U));
        const U e_bits = biased | 0x4330000000000000ull;  // 2^52 + biased
        V e_big;
        std::memcpy(&e_big, &e_bits, sizeof(U));
        e = e_big - lane_splat<V>(4503599627371519.0);  // 2^52 + 1023
    }
}

#if defined(THERMOSSL_ISA_AVX512) && THERMOSSL_VECTOR_EXT
/// log x on 16 float lanes by a 16-entry table (AVX-512; the form of log_unchecked_f32 there):
/// x = 2^e m with m in [0.75, 1.5) by vgetmantps (subnormals exact; x < 0 gives nan, x = 0 gives
/// m = 1) and e by vgetexpps (+1 where m < 1; x = 0: clamped to -200, so the log is finite);
/// the top 4 mantissa bits of m pick an interval of [1, 1.5) (width 1/16) or [0.75, 1) (width
/// 1/32) and, by vpermps from one register each, a reciprocal 1/c of a point c of it and
/// log c = -log(1/c) rounded to float (the 1/c searched near the interval's centre for a log c
/// within 2e-4 units of a float; c = 1 for the two intervals that touch 1, so near x = 1 the log
/// is log1p(r) alone and keeps its relative accuracy). Then r = m/c - 1 by one FMA, in
/// [-1/32, 1/16], log1p(r) = r + r^2 h(r) with h of degree 3 (Chebyshev interpolation of
/// (log1p(r) - r)/r^2 on [-1/32, 1/16], rounded to float), and
/// log x = (e ln2_hi + log c) + (e ln2_lo + log1p(r)), ln2_hi = 0.693359375 (e ln2_hi exact).
/// Measured against mpmath over 57,000 x in (0, 1.5] (normal and subnormal, dense near 1): max
/// 1.95 units of 2^-24 relative (Cephes logf, the polynomial form: ~1e-7). 17 instructions per
/// vector against 23 for the polynomial form, and 5 FMAs fewer.
inline __m512 log_table_f32(const __m512 x) {
    const __m512 m = _mm512_getmant_ps(x, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_nan);
    __m512 e = _mm512_max_ps(_mm512_set1_ps(-200.0f), _mm512_getexp_ps(x));
    const __mmask16 below_one = _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.0f), _CMP_LT_OQ);
    e = _mm512_mask_add_ps(e, below_one, e, _mm512_set1_ps(1.0f));  // x = 2^e m
    // entries 0-7: m in [1 + i/16, 1 + (i+1)/16); 8-15: m in [0.75 + (i-8)/32, 0.75 + (i-7)/32)
    // (vpermps reads the low 4 bits of each index lane: bits 19-22 of m)
    const __m512i idx = _mm512_srli_epi32(_mm512_castps_si512(m), 19);
    const __m512 inv_c = _mm512_permutexvar_ps(idx, _mm512_setr_ps(
        0x1.000000p+0f, 0x1.d43636p-1f, 0x1.badefep-1f, 0x1.a42db0p-1f, 0x1.8f9708p-1f, 0x1.7cf1b6p-1f,
        0x1.6c1380p-1f, 0x1.5caeb8p-1f, 0x1.4e77aep+0f, 0x1.41525ap+0f, 0x1.352496p+0f, 0x1.29e368p+0f,
        0x1.1f81eep+0f, 0x1.1599e2p+0f, 0x1.0cadccp+0f, 0x1.000000p+0f));
    const __m512 log_c = _mm512_permutexvar_ps(idx, _mm512_setr_ps(
        0.0f, 0x1.6e32d6p-4f, 0x1.290ddap-3f, 0x1.94c6f2p-3f, 0x1.fbab7ep-3f, 0x1.2ec494p-2f,
        0x1.5d2504p-2f, 0x1.8961fep-2f, -0x1.11c76ap-2f, -0x1.d1707ap-3f, -0x1.824e78p-3f,
        -0x1.365b36p-3f, -0x1.db6deep-4f, -0x1.4bceccp-4f, -0x1.8bff52p-5f, 0.0f));
    const __m512 r = _mm512_fmsub_ps(m, inv_c, _mm512_set1_ps(1.0f));
    __m512 h = _mm512_set1_ps(0x1.85b434p-3f);
    h = _mm512_fmadd_ps(h, r, _mm512_set1_ps(-0x1.002130p-2f));
    h = _mm512_fmadd_ps(h, r, _mm512_set1_ps(0x1.555788p-2f));
    h = _mm512_fmadd_ps(h, r, _mm512_set1_ps(-0x1.fffffep-2f));
    __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(r, r), h, r);
    y = _mm512_fmadd_ps(e, _mm512_set1_ps(-2.12194440e-4f), y);
    return _mm512_add_ps(_mm512_fmadd_ps(e, _mm512_set1_ps(0.693359375f), log_c), y);
}
#endif

/// log x for the label terms x log x, x (log x - log p) of the ledger's unmasked row pass
/// (thermo.cpp), whose sums are not masked by x != 0: finite for x = 0 (so 0 log 0 adds 0) and
/// for subnormal x (off by up to 23 ln 2 there, so x log x by < 2e-37 absolute, as
/// log_positive_f32<V, false>); x = +inf gives a finite value (inf * finite stays inf). x < 0
/// gives nan at AVX-512 (vgetmantps's sign control) and a finite value elsewhere, so the caller
/// checks the row's min(x) there; nan stays nan. At AVX-512 it is the table form log_table_f32;
/// elsewhere, for normal x > 0, the bits of log_positive_f32.
template <class V>
inline V log_unchecked_f32(const V x) {
#if defined(THERMOSSL_ISA_AVX512) && THERMOSSL_VECTOR_EXT
    if constexpr (sizeof(V) == 64) return (V)log_table_f32((__m512)x);
#endif
    V m, ef;
    reduce_to_sqrt_half<float>(x, m, ef);
    return log_of_reduced_f32(m, ef);
}

#if defined(THERMOSSL_ISA_AVX512) && THERMOSSL_VECTOR_EXT
/// log x on 8 double lanes by a 16-entry table (AVX-512; the form of log_unchecked_f64 there):
/// x = 2^e m with m in [0.75, 1.5) by vgetmantpd / vgetexppd as log_table_f32 (x < 0: nan;
/// x = 0: finite); the top 4 mantissa bits of m pick an interval (width 1/16 in [1, 1.5), 1/32
/// in [0.75, 1)) and, by vpermi2pd from two registers each, a point c of it and log c rounded
/// to double (c searched within 2e-10 of the interval's centre for a log c within 0.02 units of a
/// double; c = 1 for the two intervals that touch 1). Then log m = log c + 2 atanh(z),
/// z = (m - c)/(m + c) (m - c exact), |z| <= 0.0304, so the odd series stops at z^9/9 plus a
/// z^11/11 term (truncation < 1e-19 relative) against z^21 for z = (m - 1)/(m + 1): 5 FMAs
/// instead of 10; log x = (e ln2_hi + log c) + (e ln2_lo + 2 atanh z). Measured against mpmath
/// over 44,000 x in (0, 1.5]: max 2.74 units of 2^-53 relative (1.37 ulp). The one division stays
/// (a division-free form needs a table of 2^7 entries for the same polynomial length: gathers).
inline __m512d log_table_f64(const __m512d x) {
    const __m512d m = _mm512_getmant_pd(x, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_nan);
    __m512d e = _mm512_max_pd(_mm512_set1_pd(-2000.0), _mm512_getexp_pd(x));
    const __mmask8 below_one = _mm512_cmp_pd_mask(m, _mm512_set1_pd(1.0), _CMP_LT_OQ);
    e = _mm512_mask_add_pd(e, below_one, e, _mm512_set1_pd(1.0));  // x = 2^e m
    // entries 0-7: m in [1 + i/16, 1 + (i+1)/16); 8-15: m in [0.75 + (i-8)/32, 0.75 + (i-7)/32)
    // (vpermi2pd reads the low 4 bits of each index lane: bits 48-51 of m)
    const __m512i idx = _mm512_srli_epi64(_mm512_castpd_si512(m), 48);
    const __m512d c = _mm512_permutex2var_pd(_mm512_setr_pd(0x1.0000000000000p+0, 0x1.18000000ba600p+0, 0x1.2800000000700p+0, 0x1.38000000bb500p+0, 0x1.4800000000100p+0, 0x1.58000000bb500p+0, 0x1.67ffffff45900p+0, 0x1.77ffffff44c00p+0), idx,
        _mm512_setr_pd(0x1.8800000176200p-1, 0x1.97fffffe89000p-1, 0x1.a800000174a00p-1, 0x1.b800000003200p-1, 0x1.c800000174c00p-1, 0x1.d7fffffe8a600p-1, 0x1.e800000172200p-1, 0x1.0000000000000p+0));
    const __m512d log_c = _mm512_permutex2var_pd(_mm512_setr_pd(0x0.0p+0, 0x1.6f0d28b8fd1b2p-4, 0x1.29552f8202592p-3, 0x1.9525a9d412f52p-3, 0x1.fb9186d5e4469p-3, 0x1.2e8e2bb03f67ep-2, 0x1.5d1bdbf36e4d0p-2, 0x1.89a3386a16309p-2), idx,
        _mm512_setr_pd(-0x1.1178e81eacf96p-2, -0x1.d1037f2db0421p-3, -0x1.823c164e1262cp-3, -0x1.365fcb014a75cp-3, -0x1.da72762b30344p-4, -0x1.4d3115deb238ep-4, -0x1.894aa131b5f54p-5, 0x0.0p+0));
    const __m512d z = _mm512_div_pd(_mm512_sub_pd(m, c), _mm512_add_pd(m, c));
    const __m512d z2 = _mm512_mul_pd(z, z);
    __m512d poly = _mm512_set1_pd(1.0 / 11.0);
    poly = _mm512_fmadd_pd(poly, z2, _mm512_set1_pd(1.0 / 9.0));
    poly = _mm512_fmadd_pd(poly, z2, _mm512_set1_pd(1.0 / 7.0));
    poly = _mm512_fmadd_pd(poly, z2, _mm512_set1_pd(1.0 / 5.0));
    poly = _mm512_fmadd_pd(poly, z2, _mm512_set1_pd(1.0 / 3.0));
    const __m512d two_z = _mm512_add_pd(z, z);
    __m512d y = _mm512_fmadd_pd(_mm512_mul_pd(two_z, z2), poly, two_z);  // 2 atanh z
    y = _mm512_fmadd_pd(e, _mm512_set1_pd(1.90821492927058770002e-10), y);
    return _mm512_add_pd(_mm512_fmadd_pd(e, _mm512_set1_pd(6.93147180369123816490e-01), log_c), y);
}
#endif

/// The double form of log_unchecked_f32 (the same contract; subnormal x off by up to 52 ln 2 below
/// AVX-512). At AVX-512 the table form log_table_f64; elsewhere, for normal x > 0, the bits of
/// log_positive_f64.
template <class V>
inline V log_unchecked_f64(const V x) {
#if defined(THERMOSSL_ISA_AVX512) && THERMOSSL_VECTOR_EXT
    if constexpr (sizeof(V) == 64) {
        return (V)log_table_f64((__m512d)x);
    }
#endif
    V m, ed;
    reduce_to_sqrt_half<double>(x, m, ed);
    return log_of_reduced_f64(m, ed);
}

inline float log_positive(float x) { return log_positive_f32(x); }
inline double log_positive(double x) { return log_positive_f64(x); }

}  // namespace thermossl::THERMOSSL_ISA_NS::detail
