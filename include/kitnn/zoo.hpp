// kitnn/zoo.hpp — named MNIST-sized networks (input 1x28x28, 10 classes, logits out).
//
//   keck     the exercise's network, 11,022 parameters
//   lenet5   LeNet-5 with ReLU and max pooling, 61,706 parameters
//   kerascnn the Keras mnist_cnn example, 1,199,882 parameters
#pragma once

#include "kitnn/layers/conv2d.hpp"
#include "kitnn/layers/dense.hpp"
#include "kitnn/layers/dropout.hpp"
#include "kitnn/layers/flatten.hpp"
#include "kitnn/layers/max_pool2d.hpp"
#include "kitnn/model/sequential.hpp"

#include <stdexcept>
#include <string>
#include <vector>

namespace kitnn::zoo {

inline std::vector<std::string> mnist_models() { return {"keck", "lenet5", "kerascnn"}; }

template <class T>
Sequential<T> mnist_model(const std::string& name, std::uint64_t seed = 1) {
    const auto relu = Activation::relu;
    using K = std::array<int, 2>;
    Sequential<T> m(Shape::image(1, 28, 28), seed);
    if (name == "keck") {
        m.template add<Conv2D>(4, K{2, 2}, relu);       // (4, 27, 27)      20 params
        m.template add<MaxPool2D>(K{2, 2});             // (4, 13, 13)
        m.template add<Flatten>();                      // (676)
        m.template add<Dense>(16, relu);                // (16)          10,832 params
        m.template add<Dropout>(0.5);
        m.template add<Dense>(10);                      // (10)             170 params
    } else if (name == "lenet5") {
        m.template add<Conv2D>(6, K{5, 5}, relu, Padding::same);  // (6, 28, 28)
        m.template add<MaxPool2D>(K{2, 2});                       // (6, 14, 14)
        m.template add<Conv2D>(16, K{5, 5}, relu);                // (16, 10, 10)
        m.template add<MaxPool2D>(K{2, 2});                       // (16, 5, 5)
        m.template add<Flatten>();                                // (400)
        m.template add<Dense>(120, relu);
        m.template add<Dense>(84, relu);
        m.template add<Dense>(10);
    } else if (name == "kerascnn") {
        m.template add<Conv2D>(32, K{3, 3}, relu);  // (32, 26, 26)
        m.template add<Conv2D>(64, K{3, 3}, relu);  // (64, 24, 24)
        m.template add<MaxPool2D>(K{2, 2});         // (64, 12, 12)
        m.template add<Dropout>(0.25);
        m.template add<Flatten>();                  // (9216)
        m.template add<Dense>(128, relu);
        m.template add<Dropout>(0.5);
        m.template add<Dense>(10);
    } else {
        std::string known;
        for (auto& n : mnist_models()) known += (known.empty() ? "" : ", ") + n;
        throw std::invalid_argument("unknown model '" + name + "' (known: " + known + ")");
    }
    return m;
}

}  // namespace kitnn::zoo
