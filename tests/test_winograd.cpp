// Conv2D's Winograd F(2x2, 3x3) inference forward (layers/winograd.hpp) against the
// im2col + GEMM path: every padding, odd and tiny sizes, several images per tile block
// and blocks that cut through images, bias and ReLU, double and float, 1 and 2 threads;
// which layers `automatic` gives it to; and the refusals.
#include "winograd_compare.hpp"

#include <array>
#include <cmath>
#include <stdexcept>

using namespace kitnn;
using K = std::array<int, 2>;

namespace {

struct Case {
    Shape in;
    int filters;
    int pad;  // -1: Padding::same, -2: Padding::valid, else explicit
    bool bias;
    Activation act;
    Eigen::Index batch;
};
// Odd and even sizes (a last tile half outside the output), 1x1 and 2x2 images (every
// tile mostly padding), valid (output 1 smaller per side), pad 2 (output larger than the
// input), and 128 -> 128 channels on 20x30 at batch 3: 450 tiles, in blocks of 17 tile
// rows of 15 tiles (Conv2D's 4 MB for V and M), which cut through the images' 10 tile rows.
const Case kCases[] = {
    {Shape::image(3, 6, 6), 4, -1, true, Activation::linear, 2},
    {Shape::image(2, 7, 5), 3, -1, true, Activation::relu, 3},
    {Shape::image(4, 1, 1), 5, -1, true, Activation::linear, 2},
    {Shape::image(2, 2, 3), 3, -1, false, Activation::linear, 1},
    {Shape::image(3, 9, 8), 4, -2, true, Activation::linear, 2},
    {Shape::image(2, 3, 3), 2, -2, true, Activation::relu, 2},
    {Shape::image(2, 5, 7), 3, 2, false, Activation::linear, 2},
    {Shape::image(3, 8, 9), 2, 1, true, Activation::relu, 1},
    {Shape::image(128, 20, 30), 128, -1, true, Activation::linear, 3},
    {Shape::image(16, 13, 11), 24, -1, true, Activation::relu, 2},
};

std::string describe(const Case& c) {
    return "input " + c.in.str() + " filters " + std::to_string(c.filters) + " pad " + std::to_string(c.pad) +
           (c.bias ? " bias" : "") + " " + to_string(c.act) + " batch " + std::to_string(c.batch);
}

template <class T>
Conv2D<T> make(const Case& c) {
    if (c.pad >= 0)
        return Conv2D<T>(c.filters, K{3, 3}, c.act, c.pad, 1, Init::glorot_uniform, c.bias);
    return Conv2D<T>(c.filters, K{3, 3}, c.act, c.pad == -1 ? Padding::same : Padding::valid, 1,
                     Init::glorot_uniform, c.bias);
}

template <class T>
Tensor<T> run(const Case& c, ConvAlgorithm a, const Tensor<T>& x, int threads = 0) {
    return kitnn_test::winograd_run<T>(make<T>(c), c.in, 41, a, x, threads);
}

template <class T>
Tensor<T> input(const Case& c) {
    return kitnn_test::winograd_input<T>(c.batch, c.in, 42);
}

}  // namespace

TEST_CASE("Winograd F(2x2,3x3) equals the GEMM path: in double exactly, in float within rounding",
          "[conv2d][winograd]") {
    for (const auto& c : kCases) {
        INFO(describe(c));
        // Float: the transforms add up to 9 terms before and after the products, a few
        // float ulps of the output's scale (float's ulp at 1 is 1.2e-7).
        kitnn_test::check_winograd_against_gemm([&] { return make<double>(c); }, [&] { return make<float>(c); }, c.in,
                                                c.batch, 41, 2e-6);
    }
}

TEST_CASE("Winograd F(2x2,3x3): the same bits on 1 and 2 threads", "[conv2d][winograd]") {
    const Case& c = kCases[8];  // 450 tiles, several blocks
    const auto x = input<float>(c);
    const auto y1 = run<float>(c, ConvAlgorithm::winograd, x, 1);
    const auto y2 = run<float>(c, ConvAlgorithm::winograd, x, 2);
    for (Eigen::Index i = 0; i < y1.size(); ++i) REQUIRE(y1.data()[i] == y2.data()[i]);
}

TEST_CASE("Winograd F(2x2,3x3): which layers `automatic` gives it to", "[conv2d][winograd]") {
    Rng rng(3);
    // VGG-16's 28x28 layer: 196 tiles at one image.
    Conv2D<float> big(512, K{3, 3}, Activation::relu, Padding::same);
    big.build(Shape::image(256, 28, 28), rng);
    CHECK(big.winograd_forward(1));
    CHECK_FALSE(big.winograd_forward(1, /*training=*/true));  // training keeps the GEMM
    big.set_algorithm(ConvAlgorithm::gemm);
    CHECK_FALSE(big.winograd_forward(8));
    // 14x14: 49 tiles per image; from 3 images there are enough to pay for the kernel's transform.
    Conv2D<float> small_image(512, K{3, 3}, Activation::relu, Padding::same);
    small_image.build(Shape::image(512, 14, 14), rng);
    CHECK_FALSE(small_image.winograd_forward(1));
    CHECK(small_image.winograd_forward(3));
    // On outputs over 32x32 from 32 channels and filters (VGG-16's 64 -> 128 on 112x112,
    // Inception-v4's 256 -> 96 on 35x35); on smaller ones 64 channels or 96 filters are
    // too shallow or too narrow, and 16 channels too shallow anywhere.
    struct Expect {
        int filters;
        Shape in;
        Eigen::Index batch;
        bool winograd;
    };
    const Expect expected[] = {
        {128, Shape::image(64, 112, 112), 1, true}, {96, Shape::image(256, 35, 35), 1, true},
        {128, Shape::image(64, 32, 32), 8, false},  {96, Shape::image(256, 17, 17), 8, false},
        {64, Shape::image(16, 112, 112), 8, false},
    };
    for (const auto& e : expected) {
        INFO(e.in.str() << " -> " << e.filters << " filters, batch " << e.batch);
        Conv2D<float> conv(e.filters, K{3, 3}, Activation::relu, Padding::same);
        conv.build(e.in, rng);
        CHECK(conv.winograd_forward(e.batch) == e.winograd);
    }
    // No MNIST network's layer: their documented results are the GEMM's.
    kitnn_test::check_no_mnist_layer_takes_winograd();
    // Training mode takes the GEMM even when forced.
    const Case& c = kCases[9];
    kitnn_test::check_training_takes_gemm([&] { return make<float>(c); }, c.in, input<float>(c));
}

TEST_CASE("Winograd F(2x2,3x3) is refused for other kernels and strides", "[conv2d][winograd]") {
    Conv2D<float> five(4, K{5, 5}, Activation::relu, Padding::same);
    CHECK_THROWS_WITH(five.set_algorithm(ConvAlgorithm::winograd),
                      Catch::Matchers::Contains("needs stride 1 and a 3x3 kernel") &&
                          Catch::Matchers::Contains("5x5 stride 1"));
    Conv2D<float> strided(4, K{3, 3}, Activation::relu, Padding::same, 2);
    CHECK_THROWS_AS(strided.set_algorithm(ConvAlgorithm::winograd), std::invalid_argument);
    CHECK_NOTHROW(strided.set_algorithm(ConvAlgorithm::gemm));
    CHECK_FALSE(strided.winograd_forward(100));
}
