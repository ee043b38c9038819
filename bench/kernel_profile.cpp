// thermossl — a plain driver of the CPU kernels for instruction counts and bitwise checks
// (built with the benchmarks, -DTHERMOSSL_BENCH=ON; needs no Google Benchmark).
//
//   kernel_profile run KERNEL DTYPE ROWS COLS [SCALE]
//       runs one kernel once on deterministic data; under callgrind, count only the kernel with
//         OMP_NUM_THREADS=1 valgrind --tool=callgrind --toggle-collect='*run_kernel*' \
//             build/bench/bench/kernel_profile run logsumexp float 256 3000
//       KERNEL: logsumexp, softmax, log_softmax, entropy, xent (cross-entropy + gradient),
//       entropy_grad, col_logsumexp, ledger, label, swav (SwAV Sinkhorn, T' = 0.05, 3 fixed
//       iterations, q written), sela (Sinkhorn to tolerance 1e-6, T' = 0.05); DTYPE: float, double.
//   kernel_profile time KERNEL DTYPE ROWS COLS REPEATS [SCALE]
//       the median CPU time per element of REPEATS samples (after a warm-up call), each sample
//       the process CPU time of enough calls for >= 5 M elements, for A/B runs of two builds
//       alternated in one session on a loaded machine (use OMP_NUM_THREADS=1).
//   kernel_profile dump FILE
//       writes the raw outputs of every kernel (float and double, rows with +-inf, nan, ties,
//       shifts) at the SIMD level in force (THERMOSSL_SIMD) to FILE, so two builds or two levels
//       can be compared byte for byte with cmp.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <time.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "thermossl/gibbs.hpp"
#include "thermossl/logsumexp.hpp"
#include "thermossl/simd.hpp"
#include "thermossl/sinkhorn.hpp"
#include "thermossl/thermo.hpp"

