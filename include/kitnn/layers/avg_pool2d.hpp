// kitnn/layers/avg_pool2d.hpp — average pooling, "valid" (floor) or "same", like Keras.
//
//   x: (N, C, H, W)
//   y: (N, C, OH, OW), valid: OH = (H - PH) / SH + 1 (floor), likewise OW;
//      same: OH = ceil(H / SH), TensorFlow's padding split (pool_window.hpp)
//   y[n, c, oh, ow] = sum of x over the window's REAL pixels / their count
// With same padding a border window holds fewer real pixels, and the average is over
// those only (TensorFlow's and Inception-v4's rule, PyTorch's count_include_pad=False):
// dividing by PH*PW would count the zero padding and darken every border output.
// Backward: each real pixel of a window gets dy / count of that window; overlapping
// windows (stride < pool) add up.
// Both passes are separable, one plane at a time through a per-thread (H, OW) buffer:
//   forward   hs[i, ow] = sum of x[i, j] over the window's columns j     (each row i)
//             y[oh, ow] = sum of hs[i, ow] over the window's rows i / count
//   backward  the transpose: hs[i, ow] = sum over the windows' rows oh holding i of
//             dy[oh, ow] / count, then dx[i, j] = sum over the columns' windows of hs.
// Why: the direct loop over each window (ph*pw scalar adds per output, bounds read per
// window) took 24.5 ms of Inception-v4's 178 ms forward pass; the row passes are
// contiguous loops over OW that the compiler vectorises, and a window costs ph + pw.
// Stride 1 (Inception-v4's 3x3 "same" pools) goes further: the windows that lie wholly
// inside the plane are PW (then PH) shifted copies added up, loops over the whole plane
// rather than over one window or one short row (17 or 8 pixels in Inception-v4's later
// blocks); only the border windows are summed one by one. Forward at one image: its
// 14 pools 6.4-6.7 ms before, 3.4 ms after. Every path adds in the same order as the
// window loop, so the outputs are the same floats (test_layers_more.cpp checks it).
#pragma once

#include "kitnn/core/parallel.hpp"
#include "kitnn/layers/layer.hpp"
#include "kitnn/layers/pool_window.hpp"
#include "kitnn/layers/registry.hpp"

#include <algorithm>
#include <array>
#include <vector>

namespace kitnn {

template <class T>
class AvgPool2D : public Pool2D<T, AvgPool2D<T>> {
    using Base = Pool2D<T, AvgPool2D<T>>;

public:
    static constexpr const char* kType = "AvgPool2D";
    // stride {0, 0} means "= pool" (Keras's strides=None).
    explicit AvgPool2D(std::array<int, 2> pool = {2, 2}, std::array<int, 2> stride = {0, 0},
                       Padding padding = Padding::valid)
        : Base(pool, stride, padding) {}

    void forward(const Tensor<T>& x, Tensor<T>& y, bool) override {
        this->check_input(x);
        const Eigen::Index N = x.dimension(0), C = this->in_.c(), H = this->in_.h(),
                           W = this->in_.w();
        ensure(y, N, this->out_);
        const int threads = threads_for(N * C, N * C * oh_ * ow_ * win_);
        scratch(threads, H);
        parallel_for_threads(N * C, threads, [&](std::int64_t nc, int t) {
            const T* plane = x.data() + nc * H * W;  // (H, W)
            T* out = y.data() + nc * oh_ * ow_;      // (OH, OW)
            T* hs = hs_[size_t(t)].data();           // (H, OW)
            // Row sums: hs[i, ow] = sum of the window's columns of row i.
            if (flat_rows_) {
                // OW == W and stride 1: window ow of row i starts at flat index
                // i * W + ow - before, so one loop over the whole plane computes every
                // interior window; the border columns it gets wrong (their windows would
                // wrap into the neighbouring row) are then summed one by one.
                const Eigen::Index k0 = full_begin_, k1 = (H - 1) * W + full_end_;
                shifted_sum(plane + k0 - cols_.pad_before, 1, pw_, k1 - k0, hs + k0);
                for (Eigen::Index i = 0; i < H; ++i) border_sums(plane + i * W, hs + i * ow_);
            } else {
                for (Eigen::Index i = 0; i < H; ++i) row_sums(plane + i * W, hs + i * ow_);
            }
            // Column sums, in the same order: the first row of the window, then the others.
            auto rows_of = [&](Eigen::Index oh) {
                const Eigen::Index h0 = rows_.begin[size_t(oh)], h1 = rows_.end[size_t(oh)];
                T* o = out + oh * ow_;
                std::copy(hs + h0 * ow_, hs + (h0 + 1) * ow_, o);
                for (Eigen::Index i = h0 + 1; i < h1; ++i)
                    for (Eigen::Index ow = 0; ow < ow_; ++ow) o[ow] += hs[i * ow_ + ow];
            };
            for (Eigen::Index oh = 0; oh < full_row_begin_; ++oh) rows_of(oh);
            if (full_row_end_ > full_row_begin_) {
                // Stride 1 along H: the interior output rows are one block of the plane,
                // PH shifted blocks of hs added up.
                shifted_sum(hs + (full_row_begin_ - rows_.pad_before) * ow_, ow_, ph_,
                            (full_row_end_ - full_row_begin_) * ow_, out + full_row_begin_ * ow_);
            }
            for (Eigen::Index oh = full_row_end_; oh < oh_; ++oh) rows_of(oh);  // (full_row_end_ >= full_row_begin_)
            const T* count = count_.data();  // (OH, OW)
            for (Eigen::Index k = 0; k < oh_ * ow_; ++k) out[k] /= count[k];
        });
    }

