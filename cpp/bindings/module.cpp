// pybind11 bindings of the C++ core: argument checks, dtype dispatch and GIL release — nothing
// else. The Python layer (python/thermossl) owns conversion, axis handling and user-facing error
// messages; the checks here are a second line of defence so a wrong call can never crash.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "thermossl/gibbs.hpp"
#include "thermossl/logsumexp.hpp"
#include "thermossl/simd.hpp"
#include "thermossl/stores.hpp"
#include "thermossl/sinkhorn.hpp"
#include "thermossl/thermo.hpp"

#include "ledger_fields.hpp"
#include "output_pool.hpp"

namespace py = pybind11;
using thermossl::MatrixView;

namespace {

template <class T>
bool has_dtype(const py::array& arr) {
    return arr.dtype().is(py::dtype::of<T>());
}

template <class T>
MatrixView<T> input_matrix(const py::object& obj, const char* name) {
    if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + " must be a numpy array");
    const auto arr = py::reinterpret_borrow<py::array>(obj);
    if (!has_dtype<T>(arr)) throw py::type_error(std::string(name) + ": dtype differs from the first argument");
    if (arr.ndim() != 2) throw py::value_error(std::string(name) + " must be 2-D");
    const auto item = static_cast<py::ssize_t>(sizeof(T));
    if (arr.strides(0) % item != 0 || arr.strides(1) % item != 0)
        throw py::value_error(std::string(name) + ": strides must be multiples of the item size");
    return MatrixView<T>{static_cast<const T*>(arr.data()), arr.shape(0), arr.shape(1), arr.strides(0) / item,
                         arr.strides(1) / item};
}

template <class T>
const T* input_vector(const py::object& obj, py::ssize_t length, const char* name) {
    if (obj.is_none()) return nullptr;
    const auto arr = py::reinterpret_borrow<py::array>(obj);
    if (!py::isinstance<py::array>(obj) || !has_dtype<T>(arr) || arr.ndim() != 1 ||
        !(arr.flags() & py::array::c_style) || arr.shape(0) != length)
        throw py::value_error(std::string(name) + ": expected a contiguous 1-D array of length " +
                              std::to_string(length) + " and the input's dtype");
    return static_cast<const T*>(arr.data());
}

// An output: C-contiguous, writeable, of dtype T and the given shape (cols < 0 for 1-D); or None.
template <class T>
T* output_array(const py::object& obj, py::ssize_t rows, py::ssize_t cols, const char* name) {
    if (obj.is_none()) return nullptr;
    if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + " must be a numpy array");
    auto arr = py::reinterpret_borrow<py::array>(obj);
    const bool shape_ok = cols < 0 ? (arr.ndim() == 1 && arr.shape(0) == rows)
                                   : (arr.ndim() == 2 && arr.shape(0) == rows && arr.shape(1) == cols);
    if (!has_dtype<T>(arr) || !shape_ok || !(arr.flags() & py::array::c_style) || !arr.writeable())
        throw py::value_error(std::string(name) + ": expected a writeable C-contiguous array of shape (" +
                              std::to_string(rows) + (cols < 0 ? "" : ", " + std::to_string(cols)) +
                              ") and the input's dtype");
    return static_cast<T*>(arr.mutable_data());
}

template <class Fn>
void dispatch_dtype(const py::array& a, Fn&& fn) {
    if (has_dtype<float>(a)) {
        fn(float{});
    } else if (has_dtype<double>(a)) {
        fn(double{});
    } else {
        throw py::type_error("thermossl kernels take float32 or float64 arrays, got " +
                             std::string(py::str(a.dtype())));
    }
}

void row_logsumexp(const py::array& a, double scale, const py::object& shift, const py::object& b,
                   const py::object& out, const py::object& sign) {
    dispatch_dtype(a, [&](auto tag) {
        using T = decltype(tag);
        const auto av = input_matrix<T>(a, "a");
        MatrixView<T> bv;
        const bool weighted = !b.is_none();
        if (weighted) {
            bv = input_matrix<T>(b, "b");
            if (bv.rows != av.rows || bv.cols != av.cols) throw py::value_error("b must have the shape of a");
        }
        const double* shift_ptr = input_vector<double>(shift, av.cols, "shift");
        T* out_ptr = output_array<T>(out, av.rows, -1, "out");
        T* sign_ptr = output_array<T>(sign, av.rows, -1, "sign");
        if (out_ptr == nullptr) throw py::value_error("out is required");
        py::gil_scoped_release release;
        thermossl::row_logsumexp<T>(av, scale, shift_ptr, weighted ? &bv : nullptr, out_ptr,
                                    sign_ptr);
    });
}

void col_logsumexp(const py::array& a, double scale, const py::object& shift, const py::object& out) {
    dispatch_dtype(a, [&](auto tag) {
        using T = decltype(tag);
        const auto av = input_matrix<T>(a, "a");
        const double* shift_ptr = input_vector<double>(shift, av.rows, "shift");
        T* out_ptr = output_array<T>(out, av.cols, -1, "out");
        if (out_ptr == nullptr) throw py::value_error("out is required");
        py::gil_scoped_release release;
        thermossl::col_logsumexp<T>(av, scale, shift_ptr, out_ptr);
    });
}

