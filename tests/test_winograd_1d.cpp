// Conv2D's one-dimensional Winograd forward F(m, K) for 1xK and Kx1 kernels
// (layers/winograd_1d.hpp) against the im2col + GEMM path: the transforms' matrices on
// their own, both axes, K = 3, 5 and 7, same and valid padding, lines shorter than the
// kernel and than a tile, several images per block and blocks that cut through images,
// bias and ReLU, double and float, 1 and 2 threads; which layers `automatic` gives it
// to; and the refusals.
#include "winograd_compare.hpp"

#include <array>
#include <cmath>
#include <stdexcept>

using namespace kitnn;
using K = std::array<int, 2>;

namespace {

struct Case {
    Shape in;
    K kernel;
    int filters;
    bool same;  // Padding::same, else valid
    bool bias;
    Activation act;
    Eigen::Index batch;
};
// 17x17 (Inception-v4's 1x7 and 7x1 maps: 9 tiles of 2 for 17 outputs), 8x8 (its 1x3 and
// 3x1 maps: 2 tiles of 4), lines of 1-3 pixels under a 7-tap kernel (every tile mostly
// padding), valid padding (17 - 6 = 11 outputs: the last tile half outside), non-square
// images (a tile row across is not a tile row along), and 128 -> 128 channels at batch 4:
// 36 tile rows in blocks of 30 (Conv2D's 4 MB for V and M), which cut through an image.
const Case kCases[] = {
    {Shape::image(5, 17, 17), K{1, 7}, 6, true, true, Activation::linear, 2},
    {Shape::image(5, 17, 17), K{7, 1}, 6, true, true, Activation::relu, 2},
    {Shape::image(4, 8, 8), K{1, 3}, 5, true, false, Activation::linear, 3},
    {Shape::image(4, 8, 8), K{3, 1}, 5, true, true, Activation::relu, 1},
    {Shape::image(3, 9, 7), K{1, 5}, 4, true, true, Activation::linear, 2},
    {Shape::image(3, 7, 9), K{5, 1}, 4, true, true, Activation::relu, 2},
    {Shape::image(2, 3, 2), K{1, 7}, 3, true, true, Activation::linear, 2},
    {Shape::image(2, 1, 3), K{7, 1}, 3, true, true, Activation::relu, 2},
    {Shape::image(3, 5, 17), K{1, 7}, 4, false, true, Activation::linear, 2},
    {Shape::image(3, 13, 17), K{7, 1}, 4, false, true, Activation::relu, 2},
    {Shape::image(2, 5, 6), K{3, 1}, 3, false, true, Activation::linear, 3},
    {Shape::image(128, 17, 17), K{1, 7}, 128, true, true, Activation::linear, 4},
    {Shape::image(128, 17, 17), K{7, 1}, 128, true, false, Activation::relu, 4},
};

std::string describe(const Case& c) {
    return "input " + c.in.str() + " kernel " + std::to_string(c.kernel[0]) + "x" + std::to_string(c.kernel[1]) +
           " filters " + std::to_string(c.filters) + (c.same ? " same" : " valid") + (c.bias ? " bias" : "") + " " +
           to_string(c.act) + " batch " + std::to_string(c.batch);
}

template <class T>
Conv2D<T> make(const Case& c) {
    return Conv2D<T>(c.filters, c.kernel, c.act, c.same ? Padding::same : Padding::valid, 1, Init::glorot_uniform,
                     c.bias);
}

template <class T>
Tensor<T> run(const Case& c, ConvAlgorithm a, const Tensor<T>& x, int threads = 0) {
    return kitnn_test::winograd_run<T>(make<T>(c), c.in, 43, a, x, threads);
}

template <class T>
Tensor<T> input(const Case& c) {
    return kitnn_test::winograd_input<T>(c.batch, c.in, 44);
}

}  // namespace

TEST_CASE("Winograd F(m, r): the Toom-Cook matrices compute the correlation", "[winograd]") {
    // y_o = sum_k g_k d_{o+k} for o < m, exactly up to double rounding, for every form kitnn
    // uses and a few it does not; B^T's entries are small integers and quarters.
    const std::array<std::array<int, 2>, 6> forms{{{4, 3}, {4, 5}, {2, 7}, {2, 3}, {6, 3}, {3, 5}}};
    Rng rng(1);
    for (const auto& mr : forms) {
        const winograd1d::Matrices w = winograd1d::toom_cook(mr[0], mr[1]);
        INFO("F(" << w.m << ", " << w.r << ")");
        REQUIRE(w.n == w.m + w.r - 1);
        for (double b : w.BT) CHECK(b * 4 == std::round(b * 4));
        for (int trial = 0; trial < 20; ++trial) {
            std::vector<double> d(size_t(w.n)), g(size_t(w.r));
            for (auto& v : d) v = rng.normal();
            for (auto& v : g) v = rng.normal();
            std::vector<double> prod(size_t(w.n));
            for (int xi = 0; xi < w.n; ++xi) {
                double u = 0, v = 0;
                for (int k = 0; k < w.r; ++k) u += w.g(xi, k) * g[size_t(k)];
                for (int k = 0; k < w.n; ++k) v += w.bt(xi, k) * d[size_t(k)];
                prod[size_t(xi)] = u * v;
            }
            for (int o = 0; o < w.m; ++o) {
                double y = 0, ref = 0;
                for (int xi = 0; xi < w.n; ++xi) y += w.at(o, xi) * prod[size_t(xi)];
                for (int k = 0; k < w.r; ++k) ref += g[size_t(k)] * d[size_t(o + k)];
                CHECK(std::abs(y - ref) <= 1e-11 * (1 + std::abs(ref)));
            }
        }
    }
    CHECK_THROWS_AS(winograd1d::toom_cook(4, 7), std::invalid_argument);  // 10 points: more than it has
    CHECK(winograd1d::outputs_per_tile(7) == 2);
    CHECK(winograd1d::outputs_per_tile(9) == 0);
}

