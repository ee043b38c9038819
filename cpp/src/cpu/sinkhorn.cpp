// CPU implementation of sinkhorn.hpp: the fused log-domain Sinkhorn iteration.
#include <atomic>
#include <chrono>
#include <functional>

#include "isa_begin.hpp"
#include "kernels.hpp"
#include "row_primitives.hpp"

namespace thermossl {
namespace THERMOSSL_ISA_NS {
namespace detail {
namespace {

/// Cancellation of a run (SinkhornOptions::interrupted): the callback is called by the calling
/// thread (OpenMP thread 0 inside a pass) at most every poll_seconds; once it returns true every
/// thread sees `stopped()` and skips its remaining tiles.
class InterruptPoll {
public:
    explicit InterruptPoll(const SinkhornOptions& options)
        : callback_(options.interrupted ? &options.interrupted : nullptr),
          period_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.poll_seconds))),
          last_(Clock::now()) {}

    /// Calls the callback when its period has passed; true once it has asked to stop.
    bool check() {
        if (callback_ == nullptr) return false;
        if (stopped()) return true;
        const auto now = Clock::now();
        if (now - last_ < period_) return false;
        last_ = now;
        if ((*callback_)()) stopped_.store(true, std::memory_order_relaxed);
        return stopped();
    }

    /// In a parallel pass: thread 0 polls, every thread reads the flag.
    bool check_in_pass(int thread) { return thread == 0 ? check() : stopped(); }

    bool stopped() const { return stopped_.load(std::memory_order_relaxed); }

private:
    using Clock = std::chrono::steady_clock;
    const std::function<bool()>* callback_;
    Clock::duration period_;
    Clock::time_point last_;
    std::atomic<bool> stopped_{false};
};

/// The exponents of one row in the float-lane frame of the fused pass, for row_exp_sum:
/// t_j = s (d_j - d*) + s err_j + low_j with d_j = a_j - nu'_j rounded and err_j its rounding
/// error (TwoSum, exact), so that d_j - d* is rounded once, at its own scale. The tail lanes load
/// a_j = d*, nu'_j = low_j = 0 (t = 0: finite, and dropped by the sweep's keep()).
template <class T>
struct FrameArg {
    using Elem = T;
    const T* a;
    const T* nu;
    const T* low;
    T scale;
    T d_star;
    template <class Lanes>
    mask_t<T> lanes(std::int64_t j, const Lanes& at, vec_t<T>& t) const {
        using V = vec_t<T>;
        const V row = at.load(a + j, d_star);
        const V mu = at.load(nu + j, T(0));
        const V d = row - mu;
        const V back = d - row;
        const V err = (row - (d - back)) - (mu + back);
        const V s = splat<V>(scale);
        t = fmadd(s, d - splat<V>(d_star), fmadd(s, err, at.load(low + j, T(0))));
        return mask_t<T>{};  // no lane is taken as at the max: row_exp_sum takes exp(t) everywhere
    }
};

/// A row_sweep evaluator that evaluates nothing: for the sweeps of the scaled form, whose bodies
/// do their own loads through `lanes` (full or masked last vector) from K, b or E.
struct NoArg {
    using Elem = float;
    template <class Lanes>
    mask_t<float> lanes(std::int64_t, const Lanes&, vec_t<float>& t) const {
        t = splat<vec_t<float>>(0.0f);
        return mask_t<float>{};
    }
};

/// The scaled form's exp pass over one row (build_kernel): K_j = exp(x_j) with
/// x_j = scale (a_j - pivot) <= 0, all in float lanes. d = a_j - pivot is taken as d_hi + d_lo
/// (TwoSum, exact) and scale as S + S_lo (S = float(scale)), so that x = x_hi + x_lo with
/// x_hi = S d_hi and x_lo = fma(S, d_hi, -x_hi) + S d_lo + S_lo d_hi (the sum is x to ~2^-46
/// relative; |x_lo| <= ~2^-23 |x|). K_j = exp(x_hi) (1 + x_lo): the float exp at x_hi, its
/// argument's rounding restored to first order, so it does not reach K. (Rounds 1 to 4 formed x
/// in double and split it; the same K to first order without the conversions: 7.1 -> 6.4
/// instructions per element at avx2. The baseline level, without FMA, keeps that double form.)
/// A +inf energy gives x_hi = -inf and K = 0; a nan energy gives a nan K.
/// kInRange: the caller knows every x_hi of the row is in [-86.9, 0] (the far end of the row
/// checked, as with_row_frame does): the exp without its underflow flush and x_lo without the
/// clamp that keeps an infinite or nan d out (the same bits for such rows: the flush and the clamp
/// change nothing there; at avx2 5 of the loop's 40 instructions per vector).
/// Writes K to `out`, returns sum_j K_j (float lanes of 8 terms, then double lanes); prefetches
/// `ahead` (the next row of E, whose pivot pass then reads from cache). Not inlined: the two
/// forms side by side in build_kernel's row loop would share (and at avx2 spill) the registers of
/// their hoisted constants.
template <bool kInRange>
[[gnu::noinline]] double kernel_row(std::int64_t k, const float* a, float pivot, double scale, float* out,
                                    const void* ahead) {
    using V = vec_t<float>;
#if THERMOSSL_HAS_FMA
    const float s_hi = static_cast<float>(scale);
    const V S = splat<V>(s_hi);
    const V S_lo = splat<V>(static_cast<float>(scale - static_cast<double>(s_hi)));
    const V p = splat<V>(pivot);
    const V minus_one = splat<V>(-1.0f), one = splat<V>(1.0f);
#else
    using W = wide_t<float>;
    const W p = splat<W>(static_cast<double>(pivot));
    const W s = splat<W>(scale);
    const W floor = splat<W>(-1000.0);
#endif
    LaneSums<float, 1> sums;
    row_sweep(k, NoArg{}, sums, [&](std::int64_t j, V, mask_t<float>, const auto& lanes) {
        const V e_in = lanes.load(a + j, pivot);  // the tail lanes: a = pivot, x = 0
#if THERMOSSL_HAS_FMA
        const V d_hi = e_in - p;
        const V back = d_hi - e_in;
        const V d_lo = (e_in - (d_hi - back)) - (p + back);
        const V x_hi = S * d_hi;
        const V x_err = fmadd(S_lo, d_hi, fmadd(S, d_lo, fmadd(S, d_hi, -x_hi)));
        // max then min: a nan (infinite d) becomes -1, an infinite x_lo (x_hi overflowed to
        // -inf) +-1; either way exp(x_hi) = 0 and so is K
        const V x_lo = kInRange ? x_err : min_lanes(max_lanes(x_err, minus_one), one);
#else
        // without FMA the product's rounding error is not free: x in double and split (one
        // rounding by the scale; clamped at -1000, a nan passes through)
        // (kInRange is not used here: the caller's float test of the far end need not round as
        // this double x does, so the flush stays)
        const W x = clamp_below(s * (widen<float>(e_in) - p), floor);
        const V x_hi = narrow<float>(x);
        const V x_lo = narrow<float>(x - widen<float>(x_hi));
#endif
        const V e_hi = kInRange && THERMOSSL_HAS_FMA ? exp_lanes_in_range(x_hi) : exp_lanes(x_hi);
        const V e = lanes.keep(fmadd(e_hi, x_lo, e_hi));
        lanes.store(out + j, e);
        sums.part[0] += e;
    }, ahead);
    return sums[0];
}

/// sum_j K_j b_j over one row of K (the scaled form's row sums): float lanes of 8 terms, then
/// double lanes; prefetches `ahead` (the next row of K).
inline double row_dot(std::int64_t k, const float* row, const float* b, const void* ahead) {
    using V = vec_t<float>;
    LaneSums<float, 1> sums;
    row_sweep(k, NoArg{}, sums, [&](std::int64_t j, V, mask_t<float>, const auto& lanes) {
        sums.part[0] = fmadd(lanes.load(row + j, 0.0f), lanes.load(b + j, 0.0f), sums.part[0]);
    }, ahead);
    return sums[0];
}

/// The solver in compute type T (float or double) over a matrix of element type In: T itself,
/// or bfloat16/float16 for T = float (each row tile converted as RowReader packs it).
template <class T, class In = T>
class SinkhornSolver {
public:
    SinkhornSolver(const MatrixView<In>& energy, const T* weights, const T* charges, const SinkhornOptions& options)
        : energy_(energy),
          n_(energy.rows),
          k_(energy.cols),
          temperature_(options.temperature),
          scale_((options.energy_sign < 0 ? 1.0 : -1.0) / options.temperature),
          weight_(static_cast<std::size_t>(n_)),
          log_charge_target_(static_cast<std::size_t>(k_)),
          charge_target_(static_cast<std::size_t>(k_)),
          f_(static_cast<std::size_t>(n_), 0.0),
          mu_(static_cast<std::size_t>(k_), 0.0),
          charges_(static_cast<std::size_t>(k_), 0.0),
          shift_(static_cast<std::size_t>(k_)),
          n_threads_(pass_threads(n_ * k_, (n_ + tile_rows<T>(k_) - 1) / tile_rows<T>(k_))),
          accumulators_(n_threads_, k_),
          uniform_weights_(weights == nullptr),
          error_norm_(options.error_norm),
          poll_(options) {
        for (std::int64_t i = 0; i < n_; ++i)
            weight_[i] = weights != nullptr ? static_cast<double>(weights[i]) : 1.0 / static_cast<double>(n_);
        for (std::int64_t y = 0; y < k_; ++y) {
            charge_target_[y] = charges != nullptr ? static_cast<double>(charges[y]) : 1.0 / static_cast<double>(k_);
            log_charge_target_[y] = std::log(charge_target_[y]);
        }
    }

