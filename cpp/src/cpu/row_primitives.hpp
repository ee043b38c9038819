// Per-row building blocks of the CPU kernels. Each works on one contiguous row of k elements
// that is already in cache (or about to be), with the exponent map x_j = scale * a_j + shift_j.
// The hot loops run over explicit vectors of the level (simd_vec.hpp): row_sweep walks a row
// vector by vector (the last, partial vector masked), the row sums live in float or double lanes
// and are widened to double lanes once per chunk (LaneSums). The remaining scalar loops are
// written for auto-vectorisation: no branches, OpenMP `simd` reductions.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "rows.hpp"
#include "exp_nonpositive.hpp"
#include "log_positive.hpp"

namespace thermossl::THERMOSSL_ISA_NS::detail {

template <class T, bool kShift>
inline double exponent_at(const Exponent ex, const T* a, std::int64_t j) {
    if constexpr (kShift) {
        return ex.scale * static_cast<double>(a[j]) + ex.shift[j];
    } else {
        return ex.scale * static_cast<double>(a[j]);
    }
}

/// max_j x_j, ignoring nan (a nan is caught later: it turns the sums into nan). -inf if k == 0.
/// One pass over the row, in double lanes (exact: max is order-free).
template <class T, bool kShift>
inline double row_max(const T* a, std::int64_t k, const Exponent ex) {
    using W = wide_t<T>;
    constexpr int kL = Vec<T>::kLanes;
    const W scale = splat<W>(ex.scale);
    const auto x_at = [&](std::int64_t j) {
        W x = scale * widen<T>(load<vec_t<T>>(a + j));
        if constexpr (kShift) x += load<W>(ex.shift + j);
        return x;
    };
    W m0 = splat<W>(-infinity<double>()), m1 = m0;  // two independent maxima
    std::int64_t j = 0;
    for (; j + 2 * kL <= k; j += 2 * kL) {
        m0 = max_lanes(x_at(j), m0);
        m1 = max_lanes(x_at(j + kL), m1);
    }
    for (; j + kL <= k; j += kL) m0 = max_lanes(x_at(j), m0);
    if (j < k) {
        W x = scale * widen<T>(load_partial<T>(a + j, k - j, T(0)));
        if constexpr (kShift) x += load_wide_partial<T>(ex.shift + j, k - j);
        x = first_wide_lanes<T>(k - j) ? x : splat<W>(-infinity<double>());
        m1 = max_lanes(x, m1);
    }
    return lane_max(max_lanes(m0, m1), -infinity<double>());
}

/// The exponent of one row relative to its max, t_j = x_j - m, in T, and whether x_j is at the
/// max. Two evaluations of the same map, picked per row by with_row_frame:
///
/// ExactArg (any T, any shift): x_j and m in double, t_j = T(x_j - m): one rounding of t_j.
///
/// PivotArg (float data, no shift): x_j = scale * a_j is monotone in a_j, so the max sits at the
/// pivot a* = max_j a_j (scale > 0) or min_j a_j (scale < 0), found by a float max/min (exact),
/// and t_j = s * (a_j - a*) with s = float(scale), all in float lanes (8 per AVX2 register, twice
/// the double lanes). Each factor is rounded once (a_j - a* to 2^-24 of itself, s to 2^-24 of
/// scale) and so is the product, so t_j carries at most 3 * 2^-24 of |t_j| (ExactArg: 2^-24) and,
/// as before, never the 2^-24 |x_j| that forming x_j in float would cost. x_j is at the max
/// exactly where a_j == a*; m = scale * double(a*) is the m of ExactArg to the bit.
///
/// Each evaluates one element (operator()) or one vector of elements (lanes, see FullLanes and
/// TailLanes below): writes t, returns whether x is at the max.
template <class T, bool kShift>
struct ExactArg {
    using Elem = T;
    const T* a;
    Exponent ex;
    double m;
    /// Writes t_j, returns x_j >= m.
    bool operator()(std::int64_t j, T& t) const {
        const double x = exponent_at<T, kShift>(ex, a, j);
        t = static_cast<T>(x - m);
        return x >= m;
    }
    template <class Lanes>
    mask_t<T> lanes(std::int64_t j, const Lanes& at, vec_t<T>& t) const {
        using W = wide_t<T>;
        W x = splat<W>(ex.scale) * widen<T>(at.load(a + j, T(0)));
        if constexpr (kShift) x += at.load_wide(ex.shift + j);
        t = narrow<T>(x - splat<W>(m));
        return narrow_mask<T>(x >= splat<W>(m));
    }
};

struct PivotArg {
    using Elem = float;
    const float* a;
    float pivot;
    float scale;
    bool operator()(std::int64_t j, float& t) const {
        const float d = a[j] - pivot;
        t = scale * d;
        return d == 0.0f;
    }
    template <class Lanes>
    mask_t<float> lanes(std::int64_t j, const Lanes& at, vec_t<float>& t) const {
        using V = vec_t<float>;
        const V d = at.load(a + j, pivot) - splat<V>(pivot);
        t = splat<V>(scale) * d;
        return d == splat<V>(0.0f);
    }
};

/// PivotArg on a row whose every t_j lies in [-86.9, 0] (with_row_frame checks the far end of
/// the row): t_j is finite, exp(t_j) needs no underflow flush, and t_j = 0 exactly where x_j is at
/// the max, where exp gives 1 exactly (exp_nonpositive.hpp: c0 = 1). So sweep bodies may take
/// exp_lanes_in_range(t) without the select at the max, and products e t, q t without the selects
/// that keep 0 * inf out: the same bits as the masked form on such rows, a few instructions fewer
/// per vector. A nan entry (the max and min pass over it) gives t = nan, which stays nan through
/// the exp and the products, as in the masked form. lanes() still returns the at-max mask for
/// the bodies that count those lanes.
struct InRangePivotArg : PivotArg {};

/// Whether every t of the frame is known to be in the exp's range (InRangePivotArg).
template <class Arg>
inline constexpr bool in_range_v = std::is_same<std::remove_cv_t<Arg>, InRangePivotArg>::value;

/// max_j a_j and min_j a_j of a row (float or double), ignoring nan (all nan: -inf / +inf):
/// one pass in lanes of T.
template <class T>
inline T row_max_raw(const T* a, std::int64_t k) {
    using V = vec_t<T>;
    constexpr int kL = Vec<T>::kLanes;
    // four independent maxima: one load-and-max per vector (the loads fold into the max)
    V m0 = splat<V>(-infinity<T>()), m1 = m0, m2 = m0, m3 = m0;
    std::int64_t j = 0;
    for (; j + 4 * kL <= k; j += 4 * kL) {
        m0 = max_lanes(load<V>(a + j), m0);
        m1 = max_lanes(load<V>(a + j + kL), m1);
        m2 = max_lanes(load<V>(a + j + 2 * kL), m2);
        m3 = max_lanes(load<V>(a + j + 3 * kL), m3);
    }
    for (; j + kL <= k; j += kL) m0 = max_lanes(load<V>(a + j), m0);
    if (j < k) m1 = max_lanes(load_partial<T>(a + j, k - j, -infinity<T>()), m1);
    return lane_max(max_lanes(max_lanes(m0, m1), max_lanes(m2, m3)), -infinity<T>());
}

template <class T>
inline T row_min_raw(const T* a, std::int64_t k) {
    using V = vec_t<T>;
    constexpr int kL = Vec<T>::kLanes;
    V m0 = splat<V>(infinity<T>()), m1 = m0, m2 = m0, m3 = m0;
    std::int64_t j = 0;
    for (; j + 4 * kL <= k; j += 4 * kL) {
        m0 = min_lanes(load<V>(a + j), m0);
        m1 = min_lanes(load<V>(a + j + kL), m1);
        m2 = min_lanes(load<V>(a + j + 2 * kL), m2);
        m3 = min_lanes(load<V>(a + j + 3 * kL), m3);
    }
    for (; j + kL <= k; j += kL) m0 = min_lanes(load<V>(a + j), m0);
    if (j < k) m1 = min_lanes(load_partial<T>(a + j, k - j, infinity<T>()), m1);
    return lane_min(min_lanes(min_lanes(m0, m1), min_lanes(m2, m3)), infinity<T>());
}

/// The pivot a* of a row for x = scale * a (scale != 0): the a with the largest x, i.e. max a for
/// scale > 0 and min a for scale < 0 (x is monotone in a); *known where the caller already has it
/// (logsumexp gathers it during the previous row's pass), else one pass over the row.
template <class T>
inline T row_pivot_raw(const T* a, std::int64_t k, double scale, const T* known = nullptr) {
    if (known != nullptr) return *known;
    return scale > 0 ? row_max_raw(a, k) : row_min_raw(a, k);
}

/// min_j a_j and max_j a_j of a row (float or double) in one pass (nan ignored: all nan gives
/// +inf / -inf): with_row_frame's pivot and far end, the frame of the ledger's unmasked form.
/// Four independent pairs of lanes (one load, a min and a max per vector; 4 vectors per loop trip
/// to spread its 3 instructions). Not inlined: in a caller's row loop its accumulators and
/// constants would share the vector registers with the sweep's.
template <class T>
[[gnu::noinline]] void row_min_max_raw(const T* a, std::int64_t k, T& lo, T& hi) {
    using V = vec_t<T>;
    constexpr int kL = Vec<T>::kLanes;
    V hi0 = splat<V>(-infinity<T>()), hi1 = hi0, hi2 = hi0, hi3 = hi0;
    V lo0 = splat<V>(infinity<T>()), lo1 = lo0, lo2 = lo0, lo3 = lo0;
    std::int64_t j = 0;
    for (; j + 4 * kL <= k; j += 4 * kL) {
        const V v0 = load<V>(a + j), v1 = load<V>(a + j + kL);
        const V v2 = load<V>(a + j + 2 * kL), v3 = load<V>(a + j + 3 * kL);
        hi0 = max_lanes(v0, hi0);
        lo0 = min_lanes(v0, lo0);
        hi1 = max_lanes(v1, hi1);
        lo1 = min_lanes(v1, lo1);
        hi2 = max_lanes(v2, hi2);
        lo2 = min_lanes(v2, lo2);
        hi3 = max_lanes(v3, hi3);
        lo3 = min_lanes(v3, lo3);
    }
    for (; j + kL <= k; j += kL) {
        const V v = load<V>(a + j);
        hi0 = max_lanes(v, hi0);
        lo0 = min_lanes(v, lo0);
    }
    if (j < k) {
        hi1 = max_lanes(load_partial<T>(a + j, k - j, -infinity<T>()), hi1);
        lo1 = min_lanes(load_partial<T>(a + j, k - j, infinity<T>()), lo1);
    }
    hi = lane_max(max_lanes(max_lanes(hi0, hi1), max_lanes(hi2, hi3)), -infinity<T>());
    lo = lane_min(min_lanes(min_lanes(lo0, lo1), min_lanes(lo2, lo3)), infinity<T>());
}

/// body(m, arg) compiled on its own: each float frame's sweep gets the vector registers to itself.
/// Inlined side by side into one caller, the sweeps of two frames share the registers of their
/// hoisted constants, and at AVX2 (16 ymm registers) the out-of-range sweep spilled to the stack
/// (+5 instructions per vector, callgrind). One call per row.
template <class Body, class Arg>
[[gnu::noinline]] void call_frame_body(Body& body, const double m, const Arg arg) {
    body(m, arg);
}

/// The frame of a float row at scale s: the pivot (where s a is largest: max a for s > 0, min a
/// for s < 0) and whether the whole row is within the float exp's range, from one min-and-max
/// pass. t = fl(s fl(a - pivot)) is monotone in a (rounding is monotone), so the far end's t is the
/// row's lowest: at or above the exp's flush (-86.9, as exp_nonpositive_f32) every t is in range;
/// a nan or infinite far end fails the test. For with_row_frame (InRangePivotArg) and the build of
/// SwAV's K (kernel_row<true>).
struct FloatRowFrame {
    float pivot;
    bool in_range;
};
inline FloatRowFrame float_row_frame(const float* a, std::int64_t k, double scale) {
    float top = 0.0f, bottom = 0.0f;
    row_min_max_raw(a, k, bottom, top);
    const float pivot = scale > 0 ? top : bottom;
    const float far = scale > 0 ? bottom : top;
    return {pivot, static_cast<float>(scale) * (far - pivot) >= -86.9f};
}

/// Finds the max m of the exponents x_j of a row (k >= 1) and calls body(m, arg) with the
/// evaluator of t_j = x_j - m that fits the row: PivotArg for float rows without a shift whose
/// scale is a normal float of moderate size and whose max is finite (InRangePivotArg where the
/// whole row is within the exp's range, the common case of scores over a temperature), ExactArg
/// otherwise (double data, shifted exponents, rows whose max is +-inf or that are all nan).
/// `body` is a generic lambda, compiled once per evaluator.
template <class T, bool kShift, class Body>
inline void with_row_frame(const T* a, std::int64_t k, const Exponent ex, Body&& body) {
    if constexpr (std::is_same<T, float>::value && !kShift) {
        const double mag = std::fabs(ex.scale);
        if (mag >= 0x1p-60 && mag <= 0x1p60) {
            const FloatRowFrame frame = float_row_frame(a, k, ex.scale);
            const double m = ex.scale * static_cast<double>(frame.pivot);
            if (std::isfinite(m)) {
                const float s = static_cast<float>(ex.scale);
                if (frame.in_range) {
                    call_frame_body(body, m, InRangePivotArg{{a, frame.pivot, s}});
                } else {
                    call_frame_body(body, m, PivotArg{a, frame.pivot, s});
                }
                return;
            }
        }
    }
    double m;
    if constexpr (!kShift) {
        // x_j = fl(scale * a_j) is monotone in a_j (rounding is monotone), so max_j x_j is
        // fl(scale * max a) for scale > 0 and fl(scale * min a) for scale < 0: the same bits as
        // row_max, from a max pass without the multiply and the widening (nan ignored as there;
        // scale 0, inf or nan keeps row_max, where 0 * inf would differ)
        if (ex.scale != 0.0 && std::isfinite(ex.scale)) {
            const T pivot = row_pivot_raw(a, k, ex.scale);
            m = ex.scale * static_cast<double>(pivot);
        } else {
            m = row_max<T, kShift>(a, k, ex);
        }
    } else {
        m = row_max<T, kShift>(a, k, ex);
    }
    body(m, ExactArg<T, kShift>{a, ex, m});
}

/// Sums over a row are taken in chunks: each chunk is reduced in T by a vectorised `omp simd`
/// reduction, and the chunk sums are added in double, which keeps float32 rows of any length
/// accurate without mixed-width vector code. A chunk gives each float lane 8 terms at AVX2 and
/// AVX-512 (16 at the 4-lane baseline), so the wider level does not pay twice the per-chunk
/// horizontal reductions.
#if defined(THERMOSSL_ISA_AVX512)
inline constexpr std::int64_t kChunk = 128;
#else
inline constexpr std::int64_t kChunk = 64;
#endif

/// A full vector of a row: plain loads and stores.
template <class T>
struct FullLanes {
    vec_t<T> load(const T* p, T /*fill*/) const { return detail::load<vec_t<T>>(p); }
    wide_t<T> load_wide(const double* p) const { return detail::load<wide_t<T>>(p); }
    vec_t<T> keep(const vec_t<T> v) const { return v; }
    mask_t<T> keep(const mask_t<T> m) const { return m; }
    void store(T* p, const vec_t<T> v) const { detail::store(p, v); }
};

/// The last r < kLanes elements of a row: masked loads (the other lanes hold `fill`), masked
/// stores, and keep() zeroes the lanes past the row so that they add nothing to the sums.
template <class T>
struct TailLanes {
    std::int64_t r;
    mask_t<T> valid;
    explicit TailLanes(std::int64_t rest) : r(rest), valid(first_lanes<T>(rest)) {}
    vec_t<T> load(const T* p, T fill) const { return load_partial<T>(p, r, fill); }
    wide_t<T> load_wide(const double* p) const { return load_wide_partial<T>(p, r); }
    vec_t<T> keep(const vec_t<T> v) const { return select(valid, v, splat<vec_t<T>>(0)); }
    mask_t<T> keep(const mask_t<T> m) const { return m & valid; }
    void store(T* p, const vec_t<T> v) const { store_partial<T>(p, r, v); }
};

/// kN running sums of one row in lanes: each vector's terms are added to a T lane sum, and once
/// per chunk (kChunkVectors vectors: 8 terms per lane) the lane sums are widened and added to
/// double lanes; the lanes are added together in a fixed order only when the row ends. So a
/// float sum holds at most 8 terms (as the chunked `omp simd` reductions before) and the
/// cross-lane step is in double at every level, 16 lanes or 4.
template <class T, int kN>
struct LaneSums {
    // double lanes need no chunks (a lane sums k / kLanes terms in double, as the double
    // chunks did before): one flush per 16 vectors only bounds the loop nest and spreads the
    // prefetches of row_sweep (one chunk's bytes at a time, 0.5-1 KiB)
    static constexpr int kChunkVectors = sizeof(T) == 4 ? 8 : 16;
    vec_t<T> part[kN];
    DoubleLanes<T> total[kN];
    LaneSums() {
        for (int s = 0; s < kN; ++s) part[s] = splat<vec_t<T>>(0);
    }
    void flush() {
        for (int s = 0; s < kN; ++s) {
            total[s].add(part[s]);
            part[s] = splat<vec_t<T>>(0);
        }
    }
    double operator[](int s) const { return total[s].sum(); }
};

/// Asks the cache for kBytes bytes of a row from `begin` on, that a later pass will read (one
/// prefetch per 64-byte line, unrolled; a prefetch never faults, so the range may run past the
/// row and the matrix). Into L2 (prefetcht1), not L1 (prefetcht0): the row is read a whole
/// row's pass later, from L2 as fast as from L1 once the L1 streamer runs, and an L1 prefetch
/// holds one of the core's few L1 miss buffers for a whole memory latency, which the demand loads
/// of the current row then wait for. Measured on a 2-core Xeon VM (65536x3000, two threads,
/// alternated processes): logsumexp float32 45.47 -> 35.34 ms at avx512 and 48.63 -> 39.54 ms at
/// avx2, SwAV 4096x3000 12.68 -> 12.50 ms, softmax, entropy gradient, cross-entropy and ledger
/// within +-2% at avx512 (the entropy gradient 66.40 -> 68.03 ms at avx2).
template <std::int64_t kBytes>
inline void prefetch_bytes(const char* begin) {
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC unroll 16
    for (std::int64_t off = 0; off < kBytes; off += 64) __builtin_prefetch(begin + off, 0, 2);
#elif defined(_M_X64)
    for (std::int64_t off = 0; off < kBytes; off += 64) _mm_prefetch(begin + off, _MM_HINT_T1);
#else
    (void)begin;
#endif
}

/// Walks a row of k elements vector by vector: body(j, t, at_max, lanes) with t = x - max for the
/// lanes at j (Arg: PivotArg or ExactArg) and `lanes` the FullLanes / TailLanes to load, store
/// and mask with; the last, partial vector is masked, never a scalar loop. Flushes `sums` once per
/// chunk and at the end.
///
/// `ahead`, `ahead2` (may be null): rows of k elements of T that the caller reads or writes next
/// (the next row of the matrix, another input of this row, the next output row), prefetched chunk
/// by chunk as the sweep goes. The sweep computes from cache while that row streams in, so the next max pass, which
/// would otherwise wait on memory with the vector units idle, finds its row in cache: memory and
/// compute overlap instead of alternating.
template <class Arg, class Sums, class Body>
inline void row_sweep(std::int64_t k, const Arg& arg, Sums& sums, Body&& body, const void* ahead = nullptr,
                      const void* ahead2 = nullptr) {
    using T = typename Arg::Elem;
    constexpr int kL = Vec<T>::kLanes;
    constexpr std::int64_t kChunkElems = static_cast<std::int64_t>(kL) * Sums::kChunkVectors;
    const std::int64_t full = k - k % kL;
    const FullLanes<T> all;
    const char* const next = static_cast<const char*>(ahead);
    const char* const next2 = static_cast<const char*>(ahead2);
    for (std::int64_t j0 = 0; j0 < full; j0 += kChunkElems) {
        const std::int64_t j1 = j0 + kChunkElems < full ? j0 + kChunkElems : full;
        // the whole chunk's bytes, also for a shorter last chunk (the rest is the row after)
        if (next != nullptr) prefetch_bytes<kChunkElems * sizeof(T)>(next + j0 * sizeof(T));
        if (next2 != nullptr) prefetch_bytes<kChunkElems * sizeof(T)>(next2 + j0 * sizeof(T));
        for (std::int64_t j = j0; j < j1; j += kL) {
            vec_t<T> t;
            const mask_t<T> at_max = arg.lanes(j, all, t);
            body(j, t, at_max, all);
        }
        sums.flush();
    }
    if (full < k) {
        if (next != nullptr) prefetch_bytes<kL * sizeof(T)>(next + full * sizeof(T));
        if (next2 != nullptr) prefetch_bytes<kL * sizeof(T)>(next2 + full * sizeof(T));
        const TailLanes<T> tail(k - full);
        vec_t<T> t;
        const mask_t<T> at_max = tail.keep(arg.lanes(full, tail, t));
        body(full, t, at_max, tail);
        sums.flush();
    }
}

/// Writes an output row dst[j], j < k, that is not in cache and will not be read soon
/// (thermossl/stores.hpp): the whole 64-byte lines of dst by non-temporal vector stores of
/// vec_at(j) (the value of the full vector of lanes from j; its operands are read from cache),
/// the elements before dst's first line boundary and after its last by plain stores of
/// scalar_at(j). Whole lines, so each line is written to memory once and never read: a line
/// shared with the row before or after takes plain stores from both (at AVX2, vector-aligned
/// streaming stores of the half lines at the row ends measured slower than plain stores). vec_at
/// and scalar_at must compute the same bits. Call streaming_stores_done() before another thread
/// reads the output. One write of dst to memory.
template <class T, class VecAt, class ScalarAt>
inline void store_row_streaming(T* dst, const std::int64_t k, const VecAt& vec_at, const ScalarAt& scalar_at) {
#if THERMOSSL_VECTOR_EXT && (defined(__x86_64__) || defined(_M_X64))
    constexpr std::uintptr_t kLine = 64;
    constexpr std::int64_t kL = Vec<T>::kLanes;
    constexpr std::int64_t kLineElems = static_cast<std::int64_t>(kLine / sizeof(T));
    const std::uintptr_t address = reinterpret_cast<std::uintptr_t>(dst);
    std::int64_t head = static_cast<std::int64_t>(((kLine - address % kLine) % kLine) / sizeof(T));
    if (address % sizeof(T) != 0 || head > k) head = k;  // no whole line: plain stores
    for (std::int64_t j = 0; j < head; ++j) dst[j] = scalar_at(j);
    const std::int64_t body_end = head + (k - head) / kLineElems * kLineElems;
    for (std::int64_t j = head; j < body_end; j += kL) {
        // the integer form for float and double lanes alike: a non-temporal store moves bits
        const vec_t<T> v = vec_at(j);
#if defined(THERMOSSL_ISA_AVX512)
        _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + j), (__m512i)v);
#elif defined(THERMOSSL_ISA_AVX2)
        _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + j), (__m256i)v);
