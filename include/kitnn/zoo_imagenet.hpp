// kitnn/zoo_imagenet.hpp — ImageNet-sized networks (1000 classes, logits out), built
// to compare their size and cost with the MNIST ones in zoo.hpp. They are built and
// run forward here, not trained (no ImageNet in this project).
//
//   name          input        params        multiply-adds / image (Conv2D + Dense)
//   alexnet       3x224x224    61,100,840       714,188,480   (torchvision: 0.71 G)
//   vgg16         3x224x224   138,357,544    15,470,264,320   (torchvision: 15.47 G)
//   inception_v4  3x299x299    42,679,816    12,253,974,624   (timm: 12.3 G); macs()
//                                            also counts BatchNorm: 12,284,152,992
//
// The parameter counts equal torchvision's (alexnet, vgg16) and timm's (inception_v4:
// trainable only, BatchNorm's gamma and beta; its moving mean and variance are state,
// like PyTorch's buffers). The layers follow those implementations so that their
// weights could be copied over one to one (NCHW, flatten in (c, h, w) order).
//
// alexnet: torchvision's single-tower AlexNet (Krizhevsky's "One weird trick" paper,
//   2014), not the two-GPU 2012 original: 64-192-384-256-256 filters, no grouped
//   convolutions and no local response normalisation. The 2012 network splits conv2,
//   conv4 and conv5 into two groups (half the weights), has 96-256-384-384-256 filters
//   and about 61.0 M parameters on a 227x227 input. The first layer is 11x11 stride 4
//   with 2 pixels of padding on every side (neither valid nor same, hence Conv2D's
//   explicit pad): 224 -> 55. torchvision's AdaptiveAvgPool2d((6, 6)) is left out: the
//   last max pool already gives 6x6 at 224x224, where it is the identity.
// vgg16: configuration D of Simonyan & Zisserman (2014), as in torchvision: 13 3x3 convs
//   (same padding), 5 max pools, 3 dense layers. AdaptiveAvgPool2d((7, 7)) is again the
//   identity at 224x224 and left out.
// inception_v4: Szegedy et al. (2016), figure 9, in timm's layout: a stem, 4x Inception-A,
//   Reduction-A, 7x Inception-B, Reduction-B, 3x Inception-C, global average pooling,
//   dropout (keep 0.8, as in the paper) and a 1000-way dense layer. Every convolution
//   is timm's BasicConv2d: Conv2D without bias, BatchNorm (epsilon 1e-3), ReLU. timm's
//   padding=1 (3x3), (0,3)/(3,0) (1x7, 7x1) and (0,1)/(1,0) (1x3, 3x1), all at stride
//   1, are exactly `same` padding; the stride-2 convolutions and pools are `valid`.
//   The 3x3 average pools (stride 1, padding 1, count_include_pad=False) are
//   AvgPool2D with same padding, which also averages over the real pixels only.
//   Inception-C's branches 1 and 2 fork once more (1x3 and 3x1 side by side): a
//   Branches inside a branch.
// Convolutions start from he_normal (ReLU networks), dense layers from glorot_uniform.
#pragma once

#include "kitnn/layers/avg_pool2d.hpp"
#include "kitnn/layers/batch_norm.hpp"
#include "kitnn/layers/branches.hpp"
#include "kitnn/layers/conv2d.hpp"
#include "kitnn/layers/dense.hpp"
#include "kitnn/layers/dropout.hpp"
#include "kitnn/layers/flatten.hpp"
#include "kitnn/layers/global_avg_pool2d.hpp"
#include "kitnn/layers/max_pool2d.hpp"
#include "kitnn/layers/relu.hpp"
#include "kitnn/model/sequential.hpp"

#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace kitnn::zoo {

inline std::vector<std::string> imagenet_models() { return {"alexnet", "vgg16", "inception_v4"}; }

