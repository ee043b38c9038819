// thermossl — which SIMD level the kernels run at.
//
// The kernels are compiled for several instruction-set levels and one is chosen at run time:
// the best the CPU supports, unless the environment variable THERMOSSL_SIMD names another
// ("baseline", "avx2" or "avx512"; an unknown or unsupported name falls back to the best
// supported level).
// Results at different levels agree to rounding; the setting is process-wide.
#pragma once

namespace thermossl {

enum class SimdLevel : int {
    kBaseline = 0,  // x86-64 baseline (SSE2) or the architecture's default
    kAvx2 = 1,      // AVX2 + FMA
    kAvx512 = 2,    // AVX-512 F, BW, DQ, VL (with AVX2 + FMA)
};

/// The level the kernels run at now.
SimdLevel simd_level();
/// Whether this build has code for `level` and the CPU can run it.
bool simd_level_supported(SimdLevel level);
/// Switch level for the whole process; throws std::invalid_argument when not supported.
/// Not meant to be called while kernels run on other threads.
void set_simd_level(SimdLevel level);
/// "baseline", "avx2" or "avx512".
const char* simd_level_name(SimdLevel level);

}  // namespace thermossl
