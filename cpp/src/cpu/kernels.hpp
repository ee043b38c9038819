// Declarations of the kernels of one SIMD level, in namespace thermossl::THERMOSSL_ISA_NS.
// Included by the kernel sources (their own level) and by dispatch.cpp once per level, so it has
// no include guard. The signatures are those of the public headers; see there for what each
// kernel computes.

namespace thermossl {
namespace THERMOSSL_ISA_NS {

template <class T>
void row_logsumexp(const MatrixView<T>& a, double scale, const double* shift, const MatrixView<Same<T>>* b,
                   Same<T>* out, Same<T>* sign);
template <class T>
void col_logsumexp(const MatrixView<T>& a, double scale, const double* shift, Same<T>* out);
template <class T>
void row_softmax(const MatrixView<T>& a, double scale, const double* shift, Same<T>* p, Same<T>* log_z);
template <class T>
void row_log_softmax(const MatrixView<T>& a, double scale, const double* shift, Same<T>* log_p);
template <class T>
void row_entropy(const MatrixView<T>& a, double scale, const double* shift, Same<T>* entropy, Same<T>* log_z);
template <class T>
void row_cross_entropy(const MatrixView<T>& q, const MatrixView<T>& a, double scale, const double* shift,
                       Same<T>* loss, Same<T>* grad, Same<T>* log_z);
template <class T>
void row_entropy_grad(const MatrixView<T>& a, double scale, const double* shift, Same<T>* grad,
                      Same<T>* entropy, Same<T>* log_z);
template <class T>
SinkhornReport sinkhorn(const MatrixView<T>& energy, const Same<T>* weights, const Same<T>* targets,
                        const Same<T>* mu0, const SinkhornOptions& options, Same<T>* f, Same<T>* mu, Same<T>* q,
                        double* charges);
template <class T>
SinkhornPassReport sinkhorn_pass(const MatrixView<T>& energy, const double* weights, const double* mu,
                                 double temperature, double* f, double* charges, Same<T>* q);
template <class T>
void ledger_rows(const MatrixView<T>& q, const MatrixView<T>& a, double scale, const double* shift,
                 const Same<T>* weights, const LedgerRows& out, double* charges);
template <class T>
void label_rows(const MatrixView<T>& q, const Same<T>* weights, double* entropy_q, double* label_mass,
                double* charges);
template <class T>
void row_difference_dot(const MatrixView<T>& u, const MatrixView<T>& v, const MatrixView<T>& w, double* out);

}  // namespace THERMOSSL_ISA_NS
}  // namespace thermossl
