// Local Gradients Smoothing's output on the CPU, one image after another in three passes, every thread on
// each image (the launcher, fused_cpu.py, builds this file once per machine and calls it through ctypes).
//
// 1. For every pixel row: m = sqrt(sum over channels of Sx^2 + Sy^2) (3x3 Sobel, replicate borders, taps
//    paired as the torch path pairs them, so flat regions give exactly 0), written to the image's plane
//    `m`, with the row's min and max. A non-finite m stops here (return 1: the caller takes another path,
//    the images before it already written).
// 2. Each window row: g = (m - min) / (max - min) (0 when max == min) summed down its pixel rows per
//    column (in double), then across each window: a window passes when its mean is > threshold. The
//    columns of its passing windows are marked for that window row.
// 3. For every pixel row: the columns marked by a window row that covers it get
//    x * (1 - clip(smoothing_factor * g, 0, 1)) in every channel; the others are copied.
//
// One image's m (H x W) is the only plane: it stays in cache from pass 1 to pass 3, and each thread
// takes the same pixel rows in passes 1 and 3, so its rows of x are still in its cache the second time.
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

template <typename T>
inline T channel_term(const T* __restrict__ up, const T* __restrict__ mid, const T* __restrict__ down, int64_t left,
                      int64_t j, int64_t right) {
    T sobel_x = (up[right] - up[left]) + 2 * (mid[right] - mid[left]) + (down[right] - down[left]);
    T sobel_y = (down[left] - up[left]) + 2 * (down[j] - up[j]) + (down[right] - up[right]);
    return sobel_x * sobel_x + sobel_y * sobel_y;
}

template <typename T>
void gradient_row(const T* __restrict__ up, const T* __restrict__ mid, const T* __restrict__ down,
                  T* __restrict__ sum, int64_t width) {
    // sum[j] += one channel's term, for images of other than 3 channels
    for (int64_t j = 1; j + 1 < width; j++) sum[j] += channel_term(up, mid, down, j - 1, j, j + 1);  // vectorised
    for (int64_t j = 0; j < width; j += width > 1 ? width - 1 : 1) {  // the first and last column: replicate
        sum[j] += channel_term(up, mid, down, j > 0 ? j - 1 : 0, j, j + 1 < width ? j + 1 : width - 1);
    }
}

constexpr int64_t READ_AHEAD_ROWS = 4, WRITE_AHEAD_ROWS = 8;  // chosen by benchmarks/fused_cpu_passes.py

template <typename T>
inline void prefetch_row(const T* row, int64_t width, int for_writing) {
    const char* bytes = reinterpret_cast<const char*>(row);
    for (int64_t k = 0; k < width * static_cast<int64_t>(sizeof(T)); k += 64) {
        if (for_writing) {
            __builtin_prefetch(bytes + k, 1, 3);
        } else {
            __builtin_prefetch(bytes + k, 0, 3);
        }
    }
}

template <typename T>
void row_range(const T* __restrict__ row, int64_t width, T* lowest, T* highest) {
    // min and max of a row that holds no NaN, in 16 lanes so that the loop vectorises
    constexpr int lanes = 16;
    T low[lanes], high[lanes];
    for (int l = 0; l < lanes; l++) low[l] = INFINITY, high[l] = -INFINITY;
    int64_t j = 0;
    for (; j + lanes <= width; j += lanes) {
        for (int l = 0; l < lanes; l++) {
            low[l] = row[j + l] < low[l] ? row[j + l] : low[l];
            high[l] = row[j + l] > high[l] ? row[j + l] : high[l];
        }
    }
    for (int l = 0; j + l < width; l++) {
        low[l] = row[j + l] < low[l] ? row[j + l] : low[l];
        high[l] = row[j + l] > high[l] ? row[j + l] : high[l];
    }
    for (int l = 1; l < lanes; l++) {
        low[0] = low[l] < low[0] ? low[l] : low[0];
        high[0] = high[l] > high[0] ? high[l] : high[0];
    }
    *lowest = low[0];
    *highest = high[0];
}

template <typename T>
void normalise_row(const T* __restrict__ row, T lowest, T range, T* __restrict__ normalised, int64_t width) {
    if (range > 0) {
        for (int64_t j = 0; j < width; j++) normalised[j] = (row[j] - lowest) / range;
    } else {
        for (int64_t j = 0; j < width; j++) normalised[j] = 0;
    }
}