    std::vector<double>& mu() { return mu_; }
    std::vector<double>& weights() { return weight_; }
    const std::vector<double>& f() const { return f_; }
    SinkhornStatus status() const { return status_; }
    std::int64_t bad_index() const { return bad_index_; }

    InterruptPoll& poll() { return poll_; }

    /// The charge error of the state left by the last fused pass: sum_y |N_y - c_y| (L1) or
    /// sqrt(sum_y (N_y - c_y)^2) (L2, scaled by the largest term so no square overflows).
    double charge_error() const {
        if (error_norm_ == SinkhornErrorNorm::kL2) {
            double top = 0.0;
            for (std::int64_t y = 0; y < k_; ++y) top = std::max(top, std::fabs(charges_[y] - charge_target_[y]));
            if (!(top > 0.0) || !std::isfinite(top)) return top;
            double sum = 0.0;
            for (std::int64_t y = 0; y < k_; ++y) {
                const double r = (charges_[y] - charge_target_[y]) / top;
                sum += r * r;
            }
            return top * std::sqrt(sum);
        }
        double err = 0.0;
        for (std::int64_t y = 0; y < k_; ++y) err += std::fabs(charges_[y] - charge_target_[y]);
        return err;
    }

    /// The largest |mu_y| / T' (how far the potentials are from the gauge, for rounding bounds).
    double mu_magnitude() const {
        double top = 0.0;
        for (double v : mu_) top = std::max(top, std::fabs(v));
        return top / temperature_;
    }

