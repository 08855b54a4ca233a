// kitnn/layers/leaky_relu.hpp — y = x for x > 0, alpha * x otherwise, any shape.
//
// Keras's LeakyReLU, default alpha 0.3. Backward from the output: for alpha >= 0,
// y > 0 exactly when x > 0, so dx = dy where y > 0, alpha * dy elsewhere (the
// derivative at exactly 0 is taken as alpha, the x <= 0 side, as ReLU takes 0).
// That equivalence is why a negative alpha is refused.
#pragma once

#include "kitnn/layers/layer.hpp"

#include <cmath>

namespace kitnn {

template <class T>
class LeakyReLU : public Layer<T> {
public:
    explicit LeakyReLU(double alpha = 0.3) : alpha_(alpha) {
        if (!(alpha >= 0 && std::isfinite(alpha)))
            throw std::invalid_argument("LeakyReLU: alpha must be finite and >= 0");
    }

    std::string type() const override { return "LeakyReLU"; }
    Config config() const override {
        Config c;
        c.set("alpha", alpha_);
        return c;
    }
    double alpha() const { return alpha_; }

    void forward(const Tensor<T>& x, Tensor<T>& y, bool) override {
        this->check_input(x);
        ensure(y, x.dimension(0), this->out_);
        const auto X = as_vector(x);
        as_vector(y).array() = (X.array() > T(0)).select(X.array(), T(alpha_) * X.array());
    }
    void backward(const Tensor<T>&, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>* dx) override {
        if (!dx) return;
        ensure(*dx, dy.dimension(0), this->in_);
        const auto G = as_vector(dy);
        as_vector(*dx).array() =
            (as_vector(y).array() > T(0)).select(G.array(), T(alpha_) * G.array());
    }

protected:
    Shape do_build(const Shape& in, Rng&) override { return in; }

private:
    double alpha_;
};

}  // namespace kitnn