TEST_CASE("Winograd F(m, K) along 1xK and Kx1 kernels equals the GEMM path: in double exactly, in float "
          "within rounding",
          "[conv2d][winograd]") {
    for (const auto& c : kCases) {
        INFO(describe(c));
        // Float: the transforms weigh inputs by up to 10 and the products by powers of 2
        // before the sums cancel down to the output: F(2, 7) rounds about 4 times as much
        // as the direct sum (128 channels: 1.2e-5 against 3.0e-6 at a scale of 5.9), still
        // some 25 float ulps of the output's scale; a wrong tap or tile would be off by the scale.
        kitnn_test::check_winograd_against_gemm([&] { return make<double>(c); }, [&] { return make<float>(c); }, c.in,
                                                c.batch, 43, 4e-6);
    }
}

TEST_CASE("Winograd F(m, K): the same bits on 1 and 2 threads", "[conv2d][winograd]") {
    for (const Case* c : {&kCases[11], &kCases[12]}) {  // several blocks
        INFO(describe(*c));
        const auto x = input<float>(*c);
        const auto y1 = run<float>(*c, ConvAlgorithm::winograd, x, 1);
        const auto y2 = run<float>(*c, ConvAlgorithm::winograd, x, 2);
        for (Eigen::Index i = 0; i < y1.size(); ++i) REQUIRE(y1.data()[i] == y2.data()[i]);
    }
}

TEST_CASE("Winograd F(m, K): which layers `automatic` gives it to", "[conv2d][winograd]") {
    Rng rng(3);
    // Inception-v4's Inception-B 1x7 and 7x1 layers (17x17, 192 -> 224 and 224 -> 256):
    // 153 tiles at one image.
    Conv2D<float> row(224, K{1, 7}, Activation::linear, Padding::same, 1, Init::glorot_uniform, false);
    row.build(Shape::image(192, 17, 17), rng);
    CHECK(row.winograd_forward(1));
    CHECK_FALSE(row.winograd_forward(1, /*training=*/true));  // training keeps the GEMM
    Conv2D<float> column(256, K{7, 1}, Activation::linear, Padding::same, 1, Init::glorot_uniform, false);
    column.build(Shape::image(224, 17, 17), rng);
    CHECK(column.winograd_forward(1));
    column.set_algorithm(ConvAlgorithm::gemm);
    CHECK_FALSE(column.winograd_forward(8));
    // The stem's 64 -> 64 7x1 on 73x73: too shallow.
    Conv2D<float> stem(64, K{7, 1}, Activation::linear, Padding::same, 1, Init::glorot_uniform, false);
    stem.build(Shape::image(64, 73, 73), rng);
    CHECK_FALSE(stem.winograd_forward(8));
    // No MNIST network's layer (none has a 1xK kernel, and training never takes it).
    kitnn_test::check_no_mnist_layer_takes_winograd();
    // Training mode takes the GEMM even when forced.
    const Case& c = kCases[1];
    kitnn_test::check_training_takes_gemm([&] { return make<float>(c); }, c.in, input<float>(c));
}

TEST_CASE("Winograd F(m, K) is refused for other kernels and strides", "[conv2d][winograd]") {
    Conv2D<float> nine(4, K{1, 9}, Activation::relu, Padding::same);
    CHECK_FALSE(nine.winograd_possible());
    CHECK_THROWS_WITH(nine.set_algorithm(ConvAlgorithm::winograd),
                      Catch::Matchers::Contains("Winograd's algorithm needs stride 1") &&
                          Catch::Matchers::Contains("1x9 stride 1"));
    Conv2D<float> strided(4, K{7, 1}, Activation::relu, Padding::same, 2);
    CHECK_THROWS_AS(strided.set_algorithm(ConvAlgorithm::winograd), std::invalid_argument);
    CHECK_FALSE(strided.winograd_forward(100));
    Conv2D<float> unpadded(4, K{1, 7}, Activation::relu, /*pad=*/0);  // explicit padding of a 1xK is 0
    CHECK_NOTHROW(unpadded.set_algorithm(ConvAlgorithm::winograd));
    Conv2D<float> square(4, K{7, 7}, Activation::relu, Padding::same);
    CHECK_FALSE(square.winograd_possible());
}
