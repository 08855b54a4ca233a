// kitnn/io/layer_factory.hpp — rebuild a layer from its type tag and Config.
//
// The inverse of Layer::type() + Layer::config(): what the model file stores.
// Adding a layer type means adding one line here (and a test in test_model_file).
#pragma once

#include "kitnn/layers/conv2d.hpp"
#include "kitnn/layers/dense.hpp"
#include "kitnn/layers/dropout.hpp"
#include "kitnn/layers/flatten.hpp"
#include "kitnn/layers/max_pool2d.hpp"
#include "kitnn/layers/relu.hpp"
#include "kitnn/layers/softmax.hpp"

#include <memory>
#include <stdexcept>
#include <string>

namespace kitnn {

template <class T>
std::unique_ptr<Layer<T>> make_layer(const std::string& type, const Config& c) {
    auto i = [&](const char* k) { return int(c.integer(k)); };
    if (type == "Conv2D")
        return std::make_unique<Conv2D<T>>(i("filters"), std::array<int, 2>{i("kernel_h"), i("kernel_w")},
                                           activation_from_string(c.str("activation")),
                                           padding_from_string(c.str("padding")), i("stride"),
                                           init_from_string(c.str("init")));
    if (type == "MaxPool2D")
        return std::make_unique<MaxPool2D<T>>(std::array<int, 2>{i("pool_h"), i("pool_w")},
                                              std::array<int, 2>{i("stride_h"), i("stride_w")});
    if (type == "Dense")
        return std::make_unique<Dense<T>>(i("units"), activation_from_string(c.str("activation")),
                                          init_from_string(c.str("init")));
    if (type == "Dropout") return std::make_unique<Dropout<T>>(c.real("rate"));
    if (type == "ReLU") return std::make_unique<ReLU<T>>();
    if (type == "Flatten") return std::make_unique<Flatten<T>>();
    if (type == "Softmax") return std::make_unique<Softmax<T>>();
    throw std::runtime_error("unknown layer type '" + type +
                             "' (written by a newer kitnn, or not a kitnn model)");
}

// How many weights a layer of `type` with `c` will allocate for input `in`, computed
// from the hyperparameters alone. The model loader compares it with the bytes left
// in the file BEFORE building the layer, so a crafted "units = 2^40" cannot make it
// allocate terabytes. Returns -1 when the numbers are out of any sane range.
inline std::int64_t weights_needed(const std::string& type, const Config& c, const Shape& in) {
    constexpr std::int64_t kMax = std::int64_t(1) << 40;
    auto get = [&](const char* k) {
        const long long v = c.integer(k);
        return (v < 1 || v > (1 << 24)) ? -1 : std::int64_t(v);
    };
    if (type == "Conv2D") {
        const auto f = get("filters"), kh = get("kernel_h"), kw = get("kernel_w");
        if (f < 0 || kh < 0 || kw < 0 || in.dims.empty()) return -1;
        const std::int64_t n = f * (in.c() * kh * kw + 1);
        return n > kMax ? -1 : n;
    }
    if (type == "Dense") {
        const auto u = get("units");
        if (u < 0) return -1;
        const std::int64_t n = u * (in.size() + 1);
        return n > kMax ? -1 : n;
    }
    return 0;
}

}  // namespace kitnn
