// BatchNorm, AvgPool2D, GlobalAvgPool2D, Tanh, Sigmoid, LeakyReLU and MaxPool2D's
// same padding: gradient checks on several shapes (odd sizes, stride 2, same padding,
// batch > 1), hand-computed values, BatchNorm's training/inference behaviour, and a
// model-file round trip with every one of them (BatchNorm's moving statistics included).
#include "gradient_check.hpp"
#include "temp_dir.hpp"

#include <cmath>
#include <limits>

using namespace kitnn;
using namespace kitnn_test;

namespace {

using K = std::array<int, 2>;
using T64 = kitnn::Tensor<double>;  // (both namespaces above name a Tensor)
using T32 = kitnn::Tensor<float>;

template <class L, class... A>
GradCheckResult check(const Shape& in, Eigen::Index batch, std::uint64_t seed, A&&... args) {
    L layer(std::forward<A>(args)...);
    return check_layer_gradients(layer, in, batch, seed);
}

// A (1, 1, H, W) tensor from rows of values.
T64 plane(std::initializer_list<std::initializer_list<double>> rows) {
    const Eigen::Index H = Eigen::Index(rows.size()), W = Eigen::Index(rows.begin()->size());
    T64 t(1, 1, H, W);
    Eigen::Index h = 0;
    for (auto& r : rows) {
        Eigen::Index w = 0;
        for (double v : r) t(0, 0, h, w++) = v;
        ++h;
    }
    return t;
}

// Gives a BatchNorm non-trivial gamma, beta (once, before the checker first runs
// forward: it perturbs them afterwards) and moving statistics (every time: the
// checker's training-mode forwards would otherwise move them).
struct BatchNormSetup {
    BatchNorm<double>& bn;
    std::uint64_t seed;
    bool first = true;
    void operator()() {
        Rng rng(seed);
        const Eigen::Index C = bn.gamma().value.size();
        for (Eigen::Index c = 0; c < C; ++c) {
            const double g = 0.5 + rng.uniform(), b = rng.normal();
            const double mm = rng.normal(), mv = 0.2 + 2 * rng.uniform();
            if (first) {
                bn.gamma().value.data()[c] = g;
                bn.beta().value.data()[c] = b;
            }
            bn.moving_mean().value.data()[c] = mm;
            bn.moving_variance().value.data()[c] = mv;
        }
        first = false;
    }
};

GradCheckResult check_batch_norm(const Shape& in, Eigen::Index batch, std::uint64_t seed,
                                 bool training) {
    BatchNorm<double> bn;
    BatchNormSetup setup{bn, seed};
    return check_layer_gradients(bn, in, batch, seed, training, std::ref(setup));
}

}  // namespace

// ---------------------------------------------------------------- gradient checks

TEST_CASE("BatchNorm gradients in training mode, image and flat input", "[gradcheck][batchnorm]") {
    struct Case {
        Shape in;
        Eigen::Index batch;
    };
    const Case cases[] = {
        {Shape::image(3, 4, 5), 2},  // after a conv: statistics over N*H*W = 40 values
        {Shape::image(2, 3, 3), 1},  // one image: statistics over its 9 pixels
        {Shape::image(1, 5, 1), 3},
        {Shape::flat(7), 4},  // after a dense: statistics over the batch
        {Shape::flat(3), 2},  // two samples: xhat = +-1 (nearly)
        {Shape::flat(5), 1},  // one sample: zero variance, y = beta, dx = 0 (no NaN)
    };
    std::uint64_t seed = 300;
    for (const auto& c : cases) {
        INFO("input " << c.in.str() << " batch " << c.batch);
        auto r = check_batch_norm(c.in, c.batch, seed++, /*training=*/true);
        CHECK(r.checked_params == 2 * c.in.c());
        CHECK(r.checked_inputs == c.batch * c.in.size());
    }
}

TEST_CASE("BatchNorm gradients in inference mode (moving statistics are constants)", "[gradcheck][batchnorm]") {
    check_batch_norm(Shape::image(3, 4, 5), 2, 310, /*training=*/false);
    check_batch_norm(Shape::flat(6), 3, 311, /*training=*/false);
    check_batch_norm(Shape::flat(4), 1, 312, /*training=*/false);
}

