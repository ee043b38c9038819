// thermossl — Google Benchmark targets for the C++ API (built by bench/CMakeLists.txt when the
// project is configured with -DTHERMOSSL_BENCH=ON).
//
// Data: energies E ~ 3 * N(0, 1), deterministic (mt19937 per block of rows, so the matrix does
// not depend on the thread count), C-contiguous, temperature T = 0.1 (scale = -1/T = -10).
//
// Every benchmark sets bytes_per_second from the bytes its kernel has to move per call: each
// input read once and each output written once (the traffic the headers promise). A store to a
// line not in cache also costs a read of that line (write-allocate), so for kernels that write
// an N x K output the DRAM traffic is higher than the bytes counted here.
//
// Sinkhorn (sinkhorn.hpp) instead reads realistic self-labelling energies: E = -cos(x_i, p_y),
// the negative cosine similarity of random unit embeddings x_i (dim 128) and prototypes p_y
// (3 * N(0, 1) at SwAV's T' = 0.05 would make every row a near one-hot). Its bytes are the passes
// over E the solver makes (one column pass for the cold start, one fused pass per iteration,
// plus in tolerance mode one softmax pass writing q) times the bytes of E, plus q written once;
// a column whose charge underflows takes an extra exact pass that is not counted (it does not
// happen with these energies).
//
// Yardsticks over the same matrices, OpenMP-parallel over rows like the kernels:
//   BM_stream_read        out_i = sum_j a_ij          (one read of a: the read bandwidth)
//   BM_stream_read_write  b_ij = -10 * a_ij           (one read of a, one write of b)
//   BM_stream_read2       out_i = sum_j (a_ij + q_ij) (one read of a and of q: the ledger's bytes)
// Compare a kernel's GB/s with the yardstick of the same size and dtype.
//
// Cycles per element (counter cyc_per_elem): the time per call that GB/s is computed from, times
// the core clock, times the OpenMP thread count, over the rows x cols elements of the matrix
// (core cycles spent per element, summed over the threads; for Sinkhorn, per element of E per
// call, all passes together); cpu_cyc_per_elem takes the process CPU time of the calls instead
// (CLOCK_PROCESS_CPUTIME_ID, all threads), which a loaded machine does not inflate. The core clock is measured at start-up, not read from a table: a
// dependent chain of integer adds (one per cycle on any x86-64 core) is timed 20 times for ~2 ms
// and the fastest run is kept (a run the scheduler interrupted only looks slower). It is printed
// in the context (core_ghz) beside the TSC rate (tsc_ghz, the constant-rate time-stamp counter,
// which is not the core clock when the core boosts or throttles).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "thermossl/gibbs.hpp"
#include "thermossl/logsumexp.hpp"
#include "thermossl/simd.hpp"
#include "thermossl/sinkhorn.hpp"
#include "thermossl/thermo.hpp"

namespace {

using thermossl::MatrixView;

constexpr double kTemperature = 0.1;
constexpr std::uint32_t kEnergySeed = 12345;
constexpr std::uint32_t kLabelSeed = 67890;
constexpr std::int64_t kSeedBlockRows = 64;

constexpr std::uint32_t kEmbeddingSeed = 2468;
constexpr std::uint32_t kPrototypeSeed = 1357;
constexpr std::uint32_t kNoiseSeed = 97531;
constexpr std::int64_t kEmbeddingDim = 128;

enum class Fill { kEnergy, kLabel, kCosine };

// Rows of unit vectors in R^kEmbeddingDim, N(0, 1) directions, deterministic per block of rows.
std::vector<double> unit_vectors(std::int64_t rows, std::uint32_t seed) {
    std::vector<double> v(static_cast<std::size_t>(rows * kEmbeddingDim));
    const std::int64_t n_blocks = (rows + kSeedBlockRows - 1) / kSeedBlockRows;
#pragma omp parallel for schedule(static)
    for (std::int64_t blk = 0; blk < n_blocks; ++blk) {
        std::seed_seq seq{seed, static_cast<std::uint32_t>(blk)};
        std::mt19937 gen(seq);
        std::normal_distribution<double> normal(0.0, 1.0);
        const std::int64_t i1 = std::min(rows, (blk + 1) * kSeedBlockRows);
        for (std::int64_t i = blk * kSeedBlockRows; i < i1; ++i) {
            double* x = v.data() + i * kEmbeddingDim;
            double norm2 = 0.0;
            for (std::int64_t d = 0; d < kEmbeddingDim; ++d) {
                x[d] = normal(gen);
                norm2 += x[d] * x[d];
            }
            const double inv = 1.0 / std::sqrt(norm2);
            for (std::int64_t d = 0; d < kEmbeddingDim; ++d) x[d] *= inv;
        }
    }
    return v;
}

// E_iy = -<x_i, p_y>: SSL energies (negative cosine scores), in [-1, 1], std about 1/sqrt(128).
template <class T>
std::vector<T> make_cosine_energies(std::int64_t rows, std::int64_t cols) {
    const std::vector<double> x = unit_vectors(rows, kEmbeddingSeed);
    const std::vector<double> p = unit_vectors(cols, kPrototypeSeed);
    std::vector<T> m(static_cast<std::size_t>(rows * cols));
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < rows; ++i) {
        const double* xi = x.data() + i * kEmbeddingDim;
        T* row = m.data() + i * cols;
        for (std::int64_t y = 0; y < cols; ++y) {
            const double* py = p.data() + y * kEmbeddingDim;
            double dot = 0.0;
#pragma omp simd reduction(+ : dot)
            for (std::int64_t d = 0; d < kEmbeddingDim; ++d) dot += xi[d] * py[d];
            row[y] = static_cast<T>(-dot);
        }
    }
    return m;
}