    /// One read of E. For every row: f_i <- -T' LSE_y((mu_y - E_iy)/T') and its charge
    /// contribution w_i q_iy = w_i e_iy / s_i (e_iy = exp(x_iy - max), s_i = sum_y e_iy) added to
    /// per-thread column accumulators, merged at the end into N_y. Writes q when `q` is set.
    ///
    /// float data takes float lanes (FloatFrame) for every row whose exponents are finite; a row
    /// the frame cannot take (a nan, -inf, every state forbidden) goes through the double-lane
    /// path, which also names the error.
    bool fused_pass(T* q) {
        for (std::int64_t y = 0; y < k_; ++y) shift_[y] = mu_[y] / temperature_;
        const bool float_lanes = prepare_float_frame();
        accumulators_.clear();
        std::vector<std::int64_t> first_bad(static_cast<std::size_t>(n_threads_), n_);
        std::vector<SinkhornStatus> bad_status(static_cast<std::size_t>(n_threads_), SinkhornStatus::kOk);
        const std::int64_t tile = tile_rows<T>(k_);
        const std::int64_t k = k_;

#pragma omp parallel num_threads(n_threads_) if (n_threads_ > 1)
        {
            const int thread = thread_index();
            const Exponent ex{scale_, shift_.data()};
            const double temperature = temperature_;
            double* acc = accumulators_.of_thread(thread);
            RowReader<T, In> reader(energy_);
            std::vector<T> scratch(q == nullptr ? static_cast<std::size_t>(k) : 0);
            FloatCharges<T> float_acc(float_lanes ? k : 0);
            const T* mu_f = frame_mu_.data();
            const T* low = frame_low_.data();
            const T s_f = static_cast<T>(scale_);
            for_row_tiles(n_, tile, [&](std::int64_t i0, std::int64_t i1) {
                if (poll_.check_in_pass(thread)) return;
                reader.load(i0, i1);
                for (std::int64_t i = i0; i < i1; ++i) {
                    const T* row = reader.row(i);
                    T* e_row = q != nullptr ? q + i * k : scratch.data();
                    if (float_lanes) {
                        // d_j = a_j - nu'_j (the frame of prepare_float_frame); the row max of
                        // x = s d + ... sits at d* = min_j d_j for s < 0 (a = E), max_j d_j for
                        // s > 0 (a = scores); t_j = s (d_j - d*) + (low_j - max low) <= 0.
                        T d_star = scale_ < 0 ? infinity<T>() : -infinity<T>();
                        if (scale_ < 0) {
#pragma omp simd reduction(min : d_star)
                            for (std::int64_t j = 0; j < k; ++j) {
                                const T d = row[j] - mu_f[j];
                                d_star = d < d_star ? d : d_star;
                            }
                        } else {
#pragma omp simd reduction(max : d_star)
                            for (std::int64_t j = 0; j < k; ++j) {
                                const T d = row[j] - mu_f[j];
                                d_star = d > d_star ? d : d_star;
                            }
                        }
                        // The frame holds while the rounding errors of d (<= 2^-24 |d|) stay far
                        // below 1 in units of T' (|s d*| <= 2^20: below 1/16), so the largest
                        // exponent sits at ~0; beyond that (|E/T'| ~ 1e6 and more, where a float's
                        // ulp exceeds T') the row takes the double-lane path.
                        if (std::isfinite(d_star) && std::fabs(static_cast<double>(d_star) * scale_) <= 0x1p20) {
#if defined(THERMOSSL_ISA_AVX512)
                            // Mask registers make the last partial vector cheap: explicit vectors
                            // (a row of K = 10 is one masked vector instead of ten scalar exps).
                            const double s = row_exp_sum<T>(k, FrameArg<T>{row, mu_f, low, s_f, d_star}, e_row);
#else
                            // At AVX2 the masked store of the last partial vector (vmaskmov) is
                            // slow on AMD cores: measured 6.3 -> 10.2 ns per element and iteration
                            // at K = 10 with row_exp_sum over FrameArg, so the chunked `omp simd` loop stays.
                            double s = 0.0;
                            for (std::int64_t j0 = 0; j0 < k; j0 += kChunk) {
                                const std::int64_t j1 = std::min(k, j0 + kChunk);
                                T part = 0;
#pragma omp simd reduction(+ : part)
                                for (std::int64_t j = j0; j < j1; ++j) {
                                    // d_j = E_j - mu'_j and its rounding error (TwoSum, exact),
                                    // so that d_j - d* is rounded once, at its own scale.
                                    const T d = row[j] - mu_f[j];
                                    const T back = d - row[j];
                                    const T err = (row[j] - (d - back)) - (mu_f[j] + back);
                                    const T tj = THERMOSSL_MADD(s_f, d - d_star, THERMOSSL_MADD(s_f, err, low[j]));
                                    const T e = exp_nonpositive(tj);
                                    e_row[j] = e;
                                    part += e;
                                }
                                s += static_cast<double>(part);
                            }
#endif
                            if (std::isfinite(s)) {
                                const double m = scale_ * static_cast<double>(d_star) + frame_base_;
                                f_[i] = -temperature * (m + std::log(s));
                                const double r = weight_[i] / s;
                                float_acc.add(static_cast<T>(r), e_row, k, acc);
                                if (q != nullptr) {
                                    const T inv_s = static_cast<T>(1.0 / s);
#pragma omp simd
                                    for (std::int64_t y = 0; y < k; ++y) e_row[y] *= inv_s;
                                }
                                continue;
                            }
                        }
                    }
                    const double m = row_max<T, true>(row, k, ex);
                    const double s = row_exp_sum<T, true>(row, k, ex, m, e_row);
                    if (!std::isfinite(m) || !std::isfinite(s)) {
                        if (i < first_bad[thread]) {
                            first_bad[thread] = i;
                            bad_status[thread] = std::isnan(s)  ? SinkhornStatus::kNanEnergy
                                                 : m > 0.0      ? SinkhornStatus::kInfiniteScore
                                                                : SinkhornStatus::kRowForbidden;
                        }
                        continue;
                    }
                    f_[i] = -temperature * (m + std::log(s));
                    const double r = weight_[i] / s;
#pragma omp simd
                    for (std::int64_t y = 0; y < k; ++y) acc[y] += r * static_cast<double>(e_row[y]);
                    if (q != nullptr) {
                        const T inv_s = static_cast<T>(1.0 / s);
#pragma omp simd
                        for (std::int64_t y = 0; y < k; ++y) e_row[y] *= inv_s;
                    }
                }
            });
            float_acc.flush(k, acc);
        }

        for (int t = 0; t < n_threads_; ++t) {
            if (first_bad[t] < n_ && first_bad[t] < (bad_index_ < 0 ? n_ : bad_index_)) {
                bad_index_ = first_bad[t];
                status_ = bad_status[t];
            }
        }
        if (status_ != SinkhornStatus::kOk) return false;
        if (poll_.stopped()) return interrupt();
        accumulators_.merge_into(charges_.data());
        return true;
    }

    /// Marks the run interrupted (the state is incomplete); returns false for the caller.
    bool interrupt() {
        status_ = SinkhornStatus::kInterrupted;
        bad_index_ = -1;
        return false;
    }

