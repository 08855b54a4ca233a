// Inference folding (layers/fusion.hpp): Conv2D -> BatchNorm -> ReLU (and Conv2D ->
// BatchNorm, Conv2D -> ReLU) as one pass. On every forward path of Conv2D (tap by tap,
// chunks on Eigen's or kitnn's GEMM, one image across threads, strips, Winograd in 2-D
// and 1-D), with real BatchNorm statistics and a bias, the folded pass equals the three
// layers run one by one (set_fusion(false)); inside branches and nested branches too.
// What must not fold does not (a ReLU before the BatchNorm, a class derived from ReLU),
// and backward after a folded pass is refused with a clear error.
#include "kitnn/kitnn.hpp"
#include "kitnn/testing/gradient_check.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <random>
#include <string>

using namespace kitnn;
using K2 = std::array<int, 2>;

namespace {

// BatchNorm with moving statistics and gamma/beta away from their initial 1/0/0/1, and
// every convolution's bias non-zero: the fold must carry all of them.
template <class T>
void randomise_affine(Layer<T>& l, std::mt19937& gen) {
    std::uniform_real_distribution<double> u(0.0, 1.0);
    if (auto* bn = dynamic_cast<BatchNorm<T>*>(&l)) {
        for (Eigen::Index c = 0; c < bn->gamma().value.size(); ++c) {
            bn->gamma().value.data()[c] = T(0.5 + u(gen));
            bn->beta().value.data()[c] = T(u(gen) - 0.5);
            bn->moving_mean().value.data()[c] = T(0.6 * u(gen) - 0.3);
            bn->moving_variance().value.data()[c] = T(0.2 + 2.0 * u(gen));
        }
    }
    if (auto* conv = dynamic_cast<Conv2D<T>*>(&l))
        for (Eigen::Index f = 0; f < conv->bias().value.size(); ++f) conv->bias().value.data()[f] = T(0.2 * u(gen) - 0.1);
    for (size_t b = 0; b < l.branch_count(); ++b)
        for (Layer<T>* inner : l.branch(b)) randomise_affine(*inner, gen);
}

template <class T>
void randomise_affine(Sequential<T>& m) {
    std::mt19937 gen(11);
    for (size_t i = 0; i < m.size(); ++i) randomise_affine(m.layer(i), gen);
}

// The model's inference output folded and unfolded: returns the largest difference
// relative to the output's scale, and checks the folded pass really folded (backward
// refused) and the unfolded one did not (backward runs).
template <class T>
double folded_vs_unfolded(Sequential<T>& m, const Tensor<T>& x, bool expect_fold) {
    m.set_fusion(true);
    const Tensor<T> folded = m.forward(x, false);
    Tensor<T> dy(folded.dimensions());
    dy.setConstant(T(1));
    if (expect_fold) CHECK_THROWS_AS(m.backward(dy), std::logic_error);
    else CHECK_NOTHROW(m.backward(dy));
    m.set_fusion(false);
    const Tensor<T> plain = m.forward(x, false);
    CHECK_NOTHROW(m.backward(dy));
    m.set_fusion(true);
    REQUIRE(folded.dimensions() == plain.dimensions());
    double worst = 0, scale = 0;
    for (Eigen::Index i = 0; i < plain.size(); ++i) {
        worst = std::max(worst, std::abs(double(folded.data()[i]) - double(plain.data()[i])));
        scale = std::max(scale, std::abs(double(plain.data()[i])));
    }
    CHECK(scale > 0);
    return worst / std::max(scale, 1e-30);
}

// One convolution of the given shape, then BatchNorm (when bn) and ReLU (when relu).
template <class T>
Sequential<T> conv_model(Shape in, int filters, K2 k, Padding pad, int stride, bool bn, bool relu) {
    Sequential<T> m(in, 5);
    m.template add<Conv2D>(filters, k, Activation::linear, pad, stride);
    if (bn) m.template add<BatchNorm>(0.9);
    if (relu) m.template add<ReLU>();
    randomise_affine(m);
    return m;
}

template <class T>
Tensor<T> input(Eigen::Index n, const Shape& s) {
    Tensor<T> x(n, s.c(), s.h(), s.w());
    x.setRandom();
    return x;
}

}  // namespace

