// thermossl — log-sum-exp reductions (the partition-function kernels of THEORY.md §2).
//
// Every kernel reads a matrix `a` through the affine exponent map
//
//     x_ij = scale * a_ij + shift_j          (row kernels; shift is a per-column vector)
//     x_ij = scale * a_ij + shift_i          (column kernels; shift is a per-row vector)
//
// so one implementation serves both the scipy-style functions (scale = 1, no shift) and the
// physics (a = E, scale = -1/T, shift = mu/T for a GGE with chemical potentials mu; see
// gibbs.hpp for the named wrappers). A null `shift` means zero.
//
// Numerics: x and x - max(x) are formed in double for float and double inputs alike (scale and
// shift are double), exp is evaluated in T on the max-shifted argument, and sums are reduced in
// chunks of 64 in T and added in double. +inf entries of x dominate, -inf entries (forbidden
// states) contribute exactly 0; nan propagates. Results below the smallest normal number of T
// are flushed to zero inside exp.
//
// All kernels run OpenMP-parallel over rows (or row blocks), release nothing and keep no global
// state: they are re-entrant and safe to call from several host threads at once.
#pragma once

#include <cstdint>

#include "thermossl/view.hpp"

namespace thermossl {

/// out_i = log | sum_j b_ij exp(x_ij) |   for each row i, with x_ij = scale * a_ij + shift_j.
///
/// `b` (optional, same shape as `a`, any strides) weights the terms; entries with b_ij == 0 are
/// ignored even where a_ij is +-inf or nan. `sign` (optional) receives the sign of the sum
/// (+1, -1, 0 for an empty sum, nan for nan). Semantics match scipy.special.logsumexp
/// (scipy >= 1.15) for real input, including its precise form
///     out = max + log(sum of b at the maxima) + log1p(rest / that sum),
/// which keeps full relative accuracy when the result is near 0, and its fallback to the plain
/// sum when that form is not finite. Without return of the sign, a negative sum gives nan.
/// Rows with cols == 0 give -inf.
///
/// Passes: two over each row (max, then sums), the second from cache; memory traffic is one
/// read of a (and of b) plus one write of `rows` results.
///
/// T may also be bfloat16 or float16 (thermossl/half.hpp): the matrices are read as such and
/// converted in registers, the sums run in float, and out/sign are float (Real<T>).
template <class T>
void row_logsumexp(const MatrixView<T>& a, double scale, const double* shift, const MatrixView<Same<T>>* b,
                   Real<T>* out, Real<T>* sign);

/// out_j = log sum_i exp(x_ij) for each column j, with x_ij = scale * a_ij + shift_i.
///
/// This is Sinkhorn's column half: mu_j = T' log c_j - T' LSE_i(log w_i + (f_i - E_ij)/T').
/// Rows are split over threads; each thread keeps a per-column running max and rescaled sum
/// (online log-sum-exp, updated once per block of rows so the rescaling exp is amortised), and
/// the per-thread partials are merged once at the end. Passes: each block of rows is read
/// twice from cache (block max, then sums), so memory traffic is one read of `a`.
/// Columns of +inf give +inf, columns all -inf (or rows == 0) give -inf, nan propagates.
template <class T>
void col_logsumexp(const MatrixView<T>& a, double scale, const double* shift, Same<T>* out);

}  // namespace thermossl
