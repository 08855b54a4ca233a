// Gradient checks for every layer, on several shapes (odd sizes, stride 2, same
// padding, batch > 1, several channels). See gradient_check.hpp for the method.
#include "gradient_check.hpp"

using namespace kitnn;
using namespace kitnn_test;

namespace {
template <class L, class... A>
GradCheckResult check(const Shape& in, Eigen::Index batch, std::uint64_t seed, A&&... args) {
    L layer(std::forward<A>(args)...);
    return check_layer_gradients(layer, in, batch, seed);
}
}  // namespace

TEST_CASE("Conv2D gradients: valid, same, stride 2, odd sizes, fused ReLU", "[gradcheck][conv2d]") {
    struct Case {
        Shape in;
        int filters, kh, kw, stride;
        Padding pad;
        Activation act;
        Eigen::Index batch;
    };
    const Case cases[] = {
        {Shape::image(1, 5, 5), 2, 2, 2, 1, Padding::valid, Activation::linear, 1},
        {Shape::image(3, 7, 6), 4, 3, 3, 1, Padding::valid, Activation::linear, 3},
        {Shape::image(2, 7, 7), 3, 3, 3, 2, Padding::valid, Activation::linear, 2},
        {Shape::image(2, 6, 5), 3, 3, 2, 1, Padding::same, Activation::linear, 2},
        {Shape::image(2, 7, 8), 2, 3, 3, 2, Padding::same, Activation::linear, 3},
        {Shape::image(3, 9, 7), 5, 5, 5, 2, Padding::same, Activation::relu, 2},
        {Shape::image(1, 28, 28), 4, 2, 2, 1, Padding::valid, Activation::relu, 2},
    };
    for (const auto& c : cases) {
        INFO("input " << c.in.str() << " filters " << c.filters << " kernel " << c.kh << "x"
                      << c.kw << " stride " << c.stride << " padding " << to_string(c.pad));
        auto r = check<Conv2D<double>>(c.in, c.batch, 7, c.filters, std::array<int, 2>{c.kh, c.kw},
                                       c.act, c.pad, c.stride);
        CHECK(r.checked_params == c.filters * (c.in.c() * c.kh * c.kw + 1));
    }
}

TEST_CASE("MaxPool2D gradients: 2x2, 3x3 stride 2 (overlapping), odd sizes", "[gradcheck][maxpool]") {
    check<MaxPool2D<double>>(Shape::image(3, 5, 7), 2, 11);
    check<MaxPool2D<double>>(Shape::image(2, 7, 7), 3, 12, std::array<int, 2>{3, 3},
                             std::array<int, 2>{2, 2});
    check<MaxPool2D<double>>(Shape::image(1, 6, 9), 2, 13, std::array<int, 2>{2, 3});
}

TEST_CASE("Dense gradients, linear and fused ReLU", "[gradcheck][dense]") {
    auto r = check<Dense<double>>(Shape::flat(7), 4, 21, 5);
    CHECK(r.checked_params == 7 * 5 + 5);
    check<Dense<double>>(Shape::flat(13), 3, 22, 6, Activation::relu);
    check<Dense<double>>(Shape::flat(1), 1, 23, 1);
}

TEST_CASE("ReLU, Flatten, Softmax gradients", "[gradcheck]") {
    check<ReLU<double>>(Shape::image(2, 3, 5), 3, 31);
    check<ReLU<double>>(Shape::flat(9), 2, 32);
    check<Flatten<double>>(Shape::image(3, 4, 5), 2, 33);
    check<Softmax<double>>(Shape::flat(6), 4, 34);
}

TEST_CASE("Dropout gradients in training mode (mask replayed) and identity in eval", "[gradcheck][dropout]") {
    Dropout<double> d(0.4);
    Rng saved;
    bool first = true;
    check_layer_gradients(d, Shape::image(2, 3, 3), 4, 41, /*training=*/true, [&] {
        if (first) {
            saved = d.rng();
            first = false;
        }
        d.rng() = saved;  // the same mask for every evaluation
    });
    Dropout<double> e(0.5);
    check_layer_gradients(e, Shape::flat(10), 3, 42, /*training=*/false);
}
