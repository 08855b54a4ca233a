// kitnn/train/non_finite.hpp — the training step's guard against NaN and infinity.
//
// A step computes the loss and the gradients, then checks them BEFORE the optimizer
// touches the weights: an exploding learning rate or a NaN in the data stops training
// with the last good weights (and checkpoint) intact. One pass over the gradients:
// about 0.5 % of a kerascnn step. Used by the one training-step path
// (train/data_parallel.hpp), which fit(), train_step() and the MPI programs share.
#pragma once

#include "kitnn/model/sequential.hpp"

#include <stdexcept>
#include <string>

namespace kitnn {

// Thrown by a training step when the loss or a gradient is NaN or infinite; the
// weights were not updated.
struct NonFiniteError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Names the first parameter whose gradient holds a NaN or an infinity, or "".
template <class T>
std::string nonfinite_gradient(Sequential<T>& model) {
    for (size_t i = 0; i < model.size(); ++i)
        for (auto* p : model.layer(i).params())
            if (!as_vector(p->grad).allFinite())
                return "the gradient of layer " + std::to_string(i) + " (" + model.layer(i).type() +
                       ") '" + p->name + "'";
    return "";
}

}  // namespace kitnn
