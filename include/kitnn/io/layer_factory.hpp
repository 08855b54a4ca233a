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

}  // namespace kitnn
