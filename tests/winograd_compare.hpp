// Helpers shared by the Winograd tests (test_winograd.cpp: F(2x2, 3x3); test_winograd_1d.cpp:
// F(m, K)): one layer's inference forward with a chosen algorithm, random inputs, and the
// comparison both files make of Winograd's output with the im2col + GEMM path's.
#pragma once

#include "gradient_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>

namespace kitnn_test {

// x: `batch` random images of shape `in` (the same values in every scalar type for a seed).
template <class T>
kitnn::Tensor<T> winograd_input(Eigen::Index batch, const kitnn::Shape& in, std::uint64_t seed) {
    kitnn::Rng rng(seed);
    const kitnn::Tensor<double> xd = random_tensor(batch, in, rng);
    kitnn::Tensor<T> x(xd.dimensions());
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = T(xd.data()[i]);
    return x;
}

// conv's inference forward of x with algorithm a, built on `in` with `seed` (and a random
// non-zero bias when it has one), on `threads` threads (0: as set).
template <class T>
kitnn::Tensor<T> winograd_run(kitnn::Conv2D<T> conv, const kitnn::Shape& in, std::uint64_t seed,
                              kitnn::ConvAlgorithm a, const kitnn::Tensor<T>& x, int threads = 0) {
    kitnn::Rng rng(seed);
    conv.build(in, rng);
    if (conv.use_bias())
        for (Eigen::Index i = 0; i < conv.bias().value.size(); ++i) conv.bias().value.data()[i] = T(rng.normal());
    conv.set_algorithm(a);
    const int saved = kitnn::max_threads();
    if (threads > 0) kitnn::set_threads(threads);
    kitnn::Tensor<T> y;
    conv.forward(x, y, false);
    kitnn::set_threads(saved);
    return y;
}

// For one case (make<T>() gives the unbuilt layer): in double, Winograd's output equals the
// GEMM path's within 1e-13 of the output's scale; in float, it is within `float_bound` of
// the scale of the double result (the GEMM path's own float error is printed beside it).
inline void check_winograd_against_gemm(const std::function<kitnn::Conv2D<double>()>& make_d,
                                        const std::function<kitnn::Conv2D<float>()>& make_f,
                                        const kitnn::Shape& in, Eigen::Index batch, std::uint64_t seed,
                                        double float_bound) {
    using kitnn::ConvAlgorithm;
    const auto xd = winograd_input<double>(batch, in, seed + 1);
    const auto ref = winograd_run<double>(make_d(), in, seed, ConvAlgorithm::gemm, xd);
    const auto yd = winograd_run<double>(make_d(), in, seed, ConvAlgorithm::winograd, xd);
    REQUIRE(yd.dimensions() == ref.dimensions());
    const auto xf = winograd_input<float>(batch, in, seed + 1);
    const auto yw = winograd_run<float>(make_f(), in, seed, ConvAlgorithm::winograd, xf);
    const auto yg = winograd_run<float>(make_f(), in, seed, ConvAlgorithm::gemm, xf);
    double worst_d = 0, worst_w = 0, worst_g = 0, scale = 0;
    for (Eigen::Index i = 0; i < ref.size(); ++i) {
        const double r = ref.data()[i];
        worst_d = std::max(worst_d, std::abs(yd.data()[i] - r));
        worst_w = std::max(worst_w, std::abs(double(yw.data()[i]) - r));
        worst_g = std::max(worst_g, std::abs(double(yg.data()[i]) - r));
        scale = std::max(scale, std::abs(r));
    }
    INFO("double " << worst_d << "; float: winograd " << worst_w << ", gemm " << worst_g << "; scale " << scale);
    CHECK(scale > 0.1);  // not a comparison of zeros
    CHECK(worst_d <= 1e-13 * std::max(1.0, scale));
    CHECK(worst_w <= float_bound * std::max(1.0, scale));
}

// No MNIST zoo network's layer takes Winograd's forward, at any batch: their documented
// results are the GEMM path's.
inline void check_no_mnist_layer_takes_winograd() {
    for (const auto& name : kitnn::zoo::mnist_models()) {
        auto m = kitnn::zoo::mnist_model<float>(name, 1);
        for (size_t i = 0; i < m.size(); ++i)
            if (auto* conv = dynamic_cast<kitnn::Conv2D<float>*>(&m.layer(i))) {
                INFO(name << " layer " << i);
                CHECK_FALSE(conv->winograd_forward(10000));
            }
    }
}

// Training mode takes the GEMM even when Winograd's algorithm is forced: the same bits as
// a twin forced onto the GEMM.
inline void check_training_takes_gemm(const std::function<kitnn::Conv2D<float>()>& make, const kitnn::Shape& in,
                                      const kitnn::Tensor<float>& x) {
    kitnn::Conv2D<float> a = make(), b = make();
    kitnn::Rng ra(5), rb(5);
    a.build(in, ra);
    b.build(in, rb);
    a.set_algorithm(kitnn::ConvAlgorithm::winograd);
    b.set_algorithm(kitnn::ConvAlgorithm::gemm);
    kitnn::Tensor<float> ya, yb;
    a.forward(x, ya, true);
    b.forward(x, yb, true);
    REQUIRE(ya.size() == yb.size());
    for (Eigen::Index i = 0; i < ya.size(); ++i) REQUIRE(ya.data()[i] == yb.data()[i]);
}

}  // namespace kitnn_test
