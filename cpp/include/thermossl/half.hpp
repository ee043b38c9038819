// thermossl — half-precision element types of the kernels' input matrices.
//
// The row kernels (logsumexp.hpp's row_logsumexp, every kernel of gibbs.hpp) also read matrices
// stored as bfloat16 or IEEE float16 (torch.bfloat16, torch.float16): each element is converted
// to float32 in registers as the row is read, the kernel computes in float32 exactly as for a
// float32 matrix holding the same values, and its results are float32 (Real<T>). No converted
// copy of the matrix is made.
#pragma once

#include <cstdint>

namespace thermossl {

/// bfloat16 storage: the upper 16 bits of a float32 (torch.bfloat16's layout).
struct bfloat16 {
    std::uint16_t bits;
};

/// IEEE 754 binary16 storage (torch.float16, numpy.float16).
struct float16 {
    std::uint16_t bits;
};

namespace detail {
template <class T>
struct real_of {
    using type = T;
};
template <>
struct real_of<bfloat16> {
    using type = float;
};
template <>
struct real_of<float16> {
    using type = float;
};
}  // namespace detail

/// The type a kernel computes in and writes its results in for input elements of type T:
/// float for the half types, T itself for float and double. Like Same<T>, a non-deduced context.
template <class T>
using Real = typename detail::real_of<T>::type;

}  // namespace thermossl
