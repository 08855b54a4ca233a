// kitnn/layers/relu.hpp — y = max(x, 0), any shape. (Conv2D and Dense can also fuse it.)
#pragma once

#include "kitnn/layers/layer.hpp"

namespace kitnn {

template <class T>
class ReLU : public Layer<T> {
public:
    std::string type() const override { return "ReLU"; }
    Config config() const override { return {}; }

    void forward(const Tensor<T>& x, Tensor<T>& y, bool) override {
        this->check_input(x);
        ensure(y, x.dimension(0), this->out_);
        as_vector(y) = as_vector(x).cwiseMax(T(0));
    }
    // dx = dy where x > 0 (the derivative at exactly 0 is taken as 0, as in Keras)
    void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy,
                  Tensor<T>* dx) override {
        if (!dx) return;
        ensure(*dx, dy.dimension(0), this->in_);
        as_vector(*dx) = (as_vector(x).array() > T(0)).select(as_vector(dy), T(0));
    }

protected:
    Shape do_build(const Shape& in, Rng&) override { return in; }
};

}  // namespace kitnn