    void backward(const Tensor<T>&, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
        if (!dx) return;
        const Eigen::Index N = dy.dimension(0), C = this->in_.c(), H = this->in_.h(), W = this->in_.w(),
                           HW = H * W;
        ensure(*dx, N, this->in_);
        const int threads = threads_for(N * C, N * C * (HW + oh_ * ow_ * win_));
        scratch(threads, H);
        parallel_for_threads(N * C, threads, [&](std::int64_t nc, int t) {
            T* plane = dx->data() + nc * HW;          // (H, W)
            const T* g = dy.data() + nc * oh_ * ow_;  // (OH, OW)
            T* hs = hs_[size_t(t)].data();            // (H, OW)
            std::fill(hs, hs + H * ow_, T(0));
            for (Eigen::Index oh = 0; oh < oh_; ++oh) {
                const Eigen::Index h0 = rows_.begin[size_t(oh)], h1 = rows_.end[size_t(oh)];
                const T* go = g + oh * ow_;
                const T* count = count_.data() + oh * ow_;
                T* share = sh_[size_t(t)].data();  // (OW): this output row's dy / count
                for (Eigen::Index ow = 0; ow < ow_; ++ow) share[ow] = go[ow] / count[ow];
                for (Eigen::Index i = h0; i < h1; ++i)
                    for (Eigen::Index ow = 0; ow < ow_; ++ow) hs[i * ow_ + ow] += share[ow];
            }
            std::fill(plane, plane + HW, T(0));
            for (Eigen::Index i = 0; i < H; ++i) spread_row(hs + i * ow_, plane + i * W);
        });
    }

protected:
    Shape do_build(const Shape& in, Rng& rng) override {
        const Shape out = Base::do_build(in, rng);
        win_ = std::min<Eigen::Index>(ph_, in.h()) * std::min<Eigen::Index>(pw_, in.w());
        // Stride 1: the windows [ow - before, ow - before + PW) that lie wholly inside the
        // row are the outputs [full_begin_, full_end_) (maybe none).
        full_begin_ = full_end_ = 0;
        if (this->sw_ == 1) {
            const Eigen::Index before = cols_.pad_before;
            full_begin_ = std::min<Eigen::Index>(before, ow_);
            full_end_ = std::max(full_begin_, std::min<Eigen::Index>(ow_, in.w() - pw_ + 1 + before));
        }
        flat_rows_ = this->sw_ == 1 && ow_ == in.w() && full_end_ > full_begin_;
        full_row_begin_ = full_row_end_ = 0;  // likewise the output rows, stride 1 along H
        if (Base::sh_ == 1) {  // (sh_ alone is this class's buffers)
            const Eigen::Index before = rows_.pad_before;
            full_row_begin_ = std::min<Eigen::Index>(before, oh_);
            full_row_end_ = std::max(full_row_begin_, std::min<Eigen::Index>(oh_, in.h() - ph_ + 1 + before));
        }
        // Each output's divisor, its window's real pixels: one contiguous division per plane.
        count_.resize(size_t(oh_ * ow_));
        for (Eigen::Index oh = 0; oh < oh_; ++oh)
            for (Eigen::Index ow = 0; ow < ow_; ++ow)
                count_[size_t(oh * ow_ + ow)] = T((rows_.end[size_t(oh)] - rows_.begin[size_t(oh)]) *
                                                  (cols_.end[size_t(ow)] - cols_.begin[size_t(ow)]));
        hs_.clear();
        sh_.clear();
        return out;
    }

private:
    using Base::ph_, Base::pw_, Base::oh_, Base::ow_, Base::rows_, Base::cols_;
    Eigen::Index win_ = 0;  // most real pixels in a window (work estimate for threading)
    // Stride-1 outputs whose window is all real pixels (Inception-v4's 3x3 "same" pools:
    // all but the first and last column). There a row's sums are PW shifted copies of the
    // row added up: contiguous loops the compiler vectorises, where the per-window loop
    // with its own bounds stays scalar (it was 3.7 % of Inception-v4's forward pass).
    Eigen::Index full_begin_ = 0, full_end_ = 0;
    bool flat_rows_ = false;  // OW == W and stride 1: the row sums in one loop over the plane
    Eigen::Index full_row_begin_ = 0, full_row_end_ = 0;  // the same for output rows (stride 1 along H)
    std::vector<T> count_;  // (OH, OW) real pixels of each window