void row_softmax(const py::array& a, double scale, const py::object& shift, const py::object& p,
                 const py::object& log_z) {
    dispatch_dtype(a, [&](auto tag) {
        using T = decltype(tag);
        const auto av = input_matrix<T>(a, "a");
        const double* shift_ptr = input_vector<double>(shift, av.cols, "shift");
        T* p_ptr = output_array<T>(p, av.rows, av.cols, "p");
        T* log_z_ptr = output_array<T>(log_z, av.rows, -1, "log_z");
        if (p_ptr == nullptr) throw py::value_error("p is required");
        py::gil_scoped_release release;
        thermossl::row_softmax<T>(av, scale, shift_ptr, p_ptr, log_z_ptr);
    });
}

void row_log_softmax(const py::array& a, double scale, const py::object& shift, const py::object& log_p) {
    dispatch_dtype(a, [&](auto tag) {
        using T = decltype(tag);
        const auto av = input_matrix<T>(a, "a");
        const double* shift_ptr = input_vector<double>(shift, av.cols, "shift");
        T* out_ptr = output_array<T>(log_p, av.rows, av.cols, "log_p");
        if (out_ptr == nullptr) throw py::value_error("log_p is required");
        py::gil_scoped_release release;
        thermossl::row_log_softmax<T>(av, scale, shift_ptr, out_ptr);
    });
}

void row_entropy(const py::array& a, double scale, const py::object& shift, const py::object& entropy,
                 const py::object& log_z) {
    dispatch_dtype(a, [&](auto tag) {
        using T = decltype(tag);
        const auto av = input_matrix<T>(a, "a");
        const double* shift_ptr = input_vector<double>(shift, av.cols, "shift");
        T* s_ptr = output_array<T>(entropy, av.rows, -1, "entropy");
        T* log_z_ptr = output_array<T>(log_z, av.rows, -1, "log_z");
        if (s_ptr == nullptr) throw py::value_error("entropy is required");
        py::gil_scoped_release release;
        thermossl::row_entropy<T>(av, scale, shift_ptr, s_ptr, log_z_ptr);
    });
}

void row_cross_entropy(const py::array& q, const py::array& a, double scale, const py::object& shift,
                       const py::object& loss, const py::object& grad, const py::object& log_z) {
    dispatch_dtype(a, [&](auto tag) {
        using T = decltype(tag);
        const auto av = input_matrix<T>(a, "a");
        const auto qv = input_matrix<T>(q, "q");
        if (qv.rows != av.rows || qv.cols != av.cols) throw py::value_error("q must have the shape of a");
        const double* shift_ptr = input_vector<double>(shift, av.cols, "shift");
        T* loss_ptr = output_array<T>(loss, av.rows, -1, "loss");
        T* grad_ptr = output_array<T>(grad, av.rows, av.cols, "grad");
        T* log_z_ptr = output_array<T>(log_z, av.rows, -1, "log_z");
        if (loss_ptr == nullptr) throw py::value_error("loss is required");
        py::gil_scoped_release release;
        thermossl::row_cross_entropy<T>(qv, av, scale, shift_ptr, loss_ptr, grad_ptr, log_z_ptr);
    });
}

void row_entropy_grad(const py::array& a, double scale, const py::object& shift, const py::object& grad,
                      const py::object& entropy, const py::object& log_z) {
    dispatch_dtype(a, [&](auto tag) {
        using T = decltype(tag);
        const auto av = input_matrix<T>(a, "a");
        const double* shift_ptr = input_vector<double>(shift, av.cols, "shift");
        T* grad_ptr = output_array<T>(grad, av.rows, av.cols, "grad");
        T* s_ptr = output_array<T>(entropy, av.rows, -1, "entropy");
        T* log_z_ptr = output_array<T>(log_z, av.rows, -1, "log_z");
        if (grad_ptr == nullptr) throw py::value_error("grad is required");
        py::gil_scoped_release release;
        thermossl::row_entropy_grad<T>(av, scale, shift_ptr, grad_ptr, s_ptr, log_z_ptr);
    });
}

// True on the interpreter's main thread, the only one where Python runs signal handlers (so
// the only one where polling for Ctrl-C can raise; other threads are not slowed by polling).
bool on_main_thread() {
    static const unsigned long main_ident =
        py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
    return PyThread_get_thread_ident() == main_ident;
}

// The solver's cancellation callback: take the GIL briefly and run the pending signal handlers;
// a handler that raised (KeyboardInterrupt) leaves the Python error set and stops the solver.
bool python_signal_pending() {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
}

