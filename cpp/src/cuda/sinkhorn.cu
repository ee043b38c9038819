// CUDA implementation of sinkhorn (cuda.hpp): the loop of cpp/src/cpu/sinkhorn.cpp with every
// step on the device. Per iteration, on the caller's stream:
//   update   (1 block)  mu_y += T' (log c_y - log N_y); a charge below the smallest normal
//                        double asks for the exact column update instead (need_exact);
//   col_max, col_sum, col_update   exact column log-sum-exp, run only when need_exact is set
//                        (otherwise the kernels return at once: no read of E);
//   fused    (grid)      one read of E: f_i <- -T' LSE_y((mu_y - E_iy)/T'), the charges
//                        N_y += w_i q_iy (per-thread column accumulators in registers, one double
//                        atomic per block and column), q on the last pass of a fixed run;
//   error    (1 block)   err = sum_y |N_y - c_y|; in tolerance mode `done` once err <= tol.
// Every kernel returns at once when the solver is `done` or stopped by an error, so the state
// is frozen at the first converged iteration whatever the host's check interval. The host
// reads the small state back only every `check_every` iterations (tolerance mode) and at the end.
#include <chrono>
#include <climits>
#include <vector>

#include "common.cuh"
#include "thermossl/cuda.hpp"

namespace thermossl::cuda {
namespace detail {
namespace {

struct State {
    double err;
    double gauge;
    unsigned long long bad_row;  // min over bad rows of row * 4 + status; ULLONG_MAX when none
    int col_status;              // SinkhornStatus of a failed column update, 0 if none
    int col_index;
    int done;
    int stop;
    int need_exact;
    int iterations;
};

/// Device workspace, in doubles after the State.
struct Workspace {
    State* state;
    double* f;        // n
    double* mu;       // k
    double* shift;    // k: mu / T'
    double* charges;  // k
    double* col_max;  // k
    double* col_sum;  // k
    double* target;   // k: c
    double* log_target;  // k: log c
};

std::size_t state_doubles() { return (sizeof(State) + sizeof(double) - 1) / sizeof(double); }

Workspace carve(void* base, std::int64_t n, std::int64_t k) {
    Workspace w;
    auto* d = static_cast<double*>(base);
    w.state = reinterpret_cast<State*>(d);
    d += state_doubles();
    w.f = d;
    d += n;
    w.mu = d;
    d += k;
    w.shift = d;
    d += k;
    w.charges = d;
    d += k;
    w.col_max = d;
    d += k;
    w.col_sum = d;
    d += k;
    w.target = d;
    d += k;
    w.log_target = d;
    return w;
}

__device__ __forceinline__ bool halted(const State* s) { return s->done != 0 || s->stop != 0; }

__device__ __forceinline__ void atomic_max_double(double* address, double value) {
    auto* bits = reinterpret_cast<unsigned long long*>(address);
    unsigned long long old = *bits;
    while (value > __longlong_as_double(static_cast<long long>(old))) {
        const unsigned long long assumed = old;
        old = atomicCAS(bits, assumed, static_cast<unsigned long long>(__double_as_longlong(value)));
        if (old == assumed) break;
    }
}

template <class T>
__global__ void init_kernel(Workspace w, std::int64_t k, const T* targets, const T* mu0, double temperature,
                            int first_iteration) {
    for (std::int64_t y = threadIdx.x; y < k; y += blockDim.x) {
        const double c = targets != nullptr ? static_cast<double>(targets[y]) : 1.0 / static_cast<double>(k);
        w.target[y] = c;
        w.log_target[y] = log(c);
        w.mu[y] = mu0 != nullptr ? static_cast<double>(mu0[y]) : 0.0;
        w.shift[y] = w.mu[y] / temperature;
        w.charges[y] = 0.0;
        w.col_max[y] = -inf();
        w.col_sum[y] = 0.0;
    }
    if (threadIdx.x == 0) {
        State* s = w.state;
        s->err = 0.0;
        s->gauge = 0.0;
        s->bad_row = ULLONG_MAX;
        s->col_status = 0;
        s->col_index = -1;
        s->done = 0;
        s->stop = 0;
        s->need_exact = mu0 == nullptr ? 1 : 0;  // cold start: the first mu-update is a column pass
        s->iterations = first_iteration;
    }
}

/// Column log-sum-exp of x_iy = scale E_iy + log w_i + f_i / T' (f = 0 on a cold start), pass 1:
/// the column maxima. Runs only when need_exact is set.
template <class T>
__global__ void __launch_bounds__(kThreads) col_max_kernel(MatrixView<T> e, double scale, const T* weights,
                                                           Workspace w, bool use_f, double temperature) {
    if (halted(w.state) || !w.state->need_exact) return;
    double m[kItems];
#pragma unroll
    for (int t = 0; t < kItems; ++t) m[t] = -inf();
    const double uniform = -log(static_cast<double>(e.rows));
    Row<T> r;
    for (std::int64_t i = blockIdx.x; i < e.rows; i += gridDim.x) {
        r.load(e, i);
        const double sh = (weights != nullptr ? log(static_cast<double>(weights[i])) : uniform) +
                          (use_f ? w.f[i] / temperature : 0.0);
        each(r, [&](std::int64_t j, int t, T v) {
            const double x = scale * static_cast<double>(v) + sh;
            if (t >= 0) {
                m[t] = x > m[t] ? x : m[t];
            } else {
                atomic_max_double(w.col_max + j, x);
            }
        });
    }
    if (e.cols <= kCachedCols) {
#pragma unroll
        for (int t = 0; t < kItems; ++t) {
            const std::int64_t j = threadIdx.x + static_cast<std::int64_t>(t) * blockDim.x;
            if (j < e.cols) atomic_max_double(w.col_max + j, m[t]);
        }
    }
}

/// Pass 2: col_sum_y = sum_i exp(x_iy - col_max_y) (1 where x >= max, as on the CPU).
template <class T>
__global__ void __launch_bounds__(kThreads) col_sum_kernel(MatrixView<T> e, double scale, const T* weights,
                                                           Workspace w, bool use_f, double temperature) {
    if (halted(w.state) || !w.state->need_exact) return;
    double s[kItems];
#pragma unroll
    for (int t = 0; t < kItems; ++t) s[t] = 0.0;
    const double uniform = -log(static_cast<double>(e.rows));
    Row<T> r;
    for (std::int64_t i = blockIdx.x; i < e.rows; i += gridDim.x) {
        r.load(e, i);
        const double sh = (weights != nullptr ? log(static_cast<double>(weights[i])) : uniform) +
                          (use_f ? w.f[i] / temperature : 0.0);
        each(r, [&](std::int64_t j, int t, T v) {
            const double x = scale * static_cast<double>(v) + sh;
            const double m = w.col_max[j];
            const double term = static_cast<double>(x >= m ? T(1) : exp_np(static_cast<T>(x - m)));
            if (t >= 0) {
                s[t] += term;
            } else {
                atomicAdd(w.col_sum + j, term);
            }
        });
    }
    if (e.cols <= kCachedCols) {
#pragma unroll
        for (int t = 0; t < kItems; ++t) {
            const std::int64_t j = threadIdx.x + static_cast<std::int64_t>(t) * blockDim.x;
            if (j < e.cols) atomicAdd(w.col_sum + j, s[t]);
        }
    }
}

/// mu_y <- T' log c_y - T' lse_y (lse rounded to T, as the CPU's col_logsumexp output). A column
/// that is not finite stops the solver the CPU's way: mu = 0, and the next fused pass names a
/// bad row if there is one; otherwise the column is reported.
template <class T>
__global__ void col_update_kernel(Workspace w, std::int64_t k, double temperature) {
    if (halted(w.state) || !w.state->need_exact) return;
    int finite = 1;
    for (std::int64_t y = threadIdx.x; y < k; y += blockDim.x) {
        const T lse = static_cast<T>(w.col_max[y] + log(w.col_sum[y]));
        finite &= isfinite(lse) ? 1 : 0;
    }
    finite = __syncthreads_and(finite);
    for (std::int64_t y = threadIdx.x; y < k; y += blockDim.x) {
        const T lse = static_cast<T>(w.col_max[y] + log(w.col_sum[y]));
        w.mu[y] = finite ? temperature * (w.log_target[y] - static_cast<double>(lse)) : 0.0;
        w.shift[y] = w.mu[y] / temperature;
        w.charges[y] = 0.0;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        State* s = w.state;
        s->need_exact = 0;
        if (!finite) {
            s->col_status = static_cast<int>(SinkhornStatus::kInfiniteScore);  // E/T' overflowed in a column sum
            s->col_index = -1;
            for (std::int64_t y = 0; y < k; ++y) {
                const T lse = static_cast<T>(w.col_max[y] + log(w.col_sum[y]));
                if (lse == static_cast<T>(-inf())) {
                    s->col_status = static_cast<int>(SinkhornStatus::kColumnForbidden);
                    s->col_index = static_cast<int>(y);
                    break;
                }
            }
        }
    }
}

/// The mu-update from the charges of the last fused pass (one block), or a request for the exact
/// column update when a charge underflowed.
__global__ void update_kernel(Workspace w, std::int64_t k, double temperature) {
    if (halted(w.state)) return;
    int underflow = 0;
    for (std::int64_t y = threadIdx.x; y < k; y += blockDim.x) underflow |= !(w.charges[y] >= DBL_MIN) ? 1 : 0;
    underflow = __syncthreads_or(underflow);
    for (std::int64_t y = threadIdx.x; y < k; y += blockDim.x) {
        if (underflow) {
            w.col_max[y] = -inf();
            w.col_sum[y] = 0.0;
        } else {
            w.mu[y] += temperature * (w.log_target[y] - log(w.charges[y]));
            w.shift[y] = w.mu[y] / temperature;
        }
        w.charges[y] = 0.0;
    }
    if (threadIdx.x == 0) {
        w.state->need_exact = underflow;
        w.state->iterations += 1;
    }
}

/// One read of E: f-update, charges, and q when asked (see the file comment).
template <class T>
__global__ void __launch_bounds__(kThreads) fused_kernel(MatrixView<T> e, double scale, const T* weights,
                                                         Workspace w, double temperature, T* q) {
    if (halted(w.state)) return;
    __shared__ double scratch[32 * 8];
    double acc[kItems];
#pragma unroll
    for (int t = 0; t < kItems; ++t) acc[t] = 0.0;
    const double uniform = 1.0 / static_cast<double>(e.rows);
    const double* shift = w.shift;
    Row<T> r;
    for (std::int64_t i = blockIdx.x; i < e.rows; i += gridDim.x) {
        r.load(e, i);
        double m = -inf();
        each(r, [&](std::int64_t j, int, T v) {
            const double x = exponent(scale, shift, j, static_cast<double>(v));
            m = x > m ? x : m;
        });
        m = block_max(m, scratch);
        double s[1] = {0.0};
        each(r, [&](std::int64_t j, int, T v) {
            const double x = exponent(scale, shift, j, static_cast<double>(v));
            s[0] += static_cast<double>(x >= m ? T(1) : exp_np(static_cast<T>(x - m)));
        });
        block_sum(s, scratch);
        const double sum = s[0];
        if (!isfinite(m) || !isfinite(sum)) {
            if (threadIdx.x == 0) {
                const auto status = isnan(sum) ? SinkhornStatus::kNanEnergy
                                    : m > 0.0  ? SinkhornStatus::kInfiniteScore
                                               : SinkhornStatus::kRowForbidden;
                atomicMin(&w.state->bad_row,
                          static_cast<unsigned long long>(i) * 4ull + static_cast<unsigned long long>(status));
            }
            continue;
        }
        if (threadIdx.x == 0) w.f[i] = -temperature * (m + log(sum));
        const double ratio = (weights != nullptr ? static_cast<double>(weights[i]) : uniform) / sum;
        const T inv_s = static_cast<T>(1.0 / sum);
        T* q_row = q != nullptr ? q + i * e.cols : nullptr;
        each(r, [&](std::int64_t j, int t, T v) {
            const double x = exponent(scale, shift, j, static_cast<double>(v));
            const T ej = x >= m ? T(1) : exp_np(static_cast<T>(x - m));
            if (t >= 0) {
                acc[t] += ratio * static_cast<double>(ej);
            } else {
                atomicAdd(w.charges + j, ratio * static_cast<double>(ej));
            }
            if (q_row != nullptr) q_row[j] = ej * inv_s;
        });
    }
    if (e.cols <= kCachedCols) {
#pragma unroll
        for (int t = 0; t < kItems; ++t) {
            const std::int64_t j = threadIdx.x + static_cast<std::int64_t>(t) * blockDim.x;
            if (j < e.cols) atomicAdd(w.charges + j, acc[t]);
        }
    }
}

/// err = sum_y |N_y - c_y|; done once err <= tol (tolerance mode); stop on an error.
__global__ void error_kernel(Workspace w, std::int64_t k, double tolerance, bool tolerance_mode) {
    if (halted(w.state)) return;
    __shared__ double scratch[32];
    double v[1] = {0.0};
    for (std::int64_t y = threadIdx.x; y < k; y += blockDim.x) v[0] += fabs(w.charges[y] - w.target[y]);
    block_sum(v, scratch);
    if (threadIdx.x == 0) {
        State* s = w.state;
        s->err = v[0];
        if (s->bad_row != ULLONG_MAX || s->col_status != 0) s->stop = 1;
        if (tolerance_mode && v[0] <= tolerance) s->done = 1;
    }
}

/// Gauge sum_y c_y mu_y = 0; writes mu (T), the charges, and shift = mu / T' for a final softmax.
template <class T>
__global__ void finish_kernel(Workspace w, std::int64_t k, double temperature, T* mu, double* charges) {
    __shared__ double scratch[32];
    double v[1] = {0.0};
    for (std::int64_t y = threadIdx.x; y < k; y += blockDim.x) v[0] += w.target[y] * w.mu[y];
    block_sum(v, scratch);
    const double a = v[0];
    for (std::int64_t y = threadIdx.x; y < k; y += blockDim.x) {
        const double mu_y = w.mu[y] - a;
        mu[y] = static_cast<T>(mu_y);
        w.shift[y] = mu_y / temperature;
        if (charges != nullptr) charges[y] = w.charges[y];
    }
    if (threadIdx.x == 0) w.state->gauge = a;
}

template <class T>
__global__ void write_f_kernel(Workspace w, std::int64_t n, T* f) {
    const double a = w.state->gauge;
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        f[i] = static_cast<T>(w.f[i] + a);
}

}  // namespace
}  // namespace detail

std::size_t sinkhorn_workspace_bytes(std::int64_t n, std::int64_t k) {
    return sizeof(double) * (detail::state_doubles() + static_cast<std::size_t>(n) + 7 * static_cast<std::size_t>(k));
}

template <class T>
SinkhornReport sinkhorn(const MatrixView<T>& energy, const Same<T>* weights, const Same<T>* targets,
                        const Same<T>* mu0, const SinkhornOptions& options, Same<T>* f, Same<T>* mu, Same<T>* q,
                        double* charges, void* workspace, cudaStream_t stream, int check_every) {
    using namespace detail;
    const std::int64_t n = energy.rows, k = energy.cols;
    const double temperature = options.temperature;
    // x = (mu - E)/T' read from the matrix a with E = energy_sign * a: the signed scale makes
    // E = -scores cost no pass.
    const double scale = (options.energy_sign < 0 ? 1.0 : -1.0) / temperature;
    const bool fixed = options.fixed_iterations > 0;
    const std::int64_t limit = fixed ? options.fixed_iterations : options.max_iterations;
    if (check_every < 1) check_every = 1;
    const Workspace w = carve(workspace, n, k);
    const int grid = grid_for_rows(n);
    const int small = kThreads;

    auto column_pass = [&](bool use_f) {
        col_max_kernel<T><<<grid, kThreads, 0, stream>>>(energy, scale, weights, w, use_f, temperature);
        col_sum_kernel<T><<<grid, kThreads, 0, stream>>>(energy, scale, weights, w, use_f, temperature);
        col_update_kernel<T><<<1, small, 0, stream>>>(w, k, temperature);
    };
    auto fused_pass = [&](std::int64_t iteration) {
        T* q_pass = fixed && iteration == limit ? q : nullptr;  // the last pass of a fixed run writes q
        fused_kernel<T><<<grid, kThreads, 0, stream>>>(energy, scale, weights, w, temperature, q_pass);
        error_kernel<<<1, small, 0, stream>>>(w, k, options.tolerance, !fixed);
    };
    State host{};
    auto read_state = [&]() {
        check(cudaMemcpyAsync(&host, w.state, sizeof(State), cudaMemcpyDeviceToHost, stream), "sinkhorn: state");
        check(cudaStreamSynchronize(stream), "sinkhorn");
    };

    std::int64_t iteration = mu0 != nullptr ? 0 : 1;
    init_kernel<T><<<1, small, 0, stream>>>(w, k, targets, mu0, temperature, static_cast<int>(iteration));
    if (mu0 == nullptr) column_pass(false);  // cold start: f constant, exact column update
    fused_pass(iteration);
    std::int64_t since_check = 0;
    // Cancellation (SinkhornOptions::interrupted), polled by the host between launches at most
    // every poll_seconds; on a stop the queued work is drained before returning (the caller
    // frees the workspace).
    using Clock = std::chrono::steady_clock;
    const auto poll_period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.poll_seconds));
    auto last_poll = Clock::now();
    while (iteration < limit) {
        if (options.interrupted && Clock::now() - last_poll >= poll_period) {
            last_poll = Clock::now();
            if (options.interrupted()) {
                check(cudaStreamSynchronize(stream), "sinkhorn");
                SinkhornReport stopped;
                stopped.status = SinkhornStatus::kInterrupted;
                return stopped;
            }
        }
        update_kernel<<<1, small, 0, stream>>>(w, k, temperature);
        column_pass(true);  // returns at once unless a charge underflowed
        ++iteration;
        fused_pass(iteration);
        if (!fixed && ++since_check >= check_every) {
            since_check = 0;
            read_state();
            if (host.done || host.stop) break;
        }
    }
    check(cudaGetLastError(), "sinkhorn: launch");
    read_state();

    SinkhornReport report;
    if (host.bad_row != ULLONG_MAX) {
        report.status = static_cast<SinkhornStatus>(host.bad_row & 3ull);
        report.index = static_cast<std::int64_t>(host.bad_row >> 2);
        return report;
    }
    if (host.col_status != 0) {
        report.status = static_cast<SinkhornStatus>(host.col_status);
        report.index = host.col_index;
        return report;
    }
    finish_kernel<T><<<1, small, 0, stream>>>(w, k, temperature, mu, charges);
    write_f_kernel<T><<<grid, kThreads, 0, stream>>>(w, n, f);
    report.iterations = host.iterations;
    if (q != nullptr && !(fixed && report.iterations == limit && report.iterations > 0)) {
        // Tolerance mode (or a warm start with nothing to do): q is the GGE at the final mu.
        row_softmax<T>(energy, scale, w.shift, q, nullptr, stream);
    }
    check(cudaGetLastError(), "sinkhorn: launch");
    report.charge_error = host.err;
    report.converged = host.err <= options.tolerance;
    return report;
}

template SinkhornReport sinkhorn<float>(const MatrixView<float>&, const float*, const float*, const float*,
                                        const SinkhornOptions&, float*, float*, float*, double*, void*,
                                        cudaStream_t, int);
template SinkhornReport sinkhorn<double>(const MatrixView<double>&, const double*, const double*, const double*,
                                         const SinkhornOptions&, double*, double*, double*, double*, void*,
                                         cudaStream_t, int);

}  // namespace thermossl::cuda
