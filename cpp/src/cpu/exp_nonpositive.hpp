// exp(x) on the max-shifted domain x <= 0, written branch-free and generic over its lanes: the
// templates take a scalar or a vector of the level (simd_vec.hpp: 16/8/4 float lanes at
// AVX-512/AVX2/SSE2), so the row kernels' explicit vector loops and the scalar
// exp_nonpositive(float/double) that `omp simd` loops vectorise compute the same bits, without
// -ffast-math and without libmvec. Per vector: 2 for n, 1-2 FMA for r, 6 (float) or 11 (double)
// FMA, then the scale by 2^n: float, on x86 vectors a conversion of n to int32, a shift and an
// integer add into the polynomial's exponent bits (at AVX-512 one vscalefps), elsewhere a shift
// and a multiply; double, 2 integer ops and 1 multiply; and 1 select (underflow; at AVX-512 float
// the zeroing mask of vscalefps). A nan argument of any payload stays nan: the integer n of a nan
// is 0x80000000, which the shift drops (n taken from the bits of the rounding sum, as before,
// carried the nan's payload bits into the exponent and made some nans finite).
// No clamp of the float argument (nor at the AVX-512 double table): the lanes below the flush
// compute garbage that the select discards (the integer steps wrap); the generic double form
// keeps its clamp (1 max).
// The logsumexp kernel's float rows at AVX2 and AVX-512 take their own base-2 forms
// (exp2_nonpositive_f32_unmasked, exp2_nonpositive_f32_table below; logsumexp.cpp).
// One exception to "the same bits": double vectors of 8 lanes at AVX-512 take a table of
// 2^(j/16) and a degree-7 polynomial (exp_nonpositive_f64_table below, 18 instructions per
// vector against 21); the scalar double form at that level keeps the degree-11 polynomial, so an
// `omp simd` loop over it and the explicit 8-lane loops differ by rounding (both ~0.5 ulp).
//
// Method: reduction x = n ln2 + r, |r| <= ln2/2 (n rounded by the 1.5 * 2^(mantissa bits) trick,
// so no float->int conversion is needed: AVX2 has none for int64), then a polynomial for e^r
// that is near-minimax for relative error on [-ln2/2, ln2/2] (Chebyshev interpolation of
// (e^r - 1)/r, coefficients rounded to T; c0 = 1 and, for float, c1 = 1/2 exactly, so exp(0) = 1
// exactly), and the scale 2^n built in the exponent bits.
//   float:  degree 6, truncation 1.0e-8 relative (0.18 ulp) with the rounded coefficients (the
//           Taylor polynomial it replaces was degree 7). With FMA the reduction is one fused
//           multiply-add with ln2 rounded to float: its error |n| (float(ln2) - ln2) is
//           2.7e-9 |x| relative, 5% of the 2^-24 |x| the argument itself carries; without FMA
//           the Cody-Waite two-constant split keeps n ln2 exact.
//   double: degree 11, truncation 9.9e-18 relative (0.09 ulp) (Taylor needed degree 13); the
//           reduction always takes the two-constant split (ln2 rounded to double would cost
//           |n| 2^-53 relative, up to 1e-14 at n = -1022). AVX-512 vectors: |r| <= ln2/32 after
//           the table, degree 7, truncation 4e-20 (0.0004 ulp); the table entries carry their
//           rounding in a second (lo) table, so the result is rounded once at the end.
// Special values: exp(-inf) = 0, nan -> nan; results near or below the smallest normal number
// (x < -86.9 for float, x < -708 for double) are flushed to 0. Arguments > 0 are not supported
// (callers clamp: every argument is x - max(x)).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#ifndef THERMOSSL_MADD
#error "include isa_begin.hpp first: it defines THERMOSSL_MADD and the SIMD level of this build"
#endif

#include "simd_vec.hpp"