template <typename T>
int lgs_output(const T* __restrict__ x, T* __restrict__ out, T* __restrict__ m, T* __restrict__ lowest,
               T* __restrict__ highest, uint8_t* __restrict__ covered_by_window_row,
               uint8_t* __restrict__ window_row_passes,
               int64_t batch, int64_t channels, int64_t height, int64_t width,
               const int64_t* row_starts, int64_t n_rows, int64_t row_extent,
               const int64_t* col_starts, int64_t n_cols, int64_t col_extent,
               double smoothing_factor, double threshold, int threads) {
    const int64_t plane = height * width;
    const double area = static_cast<double>(row_extent * col_extent);
    const T factor_of_g = static_cast<T>(smoothing_factor);
    int status = 0;
#pragma omp parallel num_threads(threads)
    {
        std::vector<T> normalised(width), factor(width);
        std::vector<double> column_sums(width);
        std::vector<uint8_t> covered(width);
        for (int64_t b = 0; b < batch; b++) {
            const T* image = x + b * channels * plane;
            // 1. m of every pixel row of image b, with each row's range. The rows are split between the
            // threads as in pass 3, so each thread reads its rows of x there from its own cache.
#pragma omp for schedule(static)
            for (int64_t r = 0; r < height; r++) {
                T* __restrict__ row = m + r * width;
                const int64_t up = r > 0 ? r - 1 : 0, down = r + 1 < height ? r + 1 : height - 1;
                // The hardware prefetcher alone leaves the loads waiting on memory (measured: 10% slower).
                if (r + READ_AHEAD_ROWS < height) {
                    for (int64_t c = 0; c < channels; c++) {
                        prefetch_row(image + (c * height + r + READ_AHEAD_ROWS) * width, width, 0);
                    }
                }
                for (int64_t j = 0; j < width; j++) row[j] = 0;
                for (int64_t c = 0; c < channels; c++) {  // one channel at a time: few streams, no spilled pointers
                    const T* channel = image + c * plane;
                    gradient_row(channel + up * width, channel + r * width, channel + down * width, row, width);
                }
                for (int64_t j = 0; j < width; j++) row[j] = row[j] > 0 ? std::sqrt(row[j]) : 0;
                row_range(row, width, lowest + r, highest + r);
            }
            // Every thread reads the image's range from the rows' (the same answer in each, no barrier).
            T low = lowest[0], high = highest[0];
            for (int64_t r = 0; r < height; r++) {
                low = lowest[r] < low ? lowest[r] : low;
                high = highest[r] > high ? highest[r] : high;
            }
            if (!(high < INFINITY)) {  // m is never NaN: it is finite when its max is. Every thread sees it and
                                       // leaves the loop: the caller takes another path
#pragma omp single nowait
                status = 1;
                break;
            }
            // 2. Each window row: g = (m - low) / (high - low) summed down the window's pixel rows per column
            // (in double), then across each window's columns: the window passes when its mean is > threshold.
#pragma omp for schedule(static)
            for (int64_t i = 0; i < n_rows; i++) {
                for (int64_t k = 0; k < width; k++) column_sums[k] = 0;
                for (int64_t r = row_starts[i]; r < row_starts[i] + row_extent; r++) {
                    normalise_row(m + r * width, low, high - low, normalised.data(), width);
                    for (int64_t k = 0; k < width; k++) column_sums[k] += normalised[k];  // vectorised
                }
                bool any = false;
                uint8_t* __restrict__ covered_here = covered_by_window_row + i * width;
                for (int64_t k = 0; k < width; k++) covered_here[k] = 0;
                for (int64_t j = 0; j < n_cols; j++) {
                    double sum = 0;
                    for (int64_t k = col_starts[j]; k < col_starts[j] + col_extent; k++) sum += column_sums[k];
                    if (!(static_cast<T>(sum / area) > static_cast<T>(threshold))) continue;
                    any = true;
                    for (int64_t k = col_starts[j]; k < col_starts[j] + col_extent; k++) covered_here[k] = 1;
                }
                window_row_passes[i] = any;
            }
            // 3. The columns inside a passing window whose rows cover a pixel row get
            // x * (1 - clip(smoothing_factor * g, 0, 1)) in every channel; the others are copied.
            int64_t first = 0;  // the first window row not above this pixel row (the rows come in order)
#pragma omp for schedule(static)
            for (int64_t r = 0; r < height; r++) {
                while (first < n_rows && row_starts[first] + row_extent <= r) first++;
                if (r + WRITE_AHEAD_ROWS < height) {  // owning the output's lines early saves 5-10%
                    for (int64_t c = 0; c < channels; c++) {
                        prefetch_row(out + ((b * channels + c) * height + r + WRITE_AHEAD_ROWS) * width, width, 1);
                    }
                }
                bool any = false;
                for (int64_t k = 0; k < width; k++) covered[k] = 0;
                for (int64_t i = first; i < n_rows && row_starts[i] <= r; i++) {  // the window rows covering it
                    if (!window_row_passes[i]) continue;
                    any = true;
                    const uint8_t* __restrict__ covered_there = covered_by_window_row + i * width;
                    for (int64_t k = 0; k < width; k++) covered[k] |= covered_there[k];
                }
                if (any) {
                    normalise_row(m + r * width, low, high - low, factor.data(), width);
                    for (int64_t j = 0; j < width; j++) {
                        T suppressed = factor_of_g * factor[j];
                        suppressed = suppressed < 0 ? 0 : (suppressed > 1 ? 1 : suppressed);
                        factor[j] = covered[j] ? 1 - suppressed : 1;
                    }
                }
                for (int64_t c = 0; c < channels; c++) {
                    const T* __restrict__ source = image + (c * height + r) * width;
                    T* __restrict__ target = out + ((b * channels + c) * height + r) * width;
                    if (any) {
                        for (int64_t j = 0; j < width; j++) target[j] = source[j] * factor[j];
                    } else {
                        for (int64_t j = 0; j < width; j++) target[j] = source[j];
                    }
                }
            }  // the barrier here keeps the next image's pass 1 off this image's m
        }
    }
    return status;
}

}  // namespace

#define LGS_OUTPUT(T, NAME)                                                                                      \
    extern "C" int NAME(const T* x, T* out, T* m, T* lowest, T* highest, uint8_t* covered_by_window_row, uint8_t* window_row_passes, \
                        int64_t batch, int64_t channels, int64_t height, int64_t width, const int64_t* row_starts, \
                        int64_t n_rows, int64_t row_extent, const int64_t* col_starts, int64_t n_cols,          \
                        int64_t col_extent, double smoothing_factor, double threshold, int threads) {           \
        return lgs_output<T>(x, out, m, lowest, highest, covered_by_window_row, window_row_passes, batch, channels, height, width,   \
                             row_starts, n_rows, row_extent, col_starts, n_cols, col_extent, smoothing_factor,   \
                             threshold, threads);                                                                \
    }

LGS_OUTPUT(float, lgs_output_float32)
LGS_OUTPUT(double, lgs_output_float64)