TEST_CASE("AvgPool2D gradients: valid, same, stride 2, overlapping, odd sizes", "[gradcheck][avgpool]") {
    const auto V = Padding::valid, S = Padding::same;
    check<AvgPool2D<double>>(Shape::image(3, 5, 7), 2, 320);  // 2x2, floor drops a row and column
    check<AvgPool2D<double>>(Shape::image(2, 7, 7), 3, 321, K{3, 3}, K{2, 2}, V);  // overlapping
    check<AvgPool2D<double>>(Shape::image(2, 5, 7), 2, 322, K{2, 2}, K{2, 2}, S);  // pad at the end
    check<AvgPool2D<double>>(Shape::image(2, 7, 8), 2, 323, K{3, 3}, K{2, 2}, S);  // pad 1/1 rows
    check<AvgPool2D<double>>(Shape::image(1, 4, 5), 3, 324, K{3, 2}, K{1, 1}, S);  // stride 1
    check<AvgPool2D<double>>(Shape::image(2, 3, 3), 2, 325, K{5, 5}, K{1, 1}, S);  // pool > input
}

TEST_CASE("MaxPool2D gradients with same padding", "[gradcheck][maxpool]") {
    const auto S = Padding::same;
    check<MaxPool2D<double>>(Shape::image(2, 5, 7), 2, 330, K{2, 2}, K{2, 2}, S);  // odd: partial windows
    check<MaxPool2D<double>>(Shape::image(2, 6, 4), 2, 331, K{2, 2}, K{2, 2}, S);  // even: fast path
    check<MaxPool2D<double>>(Shape::image(2, 7, 8), 3, 332, K{3, 3}, K{2, 2}, S);
    check<MaxPool2D<double>>(Shape::image(1, 4, 5), 2, 333, K{3, 3}, K{1, 1}, S);  // heavy overlap
}

TEST_CASE("GlobalAvgPool2D gradients", "[gradcheck][globalavgpool]") {
    auto r = check<GlobalAvgPool2D<double>>(Shape::image(3, 5, 7), 2, 340);
    CHECK(r.checked_inputs == 2 * 3 * 5 * 7);
    check<GlobalAvgPool2D<double>>(Shape::image(4, 1, 1), 3, 341);
    check<GlobalAvgPool2D<double>>(Shape::image(1, 2, 9), 1, 342);
}

TEST_CASE("Tanh, Sigmoid, LeakyReLU gradients", "[gradcheck][activation]") {
    check<Tanh<double>>(Shape::image(2, 3, 5), 3, 350);
    check<Tanh<double>>(Shape::flat(9), 2, 351);
    check<Sigmoid<double>>(Shape::image(2, 3, 5), 3, 352);
    check<Sigmoid<double>>(Shape::flat(9), 2, 353);
    check<LeakyReLU<double>>(Shape::image(2, 3, 5), 3, 354);  // alpha 0.3
    check<LeakyReLU<double>>(Shape::flat(9), 2, 355, 0.01);
    check<LeakyReLU<double>>(Shape::flat(6), 3, 356, 0.0);  // = ReLU
}

// ---------------------------------------------------------------- BatchNorm behaviour

TEST_CASE("BatchNorm in training mode normalises each channel and moves the moving statistics", "[batchnorm]") {
    const double momentum = 0.9, eps = 1e-3;
    BatchNorm<double> bn(momentum, eps);
    Rng rng(400);
    const Eigen::Index N = 5, C = 3, H = 4, W = 3, S = H * W, M = N * S;
    bn.build(Shape::image(C, H, W), rng);
    T64 x = random_tensor(N, Shape::image(C, H, W), rng);
    for (Eigen::Index n = 0; n < N; ++n)  // channel c: mean about 2c - 1, std about 1 + c
        for (Eigen::Index c = 0; c < C; ++c)
            for (Eigen::Index s = 0; s < S; ++s) {
                double& v = x.data()[(n * C + c) * S + s];
                v = v * double(1 + c) + double(2 * c - 1);
            }
    T64 y;
    bn.forward(x, y, true);
    double xm[C], xv[C];  // each channel's batch mean and biased variance
    for (Eigen::Index c = 0; c < C; ++c) {
        INFO("channel " << c);
        double ym = 0;
        xm[c] = 0;
        for (Eigen::Index n = 0; n < N; ++n)
            for (Eigen::Index s = 0; s < S; ++s) {
                xm[c] += x.data()[(n * C + c) * S + s];
                ym += y.data()[(n * C + c) * S + s];
            }
        xm[c] /= double(M);
        ym /= double(M);
        double yv = 0;
        xv[c] = 0;
        for (Eigen::Index n = 0; n < N; ++n)
            for (Eigen::Index s = 0; s < S; ++s) {
                xv[c] += std::pow(x.data()[(n * C + c) * S + s] - xm[c], 2);
                yv += std::pow(y.data()[(n * C + c) * S + s] - ym, 2);
            }
        xv[c] /= double(M);  // biased
        yv /= double(M);
        CHECK(std::abs(ym) < 1e-12);
        CHECK(yv == Approx(xv[c] / (xv[c] + eps)).epsilon(1e-12));  // ~1: gamma 1, beta 0
        CHECK(yv == Approx(1.0).epsilon(2e-3));
        // Keras's rule from the initial (0, 1): moving = m * moving + (1 - m) * batch.
        CHECK(bn.moving_mean().value.data()[c] == Approx(0.1 * xm[c]).epsilon(1e-12));
        CHECK(bn.moving_variance().value.data()[c] == Approx(0.9 + 0.1 * xv[c]).epsilon(1e-12));
    }
    // The same batch again and again: the moving statistics converge to the batch's.
    for (int k = 0; k < 400; ++k) bn.forward(x, y, true);
    for (Eigen::Index c = 0; c < C; ++c) {
        CHECK(bn.moving_mean().value.data()[c] == Approx(xm[c]).epsilon(1e-9));
        CHECK(bn.moving_variance().value.data()[c] == Approx(xv[c]).epsilon(1e-9));
    }
}

