// thermossl — the CUDA implementation of the C++ API (optional target, THERMOSSL_CUDA).
//
// The same kernels and the same semantics as the CPU headers (logsumexp.hpp, gibbs.hpp,
// sinkhorn.hpp, thermo.hpp), on NVIDIA GPUs. Differences, all in the calling convention only:
//   * every pointer (matrix views, shift vectors, weights, outputs, workspace) is a device
//     pointer of the current CUDA device; views keep their element strides (any value);
//   * every function takes the cudaStream_t it runs on and is asynchronous on that stream,
//     except sinkhorn, which reads its small report back (one synchronisation at the end, and in
//     tolerance mode one every `check_every` iterations);
//   * row_logsumexp has no weights `b` and no `sign` output (the scipy-style extras stay CPU-only).
// Errors of the CUDA runtime are thrown as std::runtime_error.
//
// Layout of the work: one thread block (256 threads) per row, rows distributed over a grid of
// about 8 blocks per SM; each thread holds up to 16 elements of its row in registers, so rows of
// up to 4096 states are read once from memory and every further pass over the row runs on
// registers. Longer rows take the same code with the extra passes re-reading the row (from L2).
// Numerics as on the CPU: x = scale * a + shift and x - max(x) in double, exp in the data's
// precision (flushed to 0 below the smallest normal number), sums in double.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "thermossl/sinkhorn.hpp"
#include "thermossl/thermo.hpp"
#include "thermossl/view.hpp"

namespace thermossl::cuda {

/// Number of CUDA devices the runtime sees; 0 (never an error) without a driver or a device.
int device_count();

/// out_i = LSE_j(scale * a_ij + shift_j), scipy's precise form (see logsumexp.hpp).
/// Passes: one read of a.
template <class T>
void row_logsumexp(const MatrixView<T>& a, double scale, const double* shift, Same<T>* out, cudaStream_t stream);

/// p = softmax(scale * a + shift) per row; optional log Z. One read of a, one write of p.
template <class T>
void row_softmax(const MatrixView<T>& a, double scale, const double* shift, Same<T>* p, Same<T>* log_z,
                 cudaStream_t stream);

/// log p, with scipy's conventions for rows whose max is not finite. One read, one write.
template <class T>
void row_log_softmax(const MatrixView<T>& a, double scale, const double* shift, Same<T>* log_p,
                     cudaStream_t stream);

/// Row entropy of the softmax, and optional log Z. One read of a.
template <class T>
void row_entropy(const MatrixView<T>& a, double scale, const double* shift, Same<T>* entropy, Same<T>* log_z,
                 cudaStream_t stream);

/// loss_i = -sum_y q_iy log p_iy and optional grad = -scale (q - p sum q). One read of q and a,
/// one write of grad.
template <class T>
void row_cross_entropy(const MatrixView<T>& q, const MatrixView<T>& a, double scale, const double* shift,
                       Same<T>* loss, Same<T>* grad, Same<T>* log_z, cudaStream_t stream);

/// grad = -scale p (log p + S); optional S and log Z. One read of a, one write of grad.
template <class T>
void row_entropy_grad(const MatrixView<T>& a, double scale, const double* shift, Same<T>* grad,
                      Same<T>* entropy, Same<T>* log_z, cudaStream_t stream);

/// The ledger row sums of thermo.hpp (all outputs double, each nullable) and the charges
/// N_y = sum_i w_i q_iy (per-thread column accumulators in registers, one double atomic per
/// block and column). One read of q and a.
template <class T>
void ledger_rows(const MatrixView<T>& q, const MatrixView<T>& a, double scale, const double* shift,
                 const Same<T>* weights, const LedgerRows& out, double* charges, cudaStream_t stream);

/// Bytes of device workspace sinkhorn needs for an n x k problem (8-byte aligned pointer).
std::size_t sinkhorn_workspace_bytes(std::int64_t n, std::int64_t k);

/// Log-domain Sinkhorn of sinkhorn.hpp, the whole loop on the device: per iteration one
/// potential-update kernel (K threads) and one fused row pass over E (f-update, charge
/// accumulation, charge error); a cold start adds a column log-sum-exp (two reads of E: column
/// max, then sums). Same iteration convention, gauge, error and status as the CPU. In tolerance
/// mode the device stops updating at the first iteration with err <= tolerance, and the host
/// looks every `check_every` iterations (the results do not depend on check_every).
/// `charges` (K, nullable) is a device pointer of doubles.
template <class T>
SinkhornReport sinkhorn(const MatrixView<T>& energy, const Same<T>* weights, const Same<T>* targets,
                        const Same<T>* mu0, const SinkhornOptions& options, Same<T>* f, Same<T>* mu, Same<T>* q,
                        double* charges, void* workspace, cudaStream_t stream, int check_every = 8);

}  // namespace thermossl::cuda
