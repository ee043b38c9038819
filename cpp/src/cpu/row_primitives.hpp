// Per-row building blocks of the CPU kernels. Each works on one contiguous row of k elements
// that is already in cache (or about to be), with the exponent map x_j = scale * a_j + shift_j.
// The loops are written for auto-vectorisation: no branches, OpenMP `simd` reductions.
#pragma once

#include <cmath>
#include <cstdint>

#include "exp_nonpositive.hpp"
#include "rows.hpp"

namespace thermossl::THERMOSSL_ISA_NS::detail {

template <class T, bool kShift>
inline double exponent_at(const Exponent ex, const T* a, std::int64_t j) {
    if constexpr (kShift) {
        return ex.scale * static_cast<double>(a[j]) + ex.shift[j];
    } else {
        return ex.scale * static_cast<double>(a[j]);
    }
}

/// max_j x_j, ignoring nan (a nan is caught later: it turns the sums into nan). -inf if k == 0.
template <class T, bool kShift>
inline double row_max(const T* a, std::int64_t k, const Exponent ex) {
    double m = -infinity<double>();
#pragma omp simd reduction(max : m)
    for (std::int64_t j = 0; j < k; ++j) {
        const double x = exponent_at<T, kShift>(ex, a, j);
        m = x > m ? x : m;
    }
    return m;
}

/// Sums over a row are taken in chunks: each chunk is reduced in T by a vectorised `omp simd`
/// reduction (float lanes hold at most kChunk/4 terms each), and the chunk sums are added in
/// double, which keeps float32 rows of any length accurate without mixed-width vector code.
inline constexpr std::int64_t kChunk = 64;

/// e_j = exp(x_j - m), with e_j = 1 wherever x_j >= m so that rows whose max is +-inf give
/// finite counts instead of exp(inf - inf) = nan. Returns sum_j e_j; writes e to `e_out` when
/// it is not null.
template <class T, bool kShift>
inline double row_exp_sum(const T* a, std::int64_t k, const Exponent ex, double m, T* e_out) {
    double sum = 0.0;
    for (std::int64_t j0 = 0; j0 < k; j0 += kChunk) {
        const std::int64_t j1 = j0 + kChunk < k ? j0 + kChunk : k;
        T part = 0;
        if (e_out != nullptr) {
#pragma omp simd reduction(+ : part)
            for (std::int64_t j = j0; j < j1; ++j) {
                const double x = exponent_at<T, kShift>(ex, a, j);
                const T e = x >= m ? T(1) : exp_nonpositive(static_cast<T>(x - m));
                e_out[j] = e;
                part += e;
            }
        } else {
#pragma omp simd reduction(+ : part)
            for (std::int64_t j = j0; j < j1; ++j) {
                const double x = exponent_at<T, kShift>(ex, a, j);
                part += x >= m ? T(1) : exp_nonpositive(static_cast<T>(x - m));
            }
        }
        sum += static_cast<double>(part);
    }
    return sum;
}

inline double sign_of(double v) {
    if (v > 0) return 1.0;
    if (v < 0) return -1.0;
    return v == 0 ? 0.0 : v;  // nan stays nan
}

/// Final step of scipy's precise log-sum-exp for one row: with W = sum of the weights at the
/// maxima and R = sum of the weighted terms below the max (scaled by exp(-max)),
///   out = max + log|W| + log1p(R/W)   (log1p keeps relative accuracy for results near 0),
/// falling back to log|sum_j b_j exp(x_j)| (computed by `naive_sum`, in T like scipy) whenever
/// that form is not finite. Without `sign`, a negative sum gives nan.
template <class T, class NaiveSum>
inline void finish_logsumexp(double weight_at_max, double rest, double m, NaiveSum&& naive_sum, T* out,
                             T* sign) {
    double s = rest;
    if (s != 0.0) s /= weight_at_max;
    const double sgn = sign_of(s + 1.0) * sign_of(weight_at_max);
    if (s < -1.0) s = -s - 2.0;
    double value = std::log1p(s) + std::log(std::fabs(weight_at_max)) + m;
    if (sign == nullptr && sgn < 0) value = quiet_nan<double>();
    if (std::isfinite(value)) {
        *out = static_cast<T>(value);
        if (sign != nullptr) *sign = static_cast<T>(sgn);
        return;
    }
    const T total = naive_sum();
    *out = sign != nullptr ? std::log(std::fabs(total)) : std::log(total);
    if (sign != nullptr) *sign = static_cast<T>(sign_of(static_cast<double>(total)));
}

}  // namespace thermossl::THERMOSSL_ISA_NS::detail
