// The list of the CPU kernels: one entry per kernel, grouped by the source that defines it.
//
// Each entry is X(return type, name, (parameters), (argument names)), with the parameters
// written in terms of the element type T exactly as in the public header (without its default
// arguments). From these lists are generated
//   - the declarations of every SIMD level's kernels (kernels.hpp, once per namespace isa_*),
//   - the public forwarders that call the active level, and their instantiations (dispatch.cpp),
//   - the explicit instantiations of each level's definitions (the end of each kernel source:
//     THERMOSSL_INSTANTIATE_KERNELS(THERMOSSL_<SOURCE>_KERNELS)).
// Adding a kernel: its public declaration (documented, in cpp/include/thermossl/), its
// definition in a kernel source, and one entry here. The public headers stay hand-written; a
// signature that differs from the entry here gives an undefined reference at link time.
#pragma once

// cpp/src/cpu/logsumexp.cpp (the row kernel also takes half-precision input: see below)
#define THERMOSSL_ROW_LOGSUMEXP_KERNELS(X, T)                                                               \
    X(void, row_logsumexp, (const MatrixView<T>& a, double scale, const double* shift,                     \
                            const MatrixView<Same<T>>* b, Real<T>* out, Real<T>* sign),                      \
      (a, scale, shift, b, out, sign))
#define THERMOSSL_LOGSUMEXP_KERNELS(X, T)                                                                   \
    THERMOSSL_ROW_LOGSUMEXP_KERNELS(X, T)                                                                   \
    X(void, col_logsumexp, (const MatrixView<T>& a, double scale, const double* shift, Same<T>* out),        \
      (a, scale, shift, out))

// cpp/src/cpu/gibbs.cpp (every kernel also takes half-precision input)
#define THERMOSSL_GIBBS_KERNELS(X, T)                                                                       \
    X(void, row_softmax, (const MatrixView<T>& a, double scale, const double* shift, Real<T>* p,            \
                          Real<T>* log_z),                                                                   \
      (a, scale, shift, p, log_z))                                                                          \
    X(void, row_log_softmax, (const MatrixView<T>& a, double scale, const double* shift, Real<T>* log_p),   \
      (a, scale, shift, log_p))                                                                             \
    X(void, row_entropy, (const MatrixView<T>& a, double scale, const double* shift, Real<T>* entropy,      \
                          Real<T>* log_z),                                                                   \
      (a, scale, shift, entropy, log_z))                                                                    \
    X(void, row_cross_entropy, (const MatrixView<T>& q, const MatrixView<T>& a, double scale,              \
                                const double* shift, Real<T>* loss, Real<T>* grad, Real<T>* log_z),          \
      (q, a, scale, shift, loss, grad, log_z))                                                              \
    X(void, row_entropy_grad, (const MatrixView<T>& a, double scale, const double* shift, Real<T>* grad,    \
                               Real<T>* entropy, Real<T>* log_z),                                            \
      (a, scale, shift, grad, entropy, log_z))

// cpp/src/cpu/sinkhorn.cpp (the solver also takes half-precision input)
#define THERMOSSL_SINKHORN_SOLVER_KERNELS(X, T)                                                             \
    X(SinkhornReport, sinkhorn, (const MatrixView<T>& energy, const Real<T>* weights,                      \
                                 const Real<T>* targets, const Real<T>* mu0, const SinkhornOptions& options, \
                                 Real<T>* f, Real<T>* mu, Real<T>* q, double* charges),                       \
      (energy, weights, targets, mu0, options, f, mu, q, charges))
#define THERMOSSL_SINKHORN_KERNELS(X, T)                                                                    \
    THERMOSSL_SINKHORN_SOLVER_KERNELS(X, T)                                                                 \
    X(SinkhornPassReport, sinkhorn_pass, (const MatrixView<T>& energy, const double* weights,              \
                                          const double* mu, double temperature, double energy_sign,          \
                                          double* f, double* charges, Same<T>* q,                            \
                                          const std::function<bool()>& interrupted),                         \
      (energy, weights, mu, temperature, energy_sign, f, charges, q, interrupted))

