// pybind11 bindings of the CUDA kernels (module thermossl._cuda, built only with THERMOSSL_CUDA).
//
// The Python layer (python/thermossl/cuda.py) hands over raw device pointers taken from
// __cuda_array_interface__ / DLPack objects (torch, CuPy): a matrix is a tuple
// (pointer, rows, cols, row_stride, col_stride) with strides in elements, vectors and outputs
// are pointers (0 = none), plus the dtype name, the device ordinal and the caller's stream.
// Nothing here allocates or copies device memory; every call runs on the given stream with the
// GIL released. The CUDA runtime is linked statically: importing this module needs no CUDA
// toolkit, and device_count() is 0 (never an error) without a driver or a GPU.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>

#include "thermossl/cuda.hpp"

#include "ledger_fields.hpp"

namespace py = pybind11;
using thermossl::MatrixView;

namespace {

using Matrix = std::tuple<std::uintptr_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t>;

template <class T>
MatrixView<T> view(const Matrix& m) {
    return MatrixView<T>{reinterpret_cast<const T*>(std::get<0>(m)), std::get<1>(m), std::get<2>(m), std::get<3>(m),
                         std::get<4>(m)};
}

template <class T>
T* ptr(std::uintptr_t p) {
    return reinterpret_cast<T*>(p);
}

cudaStream_t stream_of(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

/// Runs the kernel launch with `device` current, restoring the caller's device afterwards.
class DeviceGuard {
public:
    explicit DeviceGuard(int device) {
        if (cudaGetDevice(&previous_) != cudaSuccess) throw std::runtime_error("thermossl CUDA: no device");
        if (device != previous_ && cudaSetDevice(device) != cudaSuccess)
            throw std::runtime_error("thermossl CUDA: cannot select device " + std::to_string(device));
    }
    ~DeviceGuard() { cudaSetDevice(previous_); }

private:
    int previous_ = 0;
};

template <class Fn>
void dispatch(const std::string& dtype, int device, Fn&& fn) {
    py::gil_scoped_release release;
    DeviceGuard guard(device);
    if (dtype == "float32") {
        fn(float{});
    } else if (dtype == "float64") {
        fn(double{});
    } else {
        throw py::type_error("thermossl CUDA kernels take float32 or float64, got " + dtype);
    }
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "thermossl CUDA kernels (low level: raw device pointers). Use the functions of the thermossl package.";
    m.def("device_count", &thermossl::cuda::device_count, "CUDA devices visible (0 without driver or device).");

    m.def("row_logsumexp", [](const std::string& dtype, int device, std::uintptr_t stream, const Matrix& a,
                              double scale, std::uintptr_t shift, std::uintptr_t out) {
        dispatch(dtype, device, [&](auto tag) {
            using T = decltype(tag);
            thermossl::cuda::row_logsumexp<T>(view<T>(a), scale, ptr<const double>(shift), ptr<T>(out),
                                              stream_of(stream));
        });
    });
    m.def("row_softmax", [](const std::string& dtype, int device, std::uintptr_t stream, const Matrix& a,
                            double scale, std::uintptr_t shift, std::uintptr_t p, std::uintptr_t log_z) {
        dispatch(dtype, device, [&](auto tag) {
            using T = decltype(tag);
            thermossl::cuda::row_softmax<T>(view<T>(a), scale, ptr<const double>(shift), ptr<T>(p), ptr<T>(log_z),
                                            stream_of(stream));
        });
    });
    m.def("row_log_softmax", [](const std::string& dtype, int device, std::uintptr_t stream, const Matrix& a,
                                double scale, std::uintptr_t shift, std::uintptr_t log_p) {
        dispatch(dtype, device, [&](auto tag) {
            using T = decltype(tag);
            thermossl::cuda::row_log_softmax<T>(view<T>(a), scale, ptr<const double>(shift), ptr<T>(log_p),
                                                stream_of(stream));
        });
    });
    m.def("row_entropy", [](const std::string& dtype, int device, std::uintptr_t stream, const Matrix& a,
                            double scale, std::uintptr_t shift, std::uintptr_t entropy, std::uintptr_t log_z) {
        dispatch(dtype, device, [&](auto tag) {
            using T = decltype(tag);
            thermossl::cuda::row_entropy<T>(view<T>(a), scale, ptr<const double>(shift), ptr<T>(entropy),
                                            ptr<T>(log_z), stream_of(stream));
        });
    });
    m.def("row_cross_entropy", [](const std::string& dtype, int device, std::uintptr_t stream, const Matrix& q,
                                  const Matrix& a, double scale, std::uintptr_t shift, std::uintptr_t loss,
                                  std::uintptr_t grad, std::uintptr_t log_z) {
        dispatch(dtype, device, [&](auto tag) {
            using T = decltype(tag);
            thermossl::cuda::row_cross_entropy<T>(view<T>(q), view<T>(a), scale, ptr<const double>(shift),
                                                  ptr<T>(loss), ptr<T>(grad), ptr<T>(log_z), stream_of(stream));
        });
    });
    m.def("row_entropy_grad", [](const std::string& dtype, int device, std::uintptr_t stream, const Matrix& a,
                                 double scale, std::uintptr_t shift, std::uintptr_t grad, std::uintptr_t entropy,
                                 std::uintptr_t log_z) {
        dispatch(dtype, device, [&](auto tag) {
            using T = decltype(tag);
            thermossl::cuda::row_entropy_grad<T>(view<T>(a), scale, ptr<const double>(shift), ptr<T>(grad),
                                                 ptr<T>(entropy), ptr<T>(log_z), stream_of(stream));
        });
    });
    m.def("ledger_rows", [](const std::string& dtype, int device, std::uintptr_t stream, const Matrix& q,
                            const Matrix& a, double scale, std::uintptr_t shift, std::uintptr_t weights,
                            const py::dict& rows, std::uintptr_t charges) {
        const thermossl::LedgerRows out = thermossl_bindings::ledger_rows_from_addresses(rows);
        dispatch(dtype, device, [&](auto tag) {
            using T = decltype(tag);
            thermossl::cuda::ledger_rows<T>(view<T>(q), view<T>(a), scale, ptr<const double>(shift),
                                            ptr<const T>(weights), out, ptr<double>(charges), stream_of(stream));
        });
    });
    m.def("sinkhorn_workspace_bytes", &thermossl::cuda::sinkhorn_workspace_bytes, py::arg("n"), py::arg("k"));
    m.def("sinkhorn", [](const std::string& dtype, int device, std::uintptr_t stream, const Matrix& e,
                         double temperature, std::uintptr_t weights, std::uintptr_t targets, std::uintptr_t mu0,
                         std::int64_t fixed_iterations, double tolerance, std::int64_t max_iterations,
                         std::uintptr_t f, std::uintptr_t mu, std::uintptr_t q, std::uintptr_t charges,
                         std::uintptr_t workspace, int check_every, double energy_sign) {
        if (!(temperature > 0)) throw py::value_error("temperature must be > 0");
        if (energy_sign != 1.0 && energy_sign != -1.0) throw py::value_error("energy_sign must be 1 or -1");
        if (fixed_iterations < 0 || max_iterations < 1) throw py::value_error("iteration counts out of range");
        thermossl::SinkhornOptions options;
        options.temperature = temperature;
        options.energy_sign = energy_sign;
        options.fixed_iterations = fixed_iterations;
        options.tolerance = tolerance;
        options.max_iterations = max_iterations;
        // Ctrl-C: on the main thread (the only one where Python runs signal handlers), the host
        // loop takes the GIL about every 10 ms and runs them; KeyboardInterrupt stops the solver.
        const unsigned long main_ident =
            py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
        if (PyThread_get_thread_ident() == main_ident) {
            options.interrupted = [] {
                py::gil_scoped_acquire gil;
                return PyErr_CheckSignals() != 0;
            };
            options.poll_seconds = 0.01;
        }
        thermossl::SinkhornReport report;
        dispatch(dtype, device, [&](auto tag) {
            using T = decltype(tag);
            report = thermossl::cuda::sinkhorn<T>(view<T>(e), ptr<const T>(weights), ptr<const T>(targets),
                                                  ptr<const T>(mu0), options, ptr<T>(f), ptr<T>(mu), ptr<T>(q),
                                                  ptr<double>(charges), reinterpret_cast<void*>(workspace),
                                                  stream_of(stream), check_every);
        });
        if (report.status == thermossl::SinkhornStatus::kInterrupted) {
            if (PyErr_Occurred()) throw py::error_already_set();
            throw py::value_error("sinkhorn: interrupted");
        }
        return py::make_tuple(report.iterations, report.charge_error, report.converged,
                              static_cast<int>(report.status), report.index);
    }, py::arg("dtype"), py::arg("device"), py::arg("stream"), py::arg("e"), py::arg("temperature"), py::arg("weights"),
       py::arg("targets"), py::arg("mu0"), py::arg("fixed_iterations"), py::arg("tolerance"), py::arg("max_iterations"),
       py::arg("f"), py::arg("mu"), py::arg("q"), py::arg("charges"), py::arg("workspace"), py::arg("check_every"),
       py::arg("energy_sign") = 1.0,
       "Log-domain Sinkhorn on the device; energy_sign=-1: e holds scores s and the energies are -s (no copy).");
}