py::tuple sinkhorn(const py::array& energy, double temperature, const py::object& weights,
                   const py::object& targets, const py::object& mu0, std::int64_t fixed_iterations, double tolerance,
                   std::int64_t max_iterations, const py::object& f, const py::object& mu, const py::object& q,
                   const py::object& charges, double relaxation, std::int64_t check_interval,
                   const std::string& error_norm, bool strict_tolerance, const py::object& row_scaling0,
                   bool fix_gauge, const py::object& errors, double energy_sign) {
    if (!(temperature > 0) || !std::isfinite(temperature)) throw py::value_error("temperature must be finite and > 0");
    if (energy_sign != 1.0 && energy_sign != -1.0) throw py::value_error("energy_sign must be 1 or -1");
    if (!(relaxation < 2.0) || std::isnan(relaxation)) throw py::value_error("relaxation must be < 2 (<= 0: automatic)");
    if (fixed_iterations < 0 || max_iterations < 1 || check_interval < 1)
        throw py::value_error("iteration counts out of range");
    if (std::isnan(tolerance)) throw py::value_error("tolerance must not be NaN");
    if (error_norm != "l1" && error_norm != "l2") throw py::value_error("error_norm must be 'l1' or 'l2'");
    if (!errors.is_none() && !py::isinstance<py::list>(errors)) throw py::type_error("errors must be a list or None");
    thermossl::SinkhornReport report;
    std::vector<double> history;
    dispatch_dtype(energy, [&](auto tag) {
        using T = decltype(tag);
        const auto ev = input_matrix<T>(energy, "E");
        if (ev.rows < 1 || ev.cols < 1) throw py::value_error("E must have at least one row and one column");
        const T* w_ptr = input_vector<T>(weights, ev.rows, "w");
        const T* c_ptr = input_vector<T>(targets, ev.cols, "c");
        const T* mu0_ptr = input_vector<T>(mu0, ev.cols, "mu0");
        const double* u0_ptr = input_vector<double>(row_scaling0, ev.rows, "row_scaling0");
        T* f_ptr = output_array<T>(f, ev.rows, -1, "f");
        T* mu_ptr = output_array<T>(mu, ev.cols, -1, "mu");
        T* q_ptr = output_array<T>(q, ev.rows, ev.cols, "q");
        double* charges_ptr = output_array<double>(charges, ev.cols, -1, "charges");
        if (f_ptr == nullptr || mu_ptr == nullptr) throw py::value_error("f and mu are required");
        thermossl::SinkhornOptions options;
        options.temperature = temperature;
        options.energy_sign = energy_sign;
        options.fixed_iterations = fixed_iterations;
        options.tolerance = tolerance;
        options.max_iterations = max_iterations;
        options.relaxation = relaxation;
        options.check_interval = check_interval;
        options.error_norm = error_norm == "l2" ? thermossl::SinkhornErrorNorm::kL2 : thermossl::SinkhornErrorNorm::kL1;
        options.strict_tolerance = strict_tolerance;
        options.row_scaling0 = u0_ptr;
        options.fix_gauge = fix_gauge;
        options.error_history = errors.is_none() ? nullptr : &history;
        if (on_main_thread()) options.interrupted = python_signal_pending;
        options.poll_seconds = 0.01;
        py::gil_scoped_release release;
        report = thermossl::sinkhorn<T>(ev, w_ptr, c_ptr, mu0_ptr, options, f_ptr, mu_ptr, q_ptr, charges_ptr);
    });
    // KeyboardInterrupt (or whatever a signal handler raised) is set: raise it.
    if (report.status == thermossl::SinkhornStatus::kInterrupted) {
        if (PyErr_Occurred()) throw py::error_already_set();
        throw py::value_error("sinkhorn: interrupted");
    }
    if (!errors.is_none()) {
        auto out = py::reinterpret_borrow<py::list>(errors);
        for (double e : history) out.append(e);
    }
    return py::make_tuple(report.iterations, report.charge_error, report.converged, static_cast<int>(report.status),
                          report.index);
}

py::tuple sinkhorn_pass(const py::array& energy, double temperature, const py::array& weights, const py::array& mu,
                        const py::object& f, const py::object& charges, const py::object& q, double energy_sign) {
    if (!(temperature > 0) || !std::isfinite(temperature)) throw py::value_error("temperature must be finite and > 0");
    if (energy_sign != 1.0 && energy_sign != -1.0) throw py::value_error("energy_sign must be 1 or -1");
    thermossl::SinkhornPassReport report;
    dispatch_dtype(energy, [&](auto tag) {
        using T = decltype(tag);
        const auto ev = input_matrix<T>(energy, "E");
        const double* w_ptr = input_vector<double>(weights, ev.rows, "w");
        const double* mu_ptr = input_vector<double>(mu, ev.cols, "mu");
        double* f_ptr = output_array<double>(f, ev.rows, -1, "f");
        double* charges_ptr = output_array<double>(charges, ev.cols, -1, "charges");
        T* q_ptr = output_array<T>(q, ev.rows, ev.cols, "q");
        if (w_ptr == nullptr || mu_ptr == nullptr || f_ptr == nullptr || charges_ptr == nullptr)
            throw py::value_error("w, mu, f and charges are required");
        // A pass over a large shard can take seconds: Ctrl-C is polled inside it, as in sinkhorn.
        std::function<bool()> interrupted;
        if (on_main_thread()) interrupted = python_signal_pending;
        py::gil_scoped_release release;
        report = thermossl::sinkhorn_pass<T>(ev, w_ptr, mu_ptr, temperature, energy_sign, f_ptr, charges_ptr, q_ptr,
                                             interrupted);
    });
    if (report.status == thermossl::SinkhornStatus::kInterrupted) {
        if (PyErr_Occurred()) throw py::error_already_set();
        throw py::value_error("sinkhorn_pass: interrupted");
    }
    return py::make_tuple(static_cast<int>(report.status), report.index);
}