namespace thermossl::THERMOSSL_ISA_NS::detail {

template <class To, class From>
inline To bit_cast(const From& from) {
    static_assert(sizeof(To) == sizeof(From), "bit_cast: size mismatch");
    To to;
    std::memcpy(&to, &from, sizeof(To));
    return to;
}

/// v << kBits on the integer lanes of v (or a scalar), the bits shifted out dropped: done on
/// unsigned lanes, where that is defined behaviour.
template <int kBits, class I>
inline I shift_left_wrapping(const I v) {
    if constexpr (std::is_arithmetic<I>::value) {
        using U = std::make_unsigned_t<I>;
        return static_cast<I>(static_cast<U>(static_cast<U>(v) << kBits));
    } else {
#if THERMOSSL_VECTOR_EXT
        using U = std::make_unsigned_t<std::remove_reference_t<decltype(v[0])>>;
        typedef U UV __attribute__((vector_size(sizeof(I))));
        return (I)((UV)v << kBits);
#else
        return v;  // not reached: without vector extensions every lane type is arithmetic
#endif
    }
}

/// a + b on the integer lanes (or scalars), wrapping on overflow: done on unsigned lanes, where
/// that is defined behaviour. The lanes of an argument below the flush threshold (no clamp, see
/// exp_nonpositive_f32) carry garbage bits that may overflow; their results are discarded.
template <class I>
inline I add_wrapping(const I a, const I b) {
    if constexpr (std::is_arithmetic<I>::value) {
        using U = std::make_unsigned_t<I>;
        return static_cast<I>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
    } else {
#if THERMOSSL_VECTOR_EXT
        using U = std::make_unsigned_t<std::remove_reference_t<decltype(a[0])>>;
        typedef U UV __attribute__((vector_size(sizeof(I))));
        return (I)((UV)a + (UV)b);
#else
        return a;  // not reached: without vector extensions every lane type is arithmetic
#endif
    }
}

/// 0 where x < lowest, else result (a nan x keeps result, nan): the exp's underflow flush, or
/// result alone for callers whose lanes are all in range (kFlush = false).
template <bool kFlush, class V>
inline V flush_below(const V x, const V lowest, const V result) {
    if constexpr (!kFlush) {
        (void)x;
        (void)lowest;
        return result;
    } else {
        return x < lowest ? lane_splat<V>(0.0f) : result;  // nan < lowest is false: result is nan
    }
}

#if THERMOSSL_VECTOR_EXT && (defined(__x86_64__) || defined(_M_X64))
/// Whether integer_lanes takes float vectors of V's size at this level.
template <class V>
inline constexpr bool has_integer_lanes_v = !std::is_arithmetic<V>::value &&
#if defined(THERMOSSL_ISA_AVX2) || defined(THERMOSSL_ISA_AVX512)
                                            (sizeof(V) == 16 || sizeof(V) == 32);
#else
                                            sizeof(V) == 16;
#endif

/// The int32 lanes of integral float lanes n (truncating conversion, exact for them); a nan or
/// out-of-range lane gives 0x80000000, the x86 "integer indefinite" (cvttps2dq: defined, unlike
/// a C conversion of such values).
template <class V>
inline auto integer_lanes(const V n) -> decltype(bits_of_lanes(n)) {
    using I = decltype(bits_of_lanes(n));
#if defined(THERMOSSL_ISA_AVX2) || defined(THERMOSSL_ISA_AVX512)
    if constexpr (sizeof(V) == 32) return (I)_mm256_cvttps_epi32((__m256)n);
#endif
    if constexpr (sizeof(V) == 16) return (I)_mm_cvttps_epi32((__m128)n);
}
#endif

/// exp_nonpositive for float lanes: V is float or a vector of floats (simd_vec.hpp), so the
/// scalar function below and the explicit vector loops compute the same bits. kFlush = false:
/// for callers that know every lane is in [-86.9, 0] (in_range_v frames, row_primitives.hpp),
/// the same bits without the underflow select (AVX2: one compare and one blend fewer per vector;
/// AVX-512: vscalefps without its zeroing mask, one compare fewer).
template <class V, bool kFlush = true>
inline V exp_nonpositive_f32(const V x) {
    const V lowest = lane_splat<V>(-86.9f);  // keeps the result normal (n >= -125, see below)
    // 1.5 * 2^23 + 127: t = round + n for n = round-to-nearest(x log2 e) (the ulp of t is 1; no
    // ties occur for float x with |x log2 e| <= 126), and the low 9 bits of t's mantissa are
    // n + 127, 2^n's biased exponent (bits(1.5 * 2^23) = 0x4B400000 has 0x400000 there).
    const V round = lane_splat<V>(12583039.0f);
    // No clamp of the argument: the lanes with x < lowest (and -inf, whose r is nan) compute
    // garbage that the final select (or vscalefps's zeroing mask) replaces by 0, and the integer
    // shift wraps (shift_left_wrapping) instead of overflowing. The kept lanes are the same bits
    // as with the clamp (one max fewer).
    const V xc = x;
    const V t = lane_fma(xc, lane_splat<V>(1.44269504088896341f), round);
    const V n = t - round;
#if THERMOSSL_HAS_FMA
    const V r = lane_fma(n, lane_splat<V>(-0.693147182f), xc);  // ln2 rounded to float
#else
    const V r = lane_fma(n, lane_splat<V>(2.12194440e-4f), lane_fma(n, lane_splat<V>(-0.693359375f), xc));
#endif
    V poly = lane_splat<V>(0x1.6d4324p-10f);
    poly = lane_fma(poly, r, lane_splat<V>(0x1.123d90p-7f));
    poly = lane_fma(poly, r, lane_splat<V>(0x1.5554eap-5f));
    poly = lane_fma(poly, r, lane_splat<V>(0x1.55547cp-3f));
    poly = lane_fma(poly, r, lane_splat<V>(0.5f));
    poly = lane_fma(poly, r, lane_splat<V>(1.0f));
    poly = lane_fma(poly, r, lane_splat<V>(1.0f));
#if defined(THERMOSSL_ISA_AVX512) && THERMOSSL_VECTOR_EXT
    if constexpr (sizeof(V) == 64) {
        // poly * 2^n in one instruction (vscalefps: exact scaling, no exponent-bit arithmetic),
        // with the lanes where x < lowest zeroed by the same instruction's mask.
        if constexpr (!kFlush) return (V)_mm512_scalef_ps((__m512)poly, (__m512)n);
        const __mmask16 keep = _mm512_cmp_ps_mask((__m512)x, (__m512)lowest, _CMP_NLT_UQ);  // nan kept
        return (V)_mm512_maskz_scalef_ps(keep, (__m512)poly, (__m512)n);
    }
#endif
    // poly * 2^n. poly in [0.70, 1.42] has biased exponent 126 or 127, and the result is normal
    // for n >= -125 (x >= lowest = -86.9). A nan x carries its payload into t, n and poly; the
    // scale must not move those bits into the exponent (an integer add of bits(t) << 23, the
    // form before, turned a nan with payload bits 0x1 into a finite number).
#if THERMOSSL_VECTOR_EXT && (defined(__x86_64__) || defined(_M_X64))
    if constexpr (has_integer_lanes_v<V>) {
        // x86 vectors: n << 23 added to poly's exponent bits, n from a truncating conversion of
        // the integral n (exact); a nan converts to the "integer indefinite" 0x80000000, which
        // the shift drops, so poly's nan is left as it is. Cheaper than the multiply below where
        // multiplies share the FMA pipes with the polynomial: softmax and entropy at AVX2 on an
        // AMD EPYC, in cache, rows reaching the flush, 5% slower than the unsafe add against 12%.
        return flush_below<kFlush>(x, lowest, floats_of_lanes<V>(add_wrapping(
                                                  bits_of_lanes(poly), shift_left_wrapping<23>(integer_lanes(n)))));
    }
#endif
    // elsewhere (scalars, other vectors): times 2^n from bits(t) << 23 = (n + 127) << 23 (the
    // other bits of t shift out; a normal float for n >= -126), exact, and nan stays nan
    const V two_n = floats_of_lanes<V>(shift_left_wrapping<23>(bits_of_lanes(t)));
    const V result = poly * two_n;
    return flush_below<kFlush>(x, lowest, result);
}

#if defined(THERMOSSL_ISA_AVX2) && !defined(THERMOSSL_ISA_AVX512) && THERMOSSL_VECTOR_EXT
/// 2^y for -125.37 <= y <= 0 on 8 float lanes at AVX2, for the logsumexp kernel's pivot rows
/// (logsumexp.cpp, exponent already in base 2): n = round(y) by a conversion to int32 (the
/// rounding mode in force, nearest-even, as the 1.5 * 2^23 trick gives), f = y - n in [-1/2, 1/2]
/// (exact), 2^f by a degree-6 polynomial (Chebyshev interpolation of (2^f - 1)/f on [-1/2, 1/2],
/// coefficients rounded to float, c0 = 1; 1.19 units of 2^-24 worst with the float Horner steps)
/// and n << 23 added to its exponent bits (n >= -125 keeps the result normal). The integer n is
/// what keeps a nan y nan: its conversion is the "integer indefinite" 0x80000000, which the shift
/// turns into 0, so the add leaves the polynomial's nan as it is (n taken from the bits of a
/// rounding sum y + 1.5 * 2^23 carries the nan's payload into the exponent instead, and a
/// multiply by 2^n would cost an FMA-pipe operation). Lanes below -125.37, -inf and the caller's
/// excluded lanes are garbage here (the integer add wraps): the caller masks them. Per 8 lanes:
/// 2 conversions, 1 subtraction, 6 FMA, shift, add.
inline __m256 exp2_nonpositive_f32_unmasked(const __m256 y) {
    const __m256i n = _mm256_cvtps_epi32(y);
    const __m256 f = _mm256_sub_ps(y, _mm256_cvtepi32_ps(n));
    __m256 p = _mm256_set1_ps(0x1.44138ap-13f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0x1.5f0890p-10f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0x1.3b2a54p-7f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0x1.c6af6cp-5f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0x1.ebfbe0p-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0x1.62e430p-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    // epi32 adds wrap (the garbage lanes)
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(n, 23)));
}
#endif