TEST_CASE("BatchNorm in inference mode uses the moving statistics, per sample", "[batchnorm]") {
    BatchNorm<double> bn;  // Keras defaults
    CHECK(bn.momentum() == 0.99);
    CHECK(bn.epsilon() == 1e-3);
    Rng rng(410);
    const Shape in = Shape::flat(4);
    bn.build(in, rng);
    const double mm[] = {1.0, -2.0, 0.5, 0.0}, mv[] = {4.0, 0.25, 1.0, 9.0};
    const double g[] = {1.5, 0.5, -1.0, 2.0}, b[] = {0.1, -0.2, 0.3, 0.0};
    for (int c = 0; c < 4; ++c) {
        bn.moving_mean().value.data()[c] = mm[c];
        bn.moving_variance().value.data()[c] = mv[c];
        bn.gamma().value.data()[c] = g[c];
        bn.beta().value.data()[c] = b[c];
    }
    const T64 x = random_tensor(6, in, rng, 3.0);
    T64 y;
    bn.forward(x, y, false);
    for (Eigen::Index n = 0; n < 6; ++n)
        for (int c = 0; c < 4; ++c)
            CHECK(y(n, c, 0, 0) ==
                  Approx(g[c] * (x(n, c, 0, 0) - mm[c]) / std::sqrt(mv[c] + 1e-3) + b[c])
                      .epsilon(1e-13)
                      .margin(1e-12));
    // Inference leaves the moving statistics alone.
    for (int c = 0; c < 4; ++c) {
        CHECK(bn.moving_mean().value.data()[c] == mm[c]);
        CHECK(bn.moving_variance().value.data()[c] == mv[c]);
    }
    // One sample alone gives exactly its row of the batch output...
    T64 x1(1, 4, 1, 1), y1;
    for (int c = 0; c < 4; ++c) x1(0, c, 0, 0) = x(2, c, 0, 0);
    bn.forward(x1, y1, false);
    for (int c = 0; c < 4; ++c) CHECK(y1(0, c, 0, 0) == y(2, c, 0, 0));
    // ...while in training mode the output depends on the rest of the batch.
    T64 yt;
    bn.forward(x, yt, true);
    CHECK(std::abs(yt(2, 0, 0, 0) - y(2, 0, 0, 0)) > 1e-6);
}

TEST_CASE("BatchNorm on a dense input with a batch of 1 in training mode gives no NaN", "[batchnorm]") {
    auto run = [](auto tag) {
            using T = decltype(tag);
            BatchNorm<T> bn;
            Rng rng(420);
            bn.build(Shape::flat(3), rng);
            bn.beta().value.setConstant(T(0.25));
            kitnn::Tensor<T> x(1, 3, 1, 1), y, dy(1, 3, 1, 1), dx;
            x.setValues({{{{1.5f}}, {{-7.0f}}, {{0.0f}}}});
            dy.setConstant(T(1));
            bn.forward(x, y, true);
            bn.backward(x, y, dy, &dx);
            for (int c = 0; c < 3; ++c) {
                CHECK(std::isfinite(double(y(0, c, 0, 0))));
                CHECK(y(0, c, 0, 0) == T(0.25));  // xhat = 0: y = beta
                CHECK(dx(0, c, 0, 0) == T(0));
                CHECK(std::isfinite(double(bn.gamma().grad.data()[c])));
                CHECK(bn.beta().grad.data()[c] == T(1));
                CHECK(std::isfinite(double(bn.moving_variance().value.data()[c])));
            }
    };
    run(float());
    run(double());
}

