// kitnn/layers/fusion.hpp — inference passes that fold a BatchNorm and a ReLU into the
// convolution before them.
//
// In inference a BatchNorm is a fixed affine map per channel, and the convolution
// before it ends in a per-filter bias:
//   z = W x + b,   BN(z) = gamma (z - mean) / sqrt(var + eps) + beta = s z + u
// so  Conv2D (linear) -> BatchNorm -> ReLU  is  relu(s (W x) + (s b + u)): the
// convolution's own last step (Conv2D::forward_folded, which every path of its forward
// takes: GEMM, strips, Winograd) with other per-filter numbers. One pass where there
// were three: BatchNorm's and ReLU's reads and writes of the whole activation go, and
// their outputs are never allocated. Inception-v4 is 149 such triples (timm's
// BasicConv2d); `best` and `fast` have three each. Like BatchNorm's own inference pass,
// s and u come from the moving statistics at every pass (the weights may change).
//
// Patterns, tried at each layer of a Sequential or a branch (training = false only):
//   Conv2D (linear) -> BatchNorm -> ReLU       Conv2D (linear) -> BatchNorm
//   Conv2D (linear) -> ReLU
// The folded layers' own outputs are not written, so the models refuse backward after
// a folded pass (a stale activation would give wrong gradients without a word), and
// Sequential::set_fusion(false) turns folding off (e.g. for an inference-mode gradient
// check). Rounding: s (W x) + (s b + u) in float differs from the three passes' in the
// last bits (tests/test_fusion.cpp bounds it).
#pragma once

#include "kitnn/layers/activations.hpp"
#include "kitnn/layers/batch_norm.hpp"
#include "kitnn/layers/conv2d.hpp"
#include "kitnn/layers/layer.hpp"

#include <cmath>
#include <memory>
#include <typeinfo>
#include <vector>

namespace kitnn {

template <class T>
class Folding {
public:
    // One step of a model's or a branch's forward loop: layers[i] alone (training, folding
    // off, or no pattern at i: into acts[i]), or the group a pattern folds at i. Returns
    // how many layers ran; more than one means the pass folded.
    size_t step(std::vector<std::unique_ptr<Layer<T>>>& layers, size_t i, const Tensor<T>& x,
                std::vector<Tensor<T>>& acts, bool training, bool fuse) {
        if (!training && fuse)
            if (const size_t n = forward(layers, i, x, acts)) return n;
        layers[i]->forward(x, acts[i], training);
        return 1;
    }

    // Runs layers[i], and the layers after it that a pattern above folds into it, as one
    // inference pass from x into acts[last of them]. Returns how many layers it ran;
    // 0 when no pattern starts at i (the caller runs layers[i] alone).
    size_t forward(std::vector<std::unique_ptr<Layer<T>>>& layers, size_t i, const Tensor<T>& x,
                   std::vector<Tensor<T>>& acts) {
        auto* conv = exactly<Conv2D<T>>(*layers[i]);
        if (!conv || conv->activation() != Activation::linear || i + 1 >= layers.size()) return 0;
        auto* bn = exactly<BatchNorm<T>>(*layers[i + 1]);
        size_t n = bn ? 2 : 1;
        const bool relu = n < layers.size() - i && exactly<ReLU<T>>(*layers[i + n]) != nullptr;
        if (relu) ++n;
        if (n == 1) return 0;  // a lone convolution: nothing to fold
        const Eigen::Index F = conv->bias().value.size();
        const T* b = conv->bias().value.data();
        if (!bn) {  // Conv2D -> ReLU: the bias as it is, then ReLU (as Activation::relu would)
            conv->forward_folded(x, acts[i + n - 1], nullptr, b, true);
            return n;
        }
        scale_.resize(size_t(F));
        shift_.resize(size_t(F));
        const T *gamma = bn->gamma().value.data(), *beta = bn->beta().value.data();
        const T *mean = bn->moving_mean().value.data(), *var = bn->moving_variance().value.data();
        for (Eigen::Index f = 0; f < F; ++f) {  // in double, as BatchNorm computes its 1/sqrt
            const double s = double(gamma[f]) / std::sqrt(double(var[f]) + bn->epsilon());
            scale_[size_t(f)] = T(s);
            shift_[size_t(f)] = T(double(beta[f]) + (double(b[f]) - double(mean[f])) * s);
        }
        conv->forward_folded(x, acts[i + n - 1], scale_.data(), shift_.data(), relu);
        return n;
    }

private:
    // The layer as an L, only when it is an L itself: a user's class derived from one of
    // these may compute something else (its own forward), and must not be folded.
    template <class L>
    static L* exactly(Layer<T>& l) {
        return typeid(l) == typeid(L) ? static_cast<L*>(&l) : nullptr;
    }

    std::vector<T> scale_, shift_;  // (F) of the last folded BatchNorm
};

}  // namespace kitnn
