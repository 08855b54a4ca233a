// kitnn/layers/tanh.hpp — y = tanh(x), any shape.
//
// Backward from the output: tanh'(x) = 1 - tanh(x)^2 = 1 - y^2, so dx = dy * (1 - y^2)
// needs no second tanh and no copy of x.
#pragma once

#include "kitnn/layers/layer.hpp"

#include <cmath>

namespace kitnn {

template <class T>
class Tanh : public Layer<T> {
public:
    std::string type() const override { return "Tanh"; }
    Config config() const override { return {}; }

    void forward(const Tensor<T>& x, Tensor<T>& y, bool) override {
        this->check_input(x);
        ensure(y, x.dimension(0), this->out_);
        // std::tanh per value: saturates to +-1, never NaN. (Eigen's vectorised
        // .tanh() is a rational approximation, and its AVX-512 float path trips GCC
        // 12's -Wmaybe-uninitialized inside the intrinsics.)
        as_vector(y) = as_vector(x).unaryExpr([](T v) { return std::tanh(v); });
    }
    void backward(const Tensor<T>&, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>* dx) override {
        if (!dx) return;
        ensure(*dx, dy.dimension(0), this->in_);
        const auto Y = as_vector(y);
        as_vector(*dx).array() = as_vector(dy).array() * (T(1) - Y.array().square());
    }

protected:
    Shape do_build(const Shape& in, Rng&) override { return in; }
};

}  // namespace kitnn