TEST_CASE("BatchNorm refuses bad hyperparameters", "[batchnorm]") {
    CHECK_THROWS_AS(BatchNorm<float>(1.5), std::invalid_argument);
    CHECK_THROWS_AS(BatchNorm<float>(-0.1), std::invalid_argument);
    CHECK_THROWS_AS(BatchNorm<float>(0.9, 0.0), std::invalid_argument);
    CHECK_THROWS_AS(BatchNorm<float>(0.9, std::nan("")), std::invalid_argument);
    BatchNorm<float> bn;
    CHECK(bn.params().size() == 2);
    CHECK(bn.state().size() == 2);
}

TEST_CASE("BatchNorm and AvgPool2D give the same results on 1 and 2 threads", "[batchnorm][avgpool][threads]") {
    // Big enough for parallel_for to split the channels (or planes) across threads;
    // each channel is still summed by one thread in one order, so results are identical.
    struct Restore {
        int n = max_threads();
        ~Restore() { set_threads(n); }
    } restore;
    const Shape in = Shape::image(8, 16, 16);
    auto run = [&](int threads, Layer<float>& layer, bool training) {
        set_threads(threads);
        Rng rng(700);
        layer.build(in, rng);
        T32 x(8, 8, 16, 16), y, dy, dx;
        for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float(rng.normal());
        layer.forward(x, y, training);
        dy.resize(y.dimensions());
        for (Eigen::Index i = 0; i < dy.size(); ++i) dy.data()[i] = float(rng.normal());
        layer.backward(x, y, dy, &dx);
        std::vector<float> all(y.data(), y.data() + y.size());
        all.insert(all.end(), dx.data(), dx.data() + dx.size());
        for (auto* p : layer.params()) all.insert(all.end(), p->grad.data(), p->grad.data() + p->grad.size());
        for (auto* p : layer.state()) all.insert(all.end(), p->value.data(), p->value.data() + p->value.size());
        return all;
    };
    for (bool training : {true, false}) {
        BatchNorm<float> a, b;
        CHECK(run(1, a, training) == run(2, b, training));
    }
    AvgPool2D<float> a(K{3, 3}, K{2, 2}, Padding::same), b(K{3, 3}, K{2, 2}, Padding::same);
    CHECK(run(1, a, true) == run(2, b, true));
}

// ---------------------------------------------------------------- pooling values

TEST_CASE("MaxPool2D same padding: TensorFlow's shape, padding never wins", "[maxpool]") {
    // All values negative: a zero-padded max would return 0 at the borders.
    T64 x(1, 1, 5, 7);
    for (Eigen::Index h = 0; h < 5; ++h)
        for (Eigen::Index w = 0; w < 7; ++w) x(0, 0, h, w) = -double(h * 7 + w + 1);
    Rng rng(500);
    MaxPool2D<double> pool(K{2, 2}, K{2, 2}, Padding::same);
    CHECK(pool.build(Shape::image(1, 5, 7), rng) == Shape::image(1, 3, 4));  // ceil(5/2), ceil(7/2)
    CHECK(pool.config().str("padding") == "same");
    T64 y;
    pool.forward(x, y, false);
    // Padding only after (total 1): window (oh, ow) starts at (2 oh, 2 ow), whose value
    // is the window's largest.
    for (Eigen::Index oh = 0; oh < 3; ++oh)
        for (Eigen::Index ow = 0; ow < 4; ++ow)
            CHECK(y(0, 0, oh, ow) == -double(2 * oh * 7 + 2 * ow + 1));
    CHECK(y(0, 0, 2, 3) == -35.0);  // the corner window holds one real pixel

    // 3x3 stride 1 on 3x3: one padded cell on every side.
    MaxPool2D<double> p3(K{3, 3}, K{1, 1}, Padding::same);
    CHECK(p3.build(Shape::image(1, 3, 3), rng) == Shape::image(1, 3, 3));
    const T64 x3 = plane({{-5, -9, -1}, {-8, -7, -6}, {-2, -4, -3}});
    T64 y3;
    p3.forward(x3, y3, false);
    const T64 want = plane({{-5, -1, -1}, {-2, -1, -1}, {-2, -2, -3}});
    for (Eigen::Index i = 0; i < 9; ++i) CHECK(y3.data()[i] == want.data()[i]);
    // Backward routes every dy to its window's winner.
    T64 dy3(1, 1, 3, 3), dx3;
    dy3.setConstant(1.0);
    p3.backward(x3, y3, dy3, &dx3);
    const T64 dwant = plane({{1, 0, 4}, {0, 0, 0}, {3, 0, 1}});
    for (Eigen::Index i = 0; i < 9; ++i) CHECK(dx3.data()[i] == dwant.data()[i]);
}