namespace detail {

using K2 = std::array<int, 2>;

// timm's BasicConv2d: conv (no bias: BatchNorm's beta is the bias) -> BatchNorm -> ReLU.
// `S` is a Sequential<T> or a branch (Chain<T>): both have add<L>(args...).
template <class S>
void conv_bn(S& s, int filters, K2 k, int stride = 1, Padding padding = Padding::valid) {
    s.template add<Conv2D>(filters, k, Activation::linear, padding, stride, Init::he_normal,
                           /*use_bias=*/false);
    s.template add<BatchNorm>(0.99, 1e-3);
    s.template add<ReLU>();
}
template <class S>
void conv_bn_same(S& s, int filters, K2 k) { conv_bn(s, filters, k, 1, Padding::same); }

// Inception-C's fork: 1x3 and 3x1 convolutions side by side, concatenated.
template <class T>
std::unique_ptr<Branches<T>> fork_1x3_3x1(int filters) {
    auto f = std::make_unique<Branches<T>>(Merge::concat);
    conv_bn_same(f->branch(), filters, K2{1, 3});
    conv_bn_same(f->branch(), filters, K2{3, 1});
    return f;
}

// The stem, 3x299x299 -> 384x35x35 (timm's features[0..5]).
template <class T>
void inception_stem(Sequential<T>& m) {
    conv_bn(m, 32, K2{3, 3}, 2);  // (32, 149, 149)
    conv_bn(m, 32, K2{3, 3});     // (32, 147, 147)
    conv_bn_same(m, 64, K2{3, 3});  // (64, 147, 147)
    {  // Mixed_3a: max pool | 3x3/2 conv -> (160, 73, 73)
        auto b = std::make_unique<Branches<T>>(Merge::concat);
        b->branch().template add<MaxPool2D>(K2{3, 3}, K2{2, 2});
        conv_bn(b->branch(), 96, K2{3, 3}, 2);
        m.add(std::move(b));
    }
    {  // Mixed_4a -> (192, 71, 71)
        auto b = std::make_unique<Branches<T>>(Merge::concat);
        auto& b0 = b->branch();
        conv_bn(b0, 64, K2{1, 1});
        conv_bn(b0, 96, K2{3, 3});
        auto& b1 = b->branch();
        conv_bn(b1, 64, K2{1, 1});
        conv_bn_same(b1, 64, K2{1, 7});
        conv_bn_same(b1, 64, K2{7, 1});
        conv_bn(b1, 96, K2{3, 3});
        m.add(std::move(b));
    }
    {  // Mixed_5a: 3x3/2 conv | max pool -> (384, 35, 35)
        auto b = std::make_unique<Branches<T>>(Merge::concat);
        conv_bn(b->branch(), 192, K2{3, 3}, 2);
        b->branch().template add<MaxPool2D>(K2{3, 3}, K2{2, 2});
        m.add(std::move(b));
    }
}

// The average-pool branch of the Inception blocks: 3x3/1 average (real pixels only), 1x1 conv.
template <class T>
void pool_branch(Chain<T>& c, int filters) {
    c.template add<AvgPool2D>(K2{3, 3}, K2{1, 1}, Padding::same);
    conv_bn(c, filters, K2{1, 1});
}

// Inception-A (figure 4), 384x35x35 -> 384x35x35: 96 + 96 + 96 + 96 channels.
template <class T>
void inception_a(Sequential<T>& m) {
    auto b = std::make_unique<Branches<T>>(Merge::concat);
    conv_bn(b->branch(), 96, K2{1, 1});
    auto& b1 = b->branch();
    conv_bn(b1, 64, K2{1, 1});
    conv_bn_same(b1, 96, K2{3, 3});
    auto& b2 = b->branch();
    conv_bn(b2, 64, K2{1, 1});
    conv_bn_same(b2, 96, K2{3, 3});
    conv_bn_same(b2, 96, K2{3, 3});
    pool_branch(b->branch(), 96);
    m.add(std::move(b));
}

// Reduction-A (figure 7, k=192 l=224 m=256 n=384), 384x35x35 -> 1024x17x17.
template <class T>
void reduction_a(Sequential<T>& m) {
    auto b = std::make_unique<Branches<T>>(Merge::concat);
    conv_bn(b->branch(), 384, K2{3, 3}, 2);
    auto& b1 = b->branch();
    conv_bn(b1, 192, K2{1, 1});
    conv_bn_same(b1, 224, K2{3, 3});
    conv_bn(b1, 256, K2{3, 3}, 2);
    b->branch().template add<MaxPool2D>(K2{3, 3}, K2{2, 2});
    m.add(std::move(b));
}

// Inception-B (figure 5), 1024x17x17 -> 1024x17x17: 384 + 256 + 256 + 128 channels.
template <class T>
void inception_b(Sequential<T>& m) {
    auto b = std::make_unique<Branches<T>>(Merge::concat);
    conv_bn(b->branch(), 384, K2{1, 1});
    auto& b1 = b->branch();
    conv_bn(b1, 192, K2{1, 1});
    conv_bn_same(b1, 224, K2{1, 7});
    conv_bn_same(b1, 256, K2{7, 1});
    auto& b2 = b->branch();
    conv_bn(b2, 192, K2{1, 1});
    conv_bn_same(b2, 192, K2{7, 1});
    conv_bn_same(b2, 224, K2{1, 7});
    conv_bn_same(b2, 224, K2{7, 1});
    conv_bn_same(b2, 256, K2{1, 7});
    pool_branch(b->branch(), 128);
    m.add(std::move(b));
}

// Reduction-B (figure 8), 1024x17x17 -> 1536x8x8: 192 + 320 + 1024 channels.
template <class T>
void reduction_b(Sequential<T>& m) {
    auto b = std::make_unique<Branches<T>>(Merge::concat);
    auto& b0 = b->branch();
    conv_bn(b0, 192, K2{1, 1});
    conv_bn(b0, 192, K2{3, 3}, 2);
    auto& b1 = b->branch();
    conv_bn(b1, 256, K2{1, 1});
    conv_bn_same(b1, 256, K2{1, 7});
    conv_bn_same(b1, 320, K2{7, 1});
    conv_bn(b1, 320, K2{3, 3}, 2);
    b->branch().template add<MaxPool2D>(K2{3, 3}, K2{2, 2});
    m.add(std::move(b));
}

// Inception-C (figure 6), 1536x8x8 -> 1536x8x8: 256 + (256 + 256) + (256 + 256) + 256.
template <class T>
void inception_c(Sequential<T>& m) {
    auto b = std::make_unique<Branches<T>>(Merge::concat);
    conv_bn(b->branch(), 256, K2{1, 1});
    auto& b1 = b->branch();
    conv_bn(b1, 384, K2{1, 1});
    b1.add(fork_1x3_3x1<T>(256));
    auto& b2 = b->branch();
    conv_bn(b2, 384, K2{1, 1});
    conv_bn_same(b2, 448, K2{3, 1});
    conv_bn_same(b2, 512, K2{1, 3});
    b2.add(fork_1x3_3x1<T>(256));
    pool_branch(b->branch(), 256);
    m.add(std::move(b));
}

}  // namespace detail