#if defined(THERMOSSL_ISA_AVX512) && THERMOSSL_VECTOR_EXT
/// 2^y for y <= 0 on 16 float lanes at AVX-512, the lanes not in `keep` set to 0: the exp of the
/// logsumexp kernel's pivot rows, whose argument arrives already in base 2 (y = (a* - a) *
/// float(-scale log2 e), logsumexp.cpp), so there is no reduction multiply-add and no clamp. y =
/// floor(y) + j/16 + f with j = floor(16 y) mod 16 and f in [0, 1/16): f by vreduceps (exact), j
/// from the low 4 mantissa bits of y + 1.5 * 2^19 rounded down (embedded rounding: the ulp of that
/// sum is 1/16, so the sum is exactly 1.5 * 2^19 + floor(16 y)/16, the same floor as vreduceps's),
/// 2^(j/16) from a 16-entry table held in one register (vpermps reads the low 4 bits of each index
/// lane), 2^f - 1 = f (c1 + c2 f + c3 f^2) (Chebyshev interpolation of (2^f - 1)/f on [0, 1/16],
/// coefficients rounded to float: truncation 0.09 units of 2^-24), 2^(j/16 + f) = T + T (2^f - 1)
/// in one FMA, and 2^floor(y) by vscalefps, whose zeroing mask drops the lanes outside `keep`.
/// Error: the table entries carry <= 0.79 units of 2^-24, the last FMA one rounding: worst 1.83
/// units of 2^-24 relative, mean 0.47, over 4.2 M arguments in [-3, 0] (a numpy emulation of these
/// steps against float64 exp2), against 1.05 worst for the degree-6 polynomial over [0, 1) this
/// replaces; logsumexp's log Z stays at 0.50 eps32 worst on bench/float32_accuracy.py's rows as
/// drawn, and moved from 1.57 to 1.77 eps32 on the hardest rows (log Z just above 1,
/// test_float32_log_z_just_above_one; the claim is 2 eps32). That polynomial (6 FMA) took 2 more
/// FMA-pipe operations than the table's 3 FMA + 1 multiply (the table adds an add and a vpermps on
/// other pipes); on an AMD Zen 4, which runs 512-bit FMAs at one per cycle and 512-bit adds,
/// compares, vreduceps and vscalefps on the other pipes (the last two at one per two cycles), the
/// exp pass of logsumexp float32 took 9.44 cycles per 16 elements before and 8.81 after (a
/// stand-alone copy of the loop over one row in L1, 3.6 GHz). No flush of its own: below 2^-126
/// vscalefps rounds to the subnormal and below 2^-149 to 0 (exact scaling, no integer exponent
/// arithmetic to overflow); the caller's `keep` holds its flush (logsumexp: the natural-base forms'
/// e^-86.9, so every level flushes the same terms). Special values: y = -inf gives 0 (vscalefps by
/// -inf), a nan y stays nan (vreduceps, the FMA and vscalefps propagate it; the table index of a
/// nan lane is garbage but multiplies a nan). Per 16 lanes: 1 add, 1 vreduceps, 2 FMA, 1 multiply,
/// 1 vpermps, 1 FMA, 1 vscalefps.
inline __m512 exp2_nonpositive_f32_table(const __m512 y, const __mmask16 keep) {
    const __m512 s = _mm512_add_round_ps(y, _mm512_set1_ps(0x1.8p19f), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_reduce_ps(y, 0x49);  // M = 4 fraction bits kept, round down, no #PE
    __m512 p = _mm512_set1_ps(0x1.ce2620p-5f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0x1.ebf0a8p-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0x1.62e432p-1f));
    const __m512 expm1_f = _mm512_mul_ps(p, f);
    // 2^(j/16), j = 0..15, each rounded to float
    const __m512 table = _mm512_permutexvar_ps(
        _mm512_castps_si512(s),
        _mm512_setr_ps(0x1.000000p+0f, 0x1.0b5586p+0f, 0x1.172b84p+0f, 0x1.2387a6p+0f, 0x1.306fe0p+0f, 0x1.3dea64p+0f,
                       0x1.4bfdaep+0f, 0x1.5ab07ep+0f, 0x1.6a09e6p+0f, 0x1.7a1148p+0f, 0x1.8ace54p+0f, 0x1.9c4918p+0f,
                       0x1.ae89fap+0f, 0x1.c199bep+0f, 0x1.d5818ep+0f, 0x1.ea4afap+0f));
    return _mm512_maskz_scalef_ps(keep, _mm512_fmadd_ps(table, expm1_f, table), y);  // * 2^floor(y)
}
#endif

