// SoftmaxCrossEntropy (values by hand, extreme logits, gradient by formula and by
// central differences, bad labels), Adam and SGD (one and two steps against values
// worked out by hand from the formulas in optim/adam.hpp and optim/sgd.hpp), and a
// tiny network that must actually learn two Gaussian blobs with either optimizer.
#include "gradient_check.hpp"

#include <cmath>
#include <initializer_list>
#include <stdexcept>
#include <vector>

using namespace kitnn;
using kitnn_test::grad_err;

namespace {

template <class T>
Tensor<T> matrix(std::initializer_list<std::initializer_list<double>> rows) {
    const Eigen::Index n = Eigen::Index(rows.size()), k = Eigen::Index(rows.begin()->size());
    Tensor<T> t(n, k, 1, 1);
    Eigen::Index r = 0;
    for (auto& row : rows) {
        REQUIRE(Eigen::Index(row.size()) == k);
        Eigen::Index c = 0;
        for (double v : row) t(r, c++, 0, 0) = T(v);
        ++r;
    }
    return t;
}

Param<double> param(std::initializer_list<double> values) {
    Param<double> p;
    p.name = "w";
    p.resize(Eigen::Index(values.size()), 1, 1, 1);
    Eigen::Index i = 0;
    for (double v : values) p.value.data()[i++] = v;
    return p;
}

void set_grad(Param<double>& p, std::initializer_list<double> g) {
    REQUIRE(Eigen::Index(g.size()) == p.grad.size());
    Eigen::Index i = 0;
    for (double v : g) p.grad.data()[i++] = v;
}

void require_values(const Param<double>& p, std::initializer_list<double> expected,
                    double rtol = 1e-12) {
    REQUIRE(Eigen::Index(expected.size()) == p.value.size());
    Eigen::Index i = 0;
    for (double e : expected) {
        INFO("element " << i);
        CHECK(p.value.data()[i] == Approx(e).epsilon(rtol).margin(1e-15));
        ++i;
    }
}

}  // namespace

// ---------------------------------------------------------------------------
// SoftmaxCrossEntropy

TEST_CASE("SoftmaxCrossEntropy: loss, probabilities and accuracy by hand", "[loss]") {
    SoftmaxCrossEntropy<double> ce;
    const auto z = matrix<double>({{1, 2, 3}, {-1, 3, 0.25}, {0.5, -1.5, 2.0}});
    const std::uint8_t labels[] = {2, 1, 1};
    // loss_n = log(sum_k exp z_nk) - z_n[y_n]:
    //   log(e^1 + e^2 + e^3) - 3 = log(1 + e^-1 + e^-2)  = 0.40760596444438
    //   log(e^-1 + e^3 + e^0.25) - 3                     = 0.07903620140410
    //   log(e^0.5 + e^-1.5 + e^2) + 1.5                  = 3.72580204923160
    const double loss = ce.forward(z, labels);
    CHECK(loss == Approx((0.40760596444438058 + 0.079036201404099504 + 3.7258020492315995) / 3)
                      .epsilon(1e-13));
    CHECK(loss == Approx(1.4041480716933599).epsilon(1e-13));
    CHECK(std::log(1 + std::exp(-1.0) + std::exp(-2.0)) == Approx(0.40760596444438058));

    const double p_expected[3][3] = {
        {0.090030573170380462, 0.24472847105479767, 0.6652409557748219},
        {0.016923768899622819, 0.92400647350786702, 0.059069757592510236},
        {0.17803020550615906, 0.024093768286848397, 0.79787602620699261}};
    const auto& p = ce.probabilities();
    REQUIRE(p.dimension(0) == 3);
    REQUIRE(p.dimension(1) == 3);
    for (int n = 0; n < 3; ++n)
        for (int k = 0; k < 3; ++k) CHECK(p(n, k, 0, 0) == Approx(p_expected[n][k]).epsilon(1e-13));
    // Samples 0 and 1 have their label as the arg-max, sample 2 (arg-max 2, label 1) not.
    CHECK(ce.correct() == 2);

    // A single sample whose logits are all equal: loss log K, p uniform.
    const auto u = matrix<double>({{0.7, 0.7, 0.7, 0.7}});
    const std::uint8_t l3[] = {3};
    CHECK(ce.forward(u, l3) == Approx(std::log(4.0)).epsilon(1e-14));
    for (int k = 0; k < 4; ++k) CHECK(ce.probabilities()(0, k, 0, 0) == Approx(0.25));
}