// Energies: 3 * N(0, 1). Labels: a dense row-stochastic q (uniform(0, 1) entries, rows
// normalised), the shape of soft self-labels; the kernels read every entry of q either way.
template <class T>
std::vector<T> make_matrix(std::int64_t rows, std::int64_t cols, Fill fill) {
    if (fill == Fill::kCosine) return make_cosine_energies<T>(rows, cols);
    std::vector<T> m(static_cast<std::size_t>(rows * cols));
    const std::int64_t n_blocks = (rows + kSeedBlockRows - 1) / kSeedBlockRows;
#pragma omp parallel for schedule(static)
    for (std::int64_t blk = 0; blk < n_blocks; ++blk) {
        std::seed_seq seq{fill == Fill::kEnergy ? kEnergySeed : kLabelSeed, static_cast<std::uint32_t>(blk)};
        std::mt19937 gen(seq);
        std::normal_distribution<double> normal(0.0, 3.0);
        std::uniform_real_distribution<double> uniform(0.0, 1.0);
        const std::int64_t i1 = std::min(rows, (blk + 1) * kSeedBlockRows);
        for (std::int64_t i = blk * kSeedBlockRows; i < i1; ++i) {
            T* row = m.data() + i * cols;
            if (fill == Fill::kEnergy) {
                for (std::int64_t j = 0; j < cols; ++j) row[j] = static_cast<T>(normal(gen));
            } else {
                double total = 0.0;
                std::vector<double> u(static_cast<std::size_t>(cols));
                for (auto& v : u) total += (v = uniform(gen));
                for (std::int64_t j = 0; j < cols; ++j) row[j] = static_cast<T>(u[j] / total);
            }
        }
    }
    return m;
}

// Matrices are made once per (kind, shape, dtype) and kept for the whole run (about 3.5 GB at
// the sizes registered below), so every benchmark of a size reads the same data.
template <class T>
const std::vector<T>& cached_matrix(std::int64_t rows, std::int64_t cols, Fill fill) {
    static std::map<std::tuple<int, std::int64_t, std::int64_t>, std::vector<T>> cache;
    const auto key = std::make_tuple(static_cast<int>(fill), rows, cols);
    auto it = cache.find(key);
    if (it == cache.end()) it = cache.emplace(key, make_matrix<T>(rows, cols, fill)).first;
    return it->second;
}

template <class T>
const std::vector<T>& energies(std::int64_t rows, std::int64_t cols) {
    return cached_matrix<T>(rows, cols, Fill::kEnergy);
}

template <class T>
const std::vector<T>& labels(std::int64_t rows, std::int64_t cols) {
    return cached_matrix<T>(rows, cols, Fill::kLabel);
}

template <class T>
const std::vector<T>& cosine_energies(std::int64_t rows, std::int64_t cols) {
    return cached_matrix<T>(rows, cols, Fill::kCosine);
}