void ledger_rows(const py::array& q, const py::array& a, double scale, const py::object& shift,
                 const py::object& weights, const py::object& energy_q, const py::object& energy_p,
                 const py::object& log_z, const py::object& entropy_q, const py::object& entropy_p,
                 const py::object& relative_entropy, const py::object& loss, const py::object& label_mass,
                 const py::object& charges) {
    dispatch_dtype(a, [&](auto tag) {
        using T = decltype(tag);
        const auto av = input_matrix<T>(a, "E");
        const auto qv = input_matrix<T>(q, "q");
        if (qv.rows != av.rows || qv.cols != av.cols) throw py::value_error("q must have the shape of E");
        const double* shift_ptr = input_vector<double>(shift, av.cols, "shift");
        const T* w_ptr = input_vector<T>(weights, av.rows, "w");
        thermossl::LedgerRows rows;
        rows.energy_q = output_array<double>(energy_q, av.rows, -1, "energy_q");
        rows.energy_p = output_array<double>(energy_p, av.rows, -1, "energy_p");
        rows.log_z = output_array<double>(log_z, av.rows, -1, "log_z");
        rows.entropy_q = output_array<double>(entropy_q, av.rows, -1, "entropy_q");
        rows.entropy_p = output_array<double>(entropy_p, av.rows, -1, "entropy_p");
        rows.relative_entropy = output_array<double>(relative_entropy, av.rows, -1, "relative_entropy");
        rows.loss = output_array<double>(loss, av.rows, -1, "loss");
        rows.label_mass = output_array<double>(label_mass, av.rows, -1, "label_mass");
        double* charges_ptr = output_array<double>(charges, av.cols, -1, "charges");
        py::gil_scoped_release release;
        thermossl::ledger_rows<T>(qv, av, scale, shift_ptr, w_ptr, rows, charges_ptr);
    });
}

void label_rows(const py::array& q, const py::object& weights, const py::object& entropy_q,
                const py::object& label_mass, const py::object& charges) {
    dispatch_dtype(q, [&](auto tag) {
        using T = decltype(tag);
        const auto qv = input_matrix<T>(q, "q");
        const T* w_ptr = input_vector<T>(weights, qv.rows, "w");
        double* s_ptr = output_array<double>(entropy_q, qv.rows, -1, "entropy_q");
        double* mass_ptr = output_array<double>(label_mass, qv.rows, -1, "label_mass");
        double* charges_ptr = output_array<double>(charges, qv.cols, -1, "charges");
        py::gil_scoped_release release;
        thermossl::label_rows<T>(qv, w_ptr, s_ptr, mass_ptr, charges_ptr);
    });
}

void row_difference_dot(const py::array& u, const py::array& v, const py::array& w, const py::object& out) {
    dispatch_dtype(u, [&](auto tag) {
        using T = decltype(tag);
        const auto uv = input_matrix<T>(u, "u");
        const auto vv = input_matrix<T>(v, "v");
        const auto wv = input_matrix<T>(w, "w");
        if (vv.rows != uv.rows || vv.cols != uv.cols || wv.rows != uv.rows || wv.cols != uv.cols)
            throw py::value_error("u, v and w must have the same shape");
        double* out_ptr = output_array<double>(out, uv.rows, -1, "out");
        if (out_ptr == nullptr) throw py::value_error("out is required");
        py::gil_scoped_release release;
        thermossl::row_difference_dot<T>(uv, vv, wv, out_ptr);
    });
}

constexpr thermossl::SimdLevel kSimdLevels[] = {thermossl::SimdLevel::kBaseline, thermossl::SimdLevel::kAvx2,
                                                 thermossl::SimdLevel::kAvx512};

thermossl::SimdLevel simd_level_from_name(const std::string& name) {
    for (auto level : kSimdLevels)
        if (name == thermossl::simd_level_name(level)) return level;
    throw py::value_error("unknown SIMD level '" + name + "': expected 'baseline', 'avx2' or 'avx512'");
}


// ------------------------------------------------------------------ kernels on raw host pointers
// For thermossl.torch, whose tensors may be bfloat16 or float16 (numpy has no bfloat16): a matrix
// is (address, rows, cols, row_stride, col_stride) with strides in elements, outputs are
// addresses (0 = none) of C-contiguous arrays of Real<T> (float32 for the half types, else the
// input's dtype), as in the CUDA module. The caller (python/thermossl/torch/_kernels.py) has
// validated shapes, dtypes and lifetimes; nothing here can check a pointer.
using RawMatrix = std::tuple<std::uintptr_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t>;

template <class T>
MatrixView<T> raw_view(const RawMatrix& m) {
    if (std::get<0>(m) == 0 && std::get<1>(m) * std::get<2>(m) != 0) throw py::value_error("null matrix address");
    if (std::get<1>(m) < 0 || std::get<2>(m) < 0) throw py::value_error("negative matrix shape");
    return MatrixView<T>{reinterpret_cast<const T*>(std::get<0>(m)), std::get<1>(m), std::get<2>(m), std::get<3>(m),
                         std::get<4>(m)};
}

template <class T>
T* raw_ptr(std::uintptr_t p) {
    return reinterpret_cast<T*>(p);
}

template <class Fn>
void dispatch_name(const std::string& dtype, Fn&& fn) {
    if (dtype == "float32") {
        fn(float{});
    } else if (dtype == "float64") {
        fn(double{});
    } else if (dtype == "bfloat16") {
        fn(thermossl::bfloat16{});
    } else if (dtype == "float16") {
        fn(thermossl::float16{});
    } else {
        throw py::type_error("thermossl kernels take float32, float64, bfloat16 or float16, got " + dtype);
    }
}


