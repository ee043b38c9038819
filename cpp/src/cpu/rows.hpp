// Internal machinery shared by the CPU kernels: the affine exponent map, contiguous access to
// the rows of strided views, and the OpenMP driver over tiles of rows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "load_element.hpp"
#include "thermossl/view.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace thermossl::THERMOSSL_ISA_NS::detail {

/// Below this many elements a kernel runs on the calling thread: a parallel region costs more.
inline constexpr std::int64_t kParallelMinElements = 1 << 15;

/// The exponent map x_j = scale * a_j + shift_j, evaluated in double for float and double inputs
/// alike. For float data this keeps x - max(x) exact to double rounding, so exp(x - max) carries
/// only the float rounding of its own argument, |x - max| 2^-24, instead of |x| 2^-23 from
/// forming x in float (which costs 1e-6 relative on every code at |E|/T ~ 20). Evaluated
/// identically in every pass over a row, so comparisons of x against the row max are exact.
struct Exponent {
    double scale;
    const double* shift;  // may be null
};

/// Number of rows per tile: strided inputs are packed one tile at a time into a per-thread
/// buffer of at most ~256 KiB (and at least one row).
template <class T>
std::int64_t tile_rows(std::int64_t cols) {
    const std::int64_t budget = (256 * 1024) / static_cast<std::int64_t>(sizeof(T));
    return std::max<std::int64_t>(1, std::min<std::int64_t>(64, budget / std::max<std::int64_t>(cols, 1)));
}

/// Gives a contiguous pointer to each row of a view, as rows of the compute type T: the row
/// itself when the view's elements are T and its rows are contiguous, otherwise a copy packed
/// into a per-thread buffer one tile at a time — strided views, and views of another element
/// type In (bfloat16, float16: converted in registers by load_element.hpp as they are packed,
/// so the matrix is read once from memory and the kernel reads the tile from cache). The
/// packing loop walks memory in the order of the smaller stride, so transposed (Fortran-order)
/// inputs are read with unit stride as well.
template <class T, class In = T>
class RowReader {
    static constexpr bool kConverts = !std::is_same<T, In>::value;

public:
    explicit RowReader(const MatrixView<In>& view) : view_(view) {}

    void load(std::int64_t i0, std::int64_t i1) {
        first_ = i0;
        if (!kConverts && view_.rows_contiguous()) return;
        const std::int64_t cols = view_.cols;
        buffer_.resize(static_cast<std::size_t>((i1 - i0) * cols));
        if (view_.rows_contiguous()) {
            for (std::int64_t i = i0; i < i1; ++i) load_row(view_.row(i), buffer_.data() + (i - i0) * cols, cols);
            return;
        }
        const auto abs = [](std::int64_t s) { return s < 0 ? -s : s; };
        if (abs(view_.row_stride) < abs(view_.col_stride)) {
            for (std::int64_t j = 0; j < cols; ++j)
                for (std::int64_t i = i0; i < i1; ++i)
                    buffer_[(i - i0) * cols + j] = load_element<T>(view_.data[i * view_.row_stride + j * view_.col_stride]);
        } else {
            for (std::int64_t i = i0; i < i1; ++i)
                for (std::int64_t j = 0; j < cols; ++j)
                    buffer_[(i - i0) * cols + j] = load_element<T>(view_.data[i * view_.row_stride + j * view_.col_stride]);
        }
    }

    const T* row(std::int64_t i) const {
        if constexpr (!kConverts) {
            if (view_.rows_contiguous()) return view_.row(i);
        }
        return buffer_.data() + (i - first_) * view_.cols;
    }

    /// The row after row i of the tile [first, end) where a kernel will read from memory next, for
    /// prefetching (row_sweep's `ahead`): the next row of the matrix when rows are read in place
    /// (across tile ends too), null when rows are packed (the tile buffer is filled ahead already).
    const T* next_row(std::int64_t i) const {
        if constexpr (!kConverts) {
            if (view_.rows_contiguous() && i + 1 < view_.rows) return view_.row(i + 1);
        }
        return nullptr;
    }

private:
    MatrixView<In> view_;
    std::vector<T> buffer_;
    std::int64_t first_ = 0;
};

/// Called by every thread of a parallel region (or outside one): the team shares the tiles
/// [i0, i1) of `rows` rows statically and runs body(i0, i1) on each (an orphaned omp for, so
/// the region keeps its per-thread state: readers, column accumulators).
template <class Body>
void for_row_tiles(std::int64_t rows, std::int64_t tile, Body body) {
    const std::int64_t n_tiles = (rows + tile - 1) / tile;
#pragma omp for schedule(static)
    for (std::int64_t t = 0; t < n_tiles; ++t) {
        const std::int64_t i0 = t * tile;
        body(i0, std::min(rows, i0 + tile));
    }
}

/// Runs body(i0, i1) over tiles [i0, i1) of rows, statically split over the OpenMP threads.
/// `make_body()` is called once per thread so each thread owns its buffers.
template <class MakeBody>
void parallel_row_tiles(std::int64_t rows, std::int64_t tile, std::int64_t elements, MakeBody make_body) {
#ifdef _OPENMP
    const std::int64_t n_tiles = (rows + tile - 1) / tile;
#pragma omp parallel if (elements >= kParallelMinElements && n_tiles > 1)
#else
    (void)elements;  // serial build: one team of one thread, no threshold to test
#endif
    {
        for_row_tiles(rows, tile, make_body());
    }
}

/// Threads for a parallel pass over `work_items` units (tiles or blocks of rows) of a matrix of
/// `elements` entries: 1 below the parallel threshold, never more than there are units.
inline int pass_threads(std::int64_t elements, std::int64_t work_items) {
#ifdef _OPENMP
    if (elements >= kParallelMinElements && work_items > 1)
        return static_cast<int>(std::min<std::int64_t>(omp_get_max_threads(), work_items));
#endif
    (void)elements;
    (void)work_items;
    return 1;
}

/// The OpenMP thread number inside a parallel region (0 without OpenMP).
inline int thread_index() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/// Per-thread column sums, one K-vector per thread, merged once after a parallel pass: the
/// charge accumulators (N_y = sum_i w_i q_iy) of the ledger, label and Sinkhorn passes.
class ColumnSums {
public:
    ColumnSums(int n_threads, std::int64_t cols)
        : cols_(cols), n_threads_(n_threads), sums_(static_cast<std::size_t>(n_threads) * cols, 0.0) {}

    void clear() { std::fill(sums_.begin(), sums_.end(), 0.0); }
    double* of_thread(int thread) { return sums_.data() + static_cast<std::size_t>(thread) * cols_; }

    /// out_y = sum over threads of their column y.
    void merge_into(double* out) const {
        for (std::int64_t y = 0; y < cols_; ++y) {
            double total = 0.0;
            for (int t = 0; t < n_threads_; ++t) total += sums_[static_cast<std::size_t>(t) * cols_ + y];
            out[y] = total;
        }
    }

private:
    std::int64_t cols_;
    int n_threads_;
    std::vector<double> sums_;
};

template <class T>
constexpr T infinity() { return std::numeric_limits<T>::infinity(); }
template <class T>
constexpr T quiet_nan() { return std::numeric_limits<T>::quiet_NaN(); }

}  // namespace thermossl::THERMOSSL_ISA_NS::detail
