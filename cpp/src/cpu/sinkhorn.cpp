// CPU implementation of sinkhorn.hpp: the fused log-domain Sinkhorn iteration.
#include "isa_begin.hpp"
#include "kernels.hpp"
#include "row_primitives.hpp"

namespace thermossl {
namespace THERMOSSL_ISA_NS {
namespace detail {
namespace {

template <class T>
class SinkhornSolver {
public:
    SinkhornSolver(const MatrixView<T>& energy, const T* weights, const T* charges, const SinkhornOptions& options)
        : energy_(energy),
          n_(energy.rows),
          k_(energy.cols),
          temperature_(options.temperature),
          scale_(-1.0 / options.temperature),
          weight_(static_cast<std::size_t>(n_)),
          log_charge_target_(static_cast<std::size_t>(k_)),
          charge_target_(static_cast<std::size_t>(k_)),
          f_(static_cast<std::size_t>(n_), 0.0),
          mu_(static_cast<std::size_t>(k_), 0.0),
          charges_(static_cast<std::size_t>(k_), 0.0),
          shift_(static_cast<std::size_t>(k_)),
          n_threads_(pass_threads(n_ * k_, (n_ + tile_rows<T>(k_) - 1) / tile_rows<T>(k_))),
          accumulators_(n_threads_, k_) {
        for (std::int64_t i = 0; i < n_; ++i)
            weight_[i] = weights != nullptr ? static_cast<double>(weights[i]) : 1.0 / static_cast<double>(n_);
        for (std::int64_t y = 0; y < k_; ++y) {
            charge_target_[y] = charges != nullptr ? static_cast<double>(charges[y]) : 1.0 / static_cast<double>(k_);
            log_charge_target_[y] = std::log(charge_target_[y]);
        }
    }

    std::vector<double>& mu() { return mu_; }
    const std::vector<double>& f() const { return f_; }
    SinkhornStatus status() const { return status_; }
    std::int64_t bad_index() const { return bad_index_; }

    /// sum_y |N_y - c_y| of the state left by the last fused pass.
    double charge_error() const {
        double err = 0.0;
        for (std::int64_t y = 0; y < k_; ++y) err += std::fabs(charges_[y] - charge_target_[y]);
        return err;
    }

