// Explicit SIMD vectors of the build's level, for the hot loops of the row kernels.
//
// Why not `omp simd` alone: GCC vectorises each chunk loop of a row separately, so every chunk of
// 64 elements re-broadcast the constants of exp into registers and reduced its float partial sums
// across lanes in float, lane by lane through memory (~1 instruction per element of overhead,
// a fifth of logsumexp's count, and at AVX-512 the 16-lane float tree widened the worst float32
// error). Here the loop over a row is written over whole vectors: constants stay in registers,
// the float lane sums of a chunk are widened to double lanes (no horizontal step until the row
// ends) and the last partial vector of a row goes through the same body with masked loads and
// stores, never a scalar tail.
//
// Vec<T>::V holds kLanes elements of T: 16 float / 8 double lanes at AVX-512, 8 / 4 at AVX2,
// 4 / 2 at the SSE2 baseline (GCC/Clang vector extensions, lowered to the level's registers).
// Vec<T>::W holds the same lanes in double (for float: two registers). Compilers without vector
// extensions (MSVC) get one-lane "vectors": the same code, scalar.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#ifndef THERMOSSL_MADD
#error "include isa_begin.hpp first: it defines THERMOSSL_MADD and the SIMD level of this build"
#endif

#ifndef THERMOSSL_VECTOR_EXT  // -DTHERMOSSL_VECTOR_EXT=0 compiles the one-lane fallback here too
#if defined(__GNUC__) || defined(__clang__)
#define THERMOSSL_VECTOR_EXT 1
#else
#define THERMOSSL_VECTOR_EXT 0
#endif
#endif

#if defined(__GNUC__) && !defined(__clang__)
// Wide vectors (wide_t) are passed between inline functions of one level only, never across a
// library boundary: GCC's note that their ABI differs between levels does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
// GCC 12 warns inside its own AVX-512 conversion intrinsics (their _mm512_undefined_* operand).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace thermossl::THERMOSSL_ISA_NS::detail {

#if !THERMOSSL_VECTOR_EXT
inline constexpr int kVectorBytes = 0;
#elif defined(THERMOSSL_ISA_AVX512)
inline constexpr int kVectorBytes = 64;
#elif defined(THERMOSSL_ISA_AVX2)
inline constexpr int kVectorBytes = 32;
#else
inline constexpr int kVectorBytes = 16;
#endif

template <class T>
struct Vec;

#if THERMOSSL_VECTOR_EXT
template <>
struct Vec<float> {
    static constexpr int kLanes = kVectorBytes / 4;
    typedef float V __attribute__((vector_size(kVectorBytes)));
    typedef std::int32_t I __attribute__((vector_size(kVectorBytes)));   // masks, bits of V
    typedef double W __attribute__((vector_size(2 * kVectorBytes)));     // the lanes in double
    typedef std::int64_t WI __attribute__((vector_size(2 * kVectorBytes)));
};
template <>
struct Vec<double> {
    static constexpr int kLanes = kVectorBytes / 8;
    typedef double V __attribute__((vector_size(kVectorBytes)));
    typedef std::int64_t I __attribute__((vector_size(kVectorBytes)));
    typedef V W;
    typedef I WI;
};
#else
template <>
struct Vec<float> {
    static constexpr int kLanes = 1;
    using V = float;
    using I = bool;
    using W = double;
    using WI = bool;
};
template <>
struct Vec<double> {
    static constexpr int kLanes = 1;
    using V = double;
    using I = bool;
    using W = double;
    using WI = bool;
};
#endif

template <class T>
using vec_t = typename Vec<T>::V;
template <class T>
using mask_t = typename Vec<T>::I;
template <class T>
using wide_t = typename Vec<T>::W;
template <class T>
using wide_mask_t = typename Vec<T>::WI;

/// The vector with every lane equal to x.
template <class V, class S>
inline V splat(S x) {
    if constexpr (std::is_arithmetic<V>::value) {
        return static_cast<V>(x);
    } else {
        using E = std::remove_reference_t<decltype(V{}[0])>;
        return V{} + static_cast<E>(x);  // the scalar operand is broadcast
    }
}

template <class V>
inline V load(const void* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
}

template <class V>
inline void store(void* p, const V v) {
    std::memcpy(p, &v, sizeof(V));
}

