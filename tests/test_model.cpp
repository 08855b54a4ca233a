// Sequential as a whole: the Keras-style summary of the zoo networks, a gradient
// check of a complete small network with the loss (every parameter), shape errors
// that name the layer and both shapes, predict(), Dropout's behaviour, and the
// seeded Glorot-uniform initialisation.
#include "gradient_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

using namespace kitnn;
using K2 = std::array<int, 2>;

namespace {

struct Row {
    std::string layer, shape, params;
};

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(' ');
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(' ') - b + 1);
}

// The layer rows of a summary: the lines between the '=' rules that are not rules,
// cut into the three columns by the positions of the header's titles.
std::vector<Row> summary_rows(const std::string& summary) {
    std::istringstream in(summary);
    std::string line;
    std::vector<Row> rows;
    size_t c_shape = 0, c_params = 0;
    int rules = 0;
    while (std::getline(in, line)) {
        if (line.rfind("Layer (type)", 0) == 0) {
            c_shape = line.find("Output Shape");
            c_params = line.find("Param #");
            continue;
        }
        if (!line.empty() && line.find_first_not_of('=') == std::string::npos) {
            ++rules;
            continue;
        }
        if (rules != 1 || line.empty() || line.find_first_not_of('_') == std::string::npos)
            continue;
        REQUIRE(c_shape > 0);
        REQUIRE(c_params > c_shape);
        REQUIRE(line.size() > c_params);
        rows.push_back({trim(line.substr(0, c_shape)), trim(line.substr(c_shape, c_params - c_shape)),
                        trim(line.substr(c_params))});
    }
    return rows;
}

template <class T>
Tensor<T> uniform_images(Eigen::Index n, const Shape& s, Rng& rng) {
    auto c = s.chw();
    Tensor<T> x(n, c[0], c[1], c[2]);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = T(rng.uniform());
    return x;
}

// The summary's rows, one by one, against the expected layer names, shapes and counts.
void check_rows(const std::vector<Row>& rows, const std::vector<Row>& expected) {
    REQUIRE(rows.size() == expected.size());
    for (size_t i = 0; i < rows.size(); ++i) {
        INFO("row " << i);
        CHECK(rows[i].layer == expected[i].layer);
        CHECK(rows[i].shape == expected[i].shape);
        CHECK(rows[i].params == expected[i].params);
    }
}

}  // namespace

TEST_CASE("summary of the exercise network (keck) matches Keras's", "[model][summary]") {
    auto m = zoo::mnist_model<float>("keck");
    const std::string s = m.summary();
    INFO(s);
    const std::vector<Row> expected = {
        {"conv2d (Conv2D)", "(None, 27, 27, 4)", "20"},
        {"max_pool2d (MaxPool2D)", "(None, 13, 13, 4)", "0"},
        {"flatten (Flatten)", "(None, 676)", "0"},
        {"dense (Dense)", "(None, 16)", "10,832"},
        {"dropout (Dropout)", "(None, 16)", "0"},
        {"dense_1 (Dense)", "(None, 10)", "170"},
    };
    check_rows(summary_rows(s), expected);
    CHECK_THAT(s, Catch::Contains("\nTotal params: 11,022\n"));
    CHECK_THAT(s, Catch::Contains("\nTrainable params: 11,022\n"));
    CHECK_THAT(s, Catch::Contains("\nNon-trainable params: 0\n"));
    CHECK_THAT(s, Catch::StartsWith("Model: \"sequential\"\n"));

    // The same facts from the API.
    const std::int64_t params[] = {20, 0, 0, 10832, 0, 170};
    const char* shapes[] = {"(None, 27, 27, 4)", "(None, 13, 13, 4)", "(None, 676)",
                            "(None, 16)",        "(None, 16)",        "(None, 10)"};
    REQUIRE(m.size() == 6);
    for (size_t i = 0; i < m.size(); ++i) {
        INFO("layer " << i << " " << m.layer(i).type());
        CHECK(m.layer(i).param_count() == params[i]);
        CHECK(m.layer(i).output_shape().keras() == shapes[i]);
    }
    CHECK(m.param_count() == 11022);
    CHECK(m.output_shape() == Shape::flat(10));
}