TEMPLATE_TEST_CASE("SoftmaxCrossEntropy: logits of +-1000 give a finite loss and gradient",
                   "[loss]", float, double) {
    SoftmaxCrossEntropy<TestType> ce;
    const auto z = matrix<TestType>({{1000, -1000, 0}, {-1000, 1000, 1000}, {1000, -1000, -1000}});
    const std::uint8_t labels[] = {1, 2, 0};
    // Sample 0: logsumexp = 1000 (+ log(1 + e^-1000 + e^-2000) = 0) -> loss 2000.
    // Sample 1: logsumexp = 1000 + log 2, label's logit 1000 -> loss log 2.
    // Sample 2: the label holds all the mass -> loss 0.
    const double loss = ce.forward(z, labels);
    REQUIRE(std::isfinite(loss));
    CHECK(loss == Approx((2000 + std::log(2.0) + 0) / 3).epsilon(1e-6));

    Tensor<TestType> d;
    ce.backward(d);
    REQUIRE(d.dimension(0) == 3);
    REQUIRE(d.dimension(1) == 3);
    // (p - onehot) / N with p0 = (1, 0, 0), p1 = (0, 1/2, 1/2), p2 = (1, 0, 0).
    const double expected[3][3] = {{1.0 / 3, -1.0 / 3, 0}, {0, 1.0 / 6, -1.0 / 6}, {0, 0, 0}};
    for (int n = 0; n < 3; ++n)
        for (int k = 0; k < 3; ++k) {
            INFO("n " << n << " k " << k);
            REQUIRE(std::isfinite(double(d(n, k, 0, 0))));
            CHECK(double(d(n, k, 0, 0)) == Approx(expected[n][k]).margin(1e-6));
        }
}

TEST_CASE("SoftmaxCrossEntropy: gradient is (p - onehot)/N and matches central differences",
          "[loss][gradcheck]") {
    const Eigen::Index N = 5, K = 7;
    Rng rng(4);
    Tensor<double> z = kitnn_test::random_tensor(N, Shape::flat(K), rng, 3.0);
    std::vector<std::uint8_t> labels(N);
    for (auto& l : labels) l = std::uint8_t(rng.below(K));

    SoftmaxCrossEntropy<double> ce;
    ce.forward(z, labels.data());
    Tensor<double> d(N, K, 1, 1);
    d.setConstant(std::numeric_limits<double>::quiet_NaN());  // must be overwritten
    ce.backward(d);

    for (Eigen::Index n = 0; n < N; ++n) {
        double s = 0;
        for (Eigen::Index k = 0; k < K; ++k) s += std::exp(z(n, k, 0, 0));
        for (Eigen::Index k = 0; k < K; ++k) {
            INFO("n " << n << " k " << k);
            const double p = std::exp(z(n, k, 0, 0)) / s;
            const double expected = (p - (k == labels[size_t(n)] ? 1.0 : 0.0)) / double(N);
            CHECK(d(n, k, 0, 0) == Approx(expected).epsilon(1e-12).margin(1e-15));

            // Central difference of the mean loss.
            const double e = 1e-5, old = z(n, k, 0, 0);
            SoftmaxCrossEntropy<double> probe;
            z(n, k, 0, 0) = old + e;
            const double lp = probe.forward(z, labels.data());
            z(n, k, 0, 0) = old - e;
            const double lm = probe.forward(z, labels.data());
            z(n, k, 0, 0) = old;
            const double num = (lp - lm) / (2 * e);
            INFO("analytic " << d(n, k, 0, 0) << " numeric " << num);
            CHECK(grad_err(d(n, k, 0, 0), num) < 1.0);
        }
        // Each row of the gradient sums to zero.
        double row = 0;
        for (Eigen::Index k = 0; k < K; ++k) row += d(n, k, 0, 0);
        CHECK(std::abs(row) < 1e-15);
    }
}