    /// One read of E. For every row: f_i <- -T' LSE_y((mu_y - E_iy)/T') and its charge
    /// contribution w_i q_iy = w_i e_iy / s_i (e_iy = exp(x_iy - max), s_i = sum_y e_iy) added to
    /// per-thread column accumulators, merged at the end into N_y. Writes q when `q` is set.
    bool fused_pass(T* q) {
        for (std::int64_t y = 0; y < k_; ++y) shift_[y] = mu_[y] / temperature_;
        accumulators_.clear();
        std::vector<std::int64_t> first_bad(static_cast<std::size_t>(n_threads_), n_);
        std::vector<SinkhornStatus> bad_status(static_cast<std::size_t>(n_threads_), SinkhornStatus::kOk);
        const std::int64_t tile = tile_rows<T>(k_);
        const std::int64_t n_tiles = (n_ + tile - 1) / tile;
        const std::int64_t k = k_;

#pragma omp parallel num_threads(n_threads_) if (n_threads_ > 1)
        {
            const int thread = thread_index();
            const Exponent ex{scale_, shift_.data()};
            const double temperature = temperature_;
            double* acc = accumulators_.of_thread(thread);
            RowReader<T> reader(energy_);
            std::vector<T> scratch(q == nullptr ? static_cast<std::size_t>(k) : 0);
#pragma omp for schedule(static)
            for (std::int64_t t = 0; t < n_tiles; ++t) {
                const std::int64_t i0 = t * tile;
                const std::int64_t i1 = std::min(n_, i0 + tile);
                reader.load(i0, i1);
                for (std::int64_t i = i0; i < i1; ++i) {
                    const T* row = reader.row(i);
                    T* e_row = q != nullptr ? q + i * k : scratch.data();
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
            }
        }

        for (int t = 0; t < n_threads_; ++t) {
            if (first_bad[t] < n_ && first_bad[t] < (bad_index_ < 0 ? n_ : bad_index_)) {
                bad_index_ = first_bad[t];
                status_ = bad_status[t];
            }
        }
        if (status_ != SinkhornStatus::kOk) return false;
        accumulators_.merge_into(charges_.data());
        return true;
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
    bool exact_column_update(bool use_f) {
        std::vector<double> row_shift(static_cast<std::size_t>(n_));
        for (std::int64_t i = 0; i < n_; ++i)
            row_shift[i] = std::log(weight_[i]) + (use_f ? f_[i] / temperature_ : 0.0);
        std::vector<T> lse(static_cast<std::size_t>(k_));
        THERMOSSL_ISA_NS::col_logsumexp<T>(energy_, scale_, row_shift.data(), lse.data());
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

    /// Gauge sum_y c_y mu_y = 0 (f absorbs the constant, q is unchanged).
    void fix_gauge() {
        double a = 0.0;
        for (std::int64_t y = 0; y < k_; ++y) a += charge_target_[y] * mu_[y];
        for (auto& v : mu_) v -= a;
        for (auto& v : f_) v += a;
    }

    void write_state(T* f, T* mu) const {
        for (std::int64_t i = 0; i < n_; ++i) f[i] = static_cast<T>(f_[i]);
        for (std::int64_t y = 0; y < k_; ++y) mu[y] = static_cast<T>(mu_[y]);
    }

    void write_charges(double* out) const { std::copy(charges_.begin(), charges_.end(), out); }

    double scale() const { return scale_; }

private:
    MatrixView<T> energy_;
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
    int n_threads_;
    ColumnSums accumulators_;  // per-thread charges N_y of a fused pass
    SinkhornStatus status_ = SinkhornStatus::kOk;
    std::int64_t bad_index_ = -1;
};

/// The over-relaxation factor omega of the mu-update. A fixed omega > 0 as given; omega <= 0
/// (tolerance mode only) chooses it: plain Sinkhorn iterations (omega = 1) until the charge
/// error contracts at a steady linear rate lambda, then omega = 2 / (2 - lambda), capped at 1.9.
/// Why that value: near the solution the mu-update is a Richardson step on N(mu) = c whose
/// linearisation has eigenvalues sigma in [1 - lambda, 1]; a step omega contracts each mode by
/// |1 - omega sigma|, minimised over the range at omega = 2 / (sigma_min + sigma_max). The slow
/// mode then contracts by about 1 - 2 (1 - lambda): at most ~2x fewer iterations (a larger
/// gain needs relaxing the f-update too, which would break the row-stochastic q of every
/// iteration). Safeguard: if the error rises above twice its value when omega was set, go back
/// to omega = 1 for good (plain Sinkhorn converges globally).
class Relaxation {
public:
    Relaxation(double requested, bool fixed_iterations)
        : adaptive_(requested <= 0.0 && !fixed_iterations), omega_(requested > 0.0 ? requested : 1.0) {}

    double omega() const { return omega_; }

    void observe(double err) {
        if (!adaptive_ || !(err > 0.0) || !std::isfinite(err)) return;
        if (omega_ != 1.0) {
            if (err > 2.0 * err_at_switch_) {
                omega_ = 1.0;
                adaptive_ = false;
            }
            return;
        }
        history_[count_ % kWindow] = err;
        ++count_;
        if (count_ <= kWindow) return;
        // Mean contraction per iteration over the window, and the last step's: steady if close.
        const double oldest = history_[count_ % kWindow];  // the error kWindow - 1 iterations ago
        const double previous = history_[(count_ - 2) % kWindow];
        const double rate = std::pow(err / oldest, 1.0 / (kWindow - 1));
        const double last = err / previous;
        if (rate > 0.5 && rate < 1.0 && std::fabs(last - rate) < 0.05 * (1.0 - rate) + 1e-3) {
            omega_ = std::min(1.9, 2.0 / (2.0 - rate));
            err_at_switch_ = err;
        }
    }

private:
    static constexpr int kWindow = 5;
    bool adaptive_;
    double omega_;
    double history_[kWindow] = {0.0, 0.0, 0.0, 0.0, 0.0};
    std::int64_t count_ = 0;
    double err_at_switch_ = 0.0;
};

}  // namespace
}  // namespace detail

template <class T>
SinkhornReport sinkhorn(const MatrixView<T>& energy, const Same<T>* weights, const Same<T>* targets,
                        const Same<T>* mu0, const SinkhornOptions& options, Same<T>* f, Same<T>* mu, Same<T>* q,
                        double* charges) {
    SinkhornReport report;
    detail::SinkhornSolver<T> solver(energy, weights, targets, options);
    const bool fixed = options.fixed_iterations > 0;
    const std::int64_t limit = fixed ? options.fixed_iterations : options.max_iterations;
    // In fixed mode the last pass is known in advance and writes q itself.
    const auto q_for_pass = [&](std::int64_t iteration) { return fixed && iteration == limit ? q : nullptr; };

    auto fail = [&]() {
        report.status = solver.status();
        report.index = solver.bad_index();
        return report;
    };

    std::int64_t iteration = 0;
    if (mu0 != nullptr) {
        // Warm start: the state of the given mu (its f-update) is iteration 0.
        for (std::int64_t y = 0; y < energy.cols; ++y) solver.mu()[y] = static_cast<double>(mu0[y]);
        if (!solver.fused_pass(q_for_pass(0))) return fail();
    } else {
        // Cold start: f constant, so the first mu-update is an exact column pass.
        if (!solver.exact_column_update(false)) return fail();
        iteration = 1;
        if (!solver.fused_pass(q_for_pass(1))) return fail();
    }
    double err = solver.charge_error();
    detail::Relaxation relaxation(options.relaxation, fixed);
    while (iteration < limit && (fixed || !(err <= options.tolerance))) {
        if (!solver.update_potentials(relaxation.omega())) return fail();
        ++iteration;
        if (!solver.fused_pass(q_for_pass(iteration))) return fail();
        err = solver.charge_error();
        relaxation.observe(err);
    }
    solver.fix_gauge();
    solver.write_state(f, mu);
    if (charges != nullptr) solver.write_charges(charges);
    if (q != nullptr && !(fixed && iteration == limit && iteration > 0)) {
        // Tolerance mode (or a warm start asked for 0 iterations): q is the GGE at the final mu.
        std::vector<double> shift(static_cast<std::size_t>(energy.cols));
        for (std::int64_t y = 0; y < energy.cols; ++y) shift[y] = solver.mu()[y] / options.temperature;
        THERMOSSL_ISA_NS::row_softmax<T>(energy, solver.scale(), shift.data(), q, nullptr);
    }
    report.iterations = iteration;
    report.charge_error = err;
    report.converged = err <= options.tolerance;
    return report;
}

template SinkhornReport sinkhorn<float>(const MatrixView<float>&, const float*, const float*, const float*,
                                        const SinkhornOptions&, float*, float*, float*, double*);
template SinkhornReport sinkhorn<double>(const MatrixView<double>&, const double*, const double*, const double*,
                                         const SinkhornOptions&, double*, double*, double*, double*);

}  // namespace THERMOSSL_ISA_NS
}  // namespace thermossl

#include "isa_end.hpp"