TEST_CASE("summary of the zoo's best model: 175,450 trainable parameters", "[model][summary]") {
    // Worked out by hand from the architecture in zoo.hpp: a conv has F*(C*k*k + 1)
    // parameters; a BatchNorm row shows gamma and beta (trainable) plus the moving mean
    // and variance (non-trainable), 4 per channel, as Keras does.
    auto m = zoo::mnist_model<float>("best");
    const std::string s = m.summary();
    INFO(s);
    const std::vector<Row> expected = {
        {"conv2d (Conv2D)", "(None, 24, 24, 32)", "832"},            // 32*(25+1)
        {"batch_norm (BatchNorm)", "(None, 24, 24, 32)", "128"},
        {"re_lu (ReLU)", "(None, 24, 24, 32)", "0"},
        {"max_pool2d (MaxPool2D)", "(None, 12, 12, 32)", "0"},
        {"conv2d_1 (Conv2D)", "(None, 10, 10, 48)", "13,872"},       // 48*(32*9+1)
        {"batch_norm_1 (BatchNorm)", "(None, 10, 10, 48)", "192"},
        {"re_lu_1 (ReLU)", "(None, 10, 10, 48)", "0"},
        {"conv2d_2 (Conv2D)", "(None, 8, 8, 64)", "27,712"},         // 64*(48*9+1)
        {"batch_norm_2 (BatchNorm)", "(None, 8, 8, 64)", "256"},
        {"re_lu_2 (ReLU)", "(None, 8, 8, 64)", "0"},
        {"max_pool2d_1 (MaxPool2D)", "(None, 4, 4, 64)", "0"},
        {"flatten (Flatten)", "(None, 1024)", "0"},
        {"dense (Dense)", "(None, 128)", "131,200"},                 // 128*(1024+1)
        {"batch_norm_3 (BatchNorm)", "(None, 128)", "512"},
        {"re_lu_3 (ReLU)", "(None, 128)", "0"},
        {"dropout (Dropout)", "(None, 128)", "0"},
        {"dense_1 (Dense)", "(None, 10)", "1,290"},                  // 10*(128+1)
    };
    check_rows(summary_rows(s), expected);
    CHECK_THAT(s, Catch::Contains("\nTotal params: 175,994\n"));
    CHECK_THAT(s, Catch::Contains("\nTrainable params: 175,450\n"));
    CHECK_THAT(s, Catch::Contains("\nNon-trainable params: 544\n"));  // 2*(32+48+64+128)
    CHECK(m.param_count() == 175450);
    CHECK(m.output_shape() == Shape::flat(10));
}

TEST_CASE("zoo parameter counts and the thousands separator", "[model][summary]") {
    auto lenet = zoo::mnist_model<float>("lenet5");
    CHECK(lenet.param_count() == 61706);
    CHECK_THAT(lenet.summary(), Catch::Contains("Total params: 61,706"));
    CHECK(lenet.layer(0).output_shape().keras() == "(None, 28, 28, 6)");  // 'same'
    auto keras = zoo::mnist_model<float>("kerascnn");
    CHECK(keras.param_count() == 1199882);
    CHECK_THAT(keras.summary(), Catch::Contains("Total params: 1,199,882"));
    CHECK_THROWS_AS(zoo::mnist_model<float>("nope"), std::invalid_argument);

    CHECK(Sequential<float>::group(0) == "0");
    CHECK(Sequential<float>::group(999) == "999");
    CHECK(Sequential<float>::group(1000) == "1,000");
    CHECK(Sequential<float>::group(123456) == "123,456");
    CHECK(Sequential<float>::group(1199882) == "1,199,882");
}

