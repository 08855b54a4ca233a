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
#pragma once

#include "kitnn/core/parallel.hpp"
#include "kitnn/layers/layer.hpp"
#include "kitnn/layers/pool_window.hpp"
#include "kitnn/layers/registry.hpp"

#include <algorithm>
#include <array>

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
        parallel_for(N * C, N * C * oh_ * ow_ * win_, [&](std::int64_t nc) {
            const T* plane = x.data() + nc * H * W;  // (H, W)
            T* out = y.data() + nc * oh_ * ow_;      // (OH, OW)
            for (Eigen::Index oh = 0; oh < oh_; ++oh) {
                const Eigen::Index h0 = rows_.begin[size_t(oh)], h1 = rows_.end[size_t(oh)];
                for (Eigen::Index ow = 0; ow < ow_; ++ow) {
                    const Eigen::Index w0 = cols_.begin[size_t(ow)], w1 = cols_.end[size_t(ow)];
                    T s = T(0);
                    for (Eigen::Index i = h0; i < h1; ++i)
                        for (Eigen::Index j = w0; j < w1; ++j) s += plane[i * W + j];
                    out[oh * ow_ + ow] = s / T((h1 - h0) * (w1 - w0));
                }
            }
        });
    }

    void backward(const Tensor<T>&, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
        if (!dx) return;
        const Eigen::Index N = dy.dimension(0), C = this->in_.c(), W = this->in_.w(),
                           HW = this->in_.h() * W;
        ensure(*dx, N, this->in_);
        parallel_for(N * C, N * C * (HW + oh_ * ow_ * win_), [&](std::int64_t nc) {
            T* plane = dx->data() + nc * HW;        // (H, W)
            const T* g = dy.data() + nc * oh_ * ow_;  // (OH, OW)
            std::fill(plane, plane + HW, T(0));
            for (Eigen::Index oh = 0; oh < oh_; ++oh) {
                const Eigen::Index h0 = rows_.begin[size_t(oh)], h1 = rows_.end[size_t(oh)];
                for (Eigen::Index ow = 0; ow < ow_; ++ow) {
                    const Eigen::Index w0 = cols_.begin[size_t(ow)], w1 = cols_.end[size_t(ow)];
                    const T share = g[oh * ow_ + ow] / T((h1 - h0) * (w1 - w0));
                    for (Eigen::Index i = h0; i < h1; ++i)
                        for (Eigen::Index j = w0; j < w1; ++j) plane[i * W + j] += share;
                }
            }
        });
    }

protected:
    Shape do_build(const Shape& in, Rng& rng) override {
        const Shape out = Base::do_build(in, rng);
        win_ = std::min<Eigen::Index>(ph_, in.h()) * std::min<Eigen::Index>(pw_, in.w());
        return out;
    }

private:
    using Base::ph_, Base::pw_, Base::oh_, Base::ow_, Base::rows_, Base::cols_;
    Eigen::Index win_ = 0;  // most real pixels in a window (work estimate for threading)
};
KITNN_LIBRARY_LAYER(AvgPool2D);

}  // namespace kitnn