TEST_CASE("SoftmaxCrossEntropy: a label out of range throws", "[loss]") {
    SoftmaxCrossEntropy<float> ce;
    const auto z = matrix<float>({{0, 1, 2}, {1, 1, 1}});
    const std::uint8_t ok[] = {2, 0};
    const std::uint8_t at_k[] = {0, 3};
    const std::uint8_t big[] = {255, 0};
    CHECK_NOTHROW(ce.forward(z, ok));
    CHECK_THROWS_AS(ce.forward(z, at_k), std::out_of_range);
    CHECK_THROWS_AS(ce.forward(z, big), std::out_of_range);
    CHECK_THROWS_WITH(ce.forward(z, at_k), Catch::Contains("sample 1"));
}

// ---------------------------------------------------------------------------
// Adam: w = (1, -2, 0.5, 3), g1 = (0.5, -0.25, 0, 2), g2 = (-0.5, 0.1, 0.3, 2),
// lr 0.1, b1 0.9, b2 0.999, eps 1e-7.
// Step 1: m = 0.1 g, v = 0.001 g^2, lr_1 = 0.1 sqrt(0.001) / 0.1, so
//   w -= 0.1 * sign(g) * sqrt(0.001)|g| / (sqrt(0.001)|g| + eps)  ~= w - 0.1 sign(g)
// (g = 0 leaves the weight alone). Step 2 uses m = 0.9 m + 0.1 g2,
// v = 0.999 v + 0.001 g2^2, lr_2 = 0.1 sqrt(1 - 0.999^2) / (1 - 0.9^2).

TEST_CASE("Adam: one and two steps against hand-computed values", "[optim][adam]") {
    AdamOptions o;
    CHECK(o.lr == 1e-3);  // Keras's defaults
    CHECK(o.beta1 == 0.9);
    CHECK(o.beta2 == 0.999);
    CHECK(o.epsilon == 1e-7);
    CHECK(o.weight_decay == 0.0);
    o.lr = 0.1;

    SECTION("no weight decay, two parameter tensors with separate moments") {
        Adam<double> adam(o);
        auto w = param({1.0, -2.0, 0.5, 3.0});
        auto s = param({5.0});
        std::vector<Param<double>*> ps{&w, &s};
        set_grad(w, {0.5, -0.25, 0.0, 2.0});
        set_grad(s, {1.0});
        adam.step(ps);
        CHECK(adam.iterations() == 1);
        // e.g. 3 - 0.1 * 0.0632456/(0.0632456 + 1e-7) = 2.90000015811
        require_values(w, {0.90000063245153206, -1.9000012648950642, 0.5, 2.9000001581136332});
        require_values(s, {4.900000316226766});
        set_grad(w, {-0.5, 0.1, 0.3, 2.0});
        set_grad(s, {-1.0});
        adam.step(ps);
        CHECK(adam.iterations() == 2);
        require_values(w, {0.90526376680292997, -1.8654410861675852, 0.42558710202411809,
                           2.8000002699448689});
        require_values(s, {4.905263462349807});
        // The parameter list may not change between steps.
        std::vector<Param<double>*> fewer{&w};
        CHECK_THROWS_AS(adam.step(fewer), std::logic_error);
    }
    SECTION("weight decay 0.01: g = grad + 0.01 w") {
        o.weight_decay = 0.01;
        Adam<double> adam(o);
        auto w = param({1.0, -2.0, 0.5, 3.0});
        std::vector<Param<double>*> ps{&w};
        set_grad(w, {0.5, -0.25, 0.0, 2.0});
        adam.step(ps);
        // The zero gradient now moves the weight: g = 0.005 -> 0.5 - ~0.1.
        require_values(w, {0.90000062005059855, -1.9000011712002309, 0.40006320557848563,
                           2.9000001557769819});
        set_grad(w, {-0.5, 0.1, 0.3, 2.0});
        adam.step(ps);
        require_values(w, {0.90336508630261791, -1.8572167886291999, 0.32455899419984896,
                           2.8000015533534155});
    }
    SECTION("invalid options throw") {
        AdamOptions bad = o;
        bad.lr = 0;
        CHECK_THROWS_AS(Adam<double>(bad), std::invalid_argument);
        bad = o;
        bad.beta1 = 1.0;
        CHECK_THROWS_AS(Adam<double>(bad), std::invalid_argument);
        bad = o;
        bad.epsilon = 0;
        CHECK_THROWS_AS(Adam<double>(bad), std::invalid_argument);
    }
}