#else
        _mm_stream_si128(reinterpret_cast<__m128i*>(dst + j), (__m128i)v);
#endif
    }
    for (std::int64_t j = body_end; j < k; ++j) dst[j] = scalar_at(j);
#else
    (void)vec_at;
    for (std::int64_t j = 0; j < k; ++j) dst[j] = scalar_at(j);
#endif
}

/// Orders this thread's non-temporal stores (weakly ordered) before its later stores, so the
/// barrier at the end of a parallel pass publishes them: called once per tile of rows.
inline void streaming_stores_done() {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_sfence();
#endif
}

/// exp(t) for the lanes of T.
inline vec_t<float> exp_lanes(const vec_t<float> t) { return exp_nonpositive_f32(t); }
inline vec_t<double> exp_lanes(const vec_t<double> t) { return exp_nonpositive_f64(t); }
/// exp(t) for float lanes all in [-86.9, 0]: exp_lanes without the underflow flush (same bits).
inline vec_t<float> exp_lanes_in_range(const vec_t<float> t) { return exp_nonpositive_f32<vec_t<float>, false>(t); }

/// The exp of a row_sweep body at t for the frame Arg: exp(t), 1 at the max, 0 past the row.
template <class Arg, class V, class M, class Lanes>
inline V frame_exp(const V t, const M at_max, const Lanes& lanes) {
    if constexpr (in_range_v<Arg>) {
        (void)at_max;
        return lanes.keep(exp_lanes_in_range(t));
    } else {
        return lanes.keep(select(at_max, splat<V>(1), exp_lanes(t)));
    }
}