    /// The float-lane frame of a pass over float data (THEORY.md §3 exponents x_y = (mu_y - E_y)/T',
    /// with E = sigma a for the matrix a given, sigma = SinkhornOptions::energy_sign = +-1):
    /// x_y = s (a_y - nu_y) with s = scale_ = -sigma/T' and nu = sigma mu. With nu_c the midrange
    /// of nu, nu'_y = nu_y - nu_c is split into its float part frame_mu_[y] and a remainder rho_y
    /// (|rho_y| <= 2^-24 |nu'_y|), so that
    ///   x_y = s (a_y - frame_mu_[y]) - s rho_y - s nu_c.
    /// frame_low_[y] = -s rho_y - max_y(-s rho_y) <= 0 (tiny) and frame_base_ = max(-s rho) - s nu_c.
    /// Centering keeps |nu'| at the spread of mu, so a - nu' is rounded at the scale of a; the
    /// row max is subtracted before the scale (as in PivotArg), so the dominant codes carry
    /// about 2^-24 |x - max| of relative error, not 2^-24 |x|. Returns false (double lanes)
    /// for double data or a scale outside [2^-60, 2^60].
    bool prepare_float_frame() {
        if constexpr (!std::is_same<T, float>::value) {
            return false;
        } else {
            const double mag = std::fabs(scale_);
            if (!(mag >= 0x1p-60 && mag <= 0x1p60)) return false;
            const double sigma = scale_ < 0 ? 1.0 : -1.0;  // nu = sigma mu (exact)
            double lo = sigma * mu_[0], hi = sigma * mu_[0];
            for (std::int64_t y = 1; y < k_; ++y) {
                lo = std::min(lo, sigma * mu_[y]);
                hi = std::max(hi, sigma * mu_[y]);
            }
            const double center = 0.5 * (lo + hi);
            frame_mu_.resize(static_cast<std::size_t>(k_));
            frame_low_.resize(static_cast<std::size_t>(k_));
            std::vector<double> rest(static_cast<std::size_t>(k_));
            double top = -infinity<double>();
            for (std::int64_t y = 0; y < k_; ++y) {
                const double centered = sigma * mu_[y] - center;
                frame_mu_[y] = static_cast<float>(centered);
                rest[y] = -scale_ * (centered - static_cast<double>(frame_mu_[y]));
                top = std::max(top, rest[y]);
            }
            for (std::int64_t y = 0; y < k_; ++y) frame_low_[y] = static_cast<float>(rest[y] - top);
            frame_base_ = top - scale_ * center;
            return std::isfinite(frame_base_);
        }
    }

    /// The mu-update from the charges of the last fused pass: mu_y += omega T' (log c_y - log N_y)
    /// (omega = 1: the exact Sinkhorn column update; 1 < omega < 2: over-relaxed).
    /// A charge that underflowed (N_y below the smallest normal double) carries no information,
    /// so that iteration takes the exact column log-sum-exp instead (relaxed the same way).
    bool update_potentials(double omega) {
        bool underflow = false;
        for (std::int64_t y = 0; y < k_; ++y) underflow |= !(charges_[y] >= std::numeric_limits<double>::min());
        if (underflow) {
            const std::vector<double> before = mu_;
            if (!exact_column_update(true)) return false;
            for (std::int64_t y = 0; y < k_; ++y) mu_[y] = before[y] + omega * (mu_[y] - before[y]);
            return true;
        }
        for (std::int64_t y = 0; y < k_; ++y)
            mu_[y] += omega * temperature_ * (log_charge_target_[y] - std::log(charges_[y]));
        return true;
    }

    /// mu_y <- T' log c_y - T' LSE_i(log w_i + (f_i - E_iy)/T'), one read of E (col_logsumexp).
    /// With use_f false, f is the constant 0 of a cold start.
    /// With `row_scaling` (N), the row shifts are those u_i instead (a cold start from given
    /// row log-scalings, SinkhornOptions::row_scaling0).
    bool exact_column_update(bool use_f, const double* row_scaling = nullptr) {
        if constexpr (std::is_same<T, float>::value) {
            if (!use_f && row_scaling == nullptr && uniform_weights_ && cold_column_float_lanes()) return true;
        }
        std::vector<double> row_shift(static_cast<std::size_t>(n_));
        for (std::int64_t i = 0; i < n_; ++i)
            row_shift[i] = row_scaling != nullptr ? row_scaling[i]
                                                  : std::log(weight_[i]) + (use_f ? f_[i] / temperature_ : 0.0);
        std::vector<T> lse(static_cast<std::size_t>(k_));
        if constexpr (std::is_same<T, In>::value) {
            THERMOSSL_ISA_NS::col_logsumexp<T>(energy_, scale_, row_shift.data(), lse.data());
        } else {
            converted_column_logsumexp(row_shift.data(), lse.data());
        }
        bool finite = true;
        for (std::int64_t y = 0; y < k_; ++y) finite &= std::isfinite(lse[y]);
        if (!finite) {
            // Find the culprit: a bad row first (nan, -inf, all forbidden), else a column that no
            // sample can occupy.
            std::fill(mu_.begin(), mu_.end(), 0.0);
            if (!fused_pass(nullptr)) return false;
            for (std::int64_t y = 0; y < k_; ++y) {
                if (lse[y] == -std::numeric_limits<T>::infinity()) {
                    status_ = SinkhornStatus::kColumnForbidden;
                    bad_index_ = y;
                    return false;
                }
            }
            status_ = SinkhornStatus::kInfiniteScore;  // E/T' overflowed in a column sum
            bad_index_ = -1;
            return false;
        }
        for (std::int64_t y = 0; y < k_; ++y)
            mu_[y] = temperature_ * (log_charge_target_[y] - static_cast<double>(lse[y]));
        return true;
    }

