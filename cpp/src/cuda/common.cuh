// Internal machinery of the CUDA kernels: exponent map, exp in T, block reductions, the row
// register cache and the launch geometry.
#pragma once

#include <cuda_runtime.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "thermossl/view.hpp"

namespace thermossl::cuda::detail {

inline constexpr int kThreads = 256;  // threads per block: one block per row
inline constexpr int kItems = 16;     // row elements per thread held in registers
inline constexpr int kCachedCols = kThreads * kItems;

inline void check(cudaError_t err, const char* what) {
    if (err != cudaSuccess)
        throw std::runtime_error(std::string("thermossl CUDA: ") + what + ": " + cudaGetErrorString(err));
}

/// Blocks for a pass over `rows` rows: about 8 resident blocks per SM, never more than rows.
int grid_for_rows(std::int64_t rows);

__device__ __forceinline__ double inf() { return __longlong_as_double(0x7ff0000000000000LL); }
__device__ __forceinline__ double nan_d() { return __longlong_as_double(0x7ff8000000000000LL); }

/// exp on the max-shifted domain t <= 0, in T, flushed to 0 where the CPU flushes
/// (exp_nonpositive.hpp: t < -87 in float, t < -708 in double); nan stays nan.
__device__ __forceinline__ float exp_np(float t) { return t < -87.0f ? 0.0f : expf(t); }
__device__ __forceinline__ double exp_np(double t) { return t < -708.0 ? 0.0 : exp(t); }

template <class T>
__device__ __forceinline__ T quiet_nan() { return static_cast<T>(nan_d()); }

/// Sum of N doubles over the block; every thread gets the totals. `scratch` holds 32 * N.
template <int N>
__device__ __forceinline__ void block_sum(double (&v)[N], double* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int n = 0; n < N; ++n)
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v[n] += __shfl_xor_sync(0xffffffffu, v[n], o);
    __syncthreads();  // scratch may still be read by a previous reduction
    if (lane == 0)
#pragma unroll
        for (int n = 0; n < N; ++n) scratch[warp * N + n] = v[n];
    __syncthreads();
    const int warps = blockDim.x >> 5;
#pragma unroll
    for (int n = 0; n < N; ++n) {
        double s = 0.0;
        for (int w = 0; w < warps; ++w) s += scratch[w * N + n];
        v[n] = s;
    }
}

/// Max over the block, ignoring nan (as the CPU's row_max).
__device__ __forceinline__ double block_max(double v, double* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const double u = __shfl_xor_sync(0xffffffffu, v, o);
        v = u > v ? u : v;
    }
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double m = -inf();
    const int warps = blockDim.x >> 5;
    for (int w = 0; w < warps; ++w) m = scratch[w] > m ? scratch[w] : m;
    return m;
}

/// One row of a strided matrix as seen by one thread: the elements j = threadIdx.x + t * blockDim.x.
/// When the row fits (cols <= kCachedCols) they are loaded once into registers by load();
/// otherwise each()/at() read memory again (the row is then served by L2 on later passes).
template <class T>
struct Row {
    const T* base = nullptr;
    std::int64_t col_stride = 1;
    std::int64_t cols = 0;
    bool cached = false;
    T v[kItems];

    __device__ __forceinline__ void load(const MatrixView<T>& m, std::int64_t i) {
        base = m.data + i * m.row_stride;
        col_stride = m.col_stride;
        cols = m.cols;
        cached = cols <= kCachedCols;
        if (cached) {
#pragma unroll
            for (int t = 0; t < kItems; ++t) {
                const std::int64_t j = threadIdx.x + static_cast<std::int64_t>(t) * blockDim.x;
                v[t] = j < cols ? base[j * col_stride] : T(0);
            }
        }
    }
};

/// Calls f(j, a_j) (and f(j, a_j, b_j) for two rows) for this thread's elements of the row(s).
template <class T, class F>
__device__ __forceinline__ void each(const Row<T>& a, F&& f) {
    if (a.cached) {
#pragma unroll
        for (int t = 0; t < kItems; ++t) {
            const std::int64_t j = threadIdx.x + static_cast<std::int64_t>(t) * blockDim.x;
            if (j < a.cols) f(j, t, a.v[t]);
        }
    } else {
        for (std::int64_t j = threadIdx.x; j < a.cols; j += blockDim.x) f(j, -1, a.base[j * a.col_stride]);
    }
}

template <class T, class F>
__device__ __forceinline__ void each2(const Row<T>& a, const Row<T>& b, F&& f) {
    if (a.cached) {
#pragma unroll
        for (int t = 0; t < kItems; ++t) {
            const std::int64_t j = threadIdx.x + static_cast<std::int64_t>(t) * blockDim.x;
            if (j < a.cols) f(j, t, a.v[t], b.v[t]);
        }
    } else {
        for (std::int64_t j = threadIdx.x; j < a.cols; j += blockDim.x)
            f(j, -1, a.base[j * a.col_stride], b.base[j * b.col_stride]);
    }
}

/// x_j = scale * a_j + shift_j in double.
__device__ __forceinline__ double exponent(double scale, const double* shift, std::int64_t j, double a) {
    return shift != nullptr ? fma(scale, a, shift[j]) : scale * a;
}

}  // namespace thermossl::cuda::detail