/// madd_where(acc, mask, a, b) = acc + (mask ? a b : 0) in a sweep body of the frame Arg, for
/// terms a t whose weight a is 0 where t may be -inf (mask: a > 0 or a != 0; 0 * inf is nan). In
/// an in-range frame t is finite, so the same sum needs no mask: a b + acc rounded once where
/// madd_where fuses it (AVX-512 vectors), a b rounded then added elsewhere, as madd_where does.
template <class Arg, class M, class V>
inline V madd_in_frame(const V acc, const M mask, const V a, const V b) {
    if constexpr (in_range_v<Arg>) {
        (void)mask;
#if THERMOSSL_VECTOR_EXT && defined(THERMOSSL_ISA_AVX512)
        if constexpr (sizeof(V) == 64) return fmadd(a, b, acc);
#endif
        return acc + a * b;
    } else {
        return madd_where(acc, mask, a, b);
    }
}

/// log(q) for the lanes of T, for terms q f(log q) whose callers drop q = 0 (log_positive.hpp:
/// the float form skips the subnormal scaling and the q = 0 and q = inf results).
inline vec_t<float> log_lanes_for_terms(const vec_t<float> q) { return log_positive_f32<vec_t<float>, false>(q); }
inline vec_t<double> log_lanes_for_terms(const vec_t<double> q) { return log_positive_f64(q); }

