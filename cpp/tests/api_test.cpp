// The C++ API used from C++ alone (no Python): log-partition, column log-sum-exp and the Gibbs
// state (float64 and float32) against a naive long-double computation, on a contiguous and a
// strided view; the Gibbs state written by streaming stores is the same bits (stores.hpp).
// Exit code 0 when every check passes.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "thermossl/gibbs.hpp"
#include "thermossl/logsumexp.hpp"
#include "thermossl/sinkhorn.hpp"
#include "thermossl/stores.hpp"

namespace {

int failures = 0;

void check(bool ok, const char* what, double got, double want) {
    if (!ok) {
        std::printf("FAIL %s: got %.17g want %.17g\n", what, got, want);
        ++failures;
    }
}

bool close(double got, double want, double rtol) {
    return std::fabs(got - want) <= rtol * std::fmax(1.0, std::fabs(want));
}

}  // namespace

int main() {
    const std::int64_t n = 97, k = 131;
    const double temperature = 0.25;
    std::mt19937_64 rng(7);
    std::normal_distribution<double> normal(0.0, 3.0);
    std::vector<double> energy(n * k);
    for (auto& e : energy) e = normal(rng);
    energy[5 * k + 3] = std::numeric_limits<double>::infinity();  // a forbidden state

    // Naive references in long double.
    std::vector<long double> log_z_ref(n), col_ref(k);
    for (std::int64_t i = 0; i < n; ++i) {
        long double s = 0;
        for (std::int64_t y = 0; y < k; ++y) s += std::exp(-static_cast<long double>(energy[i * k + y]) / temperature);
        log_z_ref[i] = std::log(s);
    }
    for (std::int64_t y = 0; y < k; ++y) {
        long double s = 0;
        for (std::int64_t i = 0; i < n; ++i) s += std::exp(-static_cast<long double>(energy[i * k + y]) / temperature);
        col_ref[y] = std::log(s);
    }

    const auto view = thermossl::MatrixView<double>::contiguous(energy.data(), n, k);
    std::vector<double> log_z(n), col(k), p(n * k);
    thermossl::log_partition(view, temperature, nullptr, log_z.data());
    for (std::int64_t i = 0; i < n; ++i) check(close(log_z[i], static_cast<double>(log_z_ref[i]), 1e-14), "log_partition", log_z[i], static_cast<double>(log_z_ref[i]));

    thermossl::col_logsumexp(view, -1.0 / temperature, nullptr, col.data());
    for (std::int64_t y = 0; y < k; ++y) check(close(col[y], static_cast<double>(col_ref[y]), 1e-14), "col_logsumexp", col[y], static_cast<double>(col_ref[y]));

    // The Gibbs state against p_iy = exp(-E_iy/T - log Z_i) in long double: each entry to a few ulp
    // of its exponent's size (x = -E/T carries |x| eps of its own rounding), and its log Z too.
    std::vector<double> log_z_p(n);
    thermossl::gibbs_state(view, temperature, nullptr, p.data(), log_z_p.data());
    const double eps = std::numeric_limits<double>::epsilon();
    for (std::int64_t i = 0; i < n; ++i) {
        check(close(log_z_p[i], static_cast<double>(log_z_ref[i]), 1e-14), "gibbs_state log Z", log_z_p[i], static_cast<double>(log_z_ref[i]));
        double total = 0;
        for (std::int64_t y = 0; y < k; ++y) {
            const long double x = -static_cast<long double>(energy[i * k + y]) / temperature;
            const double want = static_cast<double>(std::exp(x - log_z_ref[i]));
            const double size = std::isinf(static_cast<double>(x)) ? 0.0 : std::fabs(static_cast<double>(x));
            const double bound = 16 * eps * (1.0 + size) * want;  // forbidden (x = -inf): exactly 0
            check(std::fabs(p[i * k + y] - want) <= bound, "gibbs_state p vs long double", p[i * k + y], want);
            total += p[i * k + y];
        }
        check(close(total, 1.0, 1e-13), "gibbs rows sum to 1", total, 1.0);
    }
    check(p[5 * k + 3] == 0.0, "forbidden state has p = 0", p[5 * k + 3], 0.0);

    // Streaming stores: the mode round-trips, "auto" decides by twice the last-level cache, and
    // the Gibbs state written by non-temporal stores is the same bits as by plain ones.
    {
        const auto before = thermossl::streaming_stores();
        const std::int64_t llc = thermossl::last_level_cache_bytes();
        check(llc > 0, "last-level cache size", static_cast<double>(llc), 1.0);
        thermossl::set_streaming_stores(thermossl::StreamingStores::kAuto);
        check(!thermossl::streams_output(2 * llc) && thermossl::streams_output(2 * llc + 1), "auto threshold",
              static_cast<double>(llc), 0.0);
        check(thermossl::auto_streaming_threshold_bytes() == 2 * llc, "auto threshold reported",
              static_cast<double>(thermossl::auto_streaming_threshold_bytes()), 2.0 * static_cast<double>(llc));
        thermossl::StreamingStores parsed = thermossl::StreamingStores::kAuto;
        for (const auto mode : {thermossl::StreamingStores::kOn, thermossl::StreamingStores::kOff, thermossl::StreamingStores::kAuto})
            check(thermossl::streaming_stores_from_name(thermossl::streaming_stores_name(mode), parsed) && parsed == mode,
                  "mode name round trip", static_cast<double>(parsed), static_cast<double>(mode));
        check(!thermossl::streaming_stores_from_name("ON", parsed) && parsed == thermossl::StreamingStores::kAuto,
              "unknown mode name refused", static_cast<double>(parsed), 0.0);
        thermossl::set_streaming_stores(thermossl::StreamingStores::kOn);
        check(thermossl::streaming_stores() == thermossl::StreamingStores::kOn && thermossl::streams_output(1),
              "mode on", 0.0, 1.0);
        std::vector<double> p_streamed(n * k), log_z_streamed(n);
        thermossl::gibbs_state(view, temperature, nullptr, p_streamed.data(), log_z_streamed.data());
        thermossl::set_streaming_stores(thermossl::StreamingStores::kOff);
        check(!thermossl::streams_output(std::int64_t{1} << 60), "mode off", 1.0, 0.0);
        for (std::int64_t j = 0; j < n * k; ++j)
            if (std::memcmp(&p_streamed[j], &p[j], sizeof(double)) != 0) {
                check(false, "streamed gibbs_state p has the same bits", p_streamed[j], p[j]);
                break;
            }
        check(std::memcmp(log_z_streamed.data(), log_z_p.data(), n * sizeof(double)) == 0,
              "streamed gibbs_state log Z has the same bits", log_z_streamed[0], log_z_p[0]);
        thermossl::set_streaming_stores(before);
    }

    // float32 data: log Z within the README's bound, 2 eps32 x max(|log Z|, 1), of the long double
    // value on the same (rounded) float32 inputs.
    std::vector<float> energy32(n * k);
    for (std::int64_t j = 0; j < n * k; ++j) energy32[j] = static_cast<float>(energy[j] * 100.0);
    const auto view32 = thermossl::MatrixView<float>::contiguous(energy32.data(), n, k);
    std::vector<float> log_z32(n), p32(n * k);
    thermossl::log_partition(view32, 0.1f, nullptr, log_z32.data());
    thermossl::gibbs_state(view32, 0.1f, nullptr, p32.data(), nullptr);
    const double eps32 = std::numeric_limits<float>::epsilon();
    for (std::int64_t i = 0; i < n; ++i) {
        long double top = -std::numeric_limits<long double>::infinity();
        const long double t32 = static_cast<long double>(0.1f);
        for (std::int64_t y = 0; y < k; ++y) top = std::fmax(top, -static_cast<long double>(energy32[i * k + y]) / t32);
        long double s = 0;
        for (std::int64_t y = 0; y < k; ++y) s += std::exp(-static_cast<long double>(energy32[i * k + y]) / t32 - top);
        const long double lz = top + std::log(s);
        check(std::fabs(log_z32[i] - static_cast<double>(lz)) <= 2 * eps32 * std::fmax(1.0, std::fabs(static_cast<double>(lz))),
              "float32 log_partition vs long double", log_z32[i], static_cast<double>(lz));
        for (std::int64_t y = 0; y < k; ++y) {
            const double want = static_cast<double>(std::exp(-static_cast<long double>(energy32[i * k + y]) / t32 - lz));
            check(std::fabs(p32[i * k + y] - want) <= 4 * eps32, "float32 gibbs_state vs long double", p32[i * k + y], want);
        }
    }

    // The transpose as a strided view: rows of the view are columns of the matrix.
    const thermossl::MatrixView<double> transposed{energy.data(), k, n, 1, k};
    std::vector<double> log_z_t(k);
    thermossl::log_partition(transposed, temperature, nullptr, log_z_t.data());
    for (std::int64_t y = 0; y < k; ++y) check(close(log_z_t[y], static_cast<double>(col_ref[y]), 1e-14), "strided log_partition", log_z_t[y], static_cast<double>(col_ref[y]));

    // Sinkhorn's cancellation callback (SinkhornOptions::interrupted): a run that cannot reach
    // its tolerance stops with kInterrupted once the callback says so; the POT-style stopping
    // rule records the L2 error of iterations 1, 11, 21, ...
    {
        const thermossl::MatrixView<double> view{energy.data(), n, k, k, 1};
        std::vector<double> f(n), mu(k), q(n * k);
        thermossl::SinkhornOptions options;
        options.temperature = 0.01;
        options.tolerance = 1e-300;
        options.max_iterations = std::int64_t(1) << 40;
        int polls = 0;
        options.poll_seconds = 0.0;
        options.interrupted = [&polls] { return ++polls >= 50; };
        auto report = thermossl::sinkhorn<double>(view, nullptr, nullptr, nullptr, options, f.data(), mu.data(), q.data());
        check(report.status == thermossl::SinkhornStatus::kInterrupted, "sinkhorn interrupted", static_cast<double>(report.status), 5.0);
        check(polls == 50, "the callback polled until it said stop", polls, 50.0);

        thermossl::SinkhornOptions pot;
        pot.temperature = 0.5;
        pot.tolerance = 0.0;  // strict: never passes
        pot.strict_tolerance = true;
        pot.max_iterations = 25;
        pot.check_interval = 10;
        pot.error_norm = thermossl::SinkhornErrorNorm::kL2;
        std::vector<double> history;
        pot.error_history = &history;
        report = thermossl::sinkhorn<double>(view, nullptr, nullptr, nullptr, pot, f.data(), mu.data(), q.data());
        check(report.status == thermossl::SinkhornStatus::kOk && report.iterations == 25, "POT rule runs to the limit",
              static_cast<double>(report.iterations), 25.0);
        check(history.size() == 3, "errors of iterations 1, 11, 21", static_cast<double>(history.size()), 3.0);
    }

    std::printf("%s: %d failures\n", failures == 0 ? "ok" : "FAILED", failures);
    return failures == 0 ? 0 : 1;
}
