// Per-row building blocks of the CPU kernels. Each works on one contiguous row of k elements
// that is already in cache (or about to be), with the exponent map x_j = scale * a_j + shift_j.
// The loops are written for auto-vectorisation: no branches, OpenMP `simd` reductions.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

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

/// The exponent of one row relative to its max, t_j = x_j - m, in T, and whether x_j is at the
/// max. Two evaluations of the same map, picked per row by with_row_frame:
///
/// ExactArg (any T, any shift): x_j and m in double, t_j = T(x_j - m): one rounding of t_j.
///
/// PivotArg (float data, no shift): x_j = scale * a_j is monotone in a_j, so the max sits at the
/// pivot a* = max_j a_j (scale > 0) or min_j a_j (scale < 0), found by a float max/min (exact),
/// and t_j = s * (a_j - a*) with s = float(scale), all in float lanes (8 per AVX2 register, twice
/// the double lanes). Each factor is rounded once (a_j - a* to 2^-24 of itself, s to 2^-24 of
/// scale) and so is the product, so t_j carries at most 3 * 2^-24 of |t_j| (ExactArg: 2^-24) and,
/// as before, never the 2^-24 |x_j| that forming x_j in float would cost. x_j is at the max
/// exactly where a_j == a*; m = scale * double(a*) is the m of ExactArg to the bit.
template <class T, bool kShift>
struct ExactArg {
    const T* a;
    Exponent ex;
    double m;
    /// Writes t_j, returns x_j >= m.
    bool operator()(std::int64_t j, T& t) const {
        const double x = exponent_at<T, kShift>(ex, a, j);
        t = static_cast<T>(x - m);
        return x >= m;
    }
};

struct PivotArg {
    const float* a;
    float pivot;
    float scale;
    bool operator()(std::int64_t j, float& t) const {
        const float d = a[j] - pivot;
        t = scale * d;
        return d == 0.0f;
    }
};

inline float row_max_raw(const float* a, std::int64_t k) {
    float m = -infinity<float>();
#pragma omp simd reduction(max : m)
    for (std::int64_t j = 0; j < k; ++j) m = a[j] > m ? a[j] : m;
    return m;
}

inline float row_min_raw(const float* a, std::int64_t k) {
    float m = infinity<float>();
#pragma omp simd reduction(min : m)
    for (std::int64_t j = 0; j < k; ++j) m = a[j] < m ? a[j] : m;
    return m;
}

/// Finds the max m of the exponents x_j of a row (k >= 1) and calls body(m, arg) with the
/// evaluator of t_j = x_j - m that fits the row: PivotArg for float rows without a shift whose
/// scale is a normal float of moderate size and whose max is finite, ExactArg otherwise (double
/// data, shifted exponents, rows whose max is +-inf or that are all nan). `body` is a generic
/// lambda, compiled once per evaluator.
template <class T, bool kShift, class Body>
inline void with_row_frame(const T* a, std::int64_t k, const Exponent ex, Body&& body) {
    if constexpr (std::is_same<T, float>::value && !kShift) {
        const double mag = std::fabs(ex.scale);
        if (mag >= 0x1p-60 && mag <= 0x1p60) {
            const float pivot = ex.scale > 0 ? row_max_raw(a, k) : row_min_raw(a, k);
            const double m = ex.scale * static_cast<double>(pivot);
            if (std::isfinite(m)) {
                body(m, PivotArg{a, pivot, static_cast<float>(ex.scale)});
                return;
            }
        }
    }
    const double m = row_max<T, kShift>(a, k, ex);
    body(m, ExactArg<T, kShift>{a, ex, m});
}

/// Sums over a row are taken in chunks: each chunk is reduced in T by a vectorised `omp simd`
/// reduction, and the chunk sums are added in double, which keeps float32 rows of any length
/// accurate without mixed-width vector code. A chunk gives each float lane 8 terms at AVX2 and
/// AVX-512 (16 at the 4-lane baseline), so the wider level does not pay twice the per-chunk
/// horizontal reductions.
#if defined(THERMOSSL_ISA_AVX512)
inline constexpr std::int64_t kChunk = 128;
#else
inline constexpr std::int64_t kChunk = 64;
#endif

/// e_j = exp(x_j - m), with e_j = 1 wherever x_j >= m so that rows whose max is +-inf give
/// finite counts instead of exp(inf - inf) = nan. Returns sum_j e_j; writes e to `e_out` when
/// it is not null.
template <class T, class Arg>
inline double row_exp_sum(std::int64_t k, const Arg arg, T* e_out) {
    double sum = 0.0;
    for (std::int64_t j0 = 0; j0 < k; j0 += kChunk) {
        const std::int64_t j1 = j0 + kChunk < k ? j0 + kChunk : k;
        T part = 0;
        if (e_out != nullptr) {
#pragma omp simd reduction(+ : part)
            for (std::int64_t j = j0; j < j1; ++j) {
                T t;
                const bool at_max = arg(j, t);
                const T ej = exp_nonpositive(t);
                const T e = at_max ? T(1) : ej;
                e_out[j] = e;
                part += e;
            }
        } else {
#pragma omp simd reduction(+ : part)
            for (std::int64_t j = j0; j < j1; ++j) {
                T t;
                const bool at_max = arg(j, t);
                const T e = exp_nonpositive(t);
                part += at_max ? T(1) : e;
            }
        }
        sum += static_cast<double>(part);
    }
    return sum;
}

template <class T, bool kShift>
inline double row_exp_sum(const T* a, std::int64_t k, const Exponent ex, double m, T* e_out) {
    return row_exp_sum<T>(k, ExactArg<T, kShift>{a, ex, m}, e_out);
}

/// Charge accumulation of float rows in float lanes: acc_y += r_i e_iy is taken in float over
/// groups of kGroup rows (one fma per element, 8 lanes per AVX2 register) and each group's sums
/// are added to the double accumulators, so a float sum holds at most kGroup terms (relative
/// error <= kGroup 2^-24 worst case, ~sqrt(kGroup) 2^-24 typically) and the double sums carry the
/// rest. For double data it is never used (k = 0).
template <class T>
class FloatCharges {
public:
    static constexpr int kGroup = 8;
    explicit FloatCharges(std::int64_t k) : sums_(static_cast<std::size_t>(k), T(0)) {}

    void add(T r, const T* e, std::int64_t k, double* acc) {
        T* s = sums_.data();
#pragma omp simd
        for (std::int64_t y = 0; y < k; ++y) s[y] = THERMOSSL_MADD(r, e[y], s[y]);
        if (++rows_ == kGroup) flush(k, acc);
    }

    void flush(std::int64_t k, double* acc) {
        if (rows_ == 0) return;
        T* s = sums_.data();
#pragma omp simd
        for (std::int64_t y = 0; y < k; ++y) {
            acc[y] += static_cast<double>(s[y]);
            s[y] = T(0);
        }
        rows_ = 0;
    }

private:
    std::vector<T> sums_;
    int rows_ = 0;
};

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