/// mask ? a : b, lane by lane (mask lanes are all ones or all zeros).
template <class M, class V>
inline V select(const M mask, const V a, const V b) {
    if constexpr (std::is_arithmetic<V>::value) {
        return mask ? a : b;
    } else {
        return mask ? a : b;  // GCC/Clang vector conditional: a blend (a mask move at AVX-512)
    }
}

/// The integer type with the lanes of V (float or double, scalar or vector) at the same width.
template <class V>
struct LaneInt {
    using type = std::conditional_t<sizeof(V) == 4, std::int32_t, std::int64_t>;
};
#if THERMOSSL_VECTOR_EXT
template <>
struct LaneInt<vec_t<float>> {
    using type = mask_t<float>;
};
template <>
struct LaneInt<vec_t<double>> {
    using type = mask_t<double>;
};
#endif

/// The bits of the lanes of V as integers, and back.
template <class V>
inline typename LaneInt<V>::type bits_of_lanes(const V v) {
    typename LaneInt<V>::type i;
    static_assert(sizeof(i) == sizeof(V), "bits_of_lanes: size mismatch");
    std::memcpy(&i, &v, sizeof(V));
    return i;
}
template <class V, class I>
inline V floats_of_lanes(const I i) {
    V v;
    static_assert(sizeof(I) == sizeof(V), "floats_of_lanes: size mismatch");
    std::memcpy(&v, &i, sizeof(V));
    return v;
}


/// a * b + c, fused where the level has FMA (as THERMOSSL_MADD).
template <class V>
inline V fmadd(const V a, const V b, const V c) {
#if THERMOSSL_HAS_FMA && THERMOSSL_VECTOR_EXT
    if constexpr (!std::is_arithmetic<V>::value) {
        if constexpr (sizeof(V) == 64 && sizeof(a[0]) == 4) {
            return (V)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
        } else if constexpr (sizeof(V) == 64) {
            return (V)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
        } else if constexpr (sizeof(V) == 32 && sizeof(a[0]) == 4) {
            return (V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
        } else if constexpr (sizeof(V) == 32) {
            return (V)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
        } else {
            return a * b + c;  // wider than a register: not used in the hot loops
        }
    } else {
        return THERMOSSL_MADD(a, b, c);
    }
#else
    return a * b + c;
#endif
}

/// Lane index vector 0, 1, ..., kLanes - 1 (integers of the lane width of T).
template <class T>
inline mask_t<T> lane_index() {
    mask_t<T> idx{};
#if THERMOSSL_VECTOR_EXT
    for (int l = 0; l < Vec<T>::kLanes; ++l) idx[l] = l;
#endif
    return idx;
}

/// Lanes [0, r) set: the valid lanes of a row's last, partial vector.
template <class T>
inline mask_t<T> first_lanes(std::int64_t r) {
#if THERMOSSL_VECTOR_EXT
    using S = std::remove_reference_t<decltype(mask_t<T>{}[0])>;
    return lane_index<T>() < static_cast<S>(r);
#else
    return r > 0;
#endif
}

/// The same for the double lanes of wide_t<T>.
template <class T>
inline wide_mask_t<T> first_wide_lanes(std::int64_t r) {
#if THERMOSSL_VECTOR_EXT
    wide_mask_t<T> idx{};
    for (int l = 0; l < Vec<T>::kLanes; ++l) idx[l] = l;
    return idx < static_cast<std::int64_t>(r);
#else
    return r > 0;
#endif
}

/// Loads r < kLanes elements of p into the first lanes; the other lanes hold `fill`.
template <class T>
inline vec_t<T> load_partial(const T* p, std::int64_t r, T fill) {
#if THERMOSSL_VECTOR_EXT && defined(THERMOSSL_ISA_AVX512)
    const __mmask16 k16 = static_cast<__mmask16>((1u << r) - 1u);
    if constexpr (std::is_same<T, float>::value) {
        return (vec_t<T>)_mm512_mask_loadu_ps(_mm512_set1_ps(fill), k16, p);
    } else {
        return (vec_t<T>)_mm512_mask_loadu_pd(_mm512_set1_pd(fill), static_cast<__mmask8>(k16), p);
    }
#elif THERMOSSL_VECTOR_EXT && defined(THERMOSSL_ISA_AVX2)
    // vmaskmov load (fast on AMD and Intel; only its store form is slow on AMD) and a blend of the
    // fill: no scalar copies through a stack buffer, whose vector reload waits on store forwarding
    const mask_t<T> valid = first_lanes<T>(r);
    if constexpr (std::is_same<T, float>::value) {
        const vec_t<T> v = (vec_t<T>)_mm256_maskload_ps(p, (__m256i)valid);
        return select(valid, v, splat<vec_t<T>>(fill));
    } else {
        const vec_t<T> v = (vec_t<T>)_mm256_maskload_pd(p, (__m256i)valid);
        return select(valid, v, splat<vec_t<T>>(fill));
    }
#else
    T buffer[Vec<T>::kLanes];
    for (int l = 0; l < Vec<T>::kLanes; ++l) buffer[l] = l < r ? p[l] : fill;
    return load<vec_t<T>>(buffer);
#endif
}

/// Loads r < kLanes doubles into the first double lanes of wide_t<T>; the others are 0.
template <class T>
inline wide_t<T> load_wide_partial(const double* p, std::int64_t r) {
#if THERMOSSL_VECTOR_EXT && (defined(THERMOSSL_ISA_AVX512) || defined(THERMOSSL_ISA_AVX2))
    // masked loads, one register (8 / 4 doubles) at a time: no stack buffer (its vector reload
    // would wait on store forwarding)
    constexpr int kPer = kVectorBytes / 8;
    wide_t<T> w;
    for (int h = 0; h < Vec<T>::kLanes / kPer; ++h) {
        const std::int64_t in_h = std::max<std::int64_t>(0, std::min<std::int64_t>(kPer, r - h * kPer));
#if defined(THERMOSSL_ISA_AVX512)
        const __m512d part = _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << in_h) - 1u), p + h * kPer);
