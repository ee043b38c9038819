// The public kernel API: each function forwards to the implementation of the active SIMD level
// (thermossl/simd.hpp). Compiled for the baseline ISA only; the levels' code lives in
// namespaces isa_baseline, isa_avx2 and isa_avx512 (the same sources compiled once per level, see
// isa_begin.hpp).
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
#if THERMOSSL_HAVE_AVX512
#define THERMOSSL_ISA_NS isa_avx512
#include "kernels.hpp"
#undef THERMOSSL_ISA_NS
#endif

namespace thermossl {
namespace {

bool cpu_has_avx2() {
#if THERMOSSL_HAVE_AVX2 && (defined(__GNUC__) || defined(__clang__))
    // libgcc's check includes the OS support (XCR0) for the AVX register state.
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
    return false;
#endif
}

bool cpu_has_avx512() {
#if THERMOSSL_HAVE_AVX512 && (defined(__GNUC__) || defined(__clang__))
    // The subsets the AVX-512 build targets; libgcc also checks that the OS saves the mask and
    // 512-bit register state (XCR0).
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
}

SimdLevel best_level() {
    if (cpu_has_avx512()) return SimdLevel::kAvx512;
    return cpu_has_avx2() ? SimdLevel::kAvx2 : SimdLevel::kBaseline;
}

SimdLevel initial_level() {
    const char* requested = std::getenv("THERMOSSL_SIMD");
    if (requested != nullptr) {
        if (std::strcmp(requested, "baseline") == 0) return SimdLevel::kBaseline;
        if (std::strcmp(requested, "avx2") == 0 && cpu_has_avx2()) return SimdLevel::kAvx2;
        if (std::strcmp(requested, "avx512") == 0 && cpu_has_avx512()) return SimdLevel::kAvx512;
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
        case SimdLevel::kAvx512:
            return cpu_has_avx512();
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
        case SimdLevel::kAvx512:
            return "avx512";
    }
    return "unknown";
}

// The public kernels (declared in the public headers): each forwards to the active level.
#if THERMOSSL_HAVE_AVX2
#define THERMOSSL_CALL_AVX2(name, args) \
    if (simd_level() == SimdLevel::kAvx2) return isa_avx2::name<T> args;
#else
#define THERMOSSL_CALL_AVX2(name, args)
#endif
#if THERMOSSL_HAVE_AVX512
#define THERMOSSL_CALL_AVX512(name, args) \
    if (simd_level() == SimdLevel::kAvx512) return isa_avx512::name<T> args;
#else
#define THERMOSSL_CALL_AVX512(name, args)
#endif
#define THERMOSSL_FORWARDER(ret, name, params, args) \
    template <class T>                               \
    ret name params {                                \
        THERMOSSL_CALL_AVX512(name, args)            \
        THERMOSSL_CALL_AVX2(name, args)              \
        return isa_baseline::name<T> args;           \
    }

THERMOSSL_CPU_KERNELS(THERMOSSL_FORWARDER, T)
THERMOSSL_KERNEL_TYPES(THERMOSSL_KERNEL_INSTANTIATION, THERMOSSL_CPU_KERNELS)
THERMOSSL_HALF_TYPES(THERMOSSL_KERNEL_INSTANTIATION, THERMOSSL_HALF_INPUT_KERNELS)
THERMOSSL_HALF_SCORE_KERNELS(THERMOSSL_FORWARDER, T)
THERMOSSL_HALF_TYPES(THERMOSSL_KERNEL_INSTANTIATION, THERMOSSL_HALF_SCORE_KERNELS)

#undef THERMOSSL_FORWARDER
#undef THERMOSSL_CALL_AVX2
#undef THERMOSSL_CALL_AVX512

}  // namespace thermossl
