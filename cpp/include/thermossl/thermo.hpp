// thermossl — the state functions of a ledger row (THEORY.md §2–5) in one pass.
//
// For a label state q and energies a = E (N x K, any strides) with the exponent map of the other
// kernels, x_iy = scale * a_iy + shift_y (scale = -1/T, shift = mu/T; mu = 0 for the Gibbs
// state), and p_i = softmax(x_i), `ledger_rows` computes per row i
//
//     energy_q_i        = sum_y q_iy a_iy                 (U[q] before the weights w_i)
//     energy_p_i        = sum_y p_iy a_iy                 (U[p])
//     log_z_i           = LSE_y x_iy                      (F = -T sum_i w_i log_z_i)
//     entropy_q_i       = -sum_y q_iy log q_iy            (S[q])
//     entropy_p_i       = -sum_y p_iy log p_iy            (S[p])
//     relative_entropy_i = sum_y q_iy (log q_iy - log p_iy)   (D(q||p), each term formed as a
//                                                              difference of logs first, so
//                                                              D keeps its accuracy near 0)
//     loss_i            = -sum_y q_iy log p_iy            (L, the cross-entropy)
//     label_mass_i      = sum_y q_iy                      (1 for a label state: a check)
//
// with 0 log 0 = 0 and 0 * inf = 0 (forbidden states, a = +inf, carry no weight where q = 0),
// and the charges N_y = sum_i w_i q_iy (per-thread column accumulators, merged once).
// Any output pointer may be null. All results are double for float and double inputs.
//
// Passes: each row of a and of q is read once from memory; per row, three passes run over data
// in cache (max of x; exp and the p sums; the q sums, which need log Z). One exp and one log per
// element. Memory traffic: one read of a and q, no N x K output.
#pragma once

#include <cstdint>

#include "thermossl/view.hpp"

namespace thermossl {

struct LedgerRows {
    double* energy_q = nullptr;
    double* energy_p = nullptr;
    double* log_z = nullptr;
    double* entropy_q = nullptr;
    double* entropy_p = nullptr;
    double* relative_entropy = nullptr;
    double* loss = nullptr;
    double* label_mass = nullptr;
};

/// See the header comment. `weights` (N, nullable: 1/N) weight the charges only; `charges` (K)
/// may be null.
template <class T>
void ledger_rows(const MatrixView<T>& q, const MatrixView<T>& a, double scale, const double* shift,
                 const Same<T>* weights, const LedgerRows& out, double* charges);

/// The label-only part of a ledger row: entropy_q_i = -sum_y q_iy log q_iy and label_mass_i =
/// sum_y q_iy (either may be null), and the charges N_y = sum_i w_i q_iy (nullable). One read of
/// q, one log per element.
template <class T>
void label_rows(const MatrixView<T>& q, const Same<T>* weights, double* entropy_q, double* label_mass,
                double* charges);

/// out_i = sum_y u_iy (v_iy - w_iy), skipping terms where u_iy == 0 or v_iy == w_iy, so that
/// forbidden states (equal infinite energies, or zero labels against them) contribute 0.
/// Work of an adiabatic stroke: u = q, v = E_after, w = E_before; heat of an isochoric stroke:
/// u = E, v = q_after, w = q_before. One read of each matrix; results in double.
template <class T>
void row_difference_dot(const MatrixView<T>& u, const MatrixView<T>& v, const MatrixView<T>& w, double* out);

}  // namespace thermossl