#else
        const __m256i idx = _mm256_set_epi64x(3, 2, 1, 0);
        const __m256d part = _mm256_maskload_pd(p + h * kPer, _mm256_cmpgt_epi64(_mm256_set1_epi64x(in_h), idx));
#endif
        std::memcpy(reinterpret_cast<char*>(&w) + h * kVectorBytes, &part, kVectorBytes);
    }
    return w;
#else
    double buffer[Vec<T>::kLanes] = {};
    std::memcpy(buffer, p, static_cast<std::size_t>(r) * sizeof(double));
    return load<wide_t<T>>(buffer);
#endif
}

/// Stores the first r < kLanes lanes of v to p.
template <class T>
inline void store_partial(T* p, std::int64_t r, const vec_t<T> v) {
#if THERMOSSL_VECTOR_EXT && defined(THERMOSSL_ISA_AVX512)
    const __mmask16 k16 = static_cast<__mmask16>((1u << r) - 1u);
    if constexpr (std::is_same<T, float>::value) {
        _mm512_mask_storeu_ps(p, k16, (__m512)v);
    } else {
        _mm512_mask_storeu_pd(p, static_cast<__mmask8>(k16), (__m512d)v);
    }
#else
    T buffer[Vec<T>::kLanes];
    store(buffer, v);
    std::memcpy(p, buffer, static_cast<std::size_t>(r) * sizeof(T));
#endif
}

/// The lanes of a T vector in double (float: converted; double: as is).
template <class T>
inline wide_t<T> widen(const vec_t<T> v) {
#if THERMOSSL_VECTOR_EXT
    if constexpr (std::is_same<T, float>::value) {
        return __builtin_convertvector(v, wide_t<T>);
    } else {
        return v;
    }
#else
    return static_cast<double>(v);
#endif
}

/// Double lanes back to T (one rounding for float).
template <class T>
inline vec_t<T> narrow(const wide_t<T> w) {
#if THERMOSSL_VECTOR_EXT
    if constexpr (std::is_same<T, float>::value) {
        return __builtin_convertvector(w, vec_t<T>);
    } else {
        return w;
    }
#else
    return static_cast<T>(w);
#endif
}

/// A mask of double lanes as a mask of T lanes.
template <class T>
inline mask_t<T> narrow_mask(const wide_mask_t<T> m) {
#if THERMOSSL_VECTOR_EXT
    if constexpr (std::is_same<T, float>::value) {
        return __builtin_convertvector(m, mask_t<T>);
    } else {
        return m;
    }
#else
    return m;
#endif
}