/// e_j = exp(x_j - m), with e_j = 1 wherever x_j >= m so that rows whose max is +-inf give
/// finite counts instead of exp(inf - inf) = nan. Returns sum_j e_j; writes e to `e_out` when
/// it is not null. One pass over the row.
template <class T, class Arg>
inline double row_exp_sum(std::int64_t k, const Arg arg, T* e_out, const void* ahead = nullptr,
                          const void* ahead2 = nullptr) {
    using V = vec_t<T>;
    LaneSums<T, 1> sums;
    if (e_out != nullptr) {
        row_sweep(k, arg, sums, [&](std::int64_t j, const V t, const mask_t<T> at_max, const auto& lanes) {
            const V e = frame_exp<Arg>(t, at_max, lanes);
            lanes.store(e_out + j, e);
            sums.part[0] += e;
        }, ahead, ahead2);
    } else {
        row_sweep(k, arg, sums, [&](std::int64_t, const V t, const mask_t<T> at_max, const auto& lanes) {
            sums.part[0] += frame_exp<Arg>(t, at_max, lanes);
        }, ahead, ahead2);
    }
    return sums[0];
}

template <class T, bool kShift>
inline double row_exp_sum(const T* a, std::int64_t k, const Exponent ex, double m, T* e_out) {
    return row_exp_sum<T>(k, ExactArg<T, kShift>{a, ex, m}, e_out);
}