// The fused cross-entropy + gradient on raw pointers. The labels q are read as the scores' dtype T
// (LabelsInComputeType = false: row_cross_entropy) or as the compute type Real<T>
// (LabelsInComputeType = true: float32 labels against half scores, row_cross_entropy_float_labels;
// for float32/float64 scores the two are the same kernel).
template <bool LabelsInComputeType>
void def_pointer_cross_entropy(py::module_& p, const char* name) {
    p.def(name, [](const std::string& dtype, const RawMatrix& q, const RawMatrix& a, double scale,
                   std::uintptr_t shift, std::uintptr_t loss, std::uintptr_t grad, std::uintptr_t log_z) {
        dispatch_name(dtype, [&](auto tag) {
            using T = decltype(tag);
            using R = thermossl::Real<T>;
            using Q = std::conditional_t<LabelsInComputeType, R, T>;
            const auto qv = raw_view<Q>(q);
            const auto av = raw_view<T>(a);
            if (qv.rows != av.rows || qv.cols != av.cols) throw py::value_error("q must have the shape of a");
            if (loss == 0) throw py::value_error("loss is required");
            py::gil_scoped_release release;
            if constexpr (std::is_same<Q, T>::value) {
                thermossl::row_cross_entropy<T>(qv, av, scale, raw_ptr<const double>(shift), raw_ptr<R>(loss),
                                                raw_ptr<R>(grad), raw_ptr<R>(log_z));
            } else {
                thermossl::row_cross_entropy_float_labels<T>(qv, av, scale, raw_ptr<const double>(shift),
                                                             raw_ptr<R>(loss), raw_ptr<R>(grad), raw_ptr<R>(log_z));
            }
        });
    }, py::arg("dtype"), py::arg("q"), py::arg("a"), py::arg("scale"), py::arg("shift"), py::arg("loss"),
       py::arg("grad"), py::arg("log_z"));
}

void def_pointer_kernels(py::module_& m) {
    auto p = m.def_submodule(
        "pointers", "Row kernels on raw host addresses, any of float32/float64/bfloat16/float16 in (thermossl.torch).");
    p.def("row_logsumexp", [](const std::string& dtype, const RawMatrix& a, double scale, std::uintptr_t shift,
                              std::uintptr_t out) {
        dispatch_name(dtype, [&](auto tag) {
            using T = decltype(tag);
            using R = thermossl::Real<T>;
            const auto av = raw_view<T>(a);
            if (out == 0) throw py::value_error("out is required");
            py::gil_scoped_release release;
            thermossl::row_logsumexp<T>(av, scale, raw_ptr<const double>(shift), nullptr, raw_ptr<R>(out), nullptr);
        });
    }, py::arg("dtype"), py::arg("a"), py::arg("scale"), py::arg("shift"), py::arg("out"));
    p.def("row_softmax", [](const std::string& dtype, const RawMatrix& a, double scale, std::uintptr_t shift,
                            std::uintptr_t p_out, std::uintptr_t log_z) {
        dispatch_name(dtype, [&](auto tag) {
            using T = decltype(tag);
            using R = thermossl::Real<T>;
            const auto av = raw_view<T>(a);
            if (p_out == 0) throw py::value_error("p is required");
            py::gil_scoped_release release;
            thermossl::row_softmax<T>(av, scale, raw_ptr<const double>(shift), raw_ptr<R>(p_out), raw_ptr<R>(log_z));
        });
    }, py::arg("dtype"), py::arg("a"), py::arg("scale"), py::arg("shift"), py::arg("p"), py::arg("log_z"));
    p.def("row_log_softmax", [](const std::string& dtype, const RawMatrix& a, double scale, std::uintptr_t shift,
                                std::uintptr_t log_p) {
        dispatch_name(dtype, [&](auto tag) {
            using T = decltype(tag);
            using R = thermossl::Real<T>;
            const auto av = raw_view<T>(a);
            if (log_p == 0) throw py::value_error("log_p is required");
            py::gil_scoped_release release;
            thermossl::row_log_softmax<T>(av, scale, raw_ptr<const double>(shift), raw_ptr<R>(log_p));
        });
    }, py::arg("dtype"), py::arg("a"), py::arg("scale"), py::arg("shift"), py::arg("log_p"));
    p.def("row_entropy", [](const std::string& dtype, const RawMatrix& a, double scale, std::uintptr_t shift,
                            std::uintptr_t entropy, std::uintptr_t log_z) {
        dispatch_name(dtype, [&](auto tag) {
            using T = decltype(tag);
            using R = thermossl::Real<T>;
            const auto av = raw_view<T>(a);
            if (entropy == 0) throw py::value_error("entropy is required");
            py::gil_scoped_release release;
            thermossl::row_entropy<T>(av, scale, raw_ptr<const double>(shift), raw_ptr<R>(entropy), raw_ptr<R>(log_z));
        });
    }, py::arg("dtype"), py::arg("a"), py::arg("scale"), py::arg("shift"), py::arg("entropy"), py::arg("log_z"));
    def_pointer_cross_entropy<false>(p, "row_cross_entropy");
    // Half scores against float32 labels are read in place by the mixed kernel, no converted copy of a.
    def_pointer_cross_entropy<true>(p, "row_cross_entropy_float_labels");
    p.def("row_entropy_grad", [](const std::string& dtype, const RawMatrix& a, double scale, std::uintptr_t shift,
                                 std::uintptr_t grad, std::uintptr_t entropy, std::uintptr_t log_z) {
        dispatch_name(dtype, [&](auto tag) {
            using T = decltype(tag);
            using R = thermossl::Real<T>;
            const auto av = raw_view<T>(a);
            if (grad == 0) throw py::value_error("grad is required");
            py::gil_scoped_release release;
            thermossl::row_entropy_grad<T>(av, scale, raw_ptr<const double>(shift), raw_ptr<R>(grad),
                                           raw_ptr<R>(entropy), raw_ptr<R>(log_z));
        });
    }, py::arg("dtype"), py::arg("a"), py::arg("scale"), py::arg("shift"), py::arg("grad"), py::arg("entropy"),
       py::arg("log_z"));
}

