// kitnn/io/layer_factory.hpp — rebuild a layer from its type tag and Config.
//
// The inverse of Layer::type() + Layer::config(): what the model file stores.
// Adding a layer type means adding one line here (and a test in test_model_file).
#pragma once

#include "kitnn/layers/avg_pool2d.hpp"
#include "kitnn/layers/batch_norm.hpp"
#include "kitnn/layers/branches.hpp"
#include "kitnn/layers/conv2d.hpp"
#include "kitnn/layers/dense.hpp"
#include "kitnn/layers/dropout.hpp"
#include "kitnn/layers/flatten.hpp"
#include "kitnn/layers/global_avg_pool2d.hpp"
#include "kitnn/layers/leaky_relu.hpp"
#include "kitnn/layers/max_pool2d.hpp"
#include "kitnn/layers/relu.hpp"
#include "kitnn/layers/sigmoid.hpp"
#include "kitnn/layers/softmax.hpp"
#include "kitnn/layers/tanh.hpp"

#include <memory>
#include <stdexcept>
#include <string>

namespace kitnn {

template <class T>
std::unique_ptr<Layer<T>> make_layer(const std::string& type, const Config& c) {
    // Every integer hyperparameter is range-checked before it is narrowed to int.
    auto i = [&](const char* k) {
        const long long v = c.integer(k);
        if (v < 0 || v > (1 << 24))
            throw std::runtime_error("hyperparameter '" + std::string(k) + "' = " +
                                     std::to_string(v) + " is out of range");
        return int(v);
    };
    if (type == "Conv2D") {
        // "use_bias" and "pad" are written only when not the default (older files lack them).
        bool use_bias = true;
        if (c.has("use_bias")) {
            const std::string& b = c.str("use_bias");
            if (b != "0" && b != "1")
                throw std::runtime_error("hyperparameter 'use_bias' = '" + b + "' (expected 0 or 1)");
            use_bias = b == "1";
        }
        const std::array<int, 2> k{i("kernel_h"), i("kernel_w")};
        const Activation act = activation_from_string(c.str("activation"));
        const Padding padding = padding_from_string(c.str("padding"));
        if (padding == Padding::explicit_pad)
            return std::make_unique<Conv2D<T>>(i("filters"), k, act, i("pad"), i("stride"),
                                               init_from_string(c.str("init")), use_bias);
        return std::make_unique<Conv2D<T>>(i("filters"), k, act, padding, i("stride"),
                                           init_from_string(c.str("init")), use_bias);
    }
    if (type == "MaxPool2D")  // files written before pools had padding have no key: valid
        return std::make_unique<MaxPool2D<T>>(std::array<int, 2>{i("pool_h"), i("pool_w")},
                                              std::array<int, 2>{i("stride_h"), i("stride_w")},
                                              padding_from_string(c.has("padding") ? c.str("padding")
                                                                                   : "valid"));
    if (type == "AvgPool2D")
        return std::make_unique<AvgPool2D<T>>(std::array<int, 2>{i("pool_h"), i("pool_w")},
                                              std::array<int, 2>{i("stride_h"), i("stride_w")},
                                              padding_from_string(c.str("padding")));
    if (type == "Dense")
        return std::make_unique<Dense<T>>(i("units"), activation_from_string(c.str("activation")),
                                          init_from_string(c.str("init")));
    if (type == "Dropout") return std::make_unique<Dropout<T>>(c.real("rate"));
    if (type == "ReLU") return std::make_unique<ReLU<T>>();
    if (type == "Flatten") return std::make_unique<Flatten<T>>();
    if (type == "Softmax") return std::make_unique<Softmax<T>>();
    // A container is made empty; the model loader adds its branches from the file.
    if (type == "Branches") return std::make_unique<Branches<T>>(merge_from_string(c.str("merge")));
    if (type == "GlobalAvgPool2D") return std::make_unique<GlobalAvgPool2D<T>>();
    if (type == "BatchNorm") return std::make_unique<BatchNorm<T>>(c.real("momentum"), c.real("epsilon"));
    if (type == "Tanh") return std::make_unique<Tanh<T>>();
    if (type == "Sigmoid") return std::make_unique<Sigmoid<T>>();
    if (type == "LeakyReLU") return std::make_unique<LeakyReLU<T>>(c.real("alpha"));
    throw std::runtime_error("unknown layer type '" + type +
                             "' (written by a newer kitnn, or not a kitnn model)");
}

// Checks, from the hyperparameters alone and BEFORE the layer is built, that a
// layer read from a file stays within sane bounds: the weights it will allocate must
// fit in `bytes_left` (the rest of the file), and a convolution's kernel must fit in
// its (padded) input, which also bounds its im2col workspace. A crafted
// "units = 2^40" or a 1024x1024 kernel on a 28x28 image is refused without
// allocating. Returns an empty string when fine, else what is wrong.
inline std::string check_layer_limits(const std::string& type, const Config& c, const Shape& in,
                                      std::uint64_t bytes_left, size_t scalar_size) {
    using I = __int128;  // products of three 2^24 factors cannot overflow
    auto get = [&](const char* k) -> I {
        const long long v = c.integer(k);
        return (v < 1 || v > (1 << 24)) ? -1 : I(v);
    };
    I weights = 0;
    if (type == "Conv2D") {
        const I f = get("filters"), kh = get("kernel_h"), kw = get("kernel_w");
        if (f < 0 || kh < 0 || kw < 0) return "filters and kernel must be in 1..2^24";
        if (!in.is_image()) return "needs an image input, got " + in.str();
        // Explicit padding (key "pad", 0 <= pad < kernel) widens the input on every side.
        I pad = 0;
        if (c.has("padding") && c.str("padding") == "explicit") {
            const long long p = c.integer("pad");
            if (p < 0 || p >= std::min(kh, kw)) return "pad must be in 0..min(kernel)-1";
            pad = p;
        }
        if (kh > in.h() + 2 * pad || kw > in.w() + 2 * pad)
            return "kernel " + std::to_string(int(kh)) + "x" + std::to_string(int(kw)) +
                   " is larger than its input " + in.str() +
                   (pad ? " padded by " + std::to_string(int(pad)) : std::string());
        weights = f * (I(in.c()) * kh * kw + 1);
    } else if (type == "Dense") {
        const I u = get("units");
        if (u < 0) return "units must be in 1..2^24";
        weights = u * (I(in.size()) + 1);
    }
    if (weights * I(scalar_size) > I(bytes_left))
        return "its hyperparameters need " + std::to_string(static_cast<long long>(
                   std::min<I>(weights, I(1) << 62))) +
               " weights, more than the " + std::to_string(bytes_left) + " bytes left in the file";
    return "";
}

}  // namespace kitnn