namespace {

using thermossl::MatrixView;

template <class T>
struct Data {
    std::int64_t n, k;
    std::vector<T> e;       // energies ~ sigma * N(0, 1)
    std::vector<T> q;       // label states: row softmax of N(0, 1), a few exact zeros
    std::vector<double> shift;
};

template <class T>
Data<T> make_data(std::int64_t n, std::int64_t k, double sigma, bool edge_rows) {
    Data<T> d{n, k, std::vector<T>(n * k), std::vector<T>(n * k), std::vector<double>(k)};
    std::mt19937 gen(12345);
    std::normal_distribution<double> normal(0.0, 1.0);
    for (auto& v : d.e) v = static_cast<T>(sigma * normal(gen));
    for (std::int64_t i = 0; i < n; ++i) {
        double total = 0.0;
        for (std::int64_t j = 0; j < k; ++j) {
            const double v = (j % 17 == 3) ? 0.0 : std::exp(normal(gen));
            d.q[i * k + j] = static_cast<T>(v);
            total += v;
        }
        for (std::int64_t j = 0; j < k; ++j) d.q[i * k + j] = static_cast<T>(d.q[i * k + j] / total);
    }
    for (auto& v : d.shift) v = 0.5 * normal(gen);
    if (edge_rows && n >= 8 && k >= 8) {
        const T inf = std::numeric_limits<T>::infinity();
        for (std::int64_t j = 0; j < 5; ++j) d.e[1 * k + j] = inf;  // forbidden states
        d.e[2 * k + 3] = d.e[2 * k + 4] = -50;                      // a tie at the max (scale < 0)
        for (std::int64_t j = 0; j < k; ++j) d.e[3 * k + j] = T(0.5);  // constant row
        d.e[4 * k + 2] = -inf;                                      // an infinite score
        for (std::int64_t j = 0; j < k; ++j) d.e[5 * k + j] = inf;  // every state forbidden
        d.e[6 * k + 7] = std::numeric_limits<T>::quiet_NaN();
        d.e[7 * k + 1] = T(-1e30);                                  // a huge score
    }
    return d;
}

struct Writer {
    std::FILE* f;
    template <class V>
    void put(const V& v) {
        std::fwrite(v.data(), sizeof(v[0]), v.size(), f);
    }
};

// Process CPU time of all threads, in seconds (finer than std::clock's ticks).
double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

template <class T>
double scale_of(double temperature) { return -1.0 / temperature; }

// The exponent scale of the row kernels (x = scale * a): T = 0.1 by default, so the rows of
// sigma = 3 data span ~200 units of x and reach the exp's flush; `time ... SCALE` and the second
// round of `dump` take a smaller one, whose rows stay in range (with_row_frame's in-range frame).
double g_scale = -10.0;

// The outputs of a kernel, allocated (and touched) before it runs so that callgrind counts the
// kernel only.
template <class T>
struct Outputs {
    explicit Outputs(std::int64_t n, std::int64_t k)
        : rows(n), rows2(n), mat(n * k), cols(k), drows(n), charges(k), row_shift(n) {
        for (auto& o : ledger) o.assign(n, 0.0);
        for (std::int64_t i = 0; i < n; ++i) row_shift[i] = 0.01 * static_cast<double>(i % 13);
    }
    std::vector<T> rows, rows2, mat, cols;
    std::vector<double> drows, charges, row_shift;
    std::vector<double> ledger[8];
};

// Runs `kernel` once on d; the outputs go to w when it is set. Not inlined: callgrind collects
// from its entry (--toggle-collect='*run_kernel*').
template <class T>
__attribute__((noinline)) void run_kernel(const std::string& kernel, const Data<T>& d, Outputs<T>& o, Writer* w) {
    const auto n = d.n, k = d.k;
    const auto a = MatrixView<T>::contiguous(d.e.data(), n, k);
    const auto q = MatrixView<T>::contiguous(d.q.data(), n, k);
    const double scale = g_scale;
    const double* shift = w != nullptr ? d.shift.data() : nullptr;
    auto& rows = o.rows;
    auto& rows2 = o.rows2;
    auto& mat = o.mat;
    auto& cols = o.cols;
    auto& drows = o.drows;
    auto& charges = o.charges;
    auto& outs = o.ledger;
    if (kernel == "logsumexp") {
        thermossl::row_logsumexp<T>(a, scale, nullptr, nullptr, rows.data(), nullptr);
        if (w) {
            w->put(rows);
            thermossl::row_logsumexp<T>(a, scale, shift, &q, rows.data(), rows2.data());
            w->put(rows), w->put(rows2);
            thermossl::row_logsumexp<T>(a, 1.0, nullptr, nullptr, rows.data(), nullptr);
            w->put(rows);
        }
    } else if (kernel == "softmax") {
        thermossl::row_softmax<T>(a, scale, nullptr, mat.data(), rows.data());
        if (w) {
            w->put(mat), w->put(rows);
            thermossl::row_softmax<T>(a, scale, shift, mat.data(), rows.data());
            w->put(mat), w->put(rows);
        }
    } else if (kernel == "log_softmax") {
        thermossl::row_log_softmax<T>(a, scale, shift, mat.data());
        if (w) w->put(mat);
    } else if (kernel == "entropy") {
        thermossl::row_entropy<T>(a, scale, shift, rows.data(), rows2.data());
        if (w) {
            w->put(rows), w->put(rows2);
            thermossl::row_entropy<T>(a, scale, nullptr, rows.data(), rows2.data());
            w->put(rows), w->put(rows2);
        }
    } else if (kernel == "xent") {
        thermossl::row_cross_entropy<T>(q, a, scale, shift, rows.data(), mat.data(), rows2.data());
        if (w) {
            w->put(rows), w->put(mat), w->put(rows2);
            thermossl::row_cross_entropy<T>(q, a, scale, nullptr, rows.data(), nullptr, rows2.data());
            w->put(rows), w->put(rows2);
        }
    } else if (kernel == "entropy_grad") {
        thermossl::row_entropy_grad<T>(a, scale, shift, mat.data(), rows.data(), rows2.data());
        if (w) w->put(mat), w->put(rows), w->put(rows2);
    } else if (kernel == "col_logsumexp") {
        thermossl::col_logsumexp<T>(a, scale, w ? o.row_shift.data() : nullptr, cols.data());
        if (w) {
            w->put(cols);
            thermossl::col_logsumexp<T>(a, scale, nullptr, cols.data());
            w->put(cols);
        }
    } else if (kernel == "ledger" || kernel == "label") {
        thermossl::LedgerRows lr{outs[0].data(), outs[1].data(), outs[2].data(), outs[3].data(),
                                 outs[4].data(), outs[5].data(), outs[6].data(), outs[7].data()};
        if (kernel == "ledger") {
            thermossl::ledger_rows<T>(q, a, scale, shift, nullptr, lr, charges.data());
        } else {
            thermossl::label_rows<T>(q, nullptr, outs[3].data(), outs[7].data(), charges.data());
        }
        if (w) {
            for (auto& out : outs) w->put(out);
            w->put(charges);
        }
    } else if (kernel == "swav" || kernel == "sela") {
        thermossl::SinkhornOptions options;
        options.temperature = 0.05;
        if (kernel == "swav") options.fixed_iterations = 3;
        std::vector<T>& f = rows2;
        std::vector<T>& mu = cols;
        const auto report = thermossl::sinkhorn<T>(a, nullptr, nullptr, nullptr, options, f.data(), mu.data(),
                                                   mat.data(), charges.data());
        if (w) {
            w->put(f), w->put(mu), w->put(mat), w->put(charges);
            std::vector<double> rep{static_cast<double>(report.iterations), report.charge_error,
                                    static_cast<double>(report.status)};
            w->put(rep);
        }
    } else if (kernel == "diff_dot") {
        thermossl::row_difference_dot<T>(q, a, a, drows.data());
        if (w) w->put(drows);
    } else {
        std::fprintf(stderr, "unknown kernel %s\n", kernel.c_str());
        std::exit(2);
    }
}

template <class T>
void dump_all(Writer& w) {
    const char* kernels[] = {"logsumexp", "softmax", "log_softmax", "entropy", "xent", "entropy_grad",
                             "col_logsumexp", "ledger", "label", "diff_dot"};
    for (auto k : {std::int64_t(1), std::int64_t(7), std::int64_t(64), std::int64_t(257)}) {
        const auto d = make_data<T>(67, k, 3.0, true);
        Outputs<T> o(d.n, d.k);
        for (const char* kernel : kernels) run_kernel<T>(kernel, d, o, &w);
    }
    // The same rows at scale -0.5: the rows without edge values span ~10 units of x (in range).
    g_scale = -0.5;
    for (auto k : {std::int64_t(7), std::int64_t(64), std::int64_t(257)}) {
        const auto d = make_data<T>(67, k, 3.0, true);
        Outputs<T> o(d.n, d.k);
        for (const char* kernel : kernels) run_kernel<T>(kernel, d, o, &w);
    }
    g_scale = -10.0;
    // Balancing on finite, moderate energies (the solver rejects the edge rows).
    const auto d = make_data<T>(300, 129, 0.25, false);
    Outputs<T> o(d.n, d.k);
    run_kernel<T>("swav", d, o, &w);
    run_kernel<T>("sela", d, o, &w);
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "run" && (argc == 6 || argc == 7)) {
        if (argc == 7) g_scale = std::atof(argv[6]);
        const std::string kernel = argv[2], dtype = argv[3];
        const std::int64_t n = std::atoll(argv[4]), k = std::atoll(argv[5]);
        const double sigma = (kernel == "swav" || kernel == "sela") ? 0.25 : 3.0;
        if (dtype == "float") {
            const auto d = make_data<float>(n, k, sigma, false);
            Outputs<float> o(n, k);
            run_kernel<float>(kernel, d, o, nullptr);
        } else {
            const auto d = make_data<double>(n, k, sigma, false);
            Outputs<double> o(n, k);
            run_kernel<double>(kernel, d, o, nullptr);
        }
        std::printf("%s %s %lldx%lld at %s\n", kernel.c_str(), dtype.c_str(), static_cast<long long>(n),
                    static_cast<long long>(k), thermossl::simd_level_name(thermossl::simd_level()));
        return 0;
    }
    if (mode == "time" && (argc == 7 || argc == 8)) {
        if (argc == 8) g_scale = std::atof(argv[7]);
        // median CPU time per element over REPEATS calls (process CPU time: run with
        // OMP_NUM_THREADS=1 on a loaded machine, and alternate two builds for an A/B)
        const std::string kernel = argv[2], dtype = argv[3];
        const std::int64_t n = std::atoll(argv[4]), k = std::atoll(argv[5]);
        const int repeats = std::atoi(argv[6]);
        const double sigma = (kernel == "swav" || kernel == "sela") ? 0.25 : 3.0;
        std::vector<double> ns;
        const auto time_it = [&](auto tag) {
            using T = decltype(tag);
            const auto d = make_data<T>(n, k, sigma, false);
            Outputs<T> o(n, k);
            run_kernel<T>(kernel, d, o, nullptr);  // warm-up
            // calls per sample: enough for >= ~20 ms of CPU time (std::clock ticks coarsely)
            const std::int64_t calls = std::max<std::int64_t>(1, 5000000 / std::max<std::int64_t>(1, n * k));
            for (int r = 0; r < repeats; ++r) {
                const double c0 = cpu_seconds();
                for (std::int64_t c = 0; c < calls; ++c) run_kernel<T>(kernel, d, o, nullptr);
                ns.push_back(1e9 * (cpu_seconds() - c0) / static_cast<double>(calls * n * k));
            }
        };
        if (dtype == "float") {
            time_it(0.0f);
        } else {
            time_it(0.0);
        }
        std::sort(ns.begin(), ns.end());
        std::printf("%s %s %lldx%lld at %s: %.4f CPU ns/element (median of %d)\n", kernel.c_str(), dtype.c_str(),
                    static_cast<long long>(n), static_cast<long long>(k),
                    thermossl::simd_level_name(thermossl::simd_level()), ns[ns.size() / 2], repeats);
        return 0;
    }
    if (mode == "dump" && argc == 3) {
        Writer w{std::fopen(argv[2], "wb")};
        if (w.f == nullptr) return 1;
        dump_all<float>(w);
        dump_all<double>(w);
        std::fclose(w.f);
        std::printf("outputs at %s written to %s\n", thermossl::simd_level_name(thermossl::simd_level()), argv[2]);
        return 0;
    }
    std::fprintf(stderr, "usage: kernel_profile run KERNEL DTYPE ROWS COLS [SCALE] | time KERNEL DTYPE ROWS COLS REPEATS [SCALE] | dump FILE\n");
    return 2;
}