// ---------------------------------------------------------------------------
// SGD, same w, g1, g2, lr 0.1. Worked by hand for the first weight (w 1, g 0.5, -0.5):
//   plain:     1 - 0.05 = 0.95;  0.95 + 0.05 = 1.0
//   momentum:  v = -0.05, w = 0.95;  v = 0.9(-0.05) + 0.05 = 0.005, w = 0.955
//   Nesterov:  w = 1 + 0.9(-0.05) - 0.05 = 0.905;  w = 0.905 + 0.9(0.005) + 0.05 = 0.9595
//   decay 0.1: g = 0.5 + 0.1 = 0.6 -> 0.94;  g = -0.5 + 0.094 = -0.406 -> 0.9806 (plain)
//              or v = -0.054 + 0.0406 = -0.0134 -> 0.9266 (momentum 0.9)

namespace {
void sgd_two_steps(SGDOptions o, std::initializer_list<double> after1,
                   std::initializer_list<double> after2) {
    SGD<double> sgd(o);
    auto w = param({1.0, -2.0, 0.5, 3.0});
    std::vector<Param<double>*> ps{&w};
    set_grad(w, {0.5, -0.25, 0.0, 2.0});
    sgd.step(ps);
    require_values(w, after1, 1e-14);
    set_grad(w, {-0.5, 0.1, 0.3, 2.0});
    sgd.step(ps);
    require_values(w, after2, 1e-14);
    CHECK(sgd.iterations() == 2);
    // The gradients are only read.
    CHECK(w.grad(3, 0, 0, 0) == 2.0);
}
}  // namespace

TEST_CASE("SGD: plain, momentum, Nesterov, weight decay against hand values", "[optim][sgd]") {
    SGDOptions o;
    CHECK(o.lr == 0.01);
    CHECK(o.momentum == 0.0);
    CHECK_FALSE(o.nesterov);
    o.lr = 0.1;
    SECTION("plain") { sgd_two_steps(o, {0.95, -1.975, 0.5, 2.8}, {1.0, -1.985, 0.47, 2.6}); }
    SECTION("momentum 0.9") {
        o.momentum = 0.9;
        sgd_two_steps(o, {0.95, -1.975, 0.5, 2.8}, {0.955, -1.9625, 0.47, 2.42});
    }
    SECTION("Nesterov 0.9") {
        o.momentum = 0.9;
        o.nesterov = true;
        sgd_two_steps(o, {0.905, -1.9525, 0.5, 2.62}, {0.9595, -1.95125, 0.443, 2.078});
    }
    SECTION("weight decay 0.1, no momentum") {
        o.weight_decay = 0.1;
        sgd_two_steps(o, {0.94, -1.955, 0.495, 2.77}, {0.9806, -1.94545, 0.46005, 2.5423});
    }
    SECTION("weight decay 0.1, momentum 0.9") {
        o.weight_decay = 0.1;
        o.momentum = 0.9;
        sgd_two_steps(o, {0.94, -1.955, 0.495, 2.77}, {0.9266, -1.90495, 0.45555, 2.3353});
    }
    SECTION("weight decay 0.1, Nesterov 0.9") {
        o.weight_decay = 0.1;
        o.momentum = 0.9;
        o.nesterov = true;
        sgd_two_steps(o, {0.886, -1.9145, 0.4905, 2.563},
                      {0.915566, -1.8606745, 0.4201305, 1.948003});
    }
    SECTION("invalid options throw") {
        SGDOptions bad = o;
        bad.momentum = 1.0;
        CHECK_THROWS_AS(SGD<double>(bad), std::invalid_argument);
        bad = o;
        bad.lr = -1;
        CHECK_THROWS_AS(SGD<double>(bad), std::invalid_argument);
    }
}

