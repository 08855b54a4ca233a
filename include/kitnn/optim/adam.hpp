// kitnn/optim/adam.hpp — Adam (Kingma & Ba 2015) in Keras's formulation.
//
//   g  = grad + weight_decay * w          (L2 penalty, when weight_decay > 0 and
//                                          not decoupled)
//   m  = b1 m + (1 - b1) g
//   v  = b2 v + (1 - b2) g^2
//   lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)       (bias correction)
//   w -= lr_t * m / (sqrt(v) + eps)
// Defaults are Keras's: lr 1e-3, b1 0.9, b2 0.999, eps 1e-7.
//
// AdamW (Loshchilov & Hutter 2019, `decoupled = true`, or the AdamW class): the
// decay is taken out of the gradient and applied to the weights directly,
//   w *= 1 - lr * weight_decay            before the Adam update above,
// as PyTorch's AdamW does. Why: with the L2 form the penalty's gradient is divided
// by sqrt(v) like any other, so weights with large gradients are barely decayed;
// decoupled, every weight shrinks by the same fraction per step. Applied to every
// parameter (kernels, biases, BatchNorm's gamma/beta), like PyTorch's default.
#pragma once

#include "kitnn/optim/optimizer.hpp"

#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>

namespace kitnn {

struct AdamOptions {
    double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, epsilon = 1e-7, weight_decay = 0.0;
    bool decoupled = false;  // AdamW
};

template <class T>
class Adam : public Optimizer<T> {
public:
    explicit Adam(AdamOptions o = {}) : o_(o) {
        if (!(o.lr > 0) || !(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1) ||
            !(o.epsilon > 0) || !(o.weight_decay >= 0))
            throw std::invalid_argument("Adam: need lr > 0, 0 <= beta < 1, eps > 0, decay >= 0");
    }

    void step(const std::vector<Param<T>*>& params) override {
        step_range(params, 0, std::numeric_limits<std::size_t>::max());
    }
    bool shards() const override { return true; }
    void step_range(const std::vector<Param<T>*>& params, std::size_t begin, std::size_t end) override {
        if (m_.empty())
            for (auto* p : params) {
                m_.emplace_back(Eigen::Matrix<T, Eigen::Dynamic, 1>::Zero(p->value.size()));
                v_.emplace_back(Eigen::Matrix<T, Eigen::Dynamic, 1>::Zero(p->value.size()));
            }
        if (m_.size() != params.size())
            throw std::logic_error("Adam: the parameter list changed between steps");
        ++this->t_;
        const double t = double(this->t_);
        const T lr_t = T(o_.lr * std::sqrt(1 - std::pow(o_.beta2, t)) / (1 - std::pow(o_.beta1, t)));
        const T b1 = T(o_.beta1), b2 = T(o_.beta2), eps = T(o_.epsilon), wd = T(o_.weight_decay);
        this->for_each_segment(params, begin, end, [&](std::size_t i, Eigen::Index from, Eigen::Index n) {
            auto w = as_vector(params[i]->value).segment(from, n).array();
            auto g = as_vector(params[i]->grad).segment(from, n).array();
            auto m = m_[i].segment(from, n).array();
            auto v = v_[i].segment(from, n).array();
            // Whole-array expressions: Eigen vectorises each line into one pass.
            auto update = [&](const auto& gk) {
                m = b1 * m + (1 - b1) * gk;
                v = b2 * v + (1 - b2) * gk * gk;
                w -= lr_t * m / (v.sqrt() + eps);
            };
            if (wd > 0 && o_.decoupled) {
                w *= T(1 - o_.lr * o_.weight_decay);
                update(g);
            } else if (wd > 0) {
                update(g + wd * w);  // w changes only in the last line
            } else {
                update(g);
            }
        });
    }
    double learning_rate() const override { return o_.lr; }
    void set_learning_rate(double lr) override { o_.lr = lr; }
    const AdamOptions& options() const { return o_; }

    typename Optimizer<T>::NamedTensors state() const override {
        typename Optimizer<T>::NamedTensors s;
        this->export_buffers("adam.m.", m_, s);
        this->export_buffers("adam.v.", v_, s);
        return s;
    }
    void load_state(const typename Optimizer<T>::NamedTensors& s, const std::vector<Param<T>*>& params,
                    std::int64_t iterations) override {
        if (s.empty() && iterations == 0) {  // a checkpoint saved before the first step
            m_.clear();
            v_.clear();
        } else {
            this->import_buffers("adam.m.", s, params, m_);
            this->import_buffers("adam.v.", s, params, v_);
        }
        this->t_ = iterations;
    }

private:
    AdamOptions o_;
    std::vector<Eigen::Matrix<T, Eigen::Dynamic, 1>> m_, v_;  // first and second moments
};

// AdamW: Adam with decoupled weight decay (PyTorch's default decay 0.01).
template <class T>
class AdamW : public Adam<T> {
public:
    // Declared before the constructor that uses it as a default argument: clang
    // (the sanitizer build) rejects a default argument calling a function declared later.
    static AdamOptions with_decay(double wd = 0.01) {
        AdamOptions o;
        o.weight_decay = wd;
        return o;
    }
    explicit AdamW(AdamOptions o = with_decay()) : Adam<T>((o.decoupled = true, o)) {}
};

}  // namespace kitnn
