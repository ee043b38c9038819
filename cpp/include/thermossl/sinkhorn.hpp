// thermossl — self-label balancing: the GGE of THEORY.md §3 by Sinkhorn–Knopp in the log domain.
//
// Given energies E (N x K), a reservoir temperature T' > 0, sample weights w (sum 1) and charge
// targets c (sum 1), find potentials f (N) and chemical potentials mu (K) such that
//
//     q_iy = exp((f_i + mu_y - E_iy) / T')   has rows summing to 1 and charges N_y = sum_i w_i q_iy = c_y.
//
// Iteration convention (SwAV's published code, POT's sinkhorn_log): start from a constant f (or,
// with a warm start, from the f of the given mu), then each iteration is
//     mu_y <- T' log c_y - T' LSE_i(log w_i + (f_i - E_iy)/T')        (charges exact)
//     f_i  <- -T' LSE_y((mu_y - E_iy)/T')                             (rows exact)
// so the returned q is row-stochastic to rounding and the charges carry the residual
// err = sum_y |N_y - c_y|.
//
// Passes over E: one fused pass per iteration. The pass computes the f-update of row i and, from
// the exponentials it already holds, that row's contribution w_i q_iy to the charges N_y; the
// next mu-update is then mu_y += T' (log c_y - log N_y), which equals the LSE form above exactly
// in real arithmetic and costs no second pass. The same charges give err for the convergence
// test. A cold start adds one column log-sum-exp pass; a column whose charge underflows to 0
// (all its weights below ~1e-308, seen only at extreme E/T') takes that exact column pass in its
// iteration instead. With `q` requested, a fixed-iteration run writes it in its last pass; a
// run to tolerance writes it in one extra fused pass at the final (gauged) mu, whose charges give
// the returned err: err and converged always describe the state given back.
// float32 data: the passes run in float lanes (8 per AVX2 register) for every row where the
// rounding of E - mu in float stays below T'/16 (|E - mu|/T' <= 2^20; other rows, e.g. |E/T'| ~
// 1e9, take the double-lane path): mu is centred and split
// into a float part and a remainder, E - mu' is formed with its exact rounding error (TwoSum)
// and the row max is subtracted before the scale, so dominant codes keep ~2^-24 |x - max|
// relative accuracy; the charges are summed in float over groups of 8 rows, then in double.
// A fixed-iteration run that writes q takes the scaled form instead: one read of E computes
// K_iy = exp((E_i* - E_iy)/T') (E_i* the row min; double argument, rounded once) into q's
// storage together with the cold-start column sums, and every iteration is then a pass over K
// with two multiply-adds per element and no exp (q = K b / s, b_y = exp(mu_y/T' - max mu/T'));
// it is taken while the spreads of the row maxima and of mu/T' stay <= 40 (no underflow of a
// row sum), else the run continues with the log-domain passes from E.
// Memory: O((threads + 1) * K + N) besides the optional q; E is never copied (strided inputs are
// read tile by tile).
//
// Gauge: mu is defined up to a constant that f absorbs; the returned mu satisfies
// sum_y c_y mu_y = 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "thermossl/view.hpp"

namespace thermossl {

enum class SinkhornErrorNorm : int {
    kL1 = 0,  // sum_y |N_y - c_y|
    kL2 = 1,  // sqrt(sum_y (N_y - c_y)^2)
};

struct SinkhornOptions {
    double temperature = 1.0;         // T' > 0
    // The sign of the energies in the matrix given: +1, it holds E; -1, it holds scores s and the
    // energies are E = -s (SwAV's and SeLa's codes of prototype scores), read with the signed
    // scale x = (mu + s)/T' so no negated copy of the scores is made. f, mu, q and the statuses
    // are those of E either way (a score of +inf is an E = -inf: kInfiniteScore).
    double energy_sign = 1.0;
    std::int64_t fixed_iterations = 0;  // > 0: exactly this many iterations (SwAV); 0: run to tolerance
    double tolerance = 1e-6;          // stop when sum_y |N_y - c_y| <= tolerance (tolerance mode)
    std::int64_t max_iterations = 1000;  // tolerance mode: give up after this many
    // Over-relaxation of the mu-update, mu += omega T' (log c - log N): 1 is plain Sinkhorn,
    // (1, 2) over-relaxed; <= 0 (tolerance mode) picks omega from the observed convergence rate.
    double relaxation = 1.0;

