// kitnn/layers/global_avg_pool2d.hpp — the mean of each channel's plane (Keras's
// GlobalAveragePooling2D): (C, H, W) -> (C) flat, so a Dense can follow directly.
//
//   x : (N, C, H, W)
//   y : (N, C, 1, 1)   y[n, c] = sum_{h,w} x[n, c, h, w] / (H*W)
//   dx: (N, C, H, W)   dx[n, c, h, w] = dy[n, c] / (H*W)   (every pixel weighs the same)
// Memory is NCHW, so each plane is one contiguous run of H*W values.
#pragma once

#include "kitnn/core/parallel.hpp"
#include "kitnn/layers/layer.hpp"
#include "kitnn/layers/registry.hpp"

#include <algorithm>

namespace kitnn {

template <class T>
class GlobalAvgPool2D : public Layer<T> {
public:
    static constexpr const char* kType = "GlobalAvgPool2D";
    std::string type() const override { return kType; }
    Config config() const override { return {}; }

    void forward(const Tensor<T>& x, Tensor<T>& y, bool) override {
        this->check_input(x);
        const Eigen::Index N = x.dimension(0), C = this->in_.c(),
                           HW = this->in_.h() * this->in_.w();
        ensure(y, N, this->out_);
        const T inv = T(1) / T(HW);
        parallel_for(N * C, N * C * HW, [&](std::int64_t nc) {
            y.data()[nc] = ConstVecMap<T>(x.data() + nc * HW, HW).sum() * inv;
        });
    }
    void backward(const Tensor<T>&, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
        if (!dx) return;
        const Eigen::Index N = dy.dimension(0), C = this->in_.c(),
                           HW = this->in_.h() * this->in_.w();
        ensure(*dx, N, this->in_);
        const T inv = T(1) / T(HW);
        parallel_for(N * C, N * C * HW, [&](std::int64_t nc) {
            T* plane = dx->data() + nc * HW;
            std::fill(plane, plane + HW, dy.data()[nc] * inv);
        });
    }

protected:
    Shape do_build(const Shape& in, Rng&) override {
        if (!in.is_image()) this->shape_error("needs an image input (C,H,W), got " + in.str());
        return Shape::flat(in.c());
    }
};
KITNN_LIBRARY_LAYER(GlobalAvgPool2D);

}  // namespace kitnn