TEST_CASE("MaxPool2D same 2x2/2 on even sizes equals valid, and old constructors still work", "[maxpool]") {
    Rng rng(510);
    MaxPool2D<double> same(K{2, 2}, K{2, 2}, Padding::same), valid;
    CHECK(same.build(Shape::image(2, 6, 8), rng) == valid.build(Shape::image(2, 6, 8), rng));
    CHECK(valid.config().str("padding") == "valid");
    const T64 x = random_tensor(3, Shape::image(2, 6, 8), rng);
    T64 a, b;
    same.forward(x, a, false);
    valid.forward(x, b, false);
    for (Eigen::Index i = 0; i < a.size(); ++i) CHECK(a.data()[i] == b.data()[i]);
    // Valid padding still refuses a pool larger than its input; same allows it.
    MaxPool2D<double> big(K{4, 4});
    CHECK_THROWS_AS(big.build(Shape::image(1, 3, 5), rng), ShapeError);
    MaxPool2D<double> big_same(K{4, 4}, K{0, 0}, Padding::same);
    CHECK(big_same.build(Shape::image(1, 3, 5), rng) == Shape::image(1, 1, 2));
}

TEST_CASE("AvgPool2D same padding divides by the number of real pixels", "[avgpool]") {
    Rng rng(520);
    const T64 x = plane({{1, 2, 3}, {4, 5, 6}, {7, 8, 9}});
    // 2x2 stride 2 on 3x3: out 2x2, the one padded row/column at the end.
    AvgPool2D<double> p2(K{2, 2}, K{2, 2}, Padding::same);
    CHECK(p2.build(Shape::image(1, 3, 3), rng) == Shape::image(1, 2, 2));
    T64 y;
    p2.forward(x, y, false);
    CHECK(y(0, 0, 0, 0) == Approx((1 + 2 + 4 + 5) / 4.0));
    CHECK(y(0, 0, 0, 1) == Approx((3 + 6) / 2.0));  // 4.5, not 9/4 (padding not counted)
    CHECK(y(0, 0, 1, 0) == Approx((7 + 8) / 2.0));
    CHECK(y(0, 0, 1, 1) == Approx(9.0));  // one real pixel: 9, not 9/4
    // Backward: each real pixel gets dy / count of its window.
    T64 dy(1, 1, 2, 2), dx;
    dy.setValues({{{{4.0, 2.0}, {2.0, 1.0}}}});
    p2.backward(x, y, dy, &dx);
    for (Eigen::Index i = 0; i < 9; ++i) CHECK(dx.data()[i] == Approx(1.0));

    // 3x3 stride 1 on 3x3: padding on every side.
    AvgPool2D<double> p3(K{3, 3}, K{1, 1}, Padding::same);
    CHECK(p3.build(Shape::image(1, 3, 3), rng) == Shape::image(1, 3, 3));
    p3.forward(x, y, false);
    CHECK(y(0, 0, 0, 0) == Approx((1 + 2 + 4 + 5) / 4.0));
    CHECK(y(0, 0, 0, 1) == Approx((1 + 2 + 3 + 4 + 5 + 6) / 6.0));
    CHECK(y(0, 0, 1, 1) == Approx(5.0));
    CHECK(y(0, 0, 2, 2) == Approx((5 + 6 + 8 + 9) / 4.0));

    // Valid: floor, like Keras.
    AvgPool2D<double> v;
    CHECK(v.build(Shape::image(2, 5, 7), rng) == Shape::image(2, 2, 3));
    CHECK(v.config().str("padding") == "valid");
    AvgPool2D<double> big(K{4, 4});
    CHECK_THROWS_AS(big.build(Shape::image(1, 3, 5), rng), ShapeError);
    CHECK_THROWS_AS(AvgPool2D<double>(K{0, 2}), std::invalid_argument);
}