// The per-row state functions of a ledger row (see `ledger_rows` above) on raw host addresses,
// with the signature of the CUDA module's ledger_rows less its device and stream: q and a of one
// dtype, float32 or float64 (no half kernel), w of that dtype or 0 (1/N), `rows` a dict of the
// addresses of the float64 (N,) outputs named as the LedgerRows fields (any may be missing),
// charges the address of a float64 (K,) output or 0. One read of q and a.
void def_pointer_ledger_rows(py::module_ p) {
    p.def("ledger_rows", [](const std::string& dtype, const RawMatrix& q, const RawMatrix& a, double scale,
                            std::uintptr_t shift, std::uintptr_t weights, const py::dict& rows,
                            std::uintptr_t charges) {
        const thermossl::LedgerRows out = thermossl_bindings::ledger_rows_from_addresses(rows);
        auto run = [&](auto tag) {
            using T = decltype(tag);
            const auto qv = raw_view<T>(q);
            const auto av = raw_view<T>(a);
            if (qv.rows != av.rows || qv.cols != av.cols) throw py::value_error("q must have the shape of E");
            py::gil_scoped_release release;
            thermossl::ledger_rows<T>(qv, av, scale, raw_ptr<const double>(shift), raw_ptr<const T>(weights), out,
                                      raw_ptr<double>(charges));
        };
        if (dtype == "float32") {
            run(float{});
        } else if (dtype == "float64") {
            run(double{});
        } else {
            throw py::type_error("thermossl ledger rows take float32 or float64, got " + dtype);
        }
    }, py::arg("dtype"), py::arg("q"), py::arg("a"), py::arg("scale"), py::arg("shift"), py::arg("weights"),
       py::arg("rows"), py::arg("charges"));
}

// Sinkhorn on a raw host matrix of any of the four dtypes (thermossl.torch: half tensors are read
// in place). The vectors and q are float32 for the half types (Real<T>), else the input's dtype;
// charges float64. The arguments and the returned tuple are those of `sinkhorn` above (the
// tolerance controls at their defaults: check every iteration, L1 error, fix the gauge).
void def_pointer_sinkhorn(py::module_& m) {
    auto p = m.attr("pointers").cast<py::module_>();
    p.def("sinkhorn", [](const std::string& dtype, const RawMatrix& e, double temperature, std::uintptr_t weights,
                         std::uintptr_t targets, std::uintptr_t mu0, std::int64_t fixed_iterations, double tolerance,
                         std::int64_t max_iterations, std::uintptr_t f, std::uintptr_t mu, std::uintptr_t q,
                         std::uintptr_t charges, double relaxation, double energy_sign) {
        if (!(temperature > 0) || !std::isfinite(temperature)) throw py::value_error("temperature must be finite and > 0");
        if (energy_sign != 1.0 && energy_sign != -1.0) throw py::value_error("energy_sign must be 1 or -1");
        if (!(relaxation < 2.0) || std::isnan(relaxation)) throw py::value_error("relaxation must be < 2 (<= 0: automatic)");
        if (fixed_iterations < 0 || max_iterations < 1) throw py::value_error("iteration counts out of range");
        if (std::isnan(tolerance)) throw py::value_error("tolerance must not be NaN");
        if (f == 0 || mu == 0) throw py::value_error("f and mu are required");
        thermossl::SinkhornReport report;
        dispatch_name(dtype, [&](auto tag) {
            using T = decltype(tag);
            using R = thermossl::Real<T>;
            const auto ev = raw_view<T>(e);
            if (ev.rows < 1 || ev.cols < 1) throw py::value_error("E must have at least one row and one column");
            thermossl::SinkhornOptions options;
            options.temperature = temperature;
            options.energy_sign = energy_sign;
            options.fixed_iterations = fixed_iterations;
            options.tolerance = tolerance;
            options.max_iterations = max_iterations;
            options.relaxation = relaxation;
            if (on_main_thread()) options.interrupted = python_signal_pending;
            options.poll_seconds = 0.01;
            py::gil_scoped_release release;
            report = thermossl::sinkhorn<T>(ev, raw_ptr<const R>(weights), raw_ptr<const R>(targets),
                                            raw_ptr<const R>(mu0), options, raw_ptr<R>(f), raw_ptr<R>(mu), raw_ptr<R>(q),
                                            raw_ptr<double>(charges));
        });
        if (report.status == thermossl::SinkhornStatus::kInterrupted) {
            if (PyErr_Occurred()) throw py::error_already_set();
            throw py::value_error("sinkhorn: interrupted");
        }
        return py::make_tuple(report.iterations, report.charge_error, report.converged,
                              static_cast<int>(report.status), report.index);
    }, py::arg("dtype"), py::arg("E"), py::arg("temperature"), py::arg("w"), py::arg("c"), py::arg("mu0"),
       py::arg("fixed_iterations"), py::arg("tolerance"), py::arg("max_iterations"), py::arg("f"), py::arg("mu"),
       py::arg("q"), py::arg("charges"), py::arg("relaxation") = 1.0, py::arg("energy_sign") = 1.0);
}