#if defined(THERMOSSL_ISA_AVX512) && THERMOSSL_VECTOR_EXT
/// exp(x) for x <= 0 on 8 double lanes at AVX-512, by a table of 2^(j/16) (see the header):
/// x = (k/16) ln 2 + r, |r| <= ln2/32, e^x = 2^floor(k/16) * 2^((k mod 16)/16) * e^r. The 16
/// entries, each as a double hi and the rest lo (so the table adds no rounding of its own), sit
/// in two registers apiece and are looked up by vpermi2pd on the low 4 bits of k; e^r - 1 is
/// r + r^2 (c2 + ... + c7 r^5), degree 7 instead of 11 (Chebyshev interpolation of
/// (e^r - 1 - r)/r^2 on [-1.0005 ln2/32, 1.0005 ln2/32], truncation 4e-20 relative, 0.0004 ulp);
/// y = hi + (hi (e^r - 1) + lo) in [1, 2), and the scale 2^floor(k/16) by vscalefpd, whose
/// zeroing mask flushes x < -708 to 0. Per 8 lanes: 1 max, 2 for k, 2 FMA for r, 7 for the
/// polynomial, 2 permutes, 1 FMA + 1 add, 1 compare, 1 vscalefpd (18, against 21 for the
/// degree-11 form).
/// The lanes outside `keep` are 0 (vscalefpd's zeroing mask): exp_nonpositive_f64_table passes
/// x >= -708 (nan kept); the logsumexp kernel also drops its terms at the max by the same mask.
inline __m512d exp_nonpositive_f64_table_where(const __m512d x, const __mmask8 keep) {
    const __m512d xc = x;  // no clamp: the lanes below lowest are zeroed by vscalefpd's mask
    // s - round = k/16 with k = round(16 x / ln2): the ulp of round = 1.5 * 2^48 is 1/16, and the
    // low 4 bits of s's mantissa are k mod 16 (vpermi2pd reads only those bits of the index)
    const __m512d round = _mm512_set1_pd(422212465065984.0);  // 1.5 * 2^48
    const __m512d s = _mm512_fmadd_pd(xc, _mm512_set1_pd(1.4426950408889634074), round);
    const __m512d kk = _mm512_sub_pd(s, round);
    __m512d r = _mm512_fnmadd_pd(kk, _mm512_set1_pd(6.93147180369123816490e-01), xc);
    r = _mm512_fnmadd_pd(kk, _mm512_set1_pd(1.90821492927058770002e-10), r);
    __m512d c = _mm512_set1_pd(0.000198414639814658);
    c = _mm512_fmadd_pd(c, r, _mm512_set1_pd(0.0013889063615251755));
    c = _mm512_fmadd_pd(c, r, _mm512_set1_pd(0.008333333332991407));
    c = _mm512_fmadd_pd(c, r, _mm512_set1_pd(0.04166666666358933));
    c = _mm512_fmadd_pd(c, r, _mm512_set1_pd(0.16666666666666669));
    c = _mm512_fmadd_pd(c, r, _mm512_set1_pd(0.5000000000000001));
    const __m512d expm1_r = _mm512_fmadd_pd(_mm512_mul_pd(r, r), c, r);
    const __m512i j = _mm512_castpd_si512(s);
    const __m512d hi = _mm512_permutex2var_pd(
        _mm512_setr_pd(0x1.0000000000000p+0, 0x1.0b5586cf9890fp+0, 0x1.172b83c7d517bp+0, 0x1.2387a6e756238p+0, 0x1.306fe0a31b715p+0, 0x1.3dea64c123422p+0, 0x1.4bfdad5362a27p+0, 0x1.5ab07dd485429p+0), j,
        _mm512_setr_pd(0x1.6a09e667f3bcdp+0, 0x1.7a11473eb0187p+0, 0x1.8ace5422aa0dbp+0, 0x1.9c49182a3f090p+0, 0x1.ae89f995ad3adp+0, 0x1.c199bdd85529cp+0, 0x1.d5818dcfba487p+0, 0x1.ea4afa2a490dap+0));
    const __m512d lo = _mm512_permutex2var_pd(
        _mm512_setr_pd(0x0.0p+0, 0x1.8a62e4adc610bp-54, -0x1.19041b9d78a76p-55, 0x1.9b07eb6c70573p-54, 0x1.6f46ad23182e4p-55, 0x1.ada0911f09ebcp-55, 0x1.d4397afec42e2p-56, 0x1.6324c054647adp-54), j,
        _mm512_setr_pd(-0x1.bdd3413b26456p-54, -0x1.41577ee04992fp-55, 0x1.6e9f156864b27p-54, 0x1.c7c46b071f2bep-56, 0x1.7a1cd345dcc81p-54, 0x1.11065895048ddp-55, 0x1.2ed02d75b3707p-55, -0x1.e9c23179c2893p-54));
    const __m512d y = _mm512_add_pd(hi, _mm512_fmadd_pd(hi, expm1_r, lo));
    return _mm512_maskz_scalef_pd(keep, y, kk);  // y * 2^floor(k/16)
}

