// kitnn/layers/softmax.hpp — probabilities over the features of each sample.
//
// For training use the fused SoftmaxCrossEntropy loss on logits instead (stable,
// and its gradient is simply p - onehot); this layer is for inference, or when a
// model must output probabilities.
//   x, y: (N, K);  y = exp(x - max) / sum(exp(x - max))
//   dx = y * (dy - sum_k(dy * y))   (the softmax Jacobian applied to dy)
#pragma once

#include "kitnn/layers/layer.hpp"
#include "kitnn/layers/registry.hpp"

namespace kitnn {

template <class T>
void softmax_rows(const ConstMatMap<T>& x, MatMap<T> y) {
    for (Eigen::Index n = 0; n < x.rows(); ++n) {
        const T m = x.row(n).maxCoeff();
        y.row(n) = (x.row(n).array() - m).exp();
        y.row(n) /= y.row(n).sum();
    }
}

template <class T>
class Softmax : public Layer<T> {
public:
    static constexpr const char* kType = "Softmax";
    std::string type() const override { return kType; }
    Config config() const override { return {}; }

    void forward(const Tensor<T>& x, Tensor<T>& y, bool) override {
        this->check_input(x);
        ensure(y, x.dimension(0), this->out_);
        softmax_rows<T>(as_matrix(x), as_matrix(y));
    }
    void backward(const Tensor<T>&, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>* dx) override {
        if (!dx) return;
        ensure(*dx, dy.dimension(0), this->in_);
        auto Y = as_matrix(y);
        auto dY = as_matrix(dy);
        auto dX = as_matrix(*dx);
        for (Eigen::Index n = 0; n < Y.rows(); ++n) {
            const T s = Y.row(n).dot(dY.row(n));
            dX.row(n) = Y.row(n).array() * (dY.row(n).array() - s);
        }
    }

protected:
    Shape do_build(const Shape& in, Rng&) override {
        if (!in.is_flat()) this->shape_error("needs a flat input (K), got " + in.str());
        return in;
    }
};
KITNN_LIBRARY_LAYER(Softmax);

}  // namespace kitnn
