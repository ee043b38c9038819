// CUDA implementation of the row kernels of cuda.hpp (log-sum-exp, softmax, log-softmax,
// entropy, cross-entropy, entropy gradient, ledger rows). The formulas, special values and
// rounding steps are those of cpp/src/cpu (logsumexp.cpp, gibbs.cpp, thermo.cpp); the layout is
// one block per row (see common.cuh). Each kernel reads every input row once from memory into
// registers (rows up to kCachedCols states) and runs its passes (max; sums; writes) there.
#include "common.cuh"
#include "thermossl/cuda.hpp"

namespace thermossl::cuda {
namespace detail {

int grid_for_rows(std::int64_t rows) {
    int device = 0, sms = 1;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
    const std::int64_t blocks = static_cast<std::int64_t>(sms) * 8;
    return static_cast<int>(rows < blocks ? (rows > 0 ? rows : 1) : blocks);
}

namespace {

template <class T>
__device__ __forceinline__ double row_max(const Row<T>& r, double scale, const double* shift, double* scratch) {
    double m = -inf();
    each(r, [&](std::int64_t j, int, T a) {
        const double x = exponent(scale, shift, j, static_cast<double>(a));
        m = x > m ? x : m;
    });
    return block_max(m, scratch);
}

/// e = exp(x - m) in T, 1 where x >= m (so +-inf maxima give counts, not inf - inf).
template <class T>
__device__ __forceinline__ T exp_shifted(double x, double m) {
    return x >= m ? T(1) : exp_np(static_cast<T>(x - m));
}

template <class T>
__global__ void __launch_bounds__(kThreads) logsumexp_kernel(MatrixView<T> a, double scale, const double* shift,
                                                             T* out) {
    __shared__ double scratch[32 * 8];
    Row<T> r;
    for (std::int64_t i = blockIdx.x; i < a.rows; i += gridDim.x) {
        r.load(a, i);
        const double m = row_max(r, scale, shift, scratch);
        double s[2] = {0.0, 0.0};  // weight at the max, the rest (scaled by exp(-m))
        each(r, [&](std::int64_t j, int, T v) {
            const double x = exponent(scale, shift, j, static_cast<double>(v));
            if (x >= m) {
                s[0] += 1.0;
            } else {
                s[1] += static_cast<double>(exp_np(static_cast<T>(x - m)));
            }
        });
        block_sum(s, scratch);
        if (threadIdx.x == 0) {
            // scipy's precise form: max + log W + log1p(R / W). With non-negative terms it equals
            // the CPU's fallback (the plain sum) wherever it is not finite.
            double rest = s[1];
            if (rest != 0.0) rest /= s[0];
            out[i] = static_cast<T>(log1p(rest) + log(s[0]) + m);
        }
    }
}

template <class T>
__global__ void __launch_bounds__(kThreads) softmax_kernel(MatrixView<T> a, double scale, const double* shift, T* p,
                                                           T* log_z, bool log_output) {
    __shared__ double scratch[32 * 8];
    Row<T> r;
    for (std::int64_t i = blockIdx.x; i < a.rows; i += gridDim.x) {
        r.load(a, i);
        const double m = row_max(r, scale, shift, scratch);
        double s[1] = {0.0};
        each(r, [&](std::int64_t j, int, T v) {
            s[0] += static_cast<double>(exp_shifted<T>(exponent(scale, shift, j, static_cast<double>(v)), m));
        });
        block_sum(s, scratch);
        const double z = s[0];
        if (log_z != nullptr && threadIdx.x == 0) log_z[i] = static_cast<T>(m + log(z));
        T* out = p + i * a.cols;
        const bool finite_max = isfinite(m);
        if (!log_output) {
            const T inv_z = static_cast<T>(1.0 / z);  // nan when the row holds a nan
            each(r, [&](std::int64_t j, int, T v) {
                out[j] = finite_max ? exp_shifted<T>(exponent(scale, shift, j, static_cast<double>(v)), m) * inv_z
                                    : quiet_nan<T>();
            });
        } else {
            const double lz = log(z);
            const bool has_nan = isnan(z);
            each(r, [&](std::int64_t j, int, T v) {
                const double x = exponent(scale, shift, j, static_cast<double>(v));
                // scipy.special.log_softmax with a non-finite max shifts by 0 (see gibbs.cpp).
                out[j] = finite_max ? static_cast<T>((x - m) - lz)
                                    : ((has_nan || m < 0 || x == m) ? quiet_nan<T>() : static_cast<T>(-inf()));
            });
        }
    }
}

/// Row entropy (grad == nullptr) or entropy gradient: sums of e and e (x - max), then the gradient.
template <class T>
__global__ void __launch_bounds__(kThreads) entropy_kernel(MatrixView<T> a, double scale, const double* shift,
                                                           T* grad, T* entropy, T* log_z) {
    __shared__ double scratch[32 * 8];
    Row<T> r;
    for (std::int64_t i = blockIdx.x; i < a.rows; i += gridDim.x) {
        r.load(a, i);
        const double m = row_max(r, scale, shift, scratch);
        double s[2] = {0.0, 0.0};  // z, sum e t (0 log 0 = 0)
        each(r, [&](std::int64_t j, int, T v) {
            const double x = exponent(scale, shift, j, static_cast<double>(v));
            const T t = static_cast<T>(x - m);
            const T e = x >= m ? T(1) : exp_np(t);
            s[0] += static_cast<double>(e);
            s[1] += e > T(0) ? static_cast<double>(e * t) : 0.0;
        });
        block_sum(s, scratch);
        const double z = s[0];
        const double log_zr = log(z);
        const double entropy_row = log_zr - s[1] / z;
        const bool finite_max = isfinite(m);
        if (threadIdx.x == 0) {
            if (log_z != nullptr) log_z[i] = static_cast<T>(m + log_zr);
            if (entropy != nullptr) entropy[i] = finite_max ? static_cast<T>(entropy_row) : quiet_nan<T>();
        }
        if (grad == nullptr) continue;
        T* g = grad + i * a.cols;
        const T inv_z = static_cast<T>(1.0 / z);
        const T s_t = static_cast<T>(entropy_row);
        const T minus_scale = static_cast<T>(-scale);
        each(r, [&](std::int64_t j, int, T v) {
            const double x = exponent(scale, shift, j, static_cast<double>(v));
            const T p = exp_shifted<T>(x, m) * inv_z;
            const T log_p_full = static_cast<T>((x - m) - log_zr);
            const T log_p = p > T(0) ? log_p_full : T(0);
            g[j] = finite_max ? minus_scale * p * (log_p + s_t) : quiet_nan<T>();
        });
    }
}

template <class T>
__global__ void __launch_bounds__(kThreads) cross_entropy_kernel(MatrixView<T> q, MatrixView<T> a, double scale,
                                                                 const double* shift, T* loss, T* grad, T* log_z) {
    __shared__ double scratch[32 * 8];
    Row<T> ra, rq;
    for (std::int64_t i = blockIdx.x; i < a.rows; i += gridDim.x) {
        ra.load(a, i);
        rq.load(q, i);
        const double m = row_max(ra, scale, shift, scratch);
        double s[3] = {0.0, 0.0, 0.0};  // z, sum q, sum q (x - max) over q != 0
        each2(ra, rq, [&](std::int64_t j, int, T v, T qj) {
            const double x = exponent(scale, shift, j, static_cast<double>(v));
            const T t = static_cast<T>(x - m);
            s[0] += static_cast<double>(x >= m ? T(1) : exp_np(t));
            s[1] += static_cast<double>(qj);
            s[2] += qj != T(0) ? static_cast<double>(qj * t) : 0.0;
        });
        block_sum(s, scratch);
        const double z = s[0];
        const double log_zr = log(z);
        const bool finite_max = isfinite(m);
        if (threadIdx.x == 0) {
            if (log_z != nullptr) log_z[i] = static_cast<T>(m + log_zr);
            loss[i] = finite_max ? static_cast<T>(s[1] * log_zr - s[2]) : quiet_nan<T>();
        }
        if (grad == nullptr) continue;
        T* g = grad + i * a.cols;
        // d loss / d x_y = p_y sum(q) - q_y; d x / d a = scale.
        const T p_weight = static_cast<T>(s[1] / z);
        const T minus_scale = static_cast<T>(-scale);
        each2(ra, rq, [&](std::int64_t j, int, T v, T qj) {
            const T e = exp_shifted<T>(exponent(scale, shift, j, static_cast<double>(v)), m);
            g[j] = finite_max ? minus_scale * (qj - e * p_weight) : quiet_nan<T>();
        });
    }
}

__device__ __forceinline__ float log_t(float v) { return logf(v); }
__device__ __forceinline__ double log_t(double v) { return log(v); }

template <class T>
__global__ void __launch_bounds__(kThreads) ledger_kernel(MatrixView<T> q, MatrixView<T> a, double scale,
                                                          const double* shift, const T* weights, LedgerRows out,
                                                          double* charges) {
    __shared__ double scratch[32 * 8];
    Row<T> ra, rq;
    double acc[kItems];  // this thread's columns of the charges, over the rows of this block
#pragma unroll
    for (int t = 0; t < kItems; ++t) acc[t] = 0.0;
    const double uniform_weight = 1.0 / static_cast<double>(a.rows);
    for (std::int64_t i = blockIdx.x; i < a.rows; i += gridDim.x) {
        ra.load(a, i);
        rq.load(q, i);
        const double m = row_max(ra, scale, shift, scratch);
        double s[3] = {0.0, 0.0, 0.0};  // z, sum e a, sum e (x - max)
        each(ra, [&](std::int64_t j, int, T v) {
            const double x = exponent(scale, shift, j, static_cast<double>(v));
            const T t = static_cast<T>(x - m);
            const T e = x >= m ? T(1) : exp_np(t);
            s[0] += static_cast<double>(e);
            s[1] += e > T(0) ? static_cast<double>(e * v) : 0.0;
            s[2] += e > T(0) ? static_cast<double>(e * t) : 0.0;
        });
        block_sum(s, scratch);
        const double z = s[0];
        const double log_zr = log(z);
        const double wi = weights != nullptr ? static_cast<double>(weights[i]) : uniform_weight;
        double u[5] = {0.0, 0.0, 0.0, 0.0, 0.0};  // sum q a, q log q, q log p, q (log q - log p), q
        each2(ra, rq, [&](std::int64_t j, int t, T v, T qj) {
            const T log_p = static_cast<T>((exponent(scale, shift, j, static_cast<double>(v)) - m) - log_zr);
            const T log_q = log_t(qj);
            const bool on = qj != T(0);
            u[0] += on ? static_cast<double>(qj * v) : 0.0;
            u[1] += on ? static_cast<double>(qj * log_q) : 0.0;
            u[2] += on ? static_cast<double>(qj * log_p) : 0.0;
            u[3] += on ? static_cast<double>(qj * (log_q - log_p)) : 0.0;
            u[4] += static_cast<double>(qj);
            if (charges != nullptr) {
                if (t >= 0) {
                    acc[t] += wi * static_cast<double>(qj);
                } else {
                    atomicAdd(charges + j, wi * static_cast<double>(qj));
                }
            }
        });
        block_sum(u, scratch);
        if (threadIdx.x == 0) {
            const bool finite_max = isfinite(m);
            const double nan = nan_d();
            if (out.energy_q != nullptr) out.energy_q[i] = u[0];
            if (out.energy_p != nullptr) out.energy_p[i] = finite_max ? s[1] / z : nan;
            if (out.log_z != nullptr) out.log_z[i] = m + log_zr;
            if (out.entropy_q != nullptr) out.entropy_q[i] = -u[1];
            if (out.entropy_p != nullptr) out.entropy_p[i] = finite_max ? log_zr - s[2] / z : nan;
            if (out.relative_entropy != nullptr) out.relative_entropy[i] = finite_max ? u[3] : nan;
            if (out.loss != nullptr) out.loss[i] = finite_max ? -u[2] : nan;
            if (out.label_mass != nullptr) out.label_mass[i] = u[4];
        }
    }
    if (charges != nullptr && a.cols <= kCachedCols) {
#pragma unroll
        for (int t = 0; t < kItems; ++t) {
            const std::int64_t j = threadIdx.x + static_cast<std::int64_t>(t) * blockDim.x;
            if (j < a.cols && blockIdx.x < a.rows) atomicAdd(charges + j, acc[t]);
        }
    }
}

void launched(const char* what) { check(cudaGetLastError(), what); }

}  // namespace
}  // namespace detail

using detail::grid_for_rows;
using detail::kThreads;
using detail::launched;

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();  // clear the sticky "no driver / no device" error
        return 0;
    }
    return n;
}