    // The sums of the windows outside [full_begin_, full_end_) (full_end_ >= full_begin_).
    void border_sums(const T* row, T* h) const {
        auto window = [&](Eigen::Index ow) {
            T s = T(0);
            for (Eigen::Index j = cols_.begin[size_t(ow)]; j < cols_.end[size_t(ow)]; ++j) s += row[j];
            h[ow] = s;
        };
        for (Eigen::Index ow = 0; ow < full_begin_; ++ow) window(ow);
        for (Eigen::Index ow = full_end_; ow < ow_; ++ow) window(ow);
    }

    // h[ow] = sum of row[j] over window ow's columns, j ascending (row: (W), h: (OW)).
    void row_sums(const T* row, T* h) const {
        border_sums(row, h);  // every window when there is no interior (full_end_ == full_begin_)
        if (full_end_ > full_begin_)  // window full_begin_ starts at pixel full_begin_ - before
            shifted_sum(row + (full_begin_ - cols_.pad_before), 1, pw_, full_end_ - full_begin_, h + full_begin_);
    }

    // dst[k] = src[k] + src[step + k] + ... + src[(taps - 1) * step + k] for k < n, added in
    // that order: the window loop's order (0 + a == a), so the same floats.
    static void shifted_sum(const T* src, Eigen::Index step, int taps, Eigen::Index n, T* dst) {
        std::copy(src, src + n, dst);
        for (int d = 1; d < taps; ++d)
            for (Eigen::Index k = 0; k < n; ++k) dst[k] += src[d * step + k];
    }

    // The transpose: row[j] += h[ow] for every window ow holding j, ow ascending for each
    // j as in the per-window loop (row: (W), zeroed by the caller; h: (OW)).
    void spread_row(const T* h, T* row) const {
        auto window = [&](Eigen::Index ow) {
            for (Eigen::Index j = cols_.begin[size_t(ow)]; j < cols_.end[size_t(ow)]; ++j) row[j] += h[ow];
        };
        for (Eigen::Index ow = 0; ow < full_begin_; ++ow) window(ow);
        if (full_end_ > full_begin_) {
            const Eigen::Index n = full_end_ - full_begin_;
            T* r = row + (full_begin_ - cols_.pad_before);
            const T* g = h + full_begin_;
            // Offset d adds window (j - d)'s share to pixel j: d descending is ow ascending.
            for (int d = pw_ - 1; d >= 0; --d)
                for (Eigen::Index k = 0; k < n; ++k) r[d + k] += g[k];
        }
        for (Eigen::Index ow = full_end_; ow < ow_; ++ow) window(ow);
    }
    // Per thread: hs (H, OW) the row sums, sh (OW) one output row's dy / count.
    std::vector<std::vector<T>> hs_, sh_;
    void scratch(int threads, Eigen::Index H) {
        if (hs_.size() < size_t(threads)) {
            hs_.resize(size_t(threads));
            sh_.resize(size_t(threads));
        }
        for (int t = 0; t < threads; ++t) {  // no-ops once sized
            hs_[size_t(t)].resize(size_t(H * ow_));
            sh_[size_t(t)].resize(size_t(ow_));
        }
    }
};
KITNN_LIBRARY_LAYER(AvgPool2D);

}  // namespace kitnn
