// Links the installed thermossl::core and checks two kernels against a direct long-double sum:
// log Z_i = log sum_y exp(-E_iy / T) and the Gibbs state p_iy = exp(-E_iy / T) / Z_i.
// Exit code 0 when both agree to 1e-13 (relative); prints the SIMD level the kernels ran at.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "thermossl/gibbs.hpp"
#include "thermossl/simd.hpp"

int main() {
    const std::int64_t n = 64, k = 300;
    const double temperature = 0.1;
    std::mt19937_64 rng(11);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<double> energy(n * k);
    for (auto& e : energy) e = normal(rng);

    const auto view = thermossl::MatrixView<double>::contiguous(energy.data(), n, k);
    std::vector<double> log_z(n), p(n * k);
    thermossl::log_partition(view, temperature, nullptr, log_z.data());
    thermossl::gibbs_state(view, temperature, nullptr, p.data(), nullptr);

    double worst = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
        long double z = 0;
        for (std::int64_t y = 0; y < k; ++y) z += std::exp(-static_cast<long double>(energy[i * k + y]) / temperature);
        const long double lz = std::log(z);
        worst = std::fmax(worst, std::fabs(static_cast<double>((log_z[i] - lz) / lz)));
        for (std::int64_t y = 0; y < k; ++y) {
            const long double want = std::exp(-static_cast<long double>(energy[i * k + y]) / temperature - lz);
            worst = std::fmax(worst, std::fabs(static_cast<double>((p[i * k + y] - want) / want)));
        }
    }
    std::printf("thermossl::core at SIMD level %s: worst relative error %.3g\n",
                thermossl::simd_level_name(thermossl::simd_level()), worst);
    return worst <= 1e-13 ? 0 : 1;
}
