// Declarations of the kernels of one SIMD level, in namespace thermossl::THERMOSSL_ISA_NS,
// generated from the kernel list (kernel_list.hpp). Included by the kernel sources (their own
// level) and by dispatch.cpp once per level, so it has no include guard. The signatures are
// those of the public headers; see there for what each kernel computes.
#include "kernel_list.hpp"

namespace thermossl {
namespace THERMOSSL_ISA_NS {

THERMOSSL_CPU_KERNELS(THERMOSSL_KERNEL_DECLARATION, T)
THERMOSSL_HALF_SCORE_KERNELS(THERMOSSL_KERNEL_DECLARATION, T)

}  // namespace THERMOSSL_ISA_NS
}  // namespace thermossl