// The core clock in Hz: the best of 20 timed runs of a dependent chain of integer adds (x86-64:
// one add per cycle); 0 elsewhere (no cycle counter is then reported).
double measure_core_hz() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    double best = 0.0;
    for (int trial = 0; trial < 20; ++trial) {
        constexpr std::int64_t kLoops = 1 << 18;  // 8 adds each: 2M cycles, ~0.5-1 ms
        std::uint64_t x = 0;
        const auto t0 = std::chrono::steady_clock::now();
        for (std::int64_t i = 0; i < kLoops; ++i) {
            asm volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                         "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
                         : "+r"(x));
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::max(best, static_cast<double>(8 * kLoops) / seconds);
    }
    return best;
#else
    return 0.0;
#endif
}

// The time-stamp counter's rate in Hz, against the steady clock over ~50 ms (x86-64; else 0).
double measure_tsc_hz() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    const auto t0 = std::chrono::steady_clock::now();
    const std::uint64_t c0 = __builtin_ia32_rdtsc();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(50)) {
    }
    const std::uint64_t c1 = __builtin_ia32_rdtsc();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return static_cast<double>(c1 - c0) / seconds;
#else
    return 0.0;
#endif
}

double g_core_hz = 0.0;

int omp_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// Wall time and process CPU time (all threads) of a benchmark's timing loop (started just before
// `for (auto _ : state)`), for the cycle counters; the benchmarks run in real time
// (UseRealTime), so the wall time is the time GB/s is computed from.
class LoopClock {
public:
    LoopClock() : wall_(std::chrono::steady_clock::now()), cpu_(process_cpu_seconds()) {}
    double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_).count(); }
    double cpu_seconds() const { return process_cpu_seconds() - cpu_; }

private:
    static double process_cpu_seconds() {
        timespec ts{};
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
    }
    std::chrono::steady_clock::time_point wall_;
    double cpu_;
};

// bytes_per_second from the bytes a call moves, and for `elements` per call (see the header)
// cyc_per_elem = wall seconds per call x core clock x threads / elements and cpu_cyc_per_elem =
// process CPU seconds (all threads) per call x core clock / elements. They agree on a quiet
// machine; on a loaded one the wall figure counts the time the threads waited for a core and the
// CPU figure does not (it still counts OpenMP threads spinning at barriers).
void set_traffic(benchmark::State& state, std::int64_t bytes_read, std::int64_t bytes_written,
                 std::int64_t elements, const LoopClock& clock) {
    const double seconds = clock.seconds();
    const double cpu_seconds = clock.cpu_seconds();
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * (bytes_read + bytes_written));
    state.counters["MB_per_call"] = static_cast<double>(bytes_read + bytes_written) / 1e6;
    if (g_core_hz > 0.0 && elements > 0 && state.iterations() > 0) {
        const double calls = static_cast<double>(state.iterations());
        state.counters["cyc_per_elem"] = seconds / calls * g_core_hz * omp_threads() / static_cast<double>(elements);
        state.counters["cpu_cyc_per_elem"] = cpu_seconds / calls * g_core_hz / static_cast<double>(elements);
    }
}

// A kernel whose results are not finite is measuring the wrong thing: report it, don't time it.
template <class T>
bool all_finite(benchmark::State& state, const std::vector<T>& v, const char* what) {
    for (const T x : v) {
        if (!std::isfinite(x)) {
            state.SkipWithError((std::string(what) + " is not finite").c_str());
            return false;
        }
    }
    return true;
}

// ---------------------------------------------------------------------------------------
// Kernels of the C++ API.

template <class T>
void BM_log_partition(benchmark::State& state) {
    const std::int64_t n = state.range(0), k = state.range(1);
    const auto& e = energies<T>(n, k);
    const auto view = MatrixView<T>::contiguous(e.data(), n, k);
    std::vector<T> log_z(static_cast<std::size_t>(n));
    const LoopClock clock;
    for (auto _ : state) {
        thermossl::log_partition(view, kTemperature, nullptr, log_z.data());
        benchmark::DoNotOptimize(log_z.data());
        benchmark::ClobberMemory();
    }
    if (!all_finite(state, log_z, "log Z")) return;
    set_traffic(state, n * k * sizeof(T), n * sizeof(T), n * k, clock);
}

