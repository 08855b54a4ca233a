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

#include <algorithm>
#include <array>

namespace kitnn {

template <class T>
class AvgPool2D : public Layer<T> {
public:
    // stride {0, 0} means "= pool" (Keras's strides=None).
    explicit AvgPool2D(std::array<int, 2> pool = {2, 2}, std::array<int, 2> stride = {0, 0},
                       Padding padding = Padding::valid)
        : ph_(pool[0]), pw_(pool[1]), sh_(stride[0] ? stride[0] : pool[0]),
          sw_(stride[1] ? stride[1] : pool[1]), padding_(padding) {
        if (ph_ < 1 || pw_ < 1 || sh_ < 1 || sw_ < 1)
            throw std::invalid_argument("AvgPool2D: pool size and stride must be >= 1");
        if (padding != Padding::valid && padding != Padding::same)
            throw std::invalid_argument("AvgPool2D: padding must be valid or same");
    }

    std::string type() const override { return "AvgPool2D"; }
    Config config() const override {
        Config c;
        c.set("pool_h", ph_).set("pool_w", pw_).set("stride_h", sh_).set("stride_w", sw_);
        c.set("padding", to_string(padding_));
        return c;
    }
    std::int64_t macs() const override { return 0; }

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
    Shape do_build(const Shape& in, Rng&) override {
        if (!in.is_image()) this->shape_error("needs an image input (C,H,W), got " + in.str());
        if (padding_ == Padding::valid && (in.h() < ph_ || in.w() < pw_))
            this->shape_error("pool " + std::to_string(ph_) + "x" + std::to_string(pw_) +
                              " is larger than the input " + in.str() + " (valid padding)");
        rows_ = pool_axis(in.h(), ph_, sh_, padding_);
        cols_ = pool_axis(in.w(), pw_, sw_, padding_);
        oh_ = rows_.out;
        ow_ = cols_.out;
        win_ = std::min<Eigen::Index>(ph_, in.h()) * std::min<Eigen::Index>(pw_, in.w());
        return Shape::image(in.c(), oh_, ow_);
    }

private:
    int ph_, pw_, sh_, sw_;
    Padding padding_;
    Eigen::Index oh_ = 0, ow_ = 0;
    Eigen::Index win_ = 0;  // most real pixels in a window (work estimate for threading)
    PoolAxis rows_, cols_;  // window ranges along H (OH of them) and W (OW)
};

}  // namespace kitnn