TEST_CASE("whole-model gradient check: conv/pool/conv/dense/dropout/dense + loss",
          "[model][gradcheck]") {
    Sequential<double> m(Shape::image(2, 11, 10), 21);
    m.add<Conv2D>(3, K2{3, 3}, Activation::relu, Padding::same, 2);  // (3, 6, 5)
    m.add<MaxPool2D>(K2{2, 2});                                      // (3, 3, 2)
    m.add<Conv2D>(4, K2{2, 2});                                      // (4, 2, 1)
    m.add<Flatten>();                                                // (8)
    m.add<Dense>(6, Activation::relu);
    auto& drop = m.add<Dropout>(0.3);
    m.add<Dense>(3);
    REQUIRE(m.output_shape() == Shape::flat(3));
    REQUIRE(m.param_count() == (3 * 2 * 9 + 3) + (4 * 3 * 4 + 4) + (8 * 6 + 6) + (6 * 3 + 3));

    // Non-zero biases, so a wrong bias gradient cannot hide behind a zero bias.
    Rng rng(5);
    for (auto* p : m.params())
        if (p->name == "bias")
            for (Eigen::Index i = 0; i < p->value.size(); ++i) p->value.data()[i] = 0.1 * rng.normal();

    const Eigen::Index N = 6;
    const Tensor<double> x = kitnn_test::random_tensor(N, m.input_shape(), rng);
    std::vector<std::uint8_t> labels(N);
    for (auto& l : labels) l = std::uint8_t(rng.below(3));

    // Replay the dropout generator before every forward: the same mask each time.
    const Rng saved = drop.rng();
    auto replay = [&] { drop.rng() = saved; };

    // The mask must matter: the training loss differs from the eval loss.
    SoftmaxCrossEntropy<double> ce;
    replay();
    const double train_loss = ce.forward(m.forward(x, true), labels.data());
    const double eval_loss = ce.forward(m.forward(x, false), labels.data());
    CHECK(train_loss != Approx(eval_loss));

    const auto r = kitnn_test::check_model_gradients(m, x, labels, true, 99, replay);
    CHECK(r.checked_params == m.param_count());
    INFO("max error " << r.max_err_param);

    // And the gradients are not trivially zero: most entries of every tensor move.
    m.zero_grad();
    replay();
    ce.forward(m.forward(x, true), labels.data());
    Tensor<double> d;
    ce.backward(d);
    m.backward(d);
    for (auto* p : m.params()) {
        Eigen::Index nonzero = 0;
        for (Eigen::Index i = 0; i < p->grad.size(); ++i) nonzero += p->grad.data()[i] != 0;
        CHECK(nonzero * 2 >= p->grad.size());
    }

    // The same check in eval mode (dropout is the identity).
    kitnn_test::check_model_gradients(m, x, labels, false, 98);
}

TEST_CASE("shape errors name the layer and both shapes", "[model][shapes]") {
    SECTION("Dense directly after Conv2D fails at add()") {
        Sequential<float> m(Shape::image(1, 28, 28));
        m.add<Conv2D>(4, K2{2, 2});
        try {
            m.add<Dense>(16);
            FAIL("no ShapeError");
        } catch (const ShapeError& e) {
            const std::string msg = e.what();
            INFO(msg);
            CHECK_THAT(msg, Catch::Contains("layer 1 (Dense)"));
            CHECK_THAT(msg, Catch::Contains("(4,27,27)"));  // what it got
            CHECK_THAT(msg, Catch::Contains("(F)"));        // what it needs: flat
            CHECK_THAT(msg, Catch::Contains("Flatten"));
        }
        CHECK(m.size() == 1);  // the failed layer was not appended
        m.add<Flatten>();
        CHECK_NOTHROW(m.add<Dense>(16));
    }
    SECTION("a batch of the wrong image size fails at forward, naming layer 0") {
        auto m = zoo::mnist_model<float>("keck");
        Tensor<float> x(2, 1, 27, 28);
        x.setZero();
        try {
            m.forward(x, false);
            FAIL("no ShapeError");
        } catch (const ShapeError& e) {
            const std::string msg = e.what();
            INFO(msg);
            CHECK_THAT(msg, Catch::Contains("layer 0"));
            CHECK_THAT(msg, Catch::Contains("(1,28,28)"));
            CHECK_THAT(msg, Catch::Contains("1,27,28"));
        }
        Tensor<float> wrong_channels(1, 2, 28, 28);
        wrong_channels.setZero();
        CHECK_THROWS_AS(m.forward(wrong_channels, false), ShapeError);
        CHECK_THROWS_AS(m.predict(x), ShapeError);
    }
    SECTION("a Conv2D kernel larger than its input fails at add()") {
        Sequential<double> m(Shape::image(1, 3, 3));
        CHECK_THROWS_AS(m.add<Conv2D>(2, K2{5, 5}), ShapeError);
        CHECK_THROWS_WITH(m.add<Conv2D>(2, K2{2, 4}), Catch::Contains("layer 0 (Conv2D)") &&
                                                          Catch::Contains("(1,3,3)"));
        CHECK(m.size() == 0);
        Sequential<double> m2(Shape::image(1, 8, 8));
        m2.add<Conv2D>(2, K2{3, 3});                   // (2, 6, 6)
        m2.add<MaxPool2D>(K2{2, 2});                   // (2, 3, 3)
        CHECK_THROWS_WITH(m2.add<Conv2D>(1, K2{4, 4}), Catch::Contains("layer 2 (Conv2D)") &&
                                                           Catch::Contains("(2,3,3)"));
        // 'same' padding accepts a kernel larger than the input (TensorFlow does).
        CHECK_NOTHROW(m2.add<Conv2D>(1, K2{4, 4}, Activation::linear, Padding::same));
    }
}

