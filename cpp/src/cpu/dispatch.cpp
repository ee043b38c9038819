// The public kernel API: each function forwards to the implementation of the active SIMD level
// (thermossl/simd.hpp). Compiled for the baseline ISA only; the levels' code lives in
// namespaces isa_baseline and isa_avx2 (the same sources compiled twice, see isa_begin.hpp).
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "thermossl/gibbs.hpp"
#include "thermossl/logsumexp.hpp"
#include "thermossl/simd.hpp"
#include "thermossl/sinkhorn.hpp"
#include "thermossl/thermo.hpp"

#define THERMOSSL_ISA_NS isa_baseline
#include "kernels.hpp"
#undef THERMOSSL_ISA_NS
#if THERMOSSL_HAVE_AVX2
#define THERMOSSL_ISA_NS isa_avx2
#include "kernels.hpp"
#undef THERMOSSL_ISA_NS
#endif

namespace thermossl {
namespace {

bool cpu_has_avx2() {
#if THERMOSSL_HAVE_AVX2 && (defined(__GNUC__) || defined(__clang__))
    // libgcc's check includes the OS support (XCR0) for the AVX register state.
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

SimdLevel best_level() { return cpu_has_avx2() ? SimdLevel::kAvx2 : SimdLevel::kBaseline; }

SimdLevel initial_level() {
    const char* requested = std::getenv("THERMOSSL_SIMD");
    if (requested != nullptr) {
        if (std::strcmp(requested, "baseline") == 0) return SimdLevel::kBaseline;
        if (std::strcmp(requested, "avx2") == 0 && cpu_has_avx2()) return SimdLevel::kAvx2;
    }
    return best_level();
}

std::atomic<int>& level_store() {
    static std::atomic<int> level{static_cast<int>(initial_level())};
    return level;
}

}  // namespace

SimdLevel simd_level() { return static_cast<SimdLevel>(level_store().load(std::memory_order_relaxed)); }

bool simd_level_supported(SimdLevel level) {
    switch (level) {
        case SimdLevel::kBaseline:
            return true;
        case SimdLevel::kAvx2:
            return cpu_has_avx2();
    }
    return false;
}

void set_simd_level(SimdLevel level) {
    if (!simd_level_supported(level))
        throw std::invalid_argument(std::string("SIMD level not supported here: ") + simd_level_name(level));
    level_store().store(static_cast<int>(level), std::memory_order_relaxed);
}

const char* simd_level_name(SimdLevel level) {
    switch (level) {
        case SimdLevel::kBaseline:
            return "baseline";
        case SimdLevel::kAvx2:
            return "avx2";
    }
    return "unknown";
}

#if THERMOSSL_HAVE_AVX2
#define THERMOSSL_DISPATCH(call)                                   \
    do {                                                           \
        if (simd_level() == SimdLevel::kAvx2) return isa_avx2::call; \
        return isa_baseline::call;                                 \
    } while (0)
#else
#define THERMOSSL_DISPATCH(call) return isa_baseline::call
#endif

template <class T>
void row_logsumexp(const MatrixView<T>& a, double scale, const double* shift, const MatrixView<Same<T>>* b,
                   Same<T>* out, Same<T>* sign) {
    THERMOSSL_DISPATCH(row_logsumexp<T>(a, scale, shift, b, out, sign));
}

template <class T>
void col_logsumexp(const MatrixView<T>& a, double scale, const double* shift, Same<T>* out) {
    THERMOSSL_DISPATCH(col_logsumexp<T>(a, scale, shift, out));
}

template <class T>
void row_softmax(const MatrixView<T>& a, double scale, const double* shift, Same<T>* p, Same<T>* log_z) {
    THERMOSSL_DISPATCH(row_softmax<T>(a, scale, shift, p, log_z));
}

template <class T>
void row_log_softmax(const MatrixView<T>& a, double scale, const double* shift, Same<T>* log_p) {
    THERMOSSL_DISPATCH(row_log_softmax<T>(a, scale, shift, log_p));
}

template <class T>
void row_entropy(const MatrixView<T>& a, double scale, const double* shift, Same<T>* entropy, Same<T>* log_z) {
    THERMOSSL_DISPATCH(row_entropy<T>(a, scale, shift, entropy, log_z));
}

template <class T>
void row_cross_entropy(const MatrixView<T>& q, const MatrixView<T>& a, double scale, const double* shift,
                       Same<T>* loss, Same<T>* grad, Same<T>* log_z) {
    THERMOSSL_DISPATCH(row_cross_entropy<T>(q, a, scale, shift, loss, grad, log_z));
}

template <class T>
void row_entropy_grad(const MatrixView<T>& a, double scale, const double* shift, Same<T>* grad, Same<T>* entropy,
                      Same<T>* log_z) {
    THERMOSSL_DISPATCH(row_entropy_grad<T>(a, scale, shift, grad, entropy, log_z));
}

template <class T>
SinkhornReport sinkhorn(const MatrixView<T>& energy, const Same<T>* weights, const Same<T>* targets,
                        const Same<T>* mu0, const SinkhornOptions& options, Same<T>* f, Same<T>* mu, Same<T>* q,
                        double* charges) {
    THERMOSSL_DISPATCH(sinkhorn<T>(energy, weights, targets, mu0, options, f, mu, q, charges));
}

template <class T>
SinkhornPassReport sinkhorn_pass(const MatrixView<T>& energy, const double* weights, const double* mu,
                                 double temperature, double* f, double* charges, Same<T>* q) {
    THERMOSSL_DISPATCH(sinkhorn_pass<T>(energy, weights, mu, temperature, f, charges, q));
}

template <class T>
void ledger_rows(const MatrixView<T>& q, const MatrixView<T>& a, double scale, const double* shift,
                 const Same<T>* weights, const LedgerRows& out, double* charges) {
    THERMOSSL_DISPATCH(ledger_rows<T>(q, a, scale, shift, weights, out, charges));
}

template <class T>
void label_rows(const MatrixView<T>& q, const Same<T>* weights, double* entropy_q, double* label_mass,
                double* charges) {
    THERMOSSL_DISPATCH(label_rows<T>(q, weights, entropy_q, label_mass, charges));
}

template <class T>
void row_difference_dot(const MatrixView<T>& u, const MatrixView<T>& v, const MatrixView<T>& w, double* out) {
    THERMOSSL_DISPATCH(row_difference_dot<T>(u, v, w, out));
}

#undef THERMOSSL_DISPATCH

#define THERMOSSL_INSTANTIATE(T)                                                                                 \
    template void row_logsumexp<T>(const MatrixView<T>&, double, const double*, const MatrixView<T>*, T*, T*);   \
    template void col_logsumexp<T>(const MatrixView<T>&, double, const double*, T*);                             \
    template void row_softmax<T>(const MatrixView<T>&, double, const double*, T*, T*);                           \
    template void row_log_softmax<T>(const MatrixView<T>&, double, const double*, T*);                           \
    template void row_entropy<T>(const MatrixView<T>&, double, const double*, T*, T*);                           \
    template void row_cross_entropy<T>(const MatrixView<T>&, const MatrixView<T>&, double, const double*, T*, T*, \
                                       T*);                                                                      \
    template void row_entropy_grad<T>(const MatrixView<T>&, double, const double*, T*, T*, T*);                  \
    template SinkhornReport sinkhorn<T>(const MatrixView<T>&, const T*, const T*, const T*,                       \
                                        const SinkhornOptions&, T*, T*, T*, double*);                           \
    template SinkhornPassReport sinkhorn_pass<T>(const MatrixView<T>&, const double*, const double*, double,     \
                                                 double*, double*, T*);                                          \
    template void ledger_rows<T>(const MatrixView<T>&, const MatrixView<T>&, double, const double*, const T*,    \
                                 const LedgerRows&, double*);                                                    \
    template void label_rows<T>(const MatrixView<T>&, const T*, double*, double*, double*);                      \
    template void row_difference_dot<T>(const MatrixView<T>&, const MatrixView<T>&, const MatrixView<T>&, double*);

THERMOSSL_INSTANTIATE(float)
THERMOSSL_INSTANTIATE(double)

#undef THERMOSSL_INSTANTIATE

}  // namespace thermossl
