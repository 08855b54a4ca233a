// kitnn/layers/conv2d.hpp — 2-D convolution as batch-level im2col + one GEMM.
//
//   x    : (N, C, H, W)            input batch
//   col  : (C*KH*KW, N*P)          im2col of the whole batch, P = OH*OW; row r is
//                                  one (c, ki, kj) tap, column n*P + p one output pixel
//   kernel: (F, C, KH, KW)         viewed as the matrix Wm (F, C*KH*KW)
//   ym   : (F, N*P) = Wm * col     ONE large GEMM per batch (Eigen, OpenMP-threaded)
//   y    : (N, F, OH, OW)          ym scattered back to NCHW with bias + activation
//
// Why one GEMM for the batch instead of one per image: the MNIST layers are small
// (P = 729, F = 4 for the exercise), and a product that long in N*P keeps the
// GEMM kernel busy instead of paying its set-up 100 times. The scatter is a block
// copy of contiguous rows of P, fused with the bias and ReLU.
// Backward reuses `col` from forward: dW += dym * col^T sums over the batch in the
// GEMM (no per-sample weight gradients), and dcol = Wm^T * dym is folded back by
// col2im. Workspaces are members, resized only when the batch size changes.
#pragma once

#include "kitnn/core/init.hpp"
#include "kitnn/core/parallel.hpp"
#include "kitnn/layers/layer.hpp"

#include <algorithm>
#include <array>

namespace kitnn {

enum class Padding { valid, same };
inline const char* to_string(Padding p) { return p == Padding::same ? "same" : "valid"; }
inline Padding padding_from_string(const std::string& s) {
    if (s == "same") return Padding::same;
    if (s == "valid") return Padding::valid;
    throw std::runtime_error("unknown padding '" + s + "' (expected valid or same)");
}

template <class T>
class Conv2D : public Layer<T> {
public:
    Conv2D(int filters, std::array<int, 2> kernel, Activation act = Activation::linear,
           Padding padding = Padding::valid, int stride = 1, Init init = Init::glorot_uniform)
        : filters_(filters), kh_(kernel[0]), kw_(kernel[1]), stride_(stride), padding_(padding),
          act_(act), init_(init) {
        if (filters < 1 || kh_ < 1 || kw_ < 1 || stride < 1)
            throw std::invalid_argument("Conv2D: filters, kernel and stride must be >= 1");
        kernel_.name = "kernel";
        bias_.name = "bias";
    }

    std::string type() const override { return "Conv2D"; }
    Config config() const override {
        Config c;
        c.set("filters", filters_).set("kernel_h", kh_).set("kernel_w", kw_);
        c.set("stride", stride_).set("padding", to_string(padding_));
        c.set("activation", to_string(act_)).set("init", to_string(init_));
        return c;
    }
    std::vector<Param<T>*> params() override { return {&kernel_, &bias_}; }
    std::int64_t macs() const override { return std::int64_t(filters_) * ckk_ * oh_ * ow_; }

    int pad_top() const { return pt_; }
    int pad_left() const { return pl_; }
    Param<T>& kernel() { return kernel_; }
    Param<T>& bias() { return bias_; }

    void forward(const Tensor<T>& x, Tensor<T>& y, bool /*training*/) override {
        this->check_input(x);
        const Eigen::Index N = x.dimension(0), P = oh_ * ow_, NP = N * P;
        ensure(y, N, this->out_);
        col_.resize(ckk_, NP);
        ym_.resize(filters_, NP);

        // im2col: each image fills its own block of columns -> no races.
        parallel_for(N, ckk_ * NP, [&](std::int64_t n) { im2col(x, n); });

        // ym (F, N*P) = Wm (F, CKK) * col (CKK, N*P)
        ConstMatMap<T> Wm(kernel_.value.data(), filters_, ckk_);
        ym_.noalias() = Wm * col_;

        // Scatter to (N, F, OH, OW) with bias and activation in one pass.
        const T* b = bias_.value.data();
        parallel_for(N, filters_ * NP, [&](std::int64_t n) {
            for (Eigen::Index f = 0; f < filters_; ++f) {
                const T* src = ym_.data() + f * NP + n * P;
                T* dst = y.data() + (n * filters_ + f) * P;
                const T bf = b[f];
                if (act_ == Activation::relu)
                    for (Eigen::Index p = 0; p < P; ++p) dst[p] = std::max(src[p] + bf, T(0));
                else
                    for (Eigen::Index p = 0; p < P; ++p) dst[p] = src[p] + bf;
            }
        });
    }