    /// lse_y = LSE_i(row_shift_i + s a_iy) over a half-precision matrix (the column pass of
    /// exact_column_update, which col_logsumexp takes for float and double): two reads of the
    /// converted row tiles, the column maxima and then the sums of exp(x - max), in double, on
    /// one thread. Taken only off the fast paths (weighted or row-scaled cold starts, charges
    /// that underflow); a column with no finite entry gives -inf, a nan gives nan, as there.
    void converted_column_logsumexp(const double* row_shift, T* lse) {
        const std::int64_t k = k_;
        const std::int64_t tile = tile_rows<T>(k_);
        std::vector<double> top(static_cast<std::size_t>(k), -infinity<double>());
        std::vector<double> sum(static_cast<std::size_t>(k), 0.0);
        RowReader<T, In> reader(energy_);
        for (int sweep = 0; sweep < 2; ++sweep) {
            for (std::int64_t i0 = 0; i0 < n_; i0 += tile) {
                const std::int64_t i1 = std::min(n_, i0 + tile);
                reader.load(i0, i1);
                for (std::int64_t i = i0; i < i1; ++i) {
                    const T* row = reader.row(i);
                    for (std::int64_t y = 0; y < k; ++y) {
                        const double x = row_shift[i] + scale_ * static_cast<double>(row[y]);
                        if (sweep == 0) {
                            top[y] = x != x || top[y] != top[y] ? quiet_nan<double>() : std::max(top[y], x);
                        } else if (std::isfinite(top[y])) {
                            sum[y] += std::exp(x - top[y]);
                        }
                    }
                }
            }
        }
        for (std::int64_t y = 0; y < k; ++y)
            lse[y] = static_cast<T>(std::isfinite(top[y]) ? top[y] + std::log(sum[y]) : top[y]);
    }

    /// The cold-start mu-update for float data and uniform weights in float lanes:
    /// LSE_i(log w + s E_iy) = log(1/N) + s p_y + log sum_i exp(s (E_iy - p_y)) with the column
    /// pivot p_y = min_i E_iy (the max of s E, s < 0), as PivotArg does for rows: blocks of rows
    /// are read twice from cache (pivot, then sums in float), and running sums in double are
    /// rescaled when a block lowers the pivot.
    /// Works on the energies E = sigma a (a sign flip of each element in registers, exact).
    /// Returns false (nothing changed) for an input it does not take: a nan or -inf, a scale
    /// outside [2^-60, 2^60], a column with no finite entry; the exact pass then decides.
    bool cold_column_float_lanes() {
        const double mag = std::fabs(scale_);
        if (!(mag >= 0x1p-60 && mag <= 0x1p60)) return false;
        const float sigma = scale_ < 0 ? 1.0f : -1.0f;
        const std::int64_t k = k_;
        const std::int64_t block = std::max<std::int64_t>(1, std::min<std::int64_t>(32, (128 * 1024 / 4) / k));
        std::vector<float> pivots(static_cast<std::size_t>(n_threads_ * k), infinity<float>());
        std::vector<double> sums(static_cast<std::size_t>(n_threads_ * k), 0.0);
        std::vector<char> bad(static_cast<std::size_t>(n_threads_), 0);
        const double scale = -mag;  // of the energies E = sigma a
        const float s_f = static_cast<float>(scale);
#pragma omp parallel num_threads(n_threads_) if (n_threads_ > 1)
        {
            const int thread = thread_index();
            float* p = pivots.data() + thread * k;
            double* sum = sums.data() + thread * k;
            std::vector<float> block_pivot(static_cast<std::size_t>(k));
            std::vector<float> block_sum(static_cast<std::size_t>(k));
            float* bp = block_pivot.data();
            float* bs = block_sum.data();
            bool nan_or_neg_inf = false;
            RowReader<T, In> reader(energy_);
            for_row_tiles(n_, block, [&](std::int64_t i0, std::int64_t i1) {
                reader.load(i0, i1);
                std::copy(p, p + k, bp);
                for (std::int64_t i = i0; i < i1; ++i) {
                    const float* row = reader.row(i);
                    float low = infinity<float>();
#pragma omp simd reduction(min : low)
                    for (std::int64_t y = 0; y < k; ++y) {
                        const float e = sigma * row[y];
                        bp[y] = e < bp[y] ? e : bp[y];
                        low = e != e ? -infinity<float>() : (e < low ? e : low);
                    }
                    nan_or_neg_inf |= low == -infinity<float>();
                }
#pragma omp simd
                for (std::int64_t y = 0; y < k; ++y) {
                    const bool lower = bp[y] < p[y];
                    // exp(s (p - bp)) <= 1; p = +inf (no finite entry yet) gives 0.
                    const double down = lower ? scale * (static_cast<double>(p[y]) - static_cast<double>(bp[y])) : 0.0;
                    sum[y] *= exp_nonpositive(down != down ? -infinity<double>() : down);
                    p[y] = lower ? bp[y] : p[y];
                    bs[y] = 0.0f;
                }
                for (std::int64_t i = i0; i < i1; ++i) {
                    const float* row = reader.row(i);
#pragma omp simd
                    for (std::int64_t y = 0; y < k; ++y) {
                        const float energy = sigma * row[y];
                        const float e = exp_nonpositive(s_f * (energy - p[y]));
                        bs[y] += energy < infinity<float>() ? e : 0.0f;
                    }
                }
#pragma omp simd
                for (std::int64_t y = 0; y < k; ++y) sum[y] += static_cast<double>(bs[y]);
            });
            bad[thread] = nan_or_neg_inf ? 1 : 0;
        }
        for (int t = 0; t < n_threads_; ++t)
            if (bad[t]) return false;
        std::vector<double> mu(static_cast<std::size_t>(k));
        const double log_w = std::log(1.0 / static_cast<double>(n_));
        for (std::int64_t y = 0; y < k; ++y) {
            float p = infinity<float>();
            for (int t = 0; t < n_threads_; ++t) p = std::min(p, pivots[t * k + y]);
            if (!(p < infinity<float>())) return false;  // a column no sample can occupy
            double total = 0.0;
            for (int t = 0; t < n_threads_; ++t) {
                const float pt = pivots[t * k + y];
                if (pt < infinity<float>())
                    total += sums[t * k + y] * exp_nonpositive(scale * (static_cast<double>(pt) - static_cast<double>(p)));
            }
            const double lse = log_w + scale * static_cast<double>(p) + std::log(total);
            if (!std::isfinite(lse)) return false;
            mu[y] = temperature_ * (log_charge_target_[y] - lse);
        }
        std::copy(mu.begin(), mu.end(), mu_.begin());
        return true;
    }

