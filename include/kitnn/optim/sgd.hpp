// kitnn/optim/sgd.hpp — stochastic gradient descent with momentum (Keras's form).
//
//   g = grad + weight_decay * w
//   v = momentum * v - lr * g
//   w += v                              (classical momentum)
//   w += momentum * v - lr * g          (Nesterov)
// With momentum 0 this is plain w -= lr * g.
#pragma once

#include "kitnn/optim/optimizer.hpp"

#include <cstddef>
#include <limits>
#include <stdexcept>

namespace kitnn {

struct SGDOptions {
    double lr = 0.01, momentum = 0.0, weight_decay = 0.0;
    bool nesterov = false;
};

template <class T>
class SGD : public Optimizer<T> {
public:
    explicit SGD(SGDOptions o = {}) : o_(o) {
        if (!(o.lr > 0) || !(o.momentum >= 0 && o.momentum < 1) || !(o.weight_decay >= 0))
            throw std::invalid_argument("SGD: need lr > 0, 0 <= momentum < 1, decay >= 0");
    }

    void step(const std::vector<Param<T>*>& params) override {
        step_range(params, 0, std::numeric_limits<std::size_t>::max());
    }
    bool shards() const override { return true; }
    void step_range(const std::vector<Param<T>*>& params, std::size_t begin, std::size_t end) override {
        if (vel_.empty())
            for (auto* p : params)
                vel_.emplace_back(Eigen::Matrix<T, Eigen::Dynamic, 1>::Zero(p->value.size()));
        if (vel_.size() != params.size())
            throw std::logic_error("SGD: the parameter list changed between steps");
        ++this->t_;
        const T lr = T(o_.lr), mu = T(o_.momentum), wd = T(o_.weight_decay);
        this->for_each_segment(params, begin, end, [&](std::size_t i, Eigen::Index from, Eigen::Index n) {
            auto w = as_vector(params[i]->value);
            auto g = as_vector(params[i]->grad);
            auto& v = vel_[i];
            for (Eigen::Index k = from; k < from + n; ++k) {
                const T gk = g[k] + wd * w[k];
                v[k] = mu * v[k] - lr * gk;
                w[k] += o_.nesterov ? mu * v[k] - lr * gk : v[k];
            }
        });
    }
    double learning_rate() const override { return o_.lr; }
    void set_learning_rate(double lr) override { o_.lr = lr; }

    typename Optimizer<T>::NamedTensors state() const override {
        typename Optimizer<T>::NamedTensors s;
        this->export_buffers("sgd.velocity.", vel_, s);
        return s;
    }
    void load_state(const typename Optimizer<T>::NamedTensors& s, const std::vector<Param<T>*>& params,
                    std::int64_t iterations) override {
        if (s.empty() && iterations == 0) vel_.clear();
        else this->import_buffers("sgd.velocity.", s, params, vel_);
        this->t_ = iterations;
    }

private:
    SGDOptions o_;
    std::vector<Eigen::Matrix<T, Eigen::Dynamic, 1>> vel_;
};

}  // namespace kitnn