// ---------------------------------------------------------------------------
// A tiny network has to learn: Dense(8, relu) -> Dense(2) on two Gaussian blobs.

namespace {

struct Blobs {
    Tensor<double> x;  // (200, 2, 1, 1)
    std::vector<std::uint8_t> y;
};

Blobs make_blobs(Eigen::Index n, std::uint64_t seed) {
    Rng rng(seed);
    Blobs b;
    b.x.resize(n, 2, 1, 1);
    b.y.resize(size_t(n));
    for (Eigen::Index i = 0; i < n; ++i) {
        const int label = int(i % 2);
        const double cx = label ? 1.5 : -1.5, cy = label ? 1.0 : -1.0;
        b.x(i, 0, 0, 0) = cx + 0.6 * rng.normal();
        b.x(i, 1, 0, 0) = cy + 0.6 * rng.normal();
        b.y[size_t(i)] = std::uint8_t(label);
    }
    return b;
}

struct TrainResult {
    double first_loss = 0, last_loss = 0, accuracy = 0;
};

TrainResult train(Optimizer<double>& opt, int steps, std::uint64_t seed) {
    const Blobs data = make_blobs(200, 11);
    Sequential<double> m(Shape::flat(2), seed);
    m.add<Dense>(8, Activation::relu);
    m.add<Dense>(2);
    SoftmaxCrossEntropy<double> ce;
    Tensor<double> d;
    TrainResult r;
    for (int s = 0; s < steps; ++s) {
        m.zero_grad();
        const double l = ce.forward(m.forward(data.x, true), data.y.data());
        REQUIRE(std::isfinite(l));
        if (s == 0) r.first_loss = l;
        ce.backward(d);
        m.backward(d);
        opt.step(m.params());
    }
    r.last_loss = ce.forward(m.forward(data.x, false), data.y.data());
    r.accuracy = double(ce.correct()) / 200.0;
    // predict() agrees with the loss's arg-max count.
    const Tensor<double> p = m.predict(data.x);
    int correct = 0;
    for (Eigen::Index i = 0; i < 200; ++i)
        correct += (p(i, 1, 0, 0) > p(i, 0, 0, 0)) == (data.y[size_t(i)] == 1);
    CHECK(correct == ce.correct());
    return r;
}

}  // namespace

TEST_CASE("A tiny network learns two Gaussian blobs with Adam and with SGD-momentum",
          "[optim][train]") {
    SECTION("Adam") {
        AdamOptions o;
        o.lr = 0.02;
        Adam<double> adam(o);
        const auto r = train(adam, 300, 1);
        INFO("loss " << r.first_loss << " -> " << r.last_loss << ", accuracy " << r.accuracy);
        CHECK(r.last_loss < 0.1 * r.first_loss);
        CHECK(r.accuracy >= 0.98);
    }
    SECTION("SGD with momentum") {
        SGDOptions o;
        o.lr = 0.05;
        o.momentum = 0.9;
        SGD<double> sgd(o);
        const auto r = train(sgd, 300, 2);
        INFO("loss " << r.first_loss << " -> " << r.last_loss << ", accuracy " << r.accuracy);
        CHECK(r.last_loss < 0.1 * r.first_loss);
        CHECK(r.accuracy >= 0.98);
    }
}
