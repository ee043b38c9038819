// Reading stored matrix elements as the type the kernels compute in: the one place where the
// input element type (float, double, bfloat16, float16: thermossl/half.hpp) meets the compute
// type T. RowReader (rows.hpp) calls these as it hands rows to the kernels, so the kernels' loop
// bodies only ever see rows of T.
//
// Half types are converted in registers and exactly (every bfloat16 and float16 value is a
// float32 value): bfloat16 by a 16-bit shift at every level; float16 by the conversion
// instructions where the level has them (F16C's VCVTPH2PS at the AVX2 level, its 512-bit form
// at the AVX-512 level) and by integer bit operations at the baseline level (exact for normal,
// subnormal, infinite and nan values, and independent of the FTZ/DAZ modes).
// Included inside the instruction-set section of a kernel source (after isa_begin.hpp): each
// level compiles its own copy.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "thermossl/view.hpp"

namespace thermossl::THERMOSSL_ISA_NS::detail {

inline float float_from_bits(std::uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

/// bfloat16 -> float: the stored bits are the float's upper half.
inline float bfloat16_to_float(std::uint16_t bits) { return float_from_bits(static_cast<std::uint32_t>(bits) << 16); }

/// float16 -> float by integer operations (branch-free, so a loop of it vectorises):
/// normal numbers re-bias the exponent (15 -> 127) by an integer add; subnormals m 2^-24 are
/// the integer m times 2^-24 (both exact in float); infinities and nans keep their payload
/// with the exponent field set to all ones.
inline float float16_to_float_bits(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t magnitude = h & 0x7fffu;
    const std::uint32_t exponent = magnitude & 0x7c00u;
    const std::uint32_t normal = (magnitude << 13) + (static_cast<std::uint32_t>(127 - 15) << 23);
    const std::uint32_t special = (magnitude << 13) | 0x7f800000u;
    const float subnormal = static_cast<float>(static_cast<std::int32_t>(magnitude)) * 0x1p-24f;
    std::uint32_t subnormal_bits;
    std::memcpy(&subnormal_bits, &subnormal, sizeof subnormal_bits);
    const std::uint32_t bits = exponent == 0 ? subnormal_bits : (exponent == 0x7c00u ? special : normal);
    return float_from_bits(sign | bits);
}

/// The value of one stored element, in T.
template <class T, class In>
inline T load_element(const In& x) {
    if constexpr (std::is_same<In, bfloat16>::value) {
        return static_cast<T>(bfloat16_to_float(x.bits));
    } else if constexpr (std::is_same<In, float16>::value) {
        return static_cast<T>(float16_to_float_bits(x.bits));
    } else {
        return static_cast<T>(x);
    }
}

/// dst[j] = the value of src[j] in T for a contiguous run of k elements (a row of the input).
template <class T, class In>
inline void load_row(const In* src, T* dst, std::int64_t k) {
    static_assert(sizeof(bfloat16) == 2 && sizeof(float16) == 2, "half types are 16-bit storage");
    if constexpr (std::is_same<In, float16>::value && std::is_same<T, float>::value) {
        std::int64_t j = 0;
#if defined(THERMOSSL_ISA_AVX512)
        for (; j + 16 <= k; j += 16)
            // the masked form: GCC 12's unmasked one reads an undefined register (-Wmaybe-uninitialized)
            _mm512_storeu_ps(dst + j, _mm512_mask_cvtph_ps(_mm512_setzero_ps(), 0xffff,
                                                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + j))));
#endif
#if defined(THERMOSSL_ISA_AVX2) || defined(THERMOSSL_ISA_AVX512)
        for (; j + 8 <= k; j += 8)
            _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j))));
        for (; j < k; ++j) dst[j] = _cvtsh_ss(src[j].bits);
#else
        const std::uint16_t* bits = reinterpret_cast<const std::uint16_t*>(src);
#pragma omp simd
        for (j = 0; j < k; ++j) dst[j] = float16_to_float_bits(bits[j]);
#endif
    } else if constexpr (std::is_same<In, bfloat16>::value && std::is_same<T, float>::value) {
        const std::uint16_t* bits = reinterpret_cast<const std::uint16_t*>(src);
#pragma omp simd
        for (std::int64_t j = 0; j < k; ++j) dst[j] = bfloat16_to_float(bits[j]);
    } else {
        for (std::int64_t j = 0; j < k; ++j) dst[j] = load_element<T>(src[j]);
    }
}

}  // namespace thermossl::THERMOSSL_ISA_NS::detail