template <class T>
void BM_row_softmax(benchmark::State& state) {
    const std::int64_t n = state.range(0), k = state.range(1);
    const auto& e = energies<T>(n, k);
    const auto view = MatrixView<T>::contiguous(e.data(), n, k);
    std::vector<T> p(static_cast<std::size_t>(n * k)), log_z(static_cast<std::size_t>(n));
    const T scale = T(-1) / T(kTemperature);
    const LoopClock clock;
    for (auto _ : state) {
        thermossl::row_softmax<T>(view, scale, nullptr, p.data(), log_z.data());
        benchmark::DoNotOptimize(p.data());
        benchmark::DoNotOptimize(log_z.data());
        benchmark::ClobberMemory();
    }
    if (!all_finite(state, log_z, "log Z")) return;
    set_traffic(state, n * k * sizeof(T), (n * k + n) * sizeof(T), n * k, clock);
}

template <class T>
void BM_row_entropy(benchmark::State& state) {
    const std::int64_t n = state.range(0), k = state.range(1);
    const auto& e = energies<T>(n, k);
    const auto view = MatrixView<T>::contiguous(e.data(), n, k);
    std::vector<T> entropy(static_cast<std::size_t>(n)), log_z(static_cast<std::size_t>(n));
    const T scale = T(-1) / T(kTemperature);
    const LoopClock clock;
    for (auto _ : state) {
        thermossl::row_entropy<T>(view, scale, nullptr, entropy.data(), log_z.data());
        benchmark::DoNotOptimize(entropy.data());
        benchmark::DoNotOptimize(log_z.data());
        benchmark::ClobberMemory();
    }
    if (!all_finite(state, entropy, "entropy")) return;
    set_traffic(state, n * k * sizeof(T), 2 * n * sizeof(T), n * k, clock);
}

template <class T>
void BM_row_cross_entropy_grad(benchmark::State& state) {
    const std::int64_t n = state.range(0), k = state.range(1);
    const auto& e = energies<T>(n, k);
    const auto& q = labels<T>(n, k);
    const auto a_view = MatrixView<T>::contiguous(e.data(), n, k);
    const auto q_view = MatrixView<T>::contiguous(q.data(), n, k);
    std::vector<T> loss(static_cast<std::size_t>(n)), log_z(static_cast<std::size_t>(n));
    std::vector<T> grad(static_cast<std::size_t>(n * k));
    const T scale = T(-1) / T(kTemperature);
    const LoopClock clock;
    for (auto _ : state) {
        thermossl::row_cross_entropy<T>(q_view, a_view, scale, nullptr, loss.data(), grad.data(), log_z.data());
        benchmark::DoNotOptimize(loss.data());
        benchmark::DoNotOptimize(grad.data());
        benchmark::ClobberMemory();
    }
    if (!all_finite(state, loss, "loss")) return;
    set_traffic(state, 2 * n * k * sizeof(T), (n * k + 2 * n) * sizeof(T), n * k, clock);
}

template <class T>
void BM_row_entropy_grad(benchmark::State& state) {
    const std::int64_t n = state.range(0), k = state.range(1);
    const auto& e = energies<T>(n, k);
    const auto view = MatrixView<T>::contiguous(e.data(), n, k);
    std::vector<T> grad(static_cast<std::size_t>(n * k)), log_z(static_cast<std::size_t>(n));
    const T scale = T(-1) / T(kTemperature);
    const LoopClock clock;
    for (auto _ : state) {
        // As thermossl.entropy_grad calls it: the gradient and log Z, no entropy vector.
        thermossl::row_entropy_grad<T>(view, scale, nullptr, grad.data(), nullptr, log_z.data());
        benchmark::DoNotOptimize(grad.data());
        benchmark::DoNotOptimize(log_z.data());
        benchmark::ClobberMemory();
    }
    if (!all_finite(state, log_z, "log Z")) return;
    set_traffic(state, n * k * sizeof(T), (n * k + n) * sizeof(T), n * k, clock);
}