    // Stopping rule of the tolerance mode. The error of the state left by iteration t is tested
    // after t = 1, 1 + m, 1 + 2m, ... (m = check_interval; POT's sinkhorn_log tests every 10th)
    // and after the last iteration; the run stops at the first test that passes. The error is
    // the L1 norm sum_y |N_y - c_y| (default) or the L2 norm (POT); it passes when
    // err <= tolerance, or err < tolerance with strict_tolerance (POT: stopThr = 0 never stops).
    std::int64_t check_interval = 1;
    SinkhornErrorNorm error_norm = SinkhornErrorNorm::kL1;
    bool strict_tolerance = false;
    // Cold start from row log-scalings u (N, may be -inf; null: u_i = log w_i, thermossl's
    // constant f): the first mu-update is mu_y = T' (log c_y - LSE_i(u_i - E_iy/T')). POT's
    // zero start is u = 0, its warm start (u, v) this u. Ignored with a warm-start mu0.
    const double* row_scaling0 = nullptr;
    // false: mu and f as the last updates left them (POT's log_v = mu/T', log_u = log w + f/T');
    // true: the gauge sum_y c_y mu_y = 0.
    bool fix_gauge = true;
    // When set, the error of every test is appended (POT's log["err"]).
    std::vector<double>* error_history = nullptr;
    // Cancellation: when set, polled by the calling thread about every poll_seconds (between
    // passes and between row tiles inside a pass); returning true stops the solver at once with
    // status kInterrupted (outputs unspecified). The Python binding takes the GIL there and runs
    // PyErr_CheckSignals, so Ctrl-C raises KeyboardInterrupt within milliseconds.
    std::function<bool()> interrupted;
    double poll_seconds = 0.005;
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
/// to omega = 1 for good (plain Sinkhorn converges globally). Plain host code (no SIMD): the
/// CPU solver, the sharded solver (thermossl.distributed, through the binding) and any other
/// host loop make the same choices from the same errors.
class SinkhornRelaxation {
public:
    SinkhornRelaxation(double requested, bool fixed_iterations)
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

enum class SinkhornStatus : int {
    kOk = 0,
    kNanEnergy = 1,        // E holds a nan (index: its row)
    kRowForbidden = 2,     // every state of a row is forbidden, E = +inf (index: the row)
    kInfiniteScore = 3,    // E = -inf, or E/T' overflows (index: the row)
    kColumnForbidden = 4,  // a state is forbidden for every sample but has c_y > 0 (index: the column)
    kInterrupted = 5,      // options.interrupted returned true (outputs unspecified)
};

struct SinkhornReport {
    std::int64_t iterations = 0;  // iterations done (mu-update + f-update pairs)
    double charge_error = 0.0;    // the error (options.error_norm) of the returned state
    bool converged = false;       // charge_error passes the tolerance test
    SinkhornStatus status = SinkhornStatus::kOk;
    std::int64_t index = -1;      // the offending row or column when status != kOk
};

/// Log-domain Sinkhorn balancing (see the header comment). `weights` (N) and `targets` (K, the
/// charge targets c) may be null for uniform 1/N and 1/K; `mu0` (K) may be null for a cold
/// start. Outputs: f (N), mu (K); q (N x K, C-contiguous) and the charges N_y of the returned
/// state (K, from the last pass: no extra work) when not null. On a status other than kOk the
/// outputs are unspecified. T may also be bfloat16 or float16 (thermossl/half.hpp): E is read as
/// such (each tile converted to float as it is packed, no converted copy), the solver computes
/// in float exactly as on a float32 matrix holding the same values, and the vectors and q are
/// float (Real<T>).
template <class T>
SinkhornReport sinkhorn(const MatrixView<T>& energy, const Real<T>* weights, const Real<T>* targets,
                        const Real<T>* mu0, const SinkhornOptions& options, Real<T>* f, Real<T>* mu, Real<T>* q,
                        double* charges = nullptr);

/// Outcome of sinkhorn_pass: kOk, or the first bad row (kNanEnergy, kRowForbidden, kInfiniteScore).
struct SinkhornPassReport {
    SinkhornStatus status = SinkhornStatus::kOk;
    std::int64_t index = -1;
};

/// One fused pass over E at the given mu (K) — the pass each iteration of `sinkhorn` makes, exposed
/// for sharded solvers (python/thermossl/distributed.py): for every row the f-update
///     f_i = -T' LSE_y((mu_y - E_iy)/T')
/// and, from the same exponentials, the row's charge contribution, summed over the rows:
///     charges_y = sum_i weights_i q_iy,  q_iy = exp((f_i + mu_y - E_iy)/T').
/// weights (N, any positive values: a shard passes its slice of the global weights) are
/// required; f (N) and charges (K) are written; q (N x K, C-contiguous) too when not null. The
/// next mu-update is mu_y += T' (log c_y - log N_y) with N the charges summed over shards.
/// float data runs in float lanes as in `sinkhorn`. `interrupted`, when set, is polled by the
/// calling thread between row tiles (as SinkhornOptions::interrupted, every few ms): once it
/// returns true the pass stops with kInterrupted. On a status other than kOk the outputs are
/// unspecified. energy_sign (+-1) as SinkhornOptions::energy_sign: -1 reads the matrix given as
/// scores s with the energies E = -s (a signed scale, no negated copy).
template <class T>
SinkhornPassReport sinkhorn_pass(const MatrixView<T>& energy, const double* weights, const double* mu,
                                 double temperature, double energy_sign, double* f, double* charges, Same<T>* q,
                                 const std::function<bool()>& interrupted = {});

}  // namespace thermossl