// The direct definition, window by window, summing rows then columns in the layer's order.
TEST_CASE("AvgPool2D equals the per-window sums, stride-1 interior path included", "[avgpool]") {
    struct Geo { Shape in; K pool, stride; Padding pad; };
    const std::vector<Geo> geos = {
        {Shape::image(2, 35, 35), K{3, 3}, K{1, 1}, Padding::same},   // Inception-v4's blocks
        {Shape::image(1, 9, 17), K{3, 5}, K{1, 1}, Padding::same},    // wider than tall
        {Shape::image(1, 6, 11), K{2, 4}, K{1, 1}, Padding::valid},   // every window interior
        {Shape::image(1, 4, 5), K{3, 2}, K{1, 1}, Padding::same},     // pad only after
        {Shape::image(1, 3, 3), K{5, 5}, K{1, 1}, Padding::same},     // no interior window
        {Shape::image(2, 8, 9), K{3, 3}, K{2, 2}, Padding::same},     // stride 2: the loop alone
    };
    Rng rng(540);
    for (const Geo& g : geos) {
        AvgPool2D<float> pool(g.pool, g.stride, g.pad);
        const Shape out = pool.build(g.in, rng);
        const Eigen::Index N = 2, C = g.in.c(), H = g.in.h(), W = g.in.w(), OH = out.h(), OW = out.w();
        const PoolAxis rows = pool_axis(H, g.pool[0], g.stride[0], g.pad);
        const PoolAxis cols = pool_axis(W, g.pool[1], g.stride[1], g.pad);
        T32 x(N, C, H, W), dy(N, C, OH, OW), y, dx;
        for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float(rng.uniform(-1, 1));
        for (Eigen::Index i = 0; i < dy.size(); ++i) dy.data()[i] = float(rng.uniform(-1, 1));
        pool.forward(x, y, false);
        pool.backward(x, y, dy, &dx);
        T32 dx_ref(N, C, H, W);
        dx_ref.setZero();
        int y_bad = 0, dx_bad = 0;
        for (Eigen::Index n = 0; n < N; ++n)
            for (Eigen::Index c = 0; c < C; ++c)
                for (Eigen::Index oh = 0; oh < OH; ++oh)
                    for (Eigen::Index ow = 0; ow < OW; ++ow) {
                        const auto h0 = rows.begin[size_t(oh)], h1 = rows.end[size_t(oh)];
                        const auto w0 = cols.begin[size_t(ow)], w1 = cols.end[size_t(ow)];
                        float sum = 0;
                        for (auto i = h0; i < h1; ++i) {
                            float r = 0;
                            for (auto j = w0; j < w1; ++j) r += x(n, c, i, j);
                            sum = i == h0 ? r : sum + r;
                        }
                        const float count = float((h1 - h0) * (w1 - w0));
                        y_bad += y(n, c, oh, ow) != sum / count;
                        for (auto i = h0; i < h1; ++i)
                            for (auto j = w0; j < w1; ++j) dx_ref(n, c, i, j) += dy(n, c, oh, ow) / count;
                    }
        for (Eigen::Index i = 0; i < dx.size(); ++i)
            dx_bad += std::abs(dx.data()[i] - dx_ref.data()[i]) > 1e-6f * (1 + std::abs(dx_ref.data()[i]));
        INFO("input " << g.in.str() << ", pool " << g.pool[0] << "x" << g.pool[1] << ", stride " << g.stride[0]);
        CHECK(y.dimension(2) == OH);
        CHECK(y_bad == 0);   // same order of additions: equal, not just close
        CHECK(dx_bad == 0);  // the reference adds in another order: close
    }
}

TEST_CASE("GlobalAvgPool2D averages each plane into a flat feature", "[globalavgpool]") {
    Rng rng(530);
    GlobalAvgPool2D<double> gap;
    CHECK(gap.build(Shape::image(2, 2, 3), rng) == Shape::flat(2));
    T64 x(1, 2, 2, 3);
    for (Eigen::Index i = 0; i < 12; ++i) x.data()[i] = double(i);
    T64 y;
    gap.forward(x, y, false);
    CHECK(y(0, 0, 0, 0) == Approx(2.5));  // mean of 0..5
    CHECK(y(0, 1, 0, 0) == Approx(8.5));  // mean of 6..11
    GlobalAvgPool2D<double> flat;
    CHECK_THROWS_AS(flat.build(Shape::flat(5), rng), ShapeError);
}

// ---------------------------------------------------------------- activations