template <class T>
void BM_col_logsumexp(benchmark::State& state) {
    const std::int64_t n = state.range(0), k = state.range(1);
    const auto& e = energies<T>(n, k);
    const auto view = MatrixView<T>::contiguous(e.data(), n, k);
    std::vector<T> out(static_cast<std::size_t>(k));
    const T scale = T(-1) / T(kTemperature);
    const LoopClock clock;
    for (auto _ : state) {
        thermossl::col_logsumexp<T>(view, scale, nullptr, out.data());
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    if (!all_finite(state, out, "column LSE")) return;
    set_traffic(state, n * k * sizeof(T), k * sizeof(T), n * k, clock);
}

// Sinkhorn. SwAV: T' = 0.05, exactly 3 iterations, uniform w and c, q written (in the last fused
// pass). Passes over E: 1 column pass + 3 fused passes.
template <class T>
void BM_sinkhorn_swav(benchmark::State& state) {
    const std::int64_t n = state.range(0), k = state.range(1);
    const auto& e = cosine_energies<T>(n, k);
    const auto view = MatrixView<T>::contiguous(e.data(), n, k);
    std::vector<T> f(static_cast<std::size_t>(n)), mu(static_cast<std::size_t>(k)), q(static_cast<std::size_t>(n * k));
    thermossl::SinkhornOptions options;
    options.temperature = 0.05;
    options.fixed_iterations = 3;
    thermossl::SinkhornReport report;
    const LoopClock clock;
    for (auto _ : state) {
        report = thermossl::sinkhorn<T>(view, nullptr, nullptr, nullptr, options, f.data(), mu.data(), q.data());
        benchmark::DoNotOptimize(q.data());
        benchmark::ClobberMemory();
    }
    if (report.status != thermossl::SinkhornStatus::kOk) {
        state.SkipWithError("sinkhorn failed");
        return;
    }
    if (!all_finite(state, f, "f")) return;
    const std::int64_t passes = 1 + report.iterations;
    set_traffic(state, passes * n * k * static_cast<std::int64_t>(sizeof(T)), n * k * static_cast<std::int64_t>(sizeof(T)), n * k, clock);
    state.counters["iterations"] = static_cast<double>(report.iterations);
    state.counters["passes_over_E"] = static_cast<double>(passes);
}

// SeLa: T' = 1/25 (lambda = 25), to tolerance 1e-6 on sum_y |N_y - c_y|, uniform w and c, q
// written. range(2) = 0: cold start; 1: warm start from the converged mu of E, run on
// E + 1e-3 N(0, 1) (labels re-balanced each epoch on slightly moved energies).
// Passes over E: 1 (cold: column pass; warm: the fused pass at mu0) + 1 per iteration + 1 (q).
template <class T>
void BM_sinkhorn_sela(benchmark::State& state) {
    const std::int64_t n = state.range(0), k = state.range(1);
    const bool warm = state.range(2) != 0;
    const auto& e = cosine_energies<T>(n, k);
    std::vector<T> f(static_cast<std::size_t>(n)), mu(static_cast<std::size_t>(k)), q(static_cast<std::size_t>(n * k));
    thermossl::SinkhornOptions options;
    options.temperature = 1.0 / 25.0;
    options.tolerance = 1e-6;
    options.max_iterations = 10000;

    std::vector<T> moved;  // warm: E + 1e-3 noise
    std::vector<T> mu0;    // warm: converged mu of E
    const T* data = e.data();
    if (warm) {
        const auto cold = thermossl::sinkhorn<T>(MatrixView<T>::contiguous(e.data(), n, k), nullptr, nullptr, nullptr,
                                                 options, f.data(), mu.data(), nullptr);
        if (cold.status != thermossl::SinkhornStatus::kOk || !cold.converged) {
            state.SkipWithError("cold sinkhorn for the warm start failed");
            return;
        }
        mu0 = mu;
        moved.resize(e.size());
        std::mt19937 gen(kNoiseSeed);
        std::normal_distribution<double> normal(0.0, 1e-3);
        for (std::size_t j = 0; j < e.size(); ++j) moved[j] = static_cast<T>(e[j] + normal(gen));
        data = moved.data();
    }
    const auto view = MatrixView<T>::contiguous(data, n, k);
    thermossl::SinkhornReport report;
    const LoopClock clock;
    for (auto _ : state) {
        report = thermossl::sinkhorn<T>(view, nullptr, nullptr, warm ? mu0.data() : nullptr, options, f.data(),
                                        mu.data(), q.data());
        benchmark::DoNotOptimize(q.data());
        benchmark::ClobberMemory();
    }
    if (report.status != thermossl::SinkhornStatus::kOk) {
        state.SkipWithError("sinkhorn failed");
        return;
    }
    if (!report.converged) {
        state.SkipWithError("sinkhorn did not converge");
        return;
    }
    if (!all_finite(state, f, "f")) return;
    const std::int64_t passes = 1 + report.iterations + 1;
    set_traffic(state, passes * n * k * static_cast<std::int64_t>(sizeof(T)), n * k * static_cast<std::int64_t>(sizeof(T)), n * k, clock);
    state.counters["iterations"] = static_cast<double>(report.iterations);
    state.counters["passes_over_E"] = static_cast<double>(passes);
    state.counters["charge_error"] = report.charge_error;
}


// The fused ledger row (thermo.hpp): all eight row outputs and the charges, T = 0.1, no mu.
// Bytes: one read of E and of q (the per-row outputs, 8 doubles a row, are counted too).
template <class T>
void BM_ledger_rows(benchmark::State& state) {
    const std::int64_t n = state.range(0), k = state.range(1);
    const auto& e = energies<T>(n, k);
    const auto& q = labels<T>(n, k);
    const auto a_view = MatrixView<T>::contiguous(e.data(), n, k);
    const auto q_view = MatrixView<T>::contiguous(q.data(), n, k);
    std::vector<double> rows(static_cast<std::size_t>(8 * n)), charges(static_cast<std::size_t>(k));
    thermossl::LedgerRows out;
    double* r = rows.data();
    out.energy_q = r;
    out.energy_p = r + n;
    out.log_z = r + 2 * n;
    out.entropy_q = r + 3 * n;
    out.entropy_p = r + 4 * n;
    out.relative_entropy = r + 5 * n;
    out.loss = r + 6 * n;
    out.label_mass = r + 7 * n;
    const LoopClock clock;
    for (auto _ : state) {
        thermossl::ledger_rows<T>(q_view, a_view, -1.0 / kTemperature, nullptr, nullptr, out, charges.data());
        benchmark::DoNotOptimize(rows.data());
        benchmark::DoNotOptimize(charges.data());
        benchmark::ClobberMemory();
    }
    if (!all_finite(state, rows, "ledger rows")) return;
    set_traffic(state, 2 * n * k * static_cast<std::int64_t>(sizeof(T)), 8 * n * static_cast<std::int64_t>(sizeof(double)), n * k, clock);
}

template <class T>
void BM_stream_read2(benchmark::State& state) {
    const std::int64_t n = state.range(0), k = state.range(1);
    const T* a = energies<T>(n, k).data();
    const T* q = labels<T>(n, k).data();
    std::vector<T> sums(static_cast<std::size_t>(n));
    T* out = sums.data();
    const LoopClock clock;
    for (auto _ : state) {
#pragma omp parallel for schedule(static) if (n * k >= (1 << 15))
        for (std::int64_t i = 0; i < n; ++i) {
            const T* row = a + i * k;
            const T* q_row = q + i * k;
            T s = 0;
#pragma omp simd reduction(+ : s)
            for (std::int64_t j = 0; j < k; ++j) s += row[j] + q_row[j];
            out[i] = s;
        }
        benchmark::DoNotOptimize(out);
        benchmark::ClobberMemory();
    }
    set_traffic(state, 2 * n * k * static_cast<std::int64_t>(sizeof(T)), n * static_cast<std::int64_t>(sizeof(T)), n * k, clock);
}

// ---------------------------------------------------------------------------------------
// Yardsticks.

template <class T>
void BM_stream_read(benchmark::State& state) {
    const std::int64_t n = state.range(0), k = state.range(1);
    const auto& e = energies<T>(n, k);
    const T* a = e.data();
    std::vector<T> sums(static_cast<std::size_t>(n));
    T* out = sums.data();
    const LoopClock clock;
    for (auto _ : state) {
#pragma omp parallel for schedule(static) if (n * k >= (1 << 15))
        for (std::int64_t i = 0; i < n; ++i) {
            const T* row = a + i * k;
            T s = 0;
#pragma omp simd reduction(+ : s)
            for (std::int64_t j = 0; j < k; ++j) s += row[j];
            out[i] = s;
        }
        benchmark::DoNotOptimize(out);
        benchmark::ClobberMemory();
    }
    set_traffic(state, n * k * sizeof(T), n * sizeof(T), n * k, clock);
}

template <class T>
void BM_stream_read_write(benchmark::State& state) {
    const std::int64_t n = state.range(0), k = state.range(1);
    const auto& e = energies<T>(n, k);
    const T* a = e.data();
    std::vector<T> b_store(static_cast<std::size_t>(n * k));
    T* b = b_store.data();
    const T scale = T(-1) / T(kTemperature);
    const LoopClock clock;
    for (auto _ : state) {
#pragma omp parallel for schedule(static) if (n * k >= (1 << 15))
        for (std::int64_t i = 0; i < n; ++i) {
            const T* row = a + i * k;
            T* out = b + i * k;
#pragma omp simd
            for (std::int64_t j = 0; j < k; ++j) out[j] = scale * row[j];
        }
        benchmark::DoNotOptimize(b);
        benchmark::ClobberMemory();
    }
    set_traffic(state, n * k * sizeof(T), n * k * sizeof(T), n * k, clock);
}

// ---------------------------------------------------------------------------------------
// Registration. Kernels are OpenMP-parallel: time by the wall clock (UseRealTime).

void small(benchmark::internal::Benchmark* b) {
    b->Args({4096, 3000})->UseRealTime()->Unit(benchmark::kMillisecond);
}

void small_and_large(benchmark::internal::Benchmark* b) {
    b->Args({4096, 3000})->Args({65536, 3000})->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK_TEMPLATE(BM_stream_read, float)->Apply(small_and_large);
BENCHMARK_TEMPLATE(BM_stream_read, double)->Apply(small_and_large);
BENCHMARK_TEMPLATE(BM_stream_read_write, float)->Apply(small);
BENCHMARK_TEMPLATE(BM_stream_read_write, double)->Apply(small);

BENCHMARK_TEMPLATE(BM_log_partition, float)->Apply(small_and_large);
BENCHMARK_TEMPLATE(BM_log_partition, double)->Apply(small_and_large);

BENCHMARK_TEMPLATE(BM_row_softmax, float)->Apply(small);
BENCHMARK_TEMPLATE(BM_row_softmax, double)->Apply(small);
BENCHMARK_TEMPLATE(BM_row_entropy, float)->Apply(small);
BENCHMARK_TEMPLATE(BM_row_entropy, double)->Apply(small);
BENCHMARK_TEMPLATE(BM_row_cross_entropy_grad, float)->Apply(small);
BENCHMARK_TEMPLATE(BM_row_cross_entropy_grad, double)->Apply(small);
BENCHMARK_TEMPLATE(BM_row_entropy_grad, float)->Apply(small);
BENCHMARK_TEMPLATE(BM_row_entropy_grad, double)->Apply(small);
BENCHMARK_TEMPLATE(BM_row_cross_entropy_grad, float)->Args({65536, 3000})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_ledger_rows, float)->Apply(small_and_large);
BENCHMARK_TEMPLATE(BM_ledger_rows, double)->Apply(small_and_large);
BENCHMARK_TEMPLATE(BM_stream_read2, float)->Apply(small_and_large);
BENCHMARK_TEMPLATE(BM_stream_read2, double)->Apply(small_and_large);
BENCHMARK_TEMPLATE(BM_col_logsumexp, float)->Apply(small);
BENCHMARK_TEMPLATE(BM_col_logsumexp, double)->Apply(small);

// Sinkhorn on cosine energies (see the header). The read yardstick of the same E is
// BM_stream_read at the same size and dtype (8192x1000 double: registered here too).
BENCHMARK_TEMPLATE(BM_sinkhorn_swav, float)->Apply(small_and_large);
BENCHMARK_TEMPLATE(BM_sinkhorn_sela, double)
    ->ArgNames({"", "", "warm"})
    ->Args({8192, 1000, 0})
    ->Args({8192, 1000, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_stream_read, double)->Args({8192, 1000})->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
#ifdef _OPENMP
    benchmark::AddCustomContext("omp_max_threads", std::to_string(omp_get_max_threads()));
#else
    benchmark::AddCustomContext("omp_max_threads", "1 (built without OpenMP)");
#endif
    g_core_hz = measure_core_hz();
    char clocks[160];
    std::snprintf(clocks, sizeof(clocks), "core %.3f GHz (dependent-add chain, best of 20), TSC %.3f GHz",
                  g_core_hz / 1e9, measure_tsc_hz() / 1e9);
    benchmark::AddCustomContext("clock", clocks);
    benchmark::AddCustomContext("simd_level", thermossl::simd_level_name(thermossl::simd_level()));
    benchmark::AddCustomContext("data", "E = 3 * N(0,1) (mt19937), T = 0.1, C-contiguous; sinkhorn: E = -cos(x_i, p_y), dim 128");
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