/// Double accumulators for the lanes of one vec_t<T>: add() widens a T vector and adds it lane by
/// lane (for float: two double registers, the low and high half, without going through memory),
/// sum() adds the lanes in a fixed order.
template <class T>
struct DoubleLanes;
#if THERMOSSL_VECTOR_EXT
template <>
struct DoubleLanes<float> {
    typedef double D __attribute__((vector_size(kVectorBytes)));
    typedef float H __attribute__((vector_size(kVectorBytes / 2)));
    D lo{}, hi{};
    void add(const vec_t<float> v) {
#if defined(THERMOSSL_ISA_AVX512)
        // one conversion per half (GCC splits __builtin_convertvector into 2-lane pieces)
        lo += (D)_mm512_cvtps_pd(_mm512_castps512_ps256((__m512)v));
        hi += (D)_mm512_cvtps_pd(_mm512_extractf32x8_ps((__m512)v, 1));
#elif defined(THERMOSSL_ISA_AVX2)
        lo += (D)_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)v));
        hi += (D)_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)v, 1));
#else
        H l, h;
        std::memcpy(&l, &v, sizeof(H));
        std::memcpy(&h, reinterpret_cast<const char*>(&v) + sizeof(H), sizeof(H));
        lo += __builtin_convertvector(l, D);
        hi += __builtin_convertvector(h, D);
#endif
    }
    double sum() const {
        const D both = lo + hi;
        double total = 0.0;
        for (int l = 0; l < Vec<float>::kLanes / 2; ++l) total += both[l];
        return total;
    }
};
template <>
struct DoubleLanes<double> {
    vec_t<double> acc{};
    void add(const vec_t<double> v) { acc += v; }
    double sum() const {
        double total = 0.0;
        for (int l = 0; l < Vec<double>::kLanes; ++l) total += acc[l];
        return total;
    }
};
#else
template <class T>
struct DoubleLanes {
    double acc = 0.0;
    void add(const T v) { acc += static_cast<double>(v); }
    double sum() const { return acc; }
};
#endif

/// Sum of the lanes of a double vector, in a fixed order (lanes 0..n-1), so every level and
/// every call adds the same way.
template <class W>
inline double lane_sum(const W w) {
    if constexpr (std::is_arithmetic<W>::value) {
        return static_cast<double>(w);
    } else {
        double total = 0.0;
        for (unsigned l = 0; l < sizeof(W) / sizeof(double); ++l) total += w[l];
        return total;
    }
}

/// The lanes where `mask` is not set (~ on vector masks, ! on the one-lane fallback's bool).
template <class M>
inline M mask_not(const M mask) {
    if constexpr (std::is_same<M, bool>::value) {
        return !mask;
    } else {
        return ~mask;
    }
}

/// acc + (mask ? v : 0), lane by lane. At AVX-512 written as mask ? acc + v : acc, which GCC
/// emits as one merge-masked add (vaddps/vaddpd {k}); elsewhere a select (an and) and an add.
/// The same bits either way: adding +0 leaves acc as it is, except that -0 + +0 = +0 (the
/// masked form keeps -0), a difference no sum of the kernels can show.
template <class M, class V>
inline V add_where(const V acc, const M mask, const V v) {
#if THERMOSSL_VECTOR_EXT && defined(THERMOSSL_ISA_AVX512)
    if constexpr (sizeof(V) == 64) return select(mask, acc + v, acc);
#endif
    return acc + select(mask, v, splat<V>(0));
}

/// acc + (mask ? a * b : 0). At AVX-512 one merge-masked FMA (vfmadd231 {k}: a * b + acc rounded
/// once); elsewhere the product is rounded, selected and added (as `acc += select(mask, a * b, 0)`).
template <class M, class V>
inline V madd_where(const V acc, const M mask, const V a, const V b) {
#if THERMOSSL_VECTOR_EXT && defined(THERMOSSL_ISA_AVX512)
    if constexpr (sizeof(V) == 64) return select(mask, fmadd(a, b, acc), acc);
#endif
    return acc + select(mask, a * b, splat<V>(0));
}

/// How many times each lane's mask was set, in integer lanes (a set mask lane is -1, so the
/// lanes count down: one integer subtraction per vector, no float flush; at AVX-512 one
/// merge-masked integer add of -1, the mask staying in its mask register); total() adds the lanes.
template <class T>
struct LaneCount {
#if THERMOSSL_VECTOR_EXT
    mask_t<T> minus_count{};
    void add(const mask_t<T> m) {
#if defined(THERMOSSL_ISA_AVX512)
        minus_count = select(m, minus_count - 1, minus_count);
#else
        minus_count += m;
#endif
    }
    double total() const { return -lane_sum(__builtin_convertvector(minus_count, wide_t<T>)); }
#else
    std::int64_t count = 0;
    void add(const bool m) { count += m ? 1 : 0; }
    double total() const { return static_cast<double>(count); }
#endif
};

