// kitnn/layers/max_pool2d.hpp — max pooling, "valid" (floor) or "same", like Keras.
//
//   x      : (N, C, H, W)
//   y      : (N, C, OH, OW), valid: OH = (H - PH) / SH + 1 (floor), likewise OW;
//            same: OH = ceil(H / SH), TensorFlow's padding split (pool_window.hpp)
//   argmax_: (N, C, OH, OW) index h*W + w of the winner inside its input plane,
//            remembered so backward routes dy to exactly that pixel.
// Ties go to the first maximum in row-major order. With same padding the max is
// taken over the window's real pixels only, as if the padding were -infinity: a
// padded cell never wins (TensorFlow's rule), so all-negative inputs stay exact.
#pragma once

#include "kitnn/core/parallel.hpp"
#include "kitnn/layers/layer.hpp"
#include "kitnn/layers/pool_window.hpp"
#include "kitnn/layers/registry.hpp"

#include <array>
#include <vector>

namespace kitnn {

template <class T>
class MaxPool2D : public Pool2D<T, MaxPool2D<T>> {
    using Base = Pool2D<T, MaxPool2D<T>>;

public:
    static constexpr const char* kType = "MaxPool2D";
    // stride {0, 0} means "= pool" (Keras's strides=None).
    explicit MaxPool2D(std::array<int, 2> pool = {2, 2}, std::array<int, 2> stride = {0, 0},
                       Padding padding = Padding::valid)
        : Base(pool, stride, padding) {}

    void forward(const Tensor<T>& x, Tensor<T>& y, bool) override {
        this->check_input(x);
        const Eigen::Index N = x.dimension(0), C = this->in_.c(), H = this->in_.h(),
                           W = this->in_.w();
        ensure(y, N, this->out_);
        argmax_.resize(size_t(N * C * oh_ * ow_));
        parallel_for(N * C, N * C * H * W, [&](std::int64_t nc) {
            const T* plane = x.data() + nc * H * W;
            T* out = y.data() + nc * oh_ * ow_;
            std::int32_t* am = argmax_.data() + nc * oh_ * ow_;
            if (fast_2x2_) {  // the common case, unrolled
                pool_2x2(plane, W, out, am);
                return;
            }
            // Window (oh, ow) covers the real pixels [h0, h1) x [w0, w1).
            for (Eigen::Index oh = 0; oh < oh_; ++oh) {
                const Eigen::Index h0 = rows_.begin[size_t(oh)], h1 = rows_.end[size_t(oh)];
                for (Eigen::Index ow = 0; ow < ow_; ++ow) {
                    const Eigen::Index w0 = cols_.begin[size_t(ow)], w1 = cols_.end[size_t(ow)];
                    Eigen::Index best = h0 * W + w0;
                    T m = plane[best];
                    for (Eigen::Index i = h0; i < h1; ++i)
                        for (Eigen::Index j = w0; j < w1; ++j) {
                            const Eigen::Index k = i * W + j;
                            if (plane[k] > m) {
                                m = plane[k];
                                best = k;
                            }
                        }
                    out[oh * ow_ + ow] = m;
                    am[oh * ow_ + ow] = std::int32_t(best);
                }
            }
        });
    }

    void backward(const Tensor<T>&, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
        if (!dx) return;
        const Eigen::Index N = dy.dimension(0), C = this->in_.c(),
                           HW = this->in_.h() * this->in_.w(), P = oh_ * ow_;
        ensure(*dx, N, this->in_);
        parallel_for(N * C, N * C * HW, [&](std::int64_t nc) {
            T* plane = dx->data() + nc * HW;
            std::fill(plane, plane + HW, T(0));
            const T* g = dy.data() + nc * P;
            const std::int32_t* am = argmax_.data() + nc * P;
            // += because overlapping windows (stride < pool) may pick the same pixel.
            for (Eigen::Index p = 0; p < P; ++p) plane[am[p]] += g[p];
        });
    }

protected:
    Shape do_build(const Shape& in, Rng& rng) override {
        const Shape out = Base::do_build(in, rng);
        // The unrolled path needs every window whole, inside the input: always so for
        // valid 2x2/2, and for same 2x2/2 on even sizes (no padding needed there).
        fast_2x2_ = ph_ == 2 && pw_ == 2 && sh_ == 2 && sw_ == 2 && rows_.pad_before == 0 &&
                    cols_.pad_before == 0 && 2 * oh_ <= in.h() && 2 * ow_ <= in.w();
        return out;
    }

private:
    // 2x2 windows, stride 2, of one plane: the same result as the general loop
    // (first maximum in row-major order wins), without branches. The old if-chain
    // mispredicted on every other window (the winner among random activations is
    // random) and made this layer cost as much as a convolution. Here m is the plain
    // max and the winner's position pos in 0..3 (row-major in the window) is the
    // first of the four equal to m, computed with 0/1 arithmetic so that no branch
    // is left and GCC can vectorise the loop.
    void pool_2x2(const T* plane, Eigen::Index W, T* out, std::int32_t* am) const {
        const std::int32_t w = std::int32_t(W);
        for (Eigen::Index oh = 0; oh < oh_; ++oh) {
            const T* r0 = plane + 2 * oh * W;
            const T* r1 = r0 + W;
            T* o = out + oh * ow_;
            std::int32_t* a = am + oh * ow_;
            const std::int32_t base = std::int32_t(2 * oh * W);
            for (Eigen::Index ow = 0; ow < ow_; ++ow) {
                const T t0 = r0[2 * ow], t1 = r0[2 * ow + 1], b0 = r1[2 * ow], b1 = r1[2 * ow + 1];
                const T m = std::max(std::max(t0, t1), std::max(b0, b1));
                // v < m, not v != m: the same for the four values m is the max of, and GCC
                // then keeps the scalar remainder of short rows (lenet5's 5 and 14
                // outputs) free of the branch that != needs for NaN's parity flag.
                const std::int32_t pos =
                    std::int32_t(t0 < m) * (1 + std::int32_t(t1 < m) * (1 + std::int32_t(b0 < m)));
                o[ow] = m;
                a[ow] = base + std::int32_t(2 * ow) + (pos & 1) + (pos >> 1) * w;
            }
        }
    }

    using Base::ph_, Base::pw_, Base::sh_, Base::sw_, Base::oh_, Base::ow_, Base::rows_, Base::cols_;
    bool fast_2x2_ = false;
    std::vector<std::int32_t> argmax_;  // (N, C, OH, OW)
};
KITNN_LIBRARY_LAYER(MaxPool2D);

}  // namespace kitnn
