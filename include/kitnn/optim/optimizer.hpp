// kitnn/optim/optimizer.hpp — the optimizer interface.
//
// An optimizer is bound to a list of parameters (Sequential::params()); step()
// reads each Param's grad and updates its value in place. State (moments,
// velocities) is allocated once, on the first step, with the parameters' shapes.
#pragma once

#include "kitnn/core/tensor.hpp"

#include <vector>

namespace kitnn {

template <class T>
class Optimizer {
public:
    virtual ~Optimizer() = default;
    virtual void step(const std::vector<Param<T>*>& params) = 0;
    virtual double learning_rate() const = 0;
    virtual void set_learning_rate(double lr) = 0;
    std::int64_t iterations() const { return t_; }

protected:
    std::int64_t t_ = 0;  // steps taken
};

}  // namespace kitnn