template <class T>
void row_logsumexp(const MatrixView<T>& a, double scale, const double* shift, Same<T>* out, cudaStream_t stream) {
    if (a.rows == 0) return;
    detail::logsumexp_kernel<T><<<grid_for_rows(a.rows), kThreads, 0, stream>>>(a, scale, shift, out);
    launched("row_logsumexp");
}

template <class T>
void row_softmax(const MatrixView<T>& a, double scale, const double* shift, Same<T>* p, Same<T>* log_z,
                 cudaStream_t stream) {
    if (a.rows == 0) return;
    detail::softmax_kernel<T><<<grid_for_rows(a.rows), kThreads, 0, stream>>>(a, scale, shift, p, log_z, false);
    launched("row_softmax");
}

template <class T>
void row_log_softmax(const MatrixView<T>& a, double scale, const double* shift, Same<T>* log_p,
                     cudaStream_t stream) {
    if (a.rows == 0) return;
    detail::softmax_kernel<T><<<grid_for_rows(a.rows), kThreads, 0, stream>>>(a, scale, shift, log_p, nullptr, true);
    launched("row_log_softmax");
}

template <class T>
void row_entropy(const MatrixView<T>& a, double scale, const double* shift, Same<T>* entropy, Same<T>* log_z,
                 cudaStream_t stream) {
    if (a.rows == 0) return;
    detail::entropy_kernel<T><<<grid_for_rows(a.rows), kThreads, 0, stream>>>(a, scale, shift, nullptr, entropy,
                                                                               log_z);
    launched("row_entropy");
}

