// Local Gradients Smoothing's output on the CPU in three passes over contiguous [B, C, H, W] images
// (the launcher, fused_cpu.py, builds this file once per machine and calls it through ctypes).
//
// 1. For every pixel row: m = sqrt(sum over channels of Sx^2 + Sy^2) (3x3 Sobel, replicate borders, taps
//    paired as the torch path pairs them, so flat regions give exactly 0), written to the plane `m`,
//    with the row's min and max. A non-finite m stops here (return 1: the caller takes another path).
// 2. Per image: g = (m - min) / (max - min) (0 when max == min), summed over every window's columns per
//    pixel row (in double), then over the window's rows: a window passes when its mean is > threshold.
// 3. For every pixel row: the columns inside a passing window whose rows cover it get
//    x * (1 - clip(smoothing_factor * g, 0, 1)) in every channel; the others are copied.
//
// Traffic: read x twice and m twice, write m and the output once. No allocation beyond a few rows per
// thread. Parallel over (image, row) with OpenMP, on the caller's thread count.
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

template <typename T>
void gradient_row3(const T* image, int64_t plane, int64_t up, int64_t mid, int64_t down, T* __restrict__ row,
                   int64_t width) {
    // m of one pixel row of a 3-channel image; `up`, `mid`, `down`: the offsets of the rows above, at and below.
    const T* __restrict__ u0 = image + up;
    const T* __restrict__ m0 = image + mid;
    const T* __restrict__ d0 = image + down;
    const T* __restrict__ u1 = u0 + plane;
    const T* __restrict__ m1 = m0 + plane;
    const T* __restrict__ d1 = d0 + plane;
    const T* __restrict__ u2 = u1 + plane;
    const T* __restrict__ m2 = m1 + plane;
    const T* __restrict__ d2 = d1 + plane;
    for (int64_t j = 1; j + 1 < width; j++) {
        T sum = channel_term(u0, m0, d0, j - 1, j, j + 1) + channel_term(u1, m1, d1, j - 1, j, j + 1) +
                channel_term(u2, m2, d2, j - 1, j, j + 1);
        row[j] = sum > 0 ? std::sqrt(sum) : 0;
    }
    for (int64_t j = 0; j < width; j += width > 1 ? width - 1 : 1) {
        int64_t left = j > 0 ? j - 1 : 0, right = j + 1 < width ? j + 1 : width - 1;
        T sum = channel_term(u0, m0, d0, left, j, right) + channel_term(u1, m1, d1, left, j, right) +
                channel_term(u2, m2, d2, left, j, right);
        row[j] = sum > 0 ? std::sqrt(sum) : 0;
    }
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
               T* __restrict__ highest, double* __restrict__ column_sums, uint8_t* __restrict__ passing,
               int64_t batch, int64_t channels, int64_t height, int64_t width,
               const int64_t* row_starts, int64_t n_rows, int64_t row_extent,
               const int64_t* col_starts, int64_t n_cols, int64_t col_extent,
               double smoothing_factor, double threshold, int threads) {
    const int64_t plane = height * width;
    int nonfinite = 0;
#pragma omp parallel for collapse(2) num_threads(threads) reduction(| : nonfinite) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t r = 0; r < height; r++) {
            T* __restrict__ row = m + b * plane + r * width;
            const int64_t up = r > 0 ? r - 1 : 0, down = r + 1 < height ? r + 1 : height - 1;
            const T* image = x + b * channels * plane;
            if (channels == 3) {  // the usual case: every channel in one loop, no partial sums in memory
                gradient_row3(image, plane, up * width, r * width, down * width, row, width);
            } else {
                for (int64_t j = 0; j < width; j++) row[j] = 0;
                for (int64_t c = 0; c < channels; c++) {
                    const T* channel = image + c * plane;
                    gradient_row(channel + up * width, channel + r * width, channel + down * width, row, width);
                }
                for (int64_t j = 0; j < width; j++) row[j] = row[j] > 0 ? std::sqrt(row[j]) : 0;
            }
            T low = INFINITY, high = -INFINITY, total = 0;
            for (int64_t j = 0; j < width; j++) {
                T value = row[j];
                low = value < low ? value : low;
                high = value > high ? value : high;
                total += value;
            }
            nonfinite |= !std::isfinite(total);
            lowest[b * height + r] = low;
            highest[b * height + r] = high;
        }
    }
    if (nonfinite) return 1;
    for (int64_t b = 0; b < batch; b++) {  // each image's range, from its rows'
        T low = lowest[b * height], high = highest[b * height];
        for (int64_t r = 1; r < height; r++) {
            low = lowest[b * height + r] < low ? lowest[b * height + r] : low;
            high = highest[b * height + r] > high ? highest[b * height + r] : high;
        }
        lowest[b] = low;
        highest[b] = high;
    }