/// The process's output pool (output_pool.hpp), 1 GiB by default. Never destroyed: arrays that
/// hold its blocks may outlive the module's static objects at interpreter exit.
thermossl_bindings::OutputPool& output_pool() {
    static auto* pool = new thermossl_bindings::OutputPool(std::size_t(1) << 30);
    return *pool;
}

/// A block of the pool owned by the capsule that is the base of the array built on it.
struct PooledBlock {
    void* data;
    std::size_t bytes;
};

/// An uninitialised C-contiguous array of `shape` and `dtype`: from the output pool when it
/// takes that many bytes, else numpy's own allocation.
py::array pooled_empty(const std::vector<py::ssize_t>& shape, const py::dtype& dtype) {
    std::size_t bytes = static_cast<std::size_t>(dtype.itemsize());
    for (const py::ssize_t extent : shape) {
        if (extent < 0) throw py::value_error("pooled_empty: negative dimension");
        if (extent != 0 && bytes > static_cast<std::size_t>(PY_SSIZE_T_MAX) / static_cast<std::size_t>(extent))
            throw py::value_error("pooled_empty: array is too big");
        bytes *= static_cast<std::size_t>(extent);
    }
    auto& pool = output_pool();
    if (!pool.takes(bytes)) return py::array(dtype, shape);
    auto* block = new PooledBlock{pool.acquire(bytes), bytes};
    // the capsule owns the block from here on: if building the array throws, it goes back
    py::capsule owner(block, [](void* p) {
        auto* b = static_cast<PooledBlock*>(p);
        output_pool().release(b->data, b->bytes);
        delete b;
    });
    return py::array(dtype, shape, std::vector<py::ssize_t>{}, block->data, owner);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "thermossl C++ core (CPU). Low-level: use the functions of the thermossl package.";
    const auto none = py::none();
    m.def("row_logsumexp", &row_logsumexp, py::arg("a"), py::arg("scale"), py::arg("shift") = none,
          py::arg("b") = none, py::arg("out"), py::arg("sign") = none,
          "out_i = log|sum_j b_ij exp(scale*a_ij + shift_j)|, scipy.special.logsumexp semantics per row.");
    m.def("col_logsumexp", &col_logsumexp, py::arg("a"), py::arg("scale"), py::arg("shift") = none, py::arg("out"),
          "out_j = log sum_i exp(scale*a_ij + shift_i).");
    m.def("row_softmax", &row_softmax, py::arg("a"), py::arg("scale"), py::arg("shift") = none, py::arg("p"),
          py::arg("log_z") = none, "p_ij = softmax_j(scale*a_ij + shift_j); optional log Z_i.");
    m.def("row_log_softmax", &row_log_softmax, py::arg("a"), py::arg("scale"), py::arg("shift") = none,
          py::arg("log_p"), "log_softmax of scale*a + shift along rows.");
    m.def("row_entropy", &row_entropy, py::arg("a"), py::arg("scale"), py::arg("shift") = none,
          py::arg("entropy"), py::arg("log_z") = none, "Shannon entropy of each row's softmax.");
    m.def("row_cross_entropy", &row_cross_entropy, py::arg("q"), py::arg("a"), py::arg("scale"),
          py::arg("shift") = none, py::arg("loss"), py::arg("grad") = none, py::arg("log_z") = none,
          "-sum_j q_ij log softmax_j(scale*a_ij + shift_j), and its gradient in a.");
    m.def("row_entropy_grad", &row_entropy_grad, py::arg("a"), py::arg("scale"), py::arg("shift") = none,
          py::arg("grad"), py::arg("entropy") = none, py::arg("log_z") = none,
          "Gradient in a of each row's softmax entropy.");
    py::class_<thermossl::SinkhornRelaxation>(m, "SinkhornRelaxation",
                                              "The mu-update's over-relaxation controller of the C++ solver.")
        .def(py::init<double, bool>(), py::arg("requested"), py::arg("fixed_iterations"))
        .def("omega", &thermossl::SinkhornRelaxation::omega)
        .def("observe", &thermossl::SinkhornRelaxation::observe, py::arg("err"));
    m.def("sinkhorn", &sinkhorn, py::arg("E"), py::arg("temperature"), py::arg("w") = none, py::arg("c") = none,
          py::arg("mu0") = none, py::arg("fixed_iterations") = 0, py::arg("tolerance") = 1e-6,
          py::arg("max_iterations") = 1000, py::arg("f"), py::arg("mu"), py::arg("q") = none,
          py::arg("charges") = none, py::arg("relaxation") = 1.0, py::arg("check_interval") = 1,
          py::arg("error_norm") = "l1", py::arg("strict_tolerance") = false, py::arg("row_scaling0") = none,
          py::arg("fix_gauge") = true, py::arg("errors") = none, py::arg("energy_sign") = 1.0,
          "Log-domain Sinkhorn balancing; returns (iterations, err, converged, status, index). Ctrl-C raises "
          "KeyboardInterrupt within ~10 ms (on the main thread). errors (a list): the error of every test is appended. "
          "energy_sign=-1: E holds scores s and the energies are -s (read with a signed scale, no copy).");
    m.def("sinkhorn_pass", &sinkhorn_pass, py::arg("E"), py::arg("temperature"), py::arg("w"), py::arg("mu"),
          py::arg("f"), py::arg("charges"), py::arg("q") = none, py::arg("energy_sign") = 1.0,
          "One fused Sinkhorn pass at mu: f (float64, N) and the weighted charges (float64, K), q when given; "
          "energy_sign -1 reads E as scores (energies -E); returns (status, index).");
    m.def("ledger_rows", &ledger_rows, py::arg("q"), py::arg("a"), py::arg("scale"), py::arg("shift") = none,
          py::arg("w") = none, py::arg("energy_q") = none, py::arg("energy_p") = none, py::arg("log_z") = none,
          py::arg("entropy_q") = none, py::arg("entropy_p") = none, py::arg("relative_entropy") = none,
          py::arg("loss") = none, py::arg("label_mass") = none, py::arg("charges") = none,
          "Per-row U[q], U[p], log Z, S[q], S[p], D(q||p), L, sum q, and the charges, in one pass.");
    m.def("label_rows", &label_rows, py::arg("q"), py::arg("w") = none, py::arg("entropy_q") = none,
          py::arg("label_mass") = none, py::arg("charges") = none,
          "Per-row S[q] and sum q, and the charges N_y = sum_i w_i q_iy, in one pass over q.");
    m.def("row_difference_dot", &row_difference_dot, py::arg("u"), py::arg("v"), py::arg("w"), py::arg("out"),
          "out_i = sum_j u_ij (v_ij - w_ij), skipping u = 0 or v = w.");
    m.def("simd_level", [] { return std::string(thermossl::simd_level_name(thermossl::simd_level())); },
          "The SIMD level the kernels run at ('baseline', 'avx2' or 'avx512').");
    m.def("simd_levels", [] {
        py::list names;
        for (auto level : kSimdLevels)
            if (thermossl::simd_level_supported(level)) names.append(thermossl::simd_level_name(level));
        return names;
    }, "The SIMD levels this build and CPU support.");
    m.def("set_simd_level", [](const std::string& name) {
        const auto level = simd_level_from_name(name);
        if (!thermossl::simd_level_supported(level))
            throw py::value_error("SIMD level '" + name + "' is not supported by this build or CPU");
        thermossl::set_simd_level(level);
    }, py::arg("name"), "Switch the SIMD level for the whole process (for tests and benchmarks).");
    m.def("set_streaming_stores", [](const std::string& mode) {
        thermossl::StreamingStores value;
        if (!thermossl::streaming_stores_from_name(mode.c_str(), value))
            throw py::value_error("mode must be 'auto', 'on' or 'off', got '" + mode + "'");
        const std::string previous = thermossl::streaming_stores_name(thermossl::streaming_stores());
        thermossl::set_streaming_stores(value);
        return previous;
    }, py::arg("mode"), "Set how the N x K outputs are written ('auto', 'on', 'off'); returns the old mode.");
    m.def("streaming_stores_info", [] {
        py::dict d;
        d["mode"] = std::string(thermossl::streaming_stores_name(thermossl::streaming_stores()));
        d["last_level_cache_bytes"] = thermossl::last_level_cache_bytes();
        d["auto_threshold_bytes"] = thermossl::auto_streaming_threshold_bytes();
        return d;
    }, "The streaming-store mode, the last-level cache size it was measured against, and auto's threshold.");
    m.def("pooled_empty", &pooled_empty, py::arg("shape"), py::arg("dtype"),
          "An uninitialised C-contiguous array, its memory from the output pool when the pool takes its size "
          "(reused memory: no page faults).");
    m.def("set_output_pool_limit", [](std::size_t limit) { return output_pool().set_limit(limit); },
          py::arg("limit"), "Bytes the output pool keeps at most (0: off, its blocks freed); returns the old limit.");
    m.def("output_pool_stats", [] {
        const auto st = output_pool().stats();
        py::dict d;
        d["limit"] = st.limit;
        d["cached_bytes"] = st.cached_bytes;
        d["cached_blocks"] = st.cached_blocks;
        d["hits"] = st.hits;
        d["misses"] = st.misses;
        d["min_bytes"] = thermossl_bindings::OutputPool::kMinBytes;
        return d;
    }, "The output pool's limit, what it holds, its hits and misses, and the smallest size it takes.");
    def_pointer_kernels(m);
    def_pointer_sinkhorn(m);
    def_pointer_ledger_rows(m.attr("pointers").cast<py::module_>());
#ifdef _OPENMP
    m.attr("openmp") = true;
    // The OpenMP runtime's own setting (omp_set_num_threads), as torch.set_num_threads and
    // threadpoolctl use it: it applies to kernels called from the calling thread.
    m.def("set_num_threads", [](int n) { omp_set_num_threads(n); }, py::arg("n"),
          "Threads for the kernels called from this thread (omp_set_num_threads).");
    m.def("get_num_threads", [] { return omp_get_max_threads(); },
          "Threads the next kernel called from this thread will use (omp_get_max_threads).");
#else
    m.attr("openmp") = false;
    m.def("set_num_threads", [](int) {}, py::arg("n"), "No-op: this build has no OpenMP (kernels are serial).");
    m.def("get_num_threads", [] { return 1; }, "1: this build has no OpenMP (kernels are serial).");
#endif
}