/// Lane-wise v > m ? v : m and v < m ? v : m: a nan in v keeps m (x86 max/min semantics).
template <class V>
inline V max_lanes(const V v, const V m) { return v > m ? v : m; }
template <class V>
inline V min_lanes(const V v, const V m) { return v < m ? v : m; }

/// Lane-wise lo > v ? lo : v, as one max instruction where the level has one (x86 max returns
/// its second operand when either is nan, so a nan in v passes through). GCC does not turn the
/// conditional into a max by itself (it emits a compare and a blend).
template <class V>
inline V clamp_below(const V v, const V lo) {
#if THERMOSSL_VECTOR_EXT && (defined(THERMOSSL_ISA_AVX512) || defined(THERMOSSL_ISA_AVX2))
    if constexpr (!std::is_arithmetic<V>::value) {
        constexpr std::size_t kElem = sizeof(std::declval<V>()[0]);
        if constexpr (sizeof(V) == 64 && kElem == 4) {
            return (V)_mm512_max_ps((__m512)lo, (__m512)v);
        } else if constexpr (sizeof(V) == 64 && kElem == 8) {
            return (V)_mm512_max_pd((__m512d)lo, (__m512d)v);
        } else if constexpr (sizeof(V) == 32 && kElem == 4) {
            return (V)_mm256_max_ps((__m256)lo, (__m256)v);
        } else if constexpr (sizeof(V) == 32 && kElem == 8) {
            return (V)_mm256_max_pd((__m256d)lo, (__m256d)v);
        } else {
            return lo > v ? lo : v;
        }
    } else {
        return lo > v ? lo : v;
    }
#else
    return lo > v ? lo : v;
#endif
}

/// Lane-wise hi < v ? hi : v, as one min instruction where the level has one (as clamp_below:
/// a nan in v passes through).
template <class V>
inline V clamp_above(const V v, const V hi) {
#if THERMOSSL_VECTOR_EXT && (defined(THERMOSSL_ISA_AVX512) || defined(THERMOSSL_ISA_AVX2))
    if constexpr (!std::is_arithmetic<V>::value) {
        constexpr std::size_t kElem = sizeof(std::declval<V>()[0]);
        if constexpr (sizeof(V) == 64 && kElem == 4) {
            return (V)_mm512_min_ps((__m512)hi, (__m512)v);
        } else if constexpr (sizeof(V) == 64 && kElem == 8) {
            return (V)_mm512_min_pd((__m512d)hi, (__m512d)v);
        } else if constexpr (sizeof(V) == 32 && kElem == 4) {
            return (V)_mm256_min_ps((__m256)hi, (__m256)v);
        } else if constexpr (sizeof(V) == 32 && kElem == 8) {
            return (V)_mm256_min_pd((__m256d)hi, (__m256d)v);
        } else {
            return hi < v ? hi : v;
        }
    } else {
        return hi < v ? hi : v;
    }
#else
    return hi < v ? hi : v;
#endif
}

/// Max / min of the lanes, ignoring nan lanes (a nan-only vector gives `init`).
template <class V, class S>
inline S lane_max(const V v, S init) {
    if constexpr (std::is_arithmetic<V>::value) {
        return v > init ? v : init;
    } else {
        S m = init;
        for (unsigned l = 0; l < sizeof(V) / sizeof(S); ++l) m = v[l] > m ? v[l] : m;
        return m;
    }
}
template <class V, class S>
inline S lane_min(const V v, S init) {
    if constexpr (std::is_arithmetic<V>::value) {
        return v < init ? v : init;
    } else {
        S m = init;
        for (unsigned l = 0; l < sizeof(V) / sizeof(S); ++l) m = v[l] < m ? v[l] : m;
        return m;
    }
}

template <class V, class S>
inline V lane_splat(S x) { return splat<V>(x); }
/// Lane-wise integer -> floating conversion (the same width).
template <class V, class I>
inline V lane_convert(const I i) {
    if constexpr (std::is_arithmetic<V>::value) {
        return static_cast<V>(i);
    } else {
        return __builtin_convertvector(i, V);
    }
}
template <class V>
inline V lane_fma(const V a, const V b, const V c) { return fmadd(a, b, c); }

}  // namespace thermossl::THERMOSSL_ISA_NS::detail
