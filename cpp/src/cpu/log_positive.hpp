// log(x) for x >= 0, written branch-free so that the loops calling it vectorise at the baseline
// ISA (SSE2 on x86-64) without -ffast-math and without libmvec (the companion of exp_nonpositive).
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

inline float log_positive(float x) {
    // Division-free (Cephes logf): with u = m - 1 (exact, m in [sqrt(1/2), sqrt(2))),
    // log m = u - u^2/2 + u^3 P(u), P a degree-8 minimax polynomial (relative error ~1e-7 on the
    // interval; relative accuracy near x = 1 is kept since log m ~ u there).
    constexpr float kSqrt2 = 1.41421356237309505f;
    constexpr float kLn2Hi = 0.693359375f;
    constexpr float kLn2Lo = -2.12194440e-4f;
    const bool subnormal = x < std::numeric_limits<float>::min();
    const float xs = subnormal ? x * 8388608.0f : x;  // 2^23
    const std::int32_t bits = bit_cast<std::int32_t>(xs);
    std::int32_t e = ((bits >> 23) & 0xff) - 127 - (subnormal ? 23 : 0);
    float m = bit_cast<float>((bits & 0x007fffff) | 0x3f800000);  // [1, 2)
    const bool high = m > kSqrt2;
    m = high ? m * 0.5f : m;
    e = high ? e + 1 : e;
    const float u = m - 1.0f;
    const float u2 = u * u;
    float poly = 7.0376836292e-2f;
    poly = THERMOSSL_MADD(poly, u, -1.1514610310e-1f);
    poly = THERMOSSL_MADD(poly, u, 1.1676998740e-1f);
    poly = THERMOSSL_MADD(poly, u, -1.2420140846e-1f);
    poly = THERMOSSL_MADD(poly, u, 1.4249322787e-1f);
    poly = THERMOSSL_MADD(poly, u, -1.6668057665e-1f);
    poly = THERMOSSL_MADD(poly, u, 2.0000714765e-1f);
    poly = THERMOSSL_MADD(poly, u, -2.4999993993e-1f);
    poly = THERMOSSL_MADD(poly, u, 3.3333331174e-1f);
    const float ef = static_cast<float>(e);
    float y = u * u2 * poly;
    y = THERMOSSL_MADD(ef, kLn2Lo, y);
    y = THERMOSSL_MADD(-0.5f, u2, y);
    float result = THERMOSSL_MADD(ef, kLn2Hi, u + y);
    result = x == std::numeric_limits<float>::infinity() ? x : result;
    result = x == 0.0f ? -std::numeric_limits<float>::infinity() : result;
    return (x < 0.0f || x != x) ? std::numeric_limits<float>::quiet_NaN() : result;
}

inline double log_positive(double x) {
    constexpr double kSqrt2 = 1.41421356237309504880;
    constexpr double kLn2Hi = 6.93147180369123816490e-01;
    constexpr double kLn2Lo = 1.90821492927058770002e-10;
    constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52
    const bool subnormal = x < std::numeric_limits<double>::min();
    const double xs = subnormal ? x * 4503599627370496.0 : x;  // 2^52
    const std::int64_t bits = bit_cast<std::int64_t>(xs);
    std::int64_t e = ((bits >> 52) & 0x7ff) - 1023 - (subnormal ? 52 : 0);
    double m = bit_cast<double>((bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);  // [1, 2)
    const bool high = m > kSqrt2;
    m = high ? m * 0.5 : m;
    e = high ? e + 1 : e;
    const double z = (m - 1.0) / (m + 1.0);
    const double z2 = z * z;
    double poly = 1.0 / 21.0;
    poly = THERMOSSL_MADD(poly, z2, 1.0 / 19.0);
    poly = THERMOSSL_MADD(poly, z2, 1.0 / 17.0);
    poly = THERMOSSL_MADD(poly, z2, 1.0 / 15.0);
    poly = THERMOSSL_MADD(poly, z2, 1.0 / 13.0);
    poly = THERMOSSL_MADD(poly, z2, 1.0 / 11.0);
    poly = THERMOSSL_MADD(poly, z2, 1.0 / 9.0);
    poly = THERMOSSL_MADD(poly, z2, 1.0 / 7.0);
    poly = THERMOSSL_MADD(poly, z2, 1.0 / 5.0);
    poly = THERMOSSL_MADD(poly, z2, 1.0 / 3.0);
    const double log_m = 2.0 * z + 2.0 * z * z2 * poly;
    const double ed = bit_cast<double>(e + bit_cast<std::int64_t>(kRound)) - kRound;
    double result = (ed * kLn2Lo + log_m) + ed * kLn2Hi;
    result = x == std::numeric_limits<double>::infinity() ? x : result;
    result = x == 0.0 ? -std::numeric_limits<double>::infinity() : result;
    return (x < 0.0 || x != x) ? std::numeric_limits<double>::quiet_NaN() : result;
}

}  // namespace thermossl::THERMOSSL_ISA_NS::detail