template <class T>
void row_cross_entropy(const MatrixView<T>& q, const MatrixView<T>& a, double scale, const double* shift,
                       Same<T>* loss, Same<T>* grad, Same<T>* log_z, cudaStream_t stream) {
    if (a.rows == 0) return;
    detail::cross_entropy_kernel<T><<<grid_for_rows(a.rows), kThreads, 0, stream>>>(q, a, scale, shift, loss, grad,
                                                                                     log_z);
    launched("row_cross_entropy");
}

template <class T>
void row_entropy_grad(const MatrixView<T>& a, double scale, const double* shift, Same<T>* grad,
                      Same<T>* entropy, Same<T>* log_z, cudaStream_t stream) {
    if (a.rows == 0) return;
    detail::entropy_kernel<T><<<grid_for_rows(a.rows), kThreads, 0, stream>>>(a, scale, shift, grad, entropy, log_z);
    launched("row_entropy_grad");
}

template <class T>
void ledger_rows(const MatrixView<T>& q, const MatrixView<T>& a, double scale, const double* shift,
                 const Same<T>* weights, const LedgerRows& out, double* charges, cudaStream_t stream) {
    if (charges != nullptr)
        detail::check(cudaMemsetAsync(charges, 0, sizeof(double) * static_cast<std::size_t>(a.cols), stream),
                      "ledger_rows: clearing the charges");
    if (a.rows == 0) return;
    detail::ledger_kernel<T><<<grid_for_rows(a.rows), kThreads, 0, stream>>>(q, a, scale, shift, weights, out,
                                                                              charges);
    launched("ledger_rows");
}

#define THERMOSSL_CUDA_INSTANTIATE(T)                                                                          \
    template void row_logsumexp<T>(const MatrixView<T>&, double, const double*, T*, cudaStream_t);             \
    template void row_softmax<T>(const MatrixView<T>&, double, const double*, T*, T*, cudaStream_t);           \
    template void row_log_softmax<T>(const MatrixView<T>&, double, const double*, T*, cudaStream_t);           \
    template void row_entropy<T>(const MatrixView<T>&, double, const double*, T*, T*, cudaStream_t);           \
    template void row_cross_entropy<T>(const MatrixView<T>&, const MatrixView<T>&, double, const double*, T*, \
                                       T*, T*, cudaStream_t);                                                  \
    template void row_entropy_grad<T>(const MatrixView<T>&, double, const double*, T*, T*, T*, cudaStream_t);  \
    template void ledger_rows<T>(const MatrixView<T>&, const MatrixView<T>&, double, const double*, const T*,  \
                                 const LedgerRows&, double*, cudaStream_t);

THERMOSSL_CUDA_INSTANTIATE(float)
THERMOSSL_CUDA_INSTANTIATE(double)

#undef THERMOSSL_CUDA_INSTANTIATE

}  // namespace thermossl::cuda