    /// The scaled form of the iteration for float data (SwAV's exp-once algorithm, kept stable
    /// per row; written for E, it runs on the matrix a = sigma E given with s = scale_ = -sigma/T'
    /// and the pivot where s a is largest). K_iy = exp(s (E_iy - p_i)) with the row pivot p_i = min_y E_iy (so K <= 1, its
    /// max is 1, m_i = s p_i the row max of s E) is computed once (kernel_row: the argument as a float pair, float exp
    /// with the argument's rounding error restored to first order) into `buf`
    /// (q's storage). With b_y = exp(mu_y/T' - beta), beta = max_y mu_y/T':
    ///     q_iy = K_iy b_y / s_i,  s_i = sum_y K_iy b_y,  f_i = -T' (m_i + beta + log s_i),
    ///     N_y = b_y sum_i (w_i / s_i) K_iy,
    /// the same state as the log-domain pass, with two multiply-adds per element instead of an
    /// exp. Cold start: the same read of E gives the column sums LSE_i(log w_i + s E_iy) =
    /// M + log sum_i w_i exp(m_i - M) K_iy (M = max_i m_i; float lanes for the rows with
    /// m_i >= M - kSpread, double for those further below, whose factors would leave the
    /// normal float range). Guards (else false, and the caller uses the log-domain passes):
    /// every row pivot finite (no nan, -inf or fully forbidden row), max_i m_i - min_i m_i <=
    /// kRowSpread (the double factors w_i exp(m_i - M) K_iy stay far above the double
    /// underflow), the cold start's mu/T' spread <= kSpread (its column sums then dominate the
    /// terms lost to K's float underflow by e^47 / (N K)) and, per pass, the spread of mu/T' <=
    /// kSpread, so no row sum s_i = sum_y K_iy b_y >= min_y b_y comes near the float underflow.
    static constexpr double kSpread = 40.0;
    static constexpr double kRowSpread = 200.0;

    bool build_kernel(T* buf, bool cold) {
        if constexpr (!std::is_same<T, float>::value) {
            (void)buf;
            (void)cold;
            return false;
        } else {
            const double mag = std::fabs(scale_);
            if (!(mag >= 0x1p-60 && mag <= 0x1p60)) return false;
            const std::int64_t k = k_;
            const std::int64_t tile = tile_rows<T>(k_);
            row_max_.assign(static_cast<std::size_t>(n_), 0.0);
            std::vector<double> top(static_cast<std::size_t>(n_threads_), -infinity<double>());
            std::vector<double> bottom(static_cast<std::size_t>(n_threads_), infinity<double>());
            std::vector<char> bad(static_cast<std::size_t>(n_threads_), 0);
            accumulators_.clear();
            const double scale = scale_;
#pragma omp parallel num_threads(n_threads_) if (n_threads_ > 1)
            {
                const int thread = thread_index();
                double* acc = accumulators_.of_thread(thread);
                FloatCharges<T> float_acc(cold ? k : 0);
                double running = -infinity<double>();  // this thread's M so far (acc is relative to it)
                double low = infinity<double>();
                bool failed = false;
                RowReader<T, In> reader(energy_);
                for_row_tiles(n_, tile, [&](std::int64_t i0, std::int64_t i1) {
                    reader.load(i0, i1);
                    for (std::int64_t i = i0; i < i1; ++i) {
                        const float* row = reader.row(i);
                        float* out = buf + i * k;
                        // the pivot, where s a is largest, and whether the row is in the exp's
                        // range (scores over a temperature: cosine / 0.05 spans <= 40)
                        const FloatRowFrame frame = float_row_frame(row, k, scale);
                        const float pivot = frame.pivot;
                        const double m = scale_ * static_cast<double>(pivot);
                        if (!std::isfinite(m) || failed) {
                            failed = true;
                            continue;
                        }
                        row_max_[i] = m;
                        low = std::min(low, m);
                        // K (computed once) and its row sum, prefetching the next row of E so
                        // that the pivot pass of the next row reads from cache (x_hi is the t of
                        // float_row_frame: the same float product S (a - pivot)).
                        const double total = frame.in_range
                                                 ? kernel_row<true>(k, row, pivot, scale, out, reader.next_row(i))
                                                 : kernel_row<false>(k, row, pivot, scale, out, reader.next_row(i));
                        if (!std::isfinite(total)) {  // a nan
                            failed = true;
                            continue;
                        }
                        if (cold) {
                            if (m > running) {
                                float_acc.flush(k, acc);
                                const double down = std::exp(running - m);  // 0 for the first row
#pragma omp simd
                                for (std::int64_t y = 0; y < k; ++y) acc[y] *= down;
                                running = m;
                            }
                            const double factor = weight_[i] * std::exp(m - running);
                            if (m - running >= -kSpread) {
                                float_acc.add(static_cast<float>(factor), out, k, acc);
                            } else {
                                // A row far below the running max: its factor (< e^-40 w_i) and
                                // its products with K could leave the normal float range, so
                                // they are added in double.
#pragma omp simd
                                for (std::int64_t y = 0; y < k; ++y) acc[y] += factor * static_cast<double>(out[y]);
                            }
                        }
                    }
                });
                float_acc.flush(k, acc);
                top[thread] = running;
                bottom[thread] = low;
                bad[thread] = failed ? 1 : 0;
            }
            for (int t = 0; t < n_threads_; ++t)
                if (bad[t]) return false;
            const double lo = *std::min_element(bottom.begin(), bottom.end());
            double hi = -infinity<double>();
            for (std::int64_t i = 0; i < n_; ++i) hi = std::max(hi, row_max_[i]);
            if (!(hi - lo <= kRowSpread)) return false;
            if (cold) {
                // Merge the threads' sums (each relative to its own running max) at M = hi.
                std::vector<double> col(static_cast<std::size_t>(k), 0.0);
                for (int t = 0; t < n_threads_; ++t) {
                    if (!(top[t] > -infinity<double>())) continue;
                    const double factor = std::exp(top[t] - hi);
                    const double* a = accumulators_.of_thread(t);
                    for (std::int64_t y = 0; y < k; ++y) col[y] += factor * a[y];
                }
                for (std::int64_t y = 0; y < k; ++y) {
                    if (!(col[y] >= std::numeric_limits<double>::min()) || !std::isfinite(col[y])) return false;
                }
                double top_mu = -infinity<double>(), low_mu = infinity<double>();
                for (std::int64_t y = 0; y < k; ++y) {
                    mu_[y] = temperature_ * (log_charge_target_[y] - (hi + std::log(col[y])));
                    top_mu = std::max(top_mu, mu_[y] / temperature_);
                    low_mu = std::min(low_mu, mu_[y] / temperature_);
                }
                // K underflows (float exp) 87 units below each row's pivot, so a column sum may
                // miss terms below e^-87 (relative to e^M); a column whose sum is below e^-40 of
                // the largest could then be wrong. Such a column makes the mu spread exceed
                // kSpread: the cold start is then redone by the exact column pass (the caller).
                if (!(top_mu - low_mu <= kSpread)) return false;
            }
            return true;
        }
    }