TEST_CASE("Folding Conv2D -> BatchNorm -> ReLU gives the unfolded output on every forward path of Conv2D",
          "[fusion]") {
    const auto S = Padding::same, V = Padding::valid;
    struct Case {
        const char* path;
        Shape in;
        int filters;
        K2 k;
        Padding pad;
        int stride;
        Eigen::Index batch;
    };
    // Which path each case takes is checked below on the built layer where it is visible.
    const Case cases[] = {
        {"tap by tap (MNIST-sized, wide)", Shape::image(8, 14, 14), 16, {3, 3}, S, 1, 4},
        {"chunks, rows, Eigen's GEMM", Shape::image(6, 20, 20), 80, {3, 3}, V, 1, 3},
        {"chunks, stride 2", Shape::image(16, 15, 15), 20, {3, 3}, V, 2, 2},
        {"chunks of ImageNet-sized kernels (kitnn's GEMM)", Shape::image(384, 9, 9), 200, {1, 1}, V, 1, 3},
        {"one image across the threads", Shape::image(384, 17, 17), 200, {1, 1}, V, 1, 1},
        {"strips (outputs over 32x32)", Shape::image(8, 40, 40), 12, {5, 5}, V, 1, 2},
        {"Winograd F(2x2, 3x3)", Shape::image(128, 16, 16), 128, {3, 3}, S, 1, 2},
        {"Winograd F(2, 7) along rows", Shape::image(128, 17, 17), 128, {1, 7}, S, 1, 1},
        {"Winograd F(2, 7) along columns", Shape::image(128, 17, 17), 128, {7, 1}, S, 1, 1},
    };
    for (const Case& c : cases) {
        INFO(c.path);
        Sequential<float> m = conv_model<float>(c.in, c.filters, c.k, c.pad, c.stride, true, true);
        const Tensor<float> x = input<float>(c.batch, c.in);
        auto& conv = dynamic_cast<Conv2D<float>&>(m.layer(0));
        const std::string path = c.path;
        if (path.rfind("Winograd", 0) == 0) CHECK(conv.winograd_forward(c.batch));
        else CHECK_FALSE(conv.winograd_forward(c.batch));
        CHECK(conv.strips() == (path.rfind("strips", 0) == 0));
        if (path.rfind("tap", 0) == 0) CHECK(conv.im2col_layout() == Im2col::wide);
        if (path.rfind("chunks, rows", 0) == 0) CHECK(conv.im2col_layout() == Im2col::rows);
        // float: the folded pass rounds s (W x) + (s b + u) once where the layers round
        // three times; a few units in the last place of the output's scale.
        CHECK(folded_vs_unfolded(m, x, true) <= 1e-5);
    }
    // double, on two of the paths: the same sums, so only rounding at 1e-16 differs.
    for (const Case& c : {cases[0], cases[6]}) {
        INFO(c.path << " (double)");
        Sequential<double> m = conv_model<double>(c.in, c.filters, c.k, c.pad, c.stride, true, true);
        CHECK(folded_vs_unfolded(m, input<double>(c.batch, c.in), true) <= 1e-12);
    }
}

TEST_CASE("Folding: Conv2D -> BatchNorm and Conv2D -> ReLU fold, a ReLU before BatchNorm and derived classes do not",
          "[fusion]") {
    const Shape in = Shape::image(4, 10, 10);
    const Tensor<float> x = input<float>(3, in);
    {
        INFO("Conv2D -> BatchNorm");
        Sequential<float> m = conv_model<float>(in, 6, {3, 3}, Padding::same, 1, true, false);
        CHECK(folded_vs_unfolded(m, x, true) <= 1e-5);
    }
    {
        INFO("Conv2D -> ReLU: the bias and ReLU as Activation::relu would apply them, to the bit");
        Sequential<float> m = conv_model<float>(in, 6, {3, 3}, Padding::same, 1, false, true);
        CHECK(folded_vs_unfolded(m, x, true) == 0.0);
    }
    {
        INFO("a lone convolution and a ReLU inside the convolution (then BatchNorm): nothing folds");
        Sequential<float> m(in, 5);
        m.add<Conv2D>(6, K2{3, 3}, Activation::relu, Padding::same);
        m.add<BatchNorm>(0.9);
        m.add<Flatten>();
        m.add<Dense>(3);
        randomise_affine(m);
        CHECK(folded_vs_unfolded(m, x, false) == 0.0);
    }
    {
        // A user's layer derived from ReLU computes its own forward: it must run as itself.
        struct Capped : ReLU<float> {
            void apply(const In& in, Out& y) const override { y = in.max(0.0f).min(0.25f); }
        };
        Sequential<float> m(in, 5);
        m.add<Conv2D>(6, K2{3, 3}, Activation::linear, Padding::same);
        m.add(std::make_unique<Capped>());
        randomise_affine(m);
        m.set_fusion(true);
        const Tensor<float> y = m.forward(x, false);
        float top = 0;
        for (Eigen::Index i = 0; i < y.size(); ++i) top = std::max(top, y.data()[i]);
        CHECK(top <= 0.25f);
        CHECK(folded_vs_unfolded(m, x, false) == 0.0);
    }
    {
        INFO("training passes never fold: backward after forward(x, true) runs");
        Sequential<float> m = conv_model<float>(in, 6, {3, 3}, Padding::same, 1, true, true);
        const Tensor<float>& y = m.forward(x, true);
        Tensor<float> dy(y.dimensions());
        dy.setConstant(1.0f);
        CHECK_NOTHROW(m.backward(dy));
    }
}

