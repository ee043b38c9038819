// thermossl — plain strided views shared by every kernel of the C++ API.
//
// The C++ API knows nothing of Python: a matrix is a pointer, a shape and two strides counted
// in elements (not bytes). Strides may be any value, including 0 (broadcast) and negative
// (reversed views); kernels read strided views tile by tile into a small per-thread buffer,
// so no copy the size of the matrix is ever made.
#pragma once

#include <cstdint>

#include "thermossl/half.hpp"

namespace thermossl {

namespace detail {
template <class T>
struct type_identity {
    using type = T;
};
}  // namespace detail

/// `Same<T>` is T in a non-deduced context: in the kernels' signatures only the matrix views
/// fix T, so scalars (a double literal for a float kernel) and null pointers convert freely.
template <class T>
using Same = typename detail::type_identity<T>::type;

/// Read-only view of a rows x cols matrix: element (i, j) is data[i * row_stride + j * col_stride].
template <class T>
struct MatrixView {
    const T* data = nullptr;
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    std::int64_t row_stride = 0;  // in elements
    std::int64_t col_stride = 1;  // in elements

    /// True when every row is a contiguous run of `cols` elements.
    bool rows_contiguous() const { return col_stride == 1 || cols <= 1; }
    const T* row(std::int64_t i) const { return data + i * row_stride; }

    /// A C-contiguous (row-major) view.
    static MatrixView contiguous(const T* data, std::int64_t rows, std::int64_t cols) {
        return MatrixView{data, rows, cols, cols, 1};
    }
};

}  // namespace thermossl