TEST_CASE("Sigmoid is finite at +-1000, Tanh saturates, LeakyReLU's slope", "[activation]") {
    Rng rng(540);
    T64 x(1, 4, 1, 1), y, dy(1, 4, 1, 1), dx;
    x.setValues({{{{1000.0}}, {{-1000.0}}, {{0.0}}, {{-30.0}}}});
    dy.setConstant(1.0);
    Sigmoid<double> s;
    s.build(Shape::flat(4), rng);
    s.forward(x, y, false);
    CHECK(y(0, 0, 0, 0) == 1.0);
    CHECK(y(0, 1, 0, 0) == 0.0);
    CHECK(y(0, 2, 0, 0) == 0.5);
    CHECK(y(0, 3, 0, 0) == Approx(std::exp(-30.0) / (1 + std::exp(-30.0))).epsilon(1e-14));
    s.backward(x, y, dy, &dx);
    for (int c = 0; c < 4; ++c) CHECK(std::isfinite(dx(0, c, 0, 0)));
    CHECK(dx(0, 2, 0, 0) == 0.25);

    Sigmoid<float> sf;  // float overflows exp at 89: still finite
    sf.build(Shape::flat(2), rng);
    T32 xf(1, 2, 1, 1), yf;
    xf.setValues({{{{1000.0f}}, {{-1000.0f}}}});
    sf.forward(xf, yf, false);
    CHECK(yf(0, 0, 0, 0) == 1.0f);
    CHECK(yf(0, 1, 0, 0) == 0.0f);

    Tanh<double> t;
    t.build(Shape::flat(4), rng);
    t.forward(x, y, false);
    CHECK(y(0, 0, 0, 0) == 1.0);
    CHECK(y(0, 1, 0, 0) == -1.0);
    CHECK(y(0, 2, 0, 0) == 0.0);

    LeakyReLU<double> l;  // Keras default alpha 0.3
    CHECK(l.alpha() == 0.3);
    CHECK(l.config().real("alpha") == 0.3);
    l.build(Shape::flat(4), rng);
    x.setValues({{{{2.0}}, {{-2.0}}, {{0.0}}, {{-10.0}}}});
    l.forward(x, y, false);
    CHECK(y(0, 0, 0, 0) == 2.0);
    CHECK(y(0, 1, 0, 0) == Approx(-0.6));
    CHECK(y(0, 3, 0, 0) == Approx(-3.0));
    l.backward(x, y, dy, &dx);
    CHECK(dx(0, 0, 0, 0) == 1.0);
    CHECK(dx(0, 1, 0, 0) == Approx(0.3));
    CHECK_THROWS_AS(LeakyReLU<double>(-0.1), std::invalid_argument);
}

// ---------------------------------------------------------------- model file

namespace {

// Every layer of this file in one model, with non-default hyperparameters.
Sequential<float> every_new_layer_model(std::uint64_t seed) {
    Sequential<float> m(Shape::image(3, 9, 8), seed);
    m.add<Conv2D>(4, K{3, 3}, Activation::linear, Padding::same);  // (4, 9, 8)
    m.add<BatchNorm>(0.9, 1e-4);
    m.add<LeakyReLU>(0.1);
    m.add<MaxPool2D>(K{3, 3}, K{2, 2}, Padding::same);  // (4, 5, 4)
    m.add<AvgPool2D>(K{2, 2}, K{0, 0}, Padding::same);  // (4, 3, 2)
    m.add<Tanh>();
    m.add<BatchNorm>();
    m.add<AvgPool2D>(K{2, 1}, K{1, 1});  // valid: (4, 2, 2)
    m.add<GlobalAvgPool2D>();            // (4)
    m.add<Dense>(6);
    m.add<BatchNorm>(0.5);  // on flat features
    m.add<Sigmoid>();
    m.add<Dense>(3);
    return m;
}

T32 fixed_input(Eigen::Index n) {
    T32 x(n, 3, 9, 8);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float((i * 37 % 101) / 25.0 - 2.0);
    return x;
}

}  // namespace

TEST_CASE("model file round trip with every new layer, BatchNorm statistics included", "[modelfile][batchnorm]") {
    auto m = every_new_layer_model(7);
    const auto x = fixed_input(5);
    // A few training-mode passes move the moving statistics away from (0, 1), and
    // gamma and beta are set away from (1, 0), so that the file has to carry them.
    for (int k = 0; k < 3; ++k) m.forward(x, true);
    for (size_t i = 0; i < m.size(); ++i)
        if (m.layer(i).type() == "BatchNorm") {
            auto ps = m.layer(i).params();
            for (Eigen::Index c = 0; c < ps[0]->value.size(); ++c) {
                ps[0]->value.data()[c] = 1.0f + 0.1f * float(c);
                ps[1]->value.data()[c] = -0.05f * float(c);
            }
            const auto st = m.layer(i).state();
            REQUIRE(st.size() == 2);
            CHECK(st[0]->name == "moving_mean");
            CHECK(st[1]->name == "moving_variance");
            float largest = 0;  // the moving mean has moved
            for (Eigen::Index c = 0; c < st[0]->value.size(); ++c)
                largest = std::max(largest, std::abs(st[0]->value.data()[c]));
            CHECK(largest > 0.0f);
        }
    const T32 before = m.predict(x);

    TempDir dir("kitnn_layers_more");
    const std::string path = dir / "every_new_layer.kitnn";
    save_model(path, m);
    auto l = load_model<float>(path);
    REQUIRE(l.size() == m.size());
    for (size_t i = 0; i < m.size(); ++i) {
        INFO("layer " << i << " " << m.layer(i).type());
        CHECK(l.layer(i).type() == m.layer(i).type());
        CHECK(l.layer(i).config().items() == m.layer(i).config().items());
        CHECK(l.layer(i).output_shape() == m.layer(i).output_shape());
        auto a = m.layer(i).state(), b = l.layer(i).state();
        REQUIRE(a.size() == b.size());
        for (size_t k = 0; k < a.size(); ++k)
            for (Eigen::Index j = 0; j < a[k]->value.size(); ++j)
                CHECK(b[k]->value.data()[j] == a[k]->value.data()[j]);
    }
    const T32 after = l.predict(x);
    REQUIRE(after.size() == before.size());
    for (Eigen::Index i = 0; i < before.size(); ++i) CHECK(after.data()[i] == before.data()[i]);
    CHECK(serialize_model(l) == serialize_model(m));
}