/// Charge accumulation of float rows in float lanes: acc_y += r_i e_iy is taken in float over
/// groups of kGroup rows (one fma per element, 8 lanes per AVX2 register) and each group's sums
/// are added to the double accumulators, so a float sum holds at most kGroup terms (relative
/// error <= kGroup 2^-24 worst case, ~sqrt(kGroup) 2^-24 typically) and the double sums carry the
/// rest. For double data it is never used (k = 0).
template <class T>
class FloatCharges {
public:
    static constexpr int kGroup = 8;
    explicit FloatCharges(std::int64_t k) : sums_(static_cast<std::size_t>(k), T(0)) {}

    void add(T r, const T* e, std::int64_t k, double* acc) {
        T* s = sums_.data();
#pragma omp simd
        for (std::int64_t y = 0; y < k; ++y) s[y] = THERMOSSL_MADD(r, e[y], s[y]);
        if (++rows_ == kGroup) flush(k, acc);
    }

    void flush(std::int64_t k, double* acc) {
        if (rows_ == 0) return;
        T* s = sums_.data();
#pragma omp simd
        for (std::int64_t y = 0; y < k; ++y) {
            acc[y] += static_cast<double>(s[y]);
            s[y] = T(0);
        }
        rows_ = 0;
    }

private:
    std::vector<T> sums_;
    int rows_ = 0;
};