TEST_CASE("predict returns softmax(forward(x, false)), rows summing to 1", "[model][predict]") {
    auto m = zoo::mnist_model<float>("keck", 4);
    Rng rng(8);
    // Non-zero biases, so that the logits are not all alike.
    for (auto* p : m.params())
        for (Eigen::Index i = 0; i < p->value.size(); ++i)
            if (p->name == "bias") p->value.data()[i] = float(0.2 * rng.normal());
    const Eigen::Index N = 300;  // more than one predict batch of 256
    const Tensor<float> x = uniform_images<float>(N, m.input_shape(), rng);

    const Tensor<float> p = m.predict(x);
    REQUIRE(p.dimension(0) == N);
    REQUIRE(p.dimension(1) == 10);
    const Tensor<float> z = m.forward(x, false);  // the whole batch at once
    double max_diff = 0, min_top = 1;
    for (Eigen::Index n = 0; n < N; ++n) {
        double sum = 0, zmax = -1e30, denom = 0, top = 0;
        for (int k = 0; k < 10; ++k) zmax = std::max(zmax, double(z(n, k, 0, 0)));
        for (int k = 0; k < 10; ++k) denom += std::exp(double(z(n, k, 0, 0)) - zmax);
        for (int k = 0; k < 10; ++k) {
            const double pk = p(n, k, 0, 0);
            REQUIRE(pk >= 0);
            sum += pk;
            top = std::max(top, pk);
            max_diff = std::max(max_diff, std::abs(pk - std::exp(double(z(n, k, 0, 0)) - zmax) / denom));
        }
        INFO("row " << n);
        REQUIRE(sum == Approx(1.0).epsilon(1e-5));
        min_top = std::min(min_top, top);
    }
    CHECK(max_diff < 1e-6);
    CHECK(min_top > 0.1);  // really probabilities, not a constant 0.1

    // The batch size of predict does not change the result; training mode would
    // (dropout), and predict always runs in eval mode.
    const Tensor<float> p64 = m.predict(x, 64);
    double d64 = 0;
    for (Eigen::Index i = 0; i < p.size(); ++i) d64 = std::max(d64, double(std::abs(p.data()[i] - p64.data()[i])));
    CHECK(d64 < 1e-6);
}