TEST_CASE("a MaxPool2D written without a padding key (older files) loads as valid", "[modelfile][maxpool]") {
    // A consistent version-1 file, as kitnn wrote it before pools had padding.
    detail::ByteWriter w;
    w.bytes(kModelMagic, 8);
    w.u32(1);  // format version 1 (its layout, whatever the current version is)
    w.u32(4);
    w.u32(0);  // no metadata
    w.u32(3);
    w.i64(2);
    w.i64(5);
    w.i64(7);  // input (2, 5, 7)
    w.u32(1);  // one layer
    w.str("MaxPool2D");
    w.u32(4);
    for (const char* k : {"pool_h", "pool_w", "stride_h", "stride_w"}) {
        w.str(k);
        w.str("2");
    }
    w.u32(0);  // no tensors
    const auto crc = detail::crc32_of(w.buffer().data(), w.buffer().size());
    w.u32(crc);
    TempDir dir("kitnn_layers_more");
    const std::string path = dir / "old_maxpool.kitnn";
    write_file_atomic(path, w.buffer());
    auto m = load_model<float>(path);
    REQUIRE(m.size() == 1);
    CHECK(m.layer(0).config().str("padding") == "valid");
    CHECK(m.output_shape() == Shape::image(2, 2, 3));  // floor, not ceil
}

TEST_CASE("AvgPool2D forward equals the window average over the real pixels", "[avgpool]") {
    // The layer sums rows, then columns (separable); the reference walks each window.
    const auto V = Padding::valid, S = Padding::same;
    struct Case {
        Shape in;
        K pool, stride;
        Padding pad;
    };
    const Case cases[] = {
        {Shape::image(3, 7, 9), K{3, 3}, K{1, 1}, S},      // Inception's pool branch
        {Shape::image(2, 8, 6), K{2, 2}, K{2, 2}, V},
        {Shape::image(2, 9, 7), K{3, 2}, K{2, 3}, S},      // uneven pool and stride
        {Shape::image(1, 3, 4), K{5, 5}, K{1, 1}, S},      // pool larger than the input
        {Shape::image(4, 35, 35), K{3, 3}, K{1, 1}, S},    // Inception-A's size, threaded
    };
    Rng rng(77);
    for (const auto& c : cases) {
        INFO("input " << c.in.str() << " pool " << c.pool[0] << "x" << c.pool[1] << " stride " << c.stride[0] << "x"
                      << c.stride[1]);
        AvgPool2D<double> pool(c.pool, c.stride, c.pad);
        const Shape out = pool.build(c.in, rng);
        const Eigen::Index N = 2, H = c.in.h(), W = c.in.w(), OH = out.h(), OW = out.w();
        T64 x(N, c.in.c(), H, W), y;
        for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = rng.normal();
        pool.forward(x, y, false);
        // TensorFlow's split of `same` padding: the odd pixel at the bottom/right.
        const auto before = [&](Eigen::Index in, Eigen::Index o, int k, int s) {
            return c.pad == S ? std::max<Eigen::Index>((o - 1) * s + k - in, 0) / 2 : Eigen::Index(0);
        };
        const Eigen::Index pt = before(H, OH, c.pool[0], c.stride[0]), pl = before(W, OW, c.pool[1], c.stride[1]);
        for (Eigen::Index n = 0; n < N; ++n)
            for (Eigen::Index ch = 0; ch < c.in.c(); ++ch)
                for (Eigen::Index oh = 0; oh < OH; ++oh)
                    for (Eigen::Index ow = 0; ow < OW; ++ow) {
                        double sum = 0;
                        int count = 0;
                        for (int i = 0; i < c.pool[0]; ++i)
                            for (int j = 0; j < c.pool[1]; ++j) {
                                const Eigen::Index ih = oh * c.stride[0] + i - pt, iw = ow * c.stride[1] + j - pl;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                sum += x(n, ch, ih, iw);
                                ++count;
                            }
                        REQUIRE(count > 0);
                        REQUIRE(y(n, ch, oh, ow) == Approx(sum / count).epsilon(1e-12).margin(1e-12));
                    }
    }
}
