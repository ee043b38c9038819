// exp(x) on the max-shifted domain x <= 0, written branch-free so that the loops calling it
// vectorise at the baseline ISA (SSE2 on x86-64) without -ffast-math and without libmvec.
//
// Method: Cody–Waite reduction x = n ln2 + r, |r| <= ln2/2, then a Taylor polynomial for e^r
// (degree 7 for float: truncation 5e-9 relative; degree 13 for double: 4e-18) and the scale 2^n
// built in the exponent bits. The rounding of n uses the 1.5 * 2^(mantissa bits) trick, so no
// float->int conversion instruction is needed (AVX2 has none for int64).
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
    constexpr float kLn2Hi = 0.693359375f;
    constexpr float kLn2Lo = -2.12194440e-4f;
    constexpr float kRound = 12582912.0f;  // 1.5 * 2^23
    // kLowest > x ? kLowest : x is one max instruction that passes a nan through (x86 max
    // returns its second operand when either is nan), so no separate nan test is needed.
    const float xc = kLowest > x ? kLowest : x;
    const float t = THERMOSSL_MADD(xc, kLog2e, kRound);
    const float n = t - kRound;
    // 2^n: bits(t) - bits(kRound) = n, so bits(t) + kBias = n + 127, the biased exponent.
    constexpr std::int32_t kBias = 127 - 0x4B400000;  // 0x4B400000 = bits of kRound
    const float r = THERMOSSL_MADD(-n, kLn2Lo, THERMOSSL_MADD(-n, kLn2Hi, xc));
    float poly = 1.0f / 5040.0f;
    poly = THERMOSSL_MADD(poly, r, 1.0f / 720.0f);
    poly = THERMOSSL_MADD(poly, r, 1.0f / 120.0f);
    poly = THERMOSSL_MADD(poly, r, 1.0f / 24.0f);
    poly = THERMOSSL_MADD(poly, r, 1.0f / 6.0f);
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
    // Horner form of sum_{k=0}^{13} r^k / k!
    double poly = 1.0 / 6227020800.0;
    poly = THERMOSSL_MADD(poly, r, 1.0 / 479001600.0);
    poly = THERMOSSL_MADD(poly, r, 1.0 / 39916800.0);
    poly = THERMOSSL_MADD(poly, r, 1.0 / 3628800.0);
    poly = THERMOSSL_MADD(poly, r, 1.0 / 362880.0);
    poly = THERMOSSL_MADD(poly, r, 1.0 / 40320.0);
    poly = THERMOSSL_MADD(poly, r, 1.0 / 5040.0);
    poly = THERMOSSL_MADD(poly, r, 1.0 / 720.0);
    poly = THERMOSSL_MADD(poly, r, 1.0 / 120.0);
    poly = THERMOSSL_MADD(poly, r, 1.0 / 24.0);
    poly = THERMOSSL_MADD(poly, r, 1.0 / 6.0);
    poly = THERMOSSL_MADD(poly, r, 0.5);
    poly = THERMOSSL_MADD(poly, r, 1.0);
    poly = THERMOSSL_MADD(poly, r, 1.0);
    const double two_n = bit_cast<double>((bit_cast<std::int64_t>(t) + kBias) << 52);
    const double result = poly * two_n;
    return x < kLowest ? 0.0 : result;  // nan < kLowest is false: result is nan
}

}  // namespace thermossl::THERMOSSL_ISA_NS::detail
