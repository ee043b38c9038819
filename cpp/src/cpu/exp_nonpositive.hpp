// exp(x) on the max-shifted domain x <= 0, written branch-free so that the loops calling it
// vectorise at every SIMD level (SSE2 baseline, AVX2, AVX-512) without -ffast-math and without
// libmvec.
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
//           |n| 2^-53 relative, up to 1e-14 at n = -1022).
// Special values: exp(-inf) = 0, nan -> nan; results below the smallest normal number
// (x < -87 for float, x < -708 for double) are flushed to 0. Arguments > 0 are not supported
// (callers clamp: every argument is x - max(x)).
#pragma once

#include <cstdint>
#include <cstring>

#ifndef THERMOSSL_MADD
#error "include isa_begin.hpp first: it defines THERMOSSL_MADD and the SIMD level of this build"
#endif

namespace thermossl::THERMOSSL_ISA_NS::detail {

template <class To, class From>
inline To bit_cast(const From& from) {
    static_assert(sizeof(To) == sizeof(From), "bit_cast: size mismatch");
    To to;
    std::memcpy(&to, &from, sizeof(To));
    return to;
}

inline float exp_nonpositive(float x) {
    constexpr float kLowest = -87.0f;  // keeps 2^n normal (n >= -126)
    constexpr float kLog2e = 1.44269504088896341f;
    constexpr float kRound = 12582912.0f;  // 1.5 * 2^23
    // kLowest > x ? kLowest : x is one max instruction that passes a nan through (x86 max
    // returns its second operand when either is nan), so no separate nan test is needed.
    const float xc = kLowest > x ? kLowest : x;
    const float t = THERMOSSL_MADD(xc, kLog2e, kRound);
    const float n = t - kRound;
    // 2^n: bits(t) - bits(kRound) = n, so bits(t) + kBias = n + 127, the biased exponent.
    constexpr std::int32_t kBias = 127 - 0x4B400000;  // 0x4B400000 = bits of kRound
#if THERMOSSL_HAS_FMA
    constexpr float kLn2 = 0.693147182f;  // ln2 rounded to float
    const float r = THERMOSSL_MADD(-n, kLn2, xc);
#else
    constexpr float kLn2Hi = 0.693359375f;
    constexpr float kLn2Lo = -2.12194440e-4f;
    const float r = THERMOSSL_MADD(-n, kLn2Lo, THERMOSSL_MADD(-n, kLn2Hi, xc));
#endif
    float poly = 0x1.6d4324p-10f;
    poly = THERMOSSL_MADD(poly, r, 0x1.123d90p-7f);
    poly = THERMOSSL_MADD(poly, r, 0x1.5554eap-5f);
    poly = THERMOSSL_MADD(poly, r, 0x1.55547cp-3f);
    poly = THERMOSSL_MADD(poly, r, 0.5f);
    poly = THERMOSSL_MADD(poly, r, 1.0f);
    poly = THERMOSSL_MADD(poly, r, 1.0f);
    const float two_n = bit_cast<float>((bit_cast<std::int32_t>(t) + kBias) << 23);
    const float result = poly * two_n;
    return x < kLowest ? 0.0f : result;  // nan < kLowest is false: result is nan
}

inline double exp_nonpositive(double x) {
    constexpr double kLowest = -708.0;  // keeps 2^n normal (n >= -1022)
    constexpr double kLog2e = 1.4426950408889634074;
    constexpr double kLn2Hi = 6.93147180369123816490e-01;
    constexpr double kLn2Lo = 1.90821492927058770002e-10;
    constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52
    const double xc = kLowest > x ? kLowest : x;  // passes a nan through, as above
    const double t = THERMOSSL_MADD(xc, kLog2e, kRound);
    const double n = t - kRound;
    constexpr std::int64_t kBias = 1023 - 0x4338000000000000LL;  // bits of kRound
    const double r = THERMOSSL_MADD(-n, kLn2Lo, THERMOSSL_MADD(-n, kLn2Hi, xc));
    // Horner form of 1 + r (c1 + c2 r + ... + c11 r^10)
    double poly = 2.5105217004720745e-08;
    poly = THERMOSSL_MADD(poly, r, 2.7626371065696354e-07);
    poly = THERMOSSL_MADD(poly, r, 2.7557255400206422e-06);
    poly = THERMOSSL_MADD(poly, r, 2.480150431378554e-05);
    poly = THERMOSSL_MADD(poly, r, 0.00019841269874820627);
    poly = THERMOSSL_MADD(poly, r, 0.001388888893251478);
    poly = THERMOSSL_MADD(poly, r, 0.008333333333326136);
    poly = THERMOSSL_MADD(poly, r, 0.041666666666573066);
    poly = THERMOSSL_MADD(poly, r, 0.1666666666666667);
    poly = THERMOSSL_MADD(poly, r, 0.5000000000000006);
    poly = THERMOSSL_MADD(poly, r, 1.0);
    poly = THERMOSSL_MADD(poly, r, 1.0);
    const double two_n = bit_cast<double>((bit_cast<std::int64_t>(t) + kBias) << 52);
    const double result = poly * two_n;
    return x < kLowest ? 0.0 : result;  // nan < kLowest is false: result is nan
}

}  // namespace thermossl::THERMOSSL_ISA_NS::detail