    /// One pass of the scaled form at the current mu (see build_kernel); on the last pass writes
    /// q_iy = K_iy b_y / s_i over K in `buf` and f. False (state untouched except f_ and the
    /// accumulators) when the spread of mu/T' exceeds kSpread or a row sum is not a normal
    /// positive number.
    bool scaled_pass(T* buf, bool last) {
        if constexpr (!std::is_same<T, float>::value) {
            (void)buf;
            (void)last;
            return false;
        } else {
            double beta = -infinity<double>(), floor = infinity<double>();
            for (std::int64_t y = 0; y < k_; ++y) {
                beta = std::max(beta, mu_[y] / temperature_);
                floor = std::min(floor, mu_[y] / temperature_);
            }
            if (!(beta - floor <= kSpread)) return false;
            std::vector<float> b(static_cast<std::size_t>(k_));
            for (std::int64_t y = 0; y < k_; ++y) b[y] = static_cast<float>(std::exp(mu_[y] / temperature_ - beta));
            const std::int64_t k = k_;
            const std::int64_t tile = tile_rows<T>(k_);
            std::vector<char> bad(static_cast<std::size_t>(n_threads_), 0);
            accumulators_.clear();
            const float* bv = b.data();
#pragma omp parallel num_threads(n_threads_) if (n_threads_ > 1)
            {
                const int thread = thread_index();
                double* acc = accumulators_.of_thread(thread);
                FloatCharges<T> float_acc(k);
                bool failed = false;
                for_row_tiles(n_, tile, [&](std::int64_t i0, std::int64_t i1) {
                    if (poll_.check_in_pass(thread)) return;
                    for (std::int64_t i = i0; i < i1 && !failed; ++i) {
                        float* row = buf + i * k;
                        // s_i = sum_y K_iy b_y in float lanes (8 terms per lane, then double
                        // lanes), prefetching the next row of K into L2 (prefetch_bytes). With
                        // prefetcht0 this measured slower than the hardware prefetchers alone
                        // (round 4, AMD EPYC); into L2, on a Xeon VM, the public call at 4096x3000
                        // 11.74 -> 10.81 ms at avx512, 13.09 -> 11.73 ms at avx2, 194.1 -> 188.8 ms
                        // at 65536x3000.
                        const double s = row_dot(k, row, bv, i + 1 < n_ ? row + k : nullptr);
                        if (!(s >= 0x1p-100) || !std::isfinite(s)) {
                            failed = true;
                            break;
                        }
                        float_acc.add(static_cast<float>(weight_[i] / s), row, k, acc);
                        if (last) {
                            // f is read only after the last pass (a fallback pass recomputes
                            // it): one log per row of the run, not per pass.
                            f_[i] = -temperature_ * (row_max_[i] + beta + std::log(s));
                            // q = K b / s rounded once: the product in double.
                            const double inv_s = 1.0 / s;
#pragma omp simd
                            for (std::int64_t y = 0; y < k; ++y)
                                row[y] = static_cast<float>(static_cast<double>(row[y]) * (static_cast<double>(bv[y]) * inv_s));
                        }
                    }
                });
                float_acc.flush(k, acc);
                bad[thread] = failed ? 1 : 0;
            }
            for (int t = 0; t < n_threads_; ++t)
                if (bad[t]) return false;
            if (poll_.stopped()) return false;  // the caller sees poll().stopped()
            accumulators_.merge_into(charges_.data());
            for (std::int64_t y = 0; y < k_; ++y) charges_[y] *= static_cast<double>(b[y]);
            return true;
        }
    }

    /// Gauge sum_y c_y mu_y = 0 (f absorbs the constant, q is unchanged).
    double fix_gauge() {
        double a = 0.0;
        for (std::int64_t y = 0; y < k_; ++y) a += charge_target_[y] * mu_[y];
        for (auto& v : mu_) v -= a;
        for (auto& v : f_) v += a;
        return a;
    }

    void write_state(T* f, T* mu) const {
        for (std::int64_t i = 0; i < n_; ++i) f[i] = static_cast<T>(f_[i]);
        for (std::int64_t y = 0; y < k_; ++y) mu[y] = static_cast<T>(mu_[y]);
    }

    void write_charges(double* out) const { std::copy(charges_.begin(), charges_.end(), out); }

    double scale() const { return scale_; }

private:
    MatrixView<In> energy_;
    std::int64_t n_;
    std::int64_t k_;
    double temperature_;
    double scale_;  // -1/T
    std::vector<double> weight_;
    std::vector<double> log_charge_target_;
    std::vector<double> charge_target_;
    std::vector<double> f_;
    std::vector<double> mu_;
    std::vector<double> charges_;
    std::vector<double> shift_;  // mu/T'
    std::vector<T> frame_mu_;    // float lanes: mu - mu_c, rounded (prepare_float_frame)
    std::vector<T> frame_low_;   // float lanes: the rounding remainders / T', minus their max
    std::vector<double> row_max_;  // scaled form: m_i = s p_i
    double frame_base_ = 0.0;    // float lanes: x_max = s d* + frame_base_
    int n_threads_;
    ColumnSums accumulators_;  // per-thread charges N_y of a fused pass
    bool uniform_weights_;
    SinkhornErrorNorm error_norm_;
    InterruptPoll poll_;
    SinkhornStatus status_ = SinkhornStatus::kOk;
    std::int64_t bad_index_ = -1;
};

}  // namespace
}  // namespace detail