// cpp/src/cpu/thermo.cpp
#define THERMOSSL_THERMO_KERNELS(X, T)                                                                      \
    X(void, ledger_rows, (const MatrixView<T>& q, const MatrixView<T>& a, double scale, const double* shift, \
                          const Same<T>* weights, const LedgerRows& out, double* charges),                   \
      (q, a, scale, shift, weights, out, charges))                                                          \
    X(void, label_rows, (const MatrixView<T>& q, const Same<T>* weights, double* entropy_q,                 \
                         double* label_mass, double* charges),                                               \
      (q, weights, entropy_q, label_mass, charges))                                                         \
    X(void, row_difference_dot, (const MatrixView<T>& u, const MatrixView<T>& v, const MatrixView<T>& w,    \
                                 double* out),                                                               \
      (u, v, w, out))

// cpp/src/cpu/gibbs.cpp, for half-precision input only (T = bfloat16, float16): the fused
// cross-entropy of half scores a against labels q in the compute type (float), the scores
// converted in registers as each row tile is read. For float and double input row_cross_entropy
// is this kernel already (q and a of one type), so it has no float/double instantiation.
#define THERMOSSL_HALF_SCORE_KERNELS(X, T)                                                                  \
    X(void, row_cross_entropy_float_labels, (const MatrixView<Real<T>>& q, const MatrixView<T>& a,          \
                                             double scale, const double* shift, Real<T>* loss,              \
                                             Real<T>* grad, Real<T>* log_z),                                \
      (q, a, scale, shift, loss, grad, log_z))

/// Every kernel, for the declarations and the dispatcher.
#define THERMOSSL_CPU_KERNELS(X, T)      \
    THERMOSSL_LOGSUMEXP_KERNELS(X, T)    \
    THERMOSSL_GIBBS_KERNELS(X, T)        \
    THERMOSSL_SINKHORN_KERNELS(X, T)     \
    THERMOSSL_THERMO_KERNELS(X, T)

/// The element types every kernel is instantiated for.
#define THERMOSSL_KERNEL_TYPES(X, LIST) LIST(X, float) LIST(X, double)

/// The input-type axis: the row kernels also read bfloat16 and float16 matrices (thermossl/half.hpp),
/// computing in float and writing float results (Real<T>); load_element.hpp converts the elements.
#define THERMOSSL_HALF_INPUT_KERNELS(X, T) \
    THERMOSSL_ROW_LOGSUMEXP_KERNELS(X, T)  \
    THERMOSSL_GIBBS_KERNELS(X, T)          \
    THERMOSSL_SINKHORN_SOLVER_KERNELS(X, T)
#define THERMOSSL_HALF_TYPES(X, LIST) LIST(X, bfloat16) LIST(X, float16)

// Generators (X arguments).
#define THERMOSSL_KERNEL_DECLARATION(ret, name, params, args) \
    template <class T>                                        \
    ret name params;
#define THERMOSSL_KERNEL_INSTANTIATION(ret, name, params, args) template ret name params;

/// At the end of a kernel source, inside namespace thermossl::THERMOSSL_ISA_NS: the explicit
/// instantiations of the kernels of LIST (one of the lists above) for every element type.
#define THERMOSSL_INSTANTIATE_KERNELS(LIST) THERMOSSL_KERNEL_TYPES(THERMOSSL_KERNEL_INSTANTIATION, LIST)
/// The same for the half-precision input types (LIST: a list of kernels that take them).
#define THERMOSSL_INSTANTIATE_HALF_INPUT_KERNELS(LIST) THERMOSSL_HALF_TYPES(THERMOSSL_KERNEL_INSTANTIATION, LIST)
