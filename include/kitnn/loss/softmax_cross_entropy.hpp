// kitnn/loss/softmax_cross_entropy.hpp — fused softmax + categorical cross-entropy.
//
// Works on logits, never on probabilities: log p_y = z_y - logsumexp(z), with the
// max subtracted first, so logits of +-1000 give a finite loss (tiny-dnn's
// separate softmax + log produced NaNs: its #410, #696).
//   logits: (N, K)   labels: N integers in [0, K)
//   loss   = mean_n( logsumexp(z_n) - z_n[y_n] )
//   dlogits = (p - onehot) / N          (computed by backward)
#pragma once

#include "kitnn/core/tensor.hpp"

#include <cmath>
#include <cstdint>
#include <string>

namespace kitnn {

template <class T>
class SoftmaxCrossEntropy {
public:
    // Returns the mean loss over the batch and remembers p for backward.
    // The sum is kept in double so a float batch of 10,000 loses no digits.
    double forward(const Tensor<T>& logits, const std::uint8_t* labels) {
        // K from the shape, not size / N: an empty part of a split batch (N = 0) still
        // has K classes, and its (empty) dlogits must match the model's output shape.
        const Eigen::Index N = logits.dimension(0),
                           K = logits.dimension(1) * logits.dimension(2) * logits.dimension(3);
        ensure(probs_, N, Shape::flat(K));
        labels_ = labels;
        auto Z = as_matrix(logits);
        auto P = as_matrix(probs_);
        double total = 0;
        correct_ = 0;
        for (Eigen::Index n = 0; n < N; ++n) {
            const int y = labels[n];
            if (y >= K)
                throw std::out_of_range("SoftmaxCrossEntropy: label " + std::to_string(y) +
                                        " of sample " + std::to_string(n) + " is not below " +
                                        std::to_string(K) + " classes");
            Eigen::Index arg;
            const T m = Z.row(n).maxCoeff(&arg);
            P.row(n) = (Z.row(n).array() - m).exp();
            const T s = P.row(n).sum();
            P.row(n) /= s;
            total += double(m) + std::log(double(s)) - double(Z(n, y));
            if (arg == y) ++correct_;
        }
        return N ? total / double(N) : 0.0;
    }

    // dlogits (N, K), overwritten: (p - onehot) / N. `divisor` > 0 replaces N: a part
    // of a batch split across replicas or ranks divides by the WHOLE batch's size, so
    // its gradient is its share of the gradient of the whole batch's mean loss.
    void backward(Tensor<T>& dlogits, Eigen::Index divisor = 0) const {
        const Eigen::Index N = probs_.dimension(0);
        const double d = double(divisor > 0 ? divisor : N);
        dlogits.resize(probs_.dimensions());
        auto D = as_matrix(dlogits);
        D = as_matrix(probs_) * T(1.0 / d);
        for (Eigen::Index n = 0; n < N; ++n) D(n, labels_[n]) -= T(1.0 / d);
    }

    const Tensor<T>& probabilities() const { return probs_; }
    // How many samples of the last forward had their label as the arg-max logit.
    std::int64_t correct() const { return correct_; }

private:
    Tensor<T> probs_;  // (N, K, 1, 1)
    const std::uint8_t* labels_ = nullptr;
    std::int64_t correct_ = 0;
};

}  // namespace kitnn