template <class In>
SinkhornReport sinkhorn(const MatrixView<In>& energy, const Real<In>* weights, const Real<In>* targets,
                        const Real<In>* mu0, const SinkhornOptions& options, Real<In>* f, Real<In>* mu, Real<In>* q,
                        double* charges) {
    using T = Real<In>;  // the compute type: float for the half types
    SinkhornReport report;
    detail::SinkhornSolver<T, In> solver(energy, weights, targets, options);
    const bool fixed = options.fixed_iterations > 0;
    const std::int64_t limit = fixed ? options.fixed_iterations : options.max_iterations;
    // In fixed mode the last pass is known in advance and writes q itself.
    const auto q_for_pass = [&](std::int64_t iteration) { return fixed && iteration == limit ? q : nullptr; };

    auto fail = [&]() {
        report.status = solver.status();
        report.index = solver.bad_index();
        return report;
    };

    // float data, fixed iterations with q: the scaled form (build_kernel / scaled_pass) reads E
    // once, keeps K = exp(x - row max) in q and makes every pass from it without exp; any pass it
    // cannot take falls back to the log-domain passes from E for the rest of the run.
    bool scaled = false;
    if (mu0 != nullptr)
        for (std::int64_t y = 0; y < energy.cols; ++y) solver.mu()[y] = static_cast<double>(mu0[y]);
    if (fixed && q != nullptr && (mu0 != nullptr || options.row_scaling0 == nullptr))
        scaled = solver.build_kernel(q, mu0 == nullptr);
    const auto pass = [&](std::int64_t it) {
        if (scaled) {
            if (solver.scaled_pass(q, it == limit)) return true;
            scaled = false;
        }
        return solver.fused_pass(q_for_pass(it));
    };

    // Interrupted inside a pass: the pass returns false with the poll stopped.
    auto fail_or_interrupt = [&]() {
        if (solver.poll().stopped()) solver.interrupt();
        return fail();
    };

    std::int64_t iteration = 0;
    if (mu0 != nullptr) {
        // Warm start: the state of the given mu (its f-update) is iteration 0.
        if (!pass(0)) return fail_or_interrupt();
    } else {
        // Cold start: f constant (or the given row log-scalings), so the first mu-update is an
        // exact column pass (done by build_kernel in the scaled form).
        if (!scaled && !solver.exact_column_update(false, options.row_scaling0)) return fail_or_interrupt();
        iteration = 1;
        if (!pass(1)) return fail_or_interrupt();
    }
    // The stopping rule (SinkhornOptions): tested after iterations 1, 1 + m, 1 + 2m, ...
    const std::int64_t interval = std::max<std::int64_t>(1, options.check_interval);
    const auto passes = [&](double e) { return options.strict_tolerance ? e < options.tolerance : e <= options.tolerance; };
    const auto test = [&](std::int64_t t, double e) {
        if (fixed || (t - 1) % interval != 0) return false;
        if (options.error_history != nullptr) options.error_history->push_back(e);
        return passes(e);
    };
    double err = solver.charge_error();
    bool stop = test(iteration, err);
    SinkhornRelaxation relaxation(options.relaxation, fixed);
    while (iteration < limit && !stop) {
        if (solver.poll().check()) {
            solver.interrupt();
            return fail();
        }
        if (!solver.update_potentials(relaxation.omega())) return fail_or_interrupt();
        ++iteration;
        if (!pass(iteration)) return fail_or_interrupt();
        err = solver.charge_error();
        relaxation.observe(err);
        stop = test(iteration, err);
    }
    // The returned state. The gauge shift mu -= a, f += a is exact in real arithmetic but rounds
    // at the scale of max(|mu|, |a|): when that rounding could move the charges by more than
    // 1% of the tolerance (|mu|/T' beyond ~1e11 at tol 1e-6), the charges and err are
    // recomputed from the state actually returned, so `converged` never reports a state that
    // is not the one given back.
    const double before = solver.mu_magnitude();
    const double shift = options.fix_gauge ? solver.fix_gauge() : 0.0;
    const double rounding = 8.0 * std::numeric_limits<double>::epsilon() * (before + std::fabs(shift) / options.temperature);
    const bool q_written = fixed && iteration == limit && iteration > 0;
    if (q != nullptr && !q_written) {
        // Tolerance mode (or a warm start asked for 0 iterations): q is the GGE at the final mu,
        // by one fused pass that also gives the f and the charges of that q.
        if (!solver.fused_pass(q)) return fail_or_interrupt();
        err = solver.charge_error();
    } else if (q == nullptr && !fixed && rounding > 0.01 * options.tolerance) {
        if (!solver.fused_pass(nullptr)) return fail_or_interrupt();
        err = solver.charge_error();
    }
    solver.write_state(f, mu);
    if (charges != nullptr) solver.write_charges(charges);
    report.iterations = iteration;
    report.charge_error = err;
    report.converged = std::isfinite(err) && passes(err);
    return report;
}

template <class T>
SinkhornPassReport sinkhorn_pass(const MatrixView<T>& energy, const double* weights, const double* mu,
                                 double temperature, double energy_sign, double* f, double* charges, Same<T>* q,
                                 const std::function<bool()>& interrupted) {
    SinkhornOptions options;
    options.temperature = temperature;
    options.energy_sign = energy_sign;
    options.interrupted = interrupted;  // polled between row tiles of the pass
    detail::SinkhornSolver<T> solver(energy, nullptr, nullptr, options);
    std::copy(weights, weights + energy.rows, solver.weights().begin());
    std::copy(mu, mu + energy.cols, solver.mu().begin());
    SinkhornPassReport report;
    if (!solver.fused_pass(q)) {
        report.status = solver.status();
        report.index = solver.bad_index();
        return report;
    }
    std::copy(solver.f().begin(), solver.f().end(), f);
    solver.write_charges(charges);
    return report;
}

THERMOSSL_INSTANTIATE_KERNELS(THERMOSSL_SINKHORN_KERNELS)
THERMOSSL_INSTANTIATE_HALF_INPUT_KERNELS(THERMOSSL_SINKHORN_SOLVER_KERNELS)

}  // namespace THERMOSSL_ISA_NS
}  // namespace thermossl

#include "isa_end.hpp"
