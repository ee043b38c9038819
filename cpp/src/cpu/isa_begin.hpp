// Opens the instruction-set section of a kernel source (close it with isa_end.hpp).
//
// Every kernel source is compiled once per SIMD level: CMake defines THERMOSSL_ISA_NS (the
// namespace of that build: isa_baseline, isa_avx2, isa_avx512) and, for the AVX2 build,
// THERMOSSL_ISA_AVX2, which turns on `#pragma GCC target("avx2,fma,f16c")` for the code that follows
// (F16C: the float16 conversions of load_element.hpp; every AVX2 CPU has it);
// for the AVX-512 build THERMOSSL_ISA_AVX512 (AVX-512 F/BW/DQ/VL with AVX2 and FMA, 512-bit
// vectors preferred: 16 float or 8 double lanes, and mask registers for the selects). dispatch.cpp picks a
// level at run time (thermossl/simd.hpp). Nothing is compiled with -m flags, so a wheel built here
// runs on any x86-64.
//
// ODR safety: the standard and public headers are included *before* the target pragma, so their
// inline functions and the templates instantiated from them keep the baseline target (the linker
// keeps one copy of each, which must run everywhere); everything after the pragma lives in
// namespace thermossl::THERMOSSL_ISA_NS and is distinct per level.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(THERMOSSL_ISA_AVX2) || defined(THERMOSSL_ISA_AVX512)
#include <immintrin.h>  // the F16C / AVX-512 conversions of load_element.hpp
#endif

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>  // the FMA and masked load/store intrinsics of simd_vec.hpp
#endif

#include "thermossl/gibbs.hpp"
#include "thermossl/logsumexp.hpp"
#include "thermossl/sinkhorn.hpp"
#include "thermossl/stores.hpp"
#include "thermossl/thermo.hpp"
#include "thermossl/view.hpp"

#ifndef THERMOSSL_ISA_NS
#error "kernel sources are compiled with THERMOSSL_ISA_NS defined (see CMakeLists.txt)"
#endif

#if defined(THERMOSSL_ISA_AVX512)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,prefer-vector-width=512")
#endif
#define THERMOSSL_MADD(a, b, c) std::fma((a), (b), (c))
#define THERMOSSL_HAS_FMA 1
#elif defined(THERMOSSL_ISA_AVX2)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
// Fused multiply-add where the polynomial evaluation wants it (the build uses -ffp-contract=off,
// so nothing else is fused: an exponent computed in two passes compares equal to itself).
#define THERMOSSL_MADD(a, b, c) std::fma((a), (b), (c))
#define THERMOSSL_HAS_FMA 1
#else
#define THERMOSSL_MADD(a, b, c) ((a) * (b) + (c))
#define THERMOSSL_HAS_FMA 0
#endif