template <class T>
Sequential<T> imagenet_model(const std::string& name, std::uint64_t seed = 1) {
    using detail::K2;
    const auto relu = Activation::relu;
    if (name == "alexnet") {
        Sequential<T> m(Shape::image(3, 224, 224), seed);
        m.template add<Conv2D>(64, K2{11, 11}, relu, /*pad=*/2, /*stride=*/4, Init::he_normal);  // (64, 55, 55)
        m.template add<MaxPool2D>(K2{3, 3}, K2{2, 2});                                           // (64, 27, 27)
        m.template add<Conv2D>(192, K2{5, 5}, relu, 2, 1, Init::he_normal);                     // (192, 27, 27)
        m.template add<MaxPool2D>(K2{3, 3}, K2{2, 2});                                           // (192, 13, 13)
        m.template add<Conv2D>(384, K2{3, 3}, relu, 1, 1, Init::he_normal);                     // (384, 13, 13)
        m.template add<Conv2D>(256, K2{3, 3}, relu, 1, 1, Init::he_normal);                     // (256, 13, 13)
        m.template add<Conv2D>(256, K2{3, 3}, relu, 1, 1, Init::he_normal);                     // (256, 13, 13)
        m.template add<MaxPool2D>(K2{3, 3}, K2{2, 2});                                           // (256, 6, 6)
        m.template add<Flatten>();                                                               // (9216)
        m.template add<Dropout>(0.5);
        m.template add<Dense>(4096, relu);
        m.template add<Dropout>(0.5);
        m.template add<Dense>(4096, relu);
        m.template add<Dense>(1000);
        return m;
    }
    if (name == "vgg16") {
        Sequential<T> m(Shape::image(3, 224, 224), seed);
        // Configuration D: 2x64, 2x128, 3x256, 3x512, 3x512 3x3 convs, a 2x2 max pool after each group.
        const int groups[5][2] = {{64, 2}, {128, 2}, {256, 3}, {512, 3}, {512, 3}};
        for (const auto& g : groups) {
            for (int i = 0; i < g[1]; ++i)
                m.template add<Conv2D>(g[0], K2{3, 3}, relu, Padding::same, 1, Init::he_normal);
            m.template add<MaxPool2D>(K2{2, 2});
        }                                                                // (512, 7, 7)
        m.template add<Flatten>();                                       // (25088)
        m.template add<Dense>(4096, relu);
        m.template add<Dropout>(0.5);
        m.template add<Dense>(4096, relu);
        m.template add<Dropout>(0.5);
        m.template add<Dense>(1000);
        return m;
    }
    if (name == "inception_v4") {
        Sequential<T> m(Shape::image(3, 299, 299), seed);
        detail::inception_stem(m);                               // (384, 35, 35)
        for (int i = 0; i < 4; ++i) detail::inception_a(m);
        detail::reduction_a(m);                                  // (1024, 17, 17)
        for (int i = 0; i < 7; ++i) detail::inception_b(m);
        detail::reduction_b(m);                                  // (1536, 8, 8)
        for (int i = 0; i < 3; ++i) detail::inception_c(m);
        m.template add<GlobalAvgPool2D>();                       // (1536)
        m.template add<Dropout>(0.2);
        m.template add<Dense>(1000);
        return m;
    }
    std::string known;
    for (auto& n : imagenet_models()) known += (known.empty() ? "" : ", ") + n;
    throw std::invalid_argument("unknown model '" + name + "' (known: " + known + ")");
}

}  // namespace kitnn::zoo