#pragma omp parallel num_threads(threads)
    {
        std::vector<T> normalised(width);
#pragma omp for collapse(2) schedule(static)
        for (int64_t b = 0; b < batch; b++) {
            for (int64_t r = 0; r < height; r++) {
                normalise_row(m + b * plane + r * width, lowest[b], highest[b] - lowest[b], normalised.data(), width);
                double* sums = column_sums + (b * height + r) * n_cols;
                for (int64_t j = 0; j < n_cols; j++) {
                    double sum = 0;
                    for (int64_t k = col_starts[j]; k < col_starts[j] + col_extent; k++) sum += normalised[k];
                    sums[j] = sum;
                }
            }
        }
    }
    const double area = static_cast<double>(row_extent * col_extent);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t i = 0; i < n_rows; i++) {
            for (int64_t j = 0; j < n_cols; j++) {
                double sum = 0;
                for (int64_t r = row_starts[i]; r < row_starts[i] + row_extent; r++)
                    sum += column_sums[(b * height + r) * n_cols + j];
                passing[(b * n_rows + i) * n_cols + j] = static_cast<T>(sum / area) > static_cast<T>(threshold);
            }
        }
    }
    const T factor_of_g = static_cast<T>(smoothing_factor);
#pragma omp parallel num_threads(threads)
    {
        std::vector<uint8_t> column_passes(n_cols), covered(width);
        std::vector<T> factor(width);
#pragma omp for collapse(2) schedule(static)
        for (int64_t b = 0; b < batch; b++) {
            for (int64_t r = 0; r < height; r++) {
                for (int64_t j = 0; j < n_cols; j++) column_passes[j] = 0;
                for (int64_t i = 0; i < n_rows; i++) {  // the window rows covering this pixel row
                    if (row_starts[i] <= r && r < row_starts[i] + row_extent) {
                        for (int64_t j = 0; j < n_cols; j++) column_passes[j] |= passing[(b * n_rows + i) * n_cols + j];
                    }
                }
                bool any = false;
                for (int64_t j = 0; j < width; j++) covered[j] = 0;
                for (int64_t j = 0; j < n_cols; j++) {
                    if (!column_passes[j]) continue;
                    any = true;
                    for (int64_t k = col_starts[j]; k < col_starts[j] + col_extent; k++) covered[k] = 1;
                }
                if (any) {
                    normalise_row(m + b * plane + r * width, lowest[b], highest[b] - lowest[b], factor.data(), width);
                    for (int64_t j = 0; j < width; j++) {
                        T suppressed = factor_of_g * factor[j];
                        suppressed = suppressed < 0 ? 0 : (suppressed > 1 ? 1 : suppressed);
                        factor[j] = covered[j] ? 1 - suppressed : 1;
                    }
                }
                for (int64_t c = 0; c < channels; c++) {
                    const T* __restrict__ source = x + ((b * channels + c) * height + r) * width;
                    T* __restrict__ target = out + ((b * channels + c) * height + r) * width;
                    if (any) {
                        for (int64_t j = 0; j < width; j++) target[j] = source[j] * factor[j];
                    } else {
                        for (int64_t j = 0; j < width; j++) target[j] = source[j];
                    }
                }
            }
        }
    }
    return 0;
}

}  // namespace

#define LGS_OUTPUT(T, NAME)                                                                                      \
    extern "C" int NAME(const T* x, T* out, T* m, T* lowest, T* highest, double* column_sums, uint8_t* passing, \
                        int64_t batch, int64_t channels, int64_t height, int64_t width, const int64_t* row_starts, \
                        int64_t n_rows, int64_t row_extent, const int64_t* col_starts, int64_t n_cols,          \
                        int64_t col_extent, double smoothing_factor, double threshold, int threads) {           \
        return lgs_output<T>(x, out, m, lowest, highest, column_sums, passing, batch, channels, height, width,   \
                             row_starts, n_rows, row_extent, col_starts, n_cols, col_extent, smoothing_factor,   \
                             threshold, threads);                                                                \
    }

LGS_OUTPUT(float, lgs_output_float32)
LGS_OUTPUT(double, lgs_output_float64)