inline double sign_of(double v) {
    if (v > 0) return 1.0;
    if (v < 0) return -1.0;
    return v == 0 ? 0.0 : v;  // nan stays nan
}

/// Final step of scipy's precise log-sum-exp for one row: with W = sum of the weights at the
/// maxima and R = sum of the weighted terms below the max (scaled by exp(-max)),
///   out = max + log|W| + log1p(R/W)   (log1p keeps relative accuracy for results near 0),
/// falling back to log|sum_j b_j exp(x_j)| (computed by `naive_sum`, in T like scipy) whenever
/// that form is not finite. Without `sign`, a negative sum gives nan.
template <class T, class NaiveSum>
inline void finish_logsumexp(double weight_at_max, double rest, double m, NaiveSum&& naive_sum, T* out,
                             T* sign) {
    double s = rest;
    if (s != 0.0) s /= weight_at_max;
    const double sgn = sign_of(s + 1.0) * sign_of(weight_at_max);
    if (s < -1.0) s = -s - 2.0;
    double value = std::log1p(s) + std::log(std::fabs(weight_at_max)) + m;
    if (sign == nullptr && sgn < 0) value = quiet_nan<double>();
    if (std::isfinite(value)) {
        *out = static_cast<T>(value);
        if (sign != nullptr) *sign = static_cast<T>(sgn);
        return;
    }
    const T total = naive_sum();
    *out = sign != nullptr ? std::log(std::fabs(total)) : std::log(total);
    if (sign != nullptr) *sign = static_cast<T>(sign_of(static_cast<double>(total)));
}

}  // namespace thermossl::THERMOSSL_ISA_NS::detail
