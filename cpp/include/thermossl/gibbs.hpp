// thermossl — the Gibbs state and its entropies (THEORY.md §2).
//
// The row kernels below take the same affine exponent map as logsumexp.hpp,
//     x_iy = scale * a_iy + shift_y ,
// and work on p_i = softmax(x_i). With a = E, scale = -1/T and shift = mu/T this is the Gibbs
// state (mu = 0) or a generalized Gibbs ensemble (GGE) of THEORY.md §3. The physics-named
// inline wrappers at the end of this header do exactly that mapping.
//
// All outputs are C-contiguous (row-major) arrays owned by the caller; inputs may have any
// strides. Inputs may be float, double, bfloat16 or float16 (thermossl/half.hpp): half inputs are
// converted to float in registers as they are read and the outputs are float (Real<T>).
// Every kernel reads each row of its inputs once from memory (the extra passes named
// below run over a row already in cache) and writes its outputs once.
//
// Rows whose max of x is not finite (all states forbidden, an x = +inf, or nan) follow the
// conventions of scipy.special.softmax/log_softmax: p is nan on the whole row; `log_z`
// (optional output, log Z_i = LSE_y x_iy) is then -inf, +inf or nan, which lets a caller
// diagnose the row without another pass.
#pragma once

#include <cstdint>
#include <vector>

#include "thermossl/logsumexp.hpp"
#include "thermossl/view.hpp"

namespace thermossl {

/// p_iy = exp(x_iy - log Z_i). Passes per row: max, exp+sum (writes p), scale p; where p streams
/// (thermossl/stores.hpp) the exp goes to a staging row in cache and the scale pass writes p by
/// streaming stores. One read of a, one write of p.
template <class T>
void row_softmax(const MatrixView<T>& a, double scale, const double* shift, Real<T>* p, Real<T>* log_z);

/// log p_iy = x_iy - log Z_i, with scipy.special.log_softmax's conventions for rows whose max is
/// not finite. Passes per row: max, exp+sum, write.
template <class T>
void row_log_softmax(const MatrixView<T>& a, double scale, const double* shift, Real<T>* log_p);

/// entropy_i = -sum_y p_iy log p_iy = log Z_i - sum_y p_iy x_iy, without materialising p
/// (0 log 0 = 0: forbidden states contribute nothing). Passes per row: max, sums.
template <class T>
void row_entropy(const MatrixView<T>& a, double scale, const double* shift, Real<T>* entropy, Real<T>* log_z);

/// loss_i = -sum_y q_iy log p_iy  (the cross-entropy of the label state q against p; 0 where
/// q_iy = 0 even for forbidden states, +inf where q_iy > 0 on a forbidden state).
/// grad (optional, N x K) = d loss_i / d a_iy = -scale * (q_iy - p_iy * sum_y q_iy), i.e.
/// (q - p)/T for a row-stochastic q and a = E, scale = -1/T — computed in the same pass.
/// Passes per row: max, exp+sums (stores exp in grad, or in a staging row in cache where grad
/// streams, thermossl/stores.hpp), gradient.
template <class T>
void row_cross_entropy(const MatrixView<T>& q, const MatrixView<T>& a, double scale, const double* shift,
                       Real<T>* loss, Real<T>* grad, Real<T>* log_z);

/// row_cross_entropy of half-precision scores a (T = bfloat16 or float16) against labels q in
/// float (Real<T>), e.g. float32 codes predicted from bfloat16 logits: the scores are converted to
/// float in registers as each row tile is read (no converted copy of the matrix), q is read as
/// stored, and every result equals row_cross_entropy<float> on the float values of a, to the bit.
/// Passes per row as row_cross_entropy. (For float and double scores q has a's type: call
/// row_cross_entropy.)
template <class T>
void row_cross_entropy_float_labels(const MatrixView<Real<T>>& q, const MatrixView<T>& a, double scale,
                                    const double* shift, Real<T>* loss, Real<T>* grad, Real<T>* log_z);

/// grad_iy = d S_i / d a_iy = -scale * p_iy (log p_iy + S_i), S_i the row entropy (optional
/// output). For a = E, scale = -1/T this is (1/T) p (log p + S) of THEORY.md §2 (per row,
/// before the sample weights w_i). Passes per row: max, exp+sums (stores exp in grad), gradient.
template <class T>
void row_entropy_grad(const MatrixView<T>& a, double scale, const double* shift, Real<T>* grad,
                      Real<T>* entropy, Real<T>* log_z);

// ---------------------------------------------------------------------------------------
// Physics names: energies E (N x K), temperature T > 0, optional chemical potentials mu (K).
// x_iy = (mu_y - E_iy) / T.

namespace detail {
template <class T>
std::vector<double> potential_shift(const T* mu, std::int64_t k, double temperature) {
    std::vector<double> shift;
    if (mu != nullptr) {
        shift.resize(static_cast<std::size_t>(k));
        for (std::int64_t y = 0; y < k; ++y) shift[y] = static_cast<double>(mu[y]) / temperature;
    }
    return shift;
}
}  // namespace detail

/// log Z_i = LSE_y((mu_y - E_iy)/T)  (mu may be null).
template <class T>
void log_partition(const MatrixView<T>& energy, Same<T> temperature, const Same<T>* mu, Same<T>* log_z) {
    const auto shift = detail::potential_shift<T>(mu, energy.cols, static_cast<double>(temperature));
    row_logsumexp<T>(energy, -1.0 / static_cast<double>(temperature), shift.empty() ? nullptr : shift.data(),
                     nullptr, log_z, nullptr);
}

/// p = Gibbs(E, T) (or the GGE at potentials mu).
template <class T>
void gibbs_state(const MatrixView<T>& energy, Same<T> temperature, const Same<T>* mu, Same<T>* p, Same<T>* log_z) {
    const auto shift = detail::potential_shift<T>(mu, energy.cols, static_cast<double>(temperature));
    row_softmax<T>(energy, -1.0 / static_cast<double>(temperature), shift.empty() ? nullptr : shift.data(), p,
                   log_z);
}

}  // namespace thermossl
