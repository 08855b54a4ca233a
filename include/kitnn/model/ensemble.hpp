// kitnn/model/ensemble.hpp — several trained networks as one model: their outputs averaged.
//
//   std::vector<Sequential<float>> members;
//   for (auto seed : {1, 1001, 2001}) members.push_back(train_one(seed));  // each trained alone
//   Sequential<float> ens = make_ensemble(members);     // one layer: Branches(mean)
//   save_model("best.kitnn", ens);                      // loads, predicts, exports like any model
//
// Why: networks trained from different seeds make partly different mistakes, so the
// mean of their outputs is right more often than each of them (a "committee", the
// way the MNIST records of Ciresan et al. 2012 were set). What it costs: B times the
// training time and B times the multiply-adds of every prediction.
//
// What is averaged: the members' outputs, for the MNIST zoo their logits (before the
// softmax that the loss and predict() apply). The mean of logits is a geometric mean of
// the members' probabilities, renormalised; on the test sets measured in docs/models.md
// it gave the same accuracy as the mean of probabilities.
//
// How: one Branches layer with merge "mean" (layers/branches.hpp), branch b holding a
// copy of member b's layers (its architecture and hyperparameters through the layer
// registry, then its weights and BatchNorm statistics, bit for bit). So a member's
// output inside the ensemble is exactly its output alone, and the model file, the ONNX
// export, summary() and every program that loads a model need nothing new. The members
// must share the input shape and output shape; each is only read.
//
// Training the ensemble as one model (fit on the Branches) would train the members
// jointly on the mean's loss, which makes them co-adapt; train them one by one, as
// mnist_train --ensemble does, and assemble them here.
#pragma once

#include "kitnn/layers/branches.hpp"
#include "kitnn/layers/registry.hpp"
#include "kitnn/model/sequential.hpp"

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace kitnn {

namespace detail {
// A fresh, unbuilt layer of l's type and configuration; for a Branches, with fresh
// copies of its branches' layers (built, as always, when the container is built).
template <class T>
std::unique_ptr<Layer<T>> copy_structure(Layer<T>& l) {
    auto fresh = make_layer<T>(l.type(), l.config());
    if (l.branch_count() == 0) return fresh;
    auto* box = dynamic_cast<Branches<T>*>(fresh.get());
    if (!box) throw std::logic_error("make_ensemble: layer " + l.type() + " has branches but is not a Branches");
    for (size_t b = 0; b < l.branch_count(); ++b) {
        Chain<T>& c = box->branch();
        for (Layer<T>* inner : l.branch(b)) c.add(copy_structure(*inner));
    }
    return fresh;
}

template <class T>
void copy_values(const std::vector<Param<T>*>& from, const std::vector<Param<T>*>& to, const char* what) {
    if (from.size() != to.size())
        throw std::logic_error(std::string("make_ensemble: the copy has another number of ") + what);
    for (size_t i = 0; i < from.size(); ++i) {
        if (from[i]->value.dimensions() != to[i]->value.dimensions())
            throw std::logic_error(std::string("make_ensemble: ") + what + " " + from[i]->name +
                                   " has another shape in the copy");
        to[i]->value = from[i]->value;
    }
}
}  // namespace detail

// One model whose output is the mean of the members' outputs. Throws
// std::invalid_argument when there are no members or their input or output shapes
// differ (naming the member), and std::runtime_error (make_layer) for a layer type
// that is not registered (layers/registry.hpp).
template <class T>
Sequential<T> make_ensemble(std::vector<Sequential<T>>& members, std::uint64_t seed = 1) {
    if (members.empty()) throw std::invalid_argument("make_ensemble: no members");
    const Shape in = members[0].input_shape(), out = members[0].output_shape();
    for (size_t m = 0; m < members.size(); ++m) {
        if (members[m].size() == 0)
            throw std::invalid_argument("make_ensemble: member " + std::to_string(m + 1) + " has no layers");
        if (members[m].input_shape() != in || members[m].output_shape() != out)
            throw std::invalid_argument("make_ensemble: member " + std::to_string(m + 1) + " maps " +
                                        members[m].input_shape().str() + " to " +
                                        members[m].output_shape().str() + ", member 1 " + in.str() +
                                        " to " + out.str() + " (members must agree)");
    }
    auto box = std::make_unique<Branches<T>>(Merge::mean);
    for (auto& m : members) {
        Chain<T>& c = box->branch();
        for (size_t i = 0; i < m.size(); ++i) c.add(detail::copy_structure(m.layer(i)));
    }
    Sequential<T> ens(in, seed);
    Layer<T>& merged = ens.add(std::move(box));  // builds: fresh weights, replaced below
    // Branches lists its tensors branch by branch, each in layer order: the members'
    // lists one after the other.
    std::vector<Param<T>*> params, state;
    for (auto& m : members)
        for (size_t i = 0; i < m.size(); ++i) {
            for (auto* p : m.layer(i).params()) params.push_back(p);
            for (auto* p : m.layer(i).state()) state.push_back(p);
        }
    detail::copy_values(params, merged.params(), "trainable tensors");
    detail::copy_values(state, merged.state(), "state tensors");
    return ens;
}

}  // namespace kitnn
