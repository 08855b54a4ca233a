// kitnn/layers/sigmoid.hpp — y = 1 / (1 + exp(-x)), any shape.
//
// Numerically stable for any x: with e = exp(-|x|) in (0, 1],
//   x >= 0: y = 1 / (1 + e)        x < 0: y = e / (1 + e)
// so exp never overflows (1/(1 + exp(1000)) would be 1/inf, and exp(x)/(1 + exp(x))
// inf/inf = NaN); x = +-1000 gives exactly 1 and 0.
// Backward from the output: sigmoid'(x) = y * (1 - y), so dx = dy * y * (1 - y).
#pragma once

#include "kitnn/layers/layer.hpp"

#include <cmath>

namespace kitnn {

template <class T>
class Sigmoid : public Layer<T> {
public:
    std::string type() const override { return "Sigmoid"; }
    Config config() const override { return {}; }

    static T sigmoid(T v) {
        const T e = std::exp(-std::abs(v));
        return v >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    }

    void forward(const Tensor<T>& x, Tensor<T>& y, bool) override {
        this->check_input(x);
        ensure(y, x.dimension(0), this->out_);
        as_vector(y) = as_vector(x).unaryExpr([](T v) { return sigmoid(v); });
    }
    void backward(const Tensor<T>&, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>* dx) override {
        if (!dx) return;
        ensure(*dx, dy.dimension(0), this->in_);
        const auto Y = as_vector(y);
        as_vector(*dx).array() = as_vector(dy).array() * Y.array() * (T(1) - Y.array());
    }

protected:
    Shape do_build(const Shape& in, Rng&) override { return in; }
};

}  // namespace kitnn