    void backward(const Tensor<T>& /*x*/, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>* dx) override {
        const Eigen::Index N = dy.dimension(0), P = oh_ * ow_, NP = N * P;
        // dym (F, N*P): gather dy to the GEMM layout, times the activation's derivative.
        dym_.resize(filters_, NP);
        parallel_for(N, filters_ * NP, [&](std::int64_t n) {
            for (Eigen::Index f = 0; f < filters_; ++f) {
                const T* g = dy.data() + (n * filters_ + f) * P;
                const T* o = y.data() + (n * filters_ + f) * P;
                T* dst = dym_.data() + f * NP + n * P;
                if (act_ == Activation::relu)
                    for (Eigen::Index p = 0; p < P; ++p) dst[p] = o[p] > T(0) ? g[p] : T(0);
                else
                    std::copy(g, g + P, dst);
            }
        });

        // Parameter gradients, summed over the batch inside the GEMM.
        MatMap<T> dW(kernel_.grad.data(), filters_, ckk_);  // (F, CKK)
        dW.noalias() += dym_ * col_.transpose();
        VecMap<T>(bias_.grad.data(), filters_) += dym_.rowwise().sum();

        if (!dx) return;
        // dcol (CKK, N*P) = Wm^T * dym, then col2im adds every tap back to its pixel.
        ConstMatMap<T> Wm(kernel_.value.data(), filters_, ckk_);
        dcol_.resize(ckk_, NP);
        dcol_.noalias() = Wm.transpose() * dym_;
        ensure(*dx, N, this->in_);
        parallel_for(N, ckk_ * NP, [&](std::int64_t n) { col2im(*dx, n); });
    }

protected:
    Shape do_build(const Shape& in, Rng& rng) override {
        if (!in.is_image())
            this->shape_error("needs an image input (C,H,W), got " + in.str());
        c_ = in.c();
        const Eigen::Index H = in.h(), W = in.w();
        if (padding_ == Padding::valid) {
            if (H < kh_ || W < kw_)
                this->shape_error("kernel " + std::to_string(kh_) + "x" + std::to_string(kw_) +
                                  " is larger than the input " + in.str());
            oh_ = (H - kh_) / stride_ + 1;
            ow_ = (W - kw_) / stride_ + 1;
            pt_ = pl_ = 0;
        } else {  // TensorFlow's rule: out = ceil(in / stride), extra padding at the end
            oh_ = (H + stride_ - 1) / stride_;
            ow_ = (W + stride_ - 1) / stride_;
            pt_ = int(std::max<Eigen::Index>((oh_ - 1) * stride_ + kh_ - H, 0) / 2);
            pl_ = int(std::max<Eigen::Index>((ow_ - 1) * stride_ + kw_ - W, 0) / 2);
        }
        ckk_ = c_ * kh_ * kw_;
        kernel_.resize(filters_, c_, kh_, kw_);
        bias_.resize(filters_, 1, 1, 1);
        initialize(kernel_.value, init_, double(ckk_), double(filters_) * kh_ * kw_, rng);
        return Shape::image(filters_, oh_, ow_);
    }

private:
    // col[r, n*P + p] = x[n, c, oh*s + ki - pt, ow*s + kj - pl] (0 outside), r = (c, ki, kj)
    void im2col(const Tensor<T>& x, Eigen::Index n) {
        const Eigen::Index H = this->in_.h(), W = this->in_.w(), P = oh_ * ow_;
        const Eigen::Index NP = col_.cols();
        const T* xn = x.data() + n * c_ * H * W;
        for (Eigen::Index c = 0; c < c_; ++c)
            for (int ki = 0; ki < kh_; ++ki)
                for (int kj = 0; kj < kw_; ++kj) {
                    const Eigen::Index r = (c * kh_ + ki) * kw_ + kj;
                    T* dst = col_.data() + r * NP + n * P;
                    const T* plane = xn + c * H * W;
                    for (Eigen::Index oh = 0; oh < oh_; ++oh) {
                        const Eigen::Index ih = oh * stride_ + ki - pt_;
                        T* d = dst + oh * ow_;
                        if (ih < 0 || ih >= H) {
                            std::fill(d, d + ow_, T(0));
                            continue;
                        }
                        const T* row = plane + ih * W;
                        for (Eigen::Index ow = 0; ow < ow_; ++ow) {
                            const Eigen::Index iw = ow * stride_ + kj - pl_;
                            d[ow] = (iw >= 0 && iw < W) ? row[iw] : T(0);
                        }
                    }
                }
    }

    // dx[n, c, ih, iw] = sum of dcol over the taps that read that pixel.
    void col2im(Tensor<T>& dx, Eigen::Index n) {
        const Eigen::Index H = this->in_.h(), W = this->in_.w(), P = oh_ * ow_;
        const Eigen::Index NP = dcol_.cols();
        T* dxn = dx.data() + n * c_ * H * W;
        std::fill(dxn, dxn + c_ * H * W, T(0));
        for (Eigen::Index c = 0; c < c_; ++c)
            for (int ki = 0; ki < kh_; ++ki)
                for (int kj = 0; kj < kw_; ++kj) {
                    const Eigen::Index r = (c * kh_ + ki) * kw_ + kj;
                    const T* src = dcol_.data() + r * NP + n * P;
                    T* plane = dxn + c * H * W;
                    for (Eigen::Index oh = 0; oh < oh_; ++oh) {
                        const Eigen::Index ih = oh * stride_ + ki - pt_;
                        if (ih < 0 || ih >= H) continue;
                        T* row = plane + ih * W;
                        const T* s = src + oh * ow_;
                        for (Eigen::Index ow = 0; ow < ow_; ++ow) {
                            const Eigen::Index iw = ow * stride_ + kj - pl_;
                            if (iw >= 0 && iw < W) row[iw] += s[ow];
                        }
                    }
                }
    }

    int filters_, kh_, kw_, stride_;
    Padding padding_;
    Activation act_;
    Init init_;
    Eigen::Index c_ = 0, oh_ = 0, ow_ = 0, ckk_ = 0;
    int pt_ = 0, pl_ = 0;
    Param<T> kernel_, bias_;  // kernel: (F, C, KH, KW), bias: (F, 1, 1, 1)
    MatrixRM<T> col_;         // (C*KH*KW, N*P)
    MatrixRM<T> ym_;          // (F, N*P)
    MatrixRM<T> dym_;         // (F, N*P)
    MatrixRM<T> dcol_;        // (C*KH*KW, N*P)
};

}  // namespace kitnn