TEST_CASE("Dropout: identity in eval, drops ~rate and rescales in training, seeded masks",
          "[model][dropout]") {
    const double rate = 0.3;
    const Shape s = Shape::flat(20000);
    auto build = [&](Dropout<double>& d, std::uint64_t seed) {
        Rng r(seed);
        d.build(s, r);
    };
    Rng rng(12);
    Tensor<double> x(1, 20000, 1, 1);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = 1.0 + rng.uniform();  // never 0

    Dropout<double> d(rate);
    build(d, 1);
    Tensor<double> y;
    d.forward(x, y, false);
    REQUIRE(y.dimensions() == x.dimensions());
    CHECK(std::memcmp(y.data(), x.data(), sizeof(double) * size_t(x.size())) == 0);

    d.forward(x, y, true);
    Eigen::Index zeros = 0;
    double worst = 0;
    for (Eigen::Index i = 0; i < x.size(); ++i) {
        if (y.data()[i] == 0) ++zeros;
        else worst = std::max(worst, std::abs(y.data()[i] - x.data()[i] / (1 - rate)) / y.data()[i]);
    }
    const double frac = double(zeros) / double(x.size());
    INFO("dropped fraction " << frac);
    CHECK(std::abs(frac - rate) < 0.015);  // 4.6 standard deviations
    CHECK(worst < 1e-15);                  // kept units scaled by exactly 1/(1-rate)

    // Backward: dx = dy * mask (the same mask as the forward).
    Tensor<double> dy(x.dimensions()), dx;
    for (Eigen::Index i = 0; i < dy.size(); ++i) dy.data()[i] = rng.normal();
    d.backward(x, y, dy, &dx);
    for (Eigen::Index i = 0; i < x.size(); ++i) {
        const double expected = y.data()[i] == 0 ? 0.0 : dy.data()[i] / (1 - rate);
        if (std::abs(dx.data()[i] - expected) > 1e-15 * std::abs(expected)) {
            FAIL_CHECK("dx[" << i << "] = " << dx.data()[i] << ", expected " << expected);
            break;
        }
    }

    // Same seed -> same mask; a different seed or the next call -> another mask.
    Dropout<double> same(rate), other(rate);
    build(same, 1);
    build(other, 2);
    Tensor<double> y_same, y_other, y_next;
    same.forward(x, y_same, true);
    other.forward(x, y_other, true);
    d.forward(x, y_next, true);
    auto equal = [](const Tensor<double>& a, const Tensor<double>& b) {
        return std::memcmp(a.data(), b.data(), sizeof(double) * size_t(a.size())) == 0;
    };
    CHECK(equal(y, y_same));
    CHECK_FALSE(equal(y, y_other));
    CHECK_FALSE(equal(y, y_next));

    // The exact rule, from a copy of the layer's generator: unit 2k is kept when the low
    // 32 bits of draw k are below (1 - rate) * 2^32, unit 2k + 1 by the high 32 bits
    // (an odd number of units too: the last draw's high half is unused).
    for (Eigen::Index units : {Eigen::Index(7), Eigen::Index(20000)}) {
        Tensor<double> xs(1, units, 1, 1), ys;
        xs.setConstant(1.0);
        Dropout<double> rr(rate);
        Rng b9(9);
        rr.build(Shape::flat(units), b9);
        Rng copy = *rr.generator();
        rr.forward(xs, ys, true);
        const auto threshold = std::uint64_t(std::ldexp(1.0 - rate, 32));
        Eigen::Index wrong = 0;
        std::uint64_t bits = 0;
        for (Eigen::Index i = 0; i < units; ++i) {
            bits = i % 2 == 0 ? copy.next() : bits >> 32;
            const bool keep = (bits & 0xffffffffu) < threshold;
            if ((ys.data()[i] != 0) != keep) ++wrong;
        }
        CHECK(wrong == 0);
        CHECK(copy.next() == rr.generator()->next());  // exactly ceil(units / 2) draws used
    }

    // rate 0 is the identity even in training; rate 1 is refused.
    Dropout<double> none(0.0);
    build(none, 3);
    none.forward(x, y, true);
    CHECK(equal(y, x));
    CHECK_THROWS_AS(Dropout<double>(1.0), std::invalid_argument);
    CHECK_THROWS_AS(Dropout<double>(-0.1), std::invalid_argument);

    // Inside a model the seed fixes the masks: two models from seed 5 agree in
    // training mode, and a model from seed 6 (other weights too) does not.
    auto a = zoo::mnist_model<double>("keck", 5);
    auto b = zoo::mnist_model<double>("keck", 5);
    Rng ri(3);
    const Tensor<double> img = uniform_images<double>(8, a.input_shape(), ri);
    const Tensor<double> za = a.forward(img, true);
    const Tensor<double> zb = b.forward(img, true);
    CHECK(equal(za, zb));
    const Tensor<double> za2 = a.forward(img, true);  // next mask
    CHECK_FALSE(equal(za, za2));
}