inline __m512d exp_nonpositive_f64_table(const __m512d x) {
    const __mmask8 keep = _mm512_cmp_pd_mask(x, _mm512_set1_pd(-708.0), _CMP_NLT_UQ);  // nan kept
    return exp_nonpositive_f64_table_where(x, keep);
}
#endif

/// exp_nonpositive for double lanes (V: double or a vector of doubles).
template <class V>
inline V exp_nonpositive_f64(const V x) {
#if defined(THERMOSSL_ISA_AVX512) && THERMOSSL_VECTOR_EXT
    if constexpr (sizeof(V) == 64) return (V)exp_nonpositive_f64_table((__m512d)x);
#endif
    using I = decltype(bits_of_lanes(x));
    const V lowest = lane_splat<V>(-708.0);  // keeps 2^n normal (n >= -1022)
    const V round = lane_splat<V>(6755399441055744.0);  // 1.5 * 2^52
    // The clamp stays here: without it GCC spills a constant of this 34-instruction AVX2 loop
    // instead (the same count, and logsumexp float64 measured 2% slower at avx2).
    const V xc = clamp_below(x, lowest);
    const V t = lane_fma(xc, lane_splat<V>(1.4426950408889634074), round);
    const V n = t - round;
    constexpr std::int64_t kBias = 1023 - 0x4338000000000000LL;  // bits of round
    const V r = lane_fma(n, lane_splat<V>(-1.90821492927058770002e-10),
                         lane_fma(n, lane_splat<V>(-6.93147180369123816490e-01), xc));
    // Horner form of 1 + r (c1 + c2 r + ... + c11 r^10)
    V poly = lane_splat<V>(2.5105217004720745e-08);
    poly = lane_fma(poly, r, lane_splat<V>(2.7626371065696354e-07));
    poly = lane_fma(poly, r, lane_splat<V>(2.7557255400206422e-06));
    poly = lane_fma(poly, r, lane_splat<V>(2.480150431378554e-05));
    poly = lane_fma(poly, r, lane_splat<V>(0.00019841269874820627));
    poly = lane_fma(poly, r, lane_splat<V>(0.001388888893251478));
    poly = lane_fma(poly, r, lane_splat<V>(0.008333333333326136));
    poly = lane_fma(poly, r, lane_splat<V>(0.041666666666573066));
    poly = lane_fma(poly, r, lane_splat<V>(0.1666666666666667));
    poly = lane_fma(poly, r, lane_splat<V>(0.5000000000000006));
    poly = lane_fma(poly, r, lane_splat<V>(1.0));
    poly = lane_fma(poly, r, lane_splat<V>(1.0));
    const I biased = shift_left_wrapping<52>(add_wrapping(bits_of_lanes(t), I{} + kBias));
    const V two_n = floats_of_lanes<V>(biased);
    const V result = poly * two_n;
    return x < lowest ? lane_splat<V>(0.0) : result;  // nan < lowest is false: result is nan
}

inline float exp_nonpositive(float x) { return exp_nonpositive_f32(x); }
inline double exp_nonpositive(double x) { return exp_nonpositive_f64(x); }

}  // namespace thermossl::THERMOSSL_ISA_NS::detail