TEST_CASE("Folding inside branches and nested branches, set_fusion reaching them and ones added after it",
          "[fusion][branches]") {
    const Shape in = Shape::image(6, 9, 9);
    const auto conv_bn_relu = [](Chain<float>& c, int f, K2 k) {
        c.add<Conv2D>(f, k, Activation::linear, Padding::same, 1, Init::he_normal, /*use_bias=*/false);
        c.add<BatchNorm>(0.99, 1e-3);
        c.add<ReLU>();
    };
    const auto build = [&](Sequential<float>& m) {
        auto b = std::make_unique<Branches<float>>(Merge::concat);
        conv_bn_relu(b->branch(), 4, {1, 1});
        auto& two = b->branch();
        conv_bn_relu(two, 3, {1, 1});
        conv_bn_relu(two, 5, {3, 3});
        auto& nest = b->branch();
        conv_bn_relu(nest, 4, {1, 1});
        auto inner = std::make_unique<Branches<float>>(Merge::concat);
        conv_bn_relu(inner->branch(), 2, {1, 3});
        conv_bn_relu(inner->branch(), 2, {3, 1});
        nest.add(std::move(inner));
        b->branch().add<AvgPool2D>(K2{3, 3}, K2{1, 1}, Padding::same);  // a branch with nothing to fold
        m.add(std::move(b));
        m.add<GlobalAvgPool2D>();
        m.add<Dense>(3);
    };
    const Tensor<float> x = input<float>(2, in);
    Sequential<float> m(in, 3);
    m.add<Conv2D>(6, K2{3, 3}, Activation::linear, Padding::same);
    m.add<BatchNorm>(0.9);
    m.add<ReLU>();
    build(m);
    randomise_affine(m);
    CHECK(folded_vs_unfolded(m, x, true) <= 1e-5);

    // Only the branches fold (the model's own layers have nothing to fold): backward after
    // a folded pass is refused by Branches itself, and set_fusion(false) reaches the
    // nested container, so then every layer runs and backward works.
    Sequential<float> only(in, 3);
    build(only);
    randomise_affine(only);
    CHECK(folded_vs_unfolded(only, x, true) <= 1e-5);
    try {
        only.forward(x, false);
        Tensor<float> dy(2, 3, 1, 1);
        dy.setConstant(1.0f);
        only.backward(dy);
        FAIL("backward after a folded pass inside branches ran");
    } catch (const std::logic_error& e) {
        CHECK(std::string(e.what()).find("folded BatchNorm and ReLU") != std::string::npos);
    }
    Sequential<float> late(in, 3);
    late.set_fusion(false);
    CHECK_FALSE(late.fusion());
    build(late);  // Branches added after set_fusion(false) follow it
    late.forward(x, false);
    Tensor<float> dy(2, 3, 1, 1);
    dy.setConstant(1.0f);
    CHECK_NOTHROW(late.backward(dy));
}

TEST_CASE("The gradient checker differentiates inference passes of models that fold, and leaves folding as it was",
          "[fusion][gradcheck]") {
    Sequential<double> m(Shape::image(2, 6, 6), 4);
    m.add<Conv2D>(3, K2{3, 3}, Activation::linear, Padding::same);
    m.add<BatchNorm>(0.9);
    m.add<ReLU>();
    m.add<Flatten>();
    m.add<Dense>(3);
    randomise_affine(m);
    Tensor<double> x(2, 2, 6, 6);
    x.setRandom();
    const auto report = testing::check_model_gradients(m, x, {0, 2});  // training = false
    INFO(report.str());
    CHECK(report.ok());
    CHECK(m.fusion());  // on again afterwards
    m.set_fusion(false);
    CHECK(testing::check_model_gradients(m, x, {1, 0}).ok());
    CHECK_FALSE(m.fusion());  // and off stays off
}