namespace {
// Glorot-uniform limit of a Conv2D kernel (F, C, KH, KW) or Dense kernel (IN, OUT, 1, 1).
double glorot_limit(const std::string& type, const Tensor<float>& k) {
    if (type == "Conv2D") {
        const double rf = double(k.dimension(2) * k.dimension(3));
        return std::sqrt(6.0 / (double(k.dimension(1)) * rf + double(k.dimension(0)) * rf));
    }
    return std::sqrt(6.0 / double(k.dimension(0) + k.dimension(1)));
}
}  // namespace

TEST_CASE("initial weights: seeded, Glorot-uniform within bounds, zero biases", "[model][init]") {
    for (const std::string& name : zoo::mnist_models()) {
        INFO("model " << name);
        auto a = zoo::mnist_model<float>(name, 7);
        auto b = zoo::mnist_model<float>(name, 7);
        auto c = zoo::mnist_model<float>(name, 8);
        auto pa = a.params(), pb = b.params(), pc = c.params();
        REQUIRE(pa.size() == pb.size());
        REQUIRE(pa.size() == pc.size());
        for (size_t i = 0; i < pa.size(); ++i) {
            const auto& va = pa[i]->value;
            const size_t bytes = sizeof(float) * size_t(va.size());
            CHECK(std::memcmp(va.data(), pb[i]->value.data(), bytes) == 0);  // same seed
            if (pa[i]->name == "kernel")
                CHECK(std::memcmp(va.data(), pc[i]->value.data(), bytes) != 0);  // other seed
        }

        for (size_t li = 0; li < a.size(); ++li) {
            auto& layer = a.layer(li);
            for (auto* p : layer.params()) {
                INFO("layer " << li << " " << layer.type() << " " << p->name);
                const Tensor<float>& v = p->value;
                if (p->name == "gamma" || p->name == "beta") {  // BatchNorm: 1 and 0
                    const float want = p->name == "gamma" ? 1.0f : 0.0f;
                    for (Eigen::Index i = 0; i < v.size(); ++i) CHECK(v.data()[i] == want);
                    continue;
                }
                if (p->name == "bias") {
                    float m = 0;
                    for (Eigen::Index i = 0; i < v.size(); ++i) m = std::max(m, std::abs(v.data()[i]));
                    CHECK(m == 0.0f);
                    continue;
                }
                const double limit = glorot_limit(layer.type(), v);
                const float bound = float(limit);  // a double below limit rounds to <= bound
                double max_w = 0, sum = 0, sum2 = 0;
                for (Eigen::Index i = 0; i < v.size(); ++i) {
                    const double w = v.data()[i];
                    max_w = std::max(max_w, std::abs(w));
                    sum += w;
                    sum2 += w * w;
                }
                INFO("limit " << limit << " max |w| " << max_w);
                CHECK(max_w <= bound);
                const double n = double(v.size());
                if (n >= 1000) {  // and the whole range is used, uniformly
                    CHECK(max_w > 0.99 * limit);
                    CHECK(std::abs(sum / n) < 5 * limit / std::sqrt(3 * n));
                    CHECK(sum2 / n == Approx(limit * limit / 3).epsilon(0.1));
                }
            }
        }
    }

    // The other initialisers' bounds: he_uniform sqrt(6 / fan_in).
    Sequential<double> h(Shape::flat(50), 1);
    auto& dense = h.add<Dense>(400, Activation::relu, Init::he_uniform);
    double max_w = 0;
    for (Eigen::Index i = 0; i < dense.kernel().value.size(); ++i)
        max_w = std::max(max_w, std::abs(dense.kernel().value.data()[i]));
    CHECK(max_w <= std::sqrt(6.0 / 50));
    CHECK(max_w > 0.99 * std::sqrt(6.0 / 50));
}

TEST_CASE("an empty batch flows through every layer of the zoo models", "[model]") {
    for (const auto& name : kitnn::zoo::mnist_models()) {
        auto m = kitnn::zoo::mnist_model<float>(name);
        kitnn::Tensor<float> x(0, 1, 28, 28);
        const auto& y = m.forward(x, true);
        CHECK(y.dimension(0) == 0);
        kitnn::Tensor<float> dy(0, 10, 1, 1);
        m.zero_grad();
        CHECK_NOTHROW(m.backward(dy));
    }
}
