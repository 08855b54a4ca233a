// Numerical agreement across precisions and thread counts.
//   float vs double: the same weights (copied from the double model) and the same
//     input give the same results to ~1e-4 relative (a Conv2D forward and
//     backward; the zoo models' logits, loss and gradients).
//   1 vs 2 threads: layers large enough to take the OpenMP paths of
//     core/parallel.hpp (work >= kMinParallelWork) and Eigen's threaded GEMM give
//     the same forward outputs and gradients (within 1e-5, usually bitwise), and
//     two runs with the same thread count are bitwise identical.
// The thread count is restored afterwards, even when an assertion fails.
#include <kitnn/kitnn.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

using namespace kitnn;

namespace {

template <class T>
Tensor<T> random_normal(Eigen::Index n, const Shape& s, Rng& rng) {
    auto c = s.chw();
    Tensor<T> t(n, c[0], c[1], c[2]);
    for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = T(rng.normal());
    return t;
}

template <class To, class From>
Tensor<To> cast(const Tensor<From>& t) {
    return t.template cast<To>();
}

template <class T>
double max_abs(const Tensor<T>& t) {
    double m = 0;
    for (Eigen::Index i = 0; i < t.size(); ++i) m = std::max(m, std::abs(double(t.data()[i])));
    return m;
}

// max_i |a_i - b_i| / max_i |b_i|: the error relative to the tensor's scale.
template <class A, class B>
double rel_diff(const Tensor<A>& a, const Tensor<B>& b) {
    REQUIRE(a.dimensions() == b.dimensions());
    double m = 0;
    for (Eigen::Index i = 0; i < a.size(); ++i) {
        const double d = std::abs(double(a.data()[i]) - double(b.data()[i]));
        if (!std::isfinite(d)) return std::numeric_limits<double>::infinity();
        m = std::max(m, d);
    }
    const double s = max_abs(b);
    return s > 0 ? m / s : m;
}

template <class T>
bool bitwise_equal(const Tensor<T>& a, const Tensor<T>& b) {
    return a.dimensions() == b.dimensions() &&
           std::memcmp(a.data(), b.data(), sizeof(T) * size_t(a.size())) == 0;
}

// Copies every parameter value of `from` into `to` (same architecture).
template <class To, class From>
void copy_weights(Sequential<From>& from, Sequential<To>& to) {
    auto pf = from.params();
    auto pt = to.params();
    REQUIRE(pf.size() == pt.size());
    for (size_t i = 0; i < pf.size(); ++i) {
        REQUIRE(pf[i]->value.dimensions() == pt[i]->value.dimensions());
        pt[i]->value = cast<To>(pf[i]->value);
    }
}

struct ThreadGuard {
    int saved = max_threads();
    ~ThreadGuard() { set_threads(saved); }
};

std::vector<std::uint8_t> random_labels(Eigen::Index n, int k, Rng& rng) {
    std::vector<std::uint8_t> l(static_cast<size_t>(n));
    for (auto& v : l) v = std::uint8_t(rng.below(std::uint64_t(k)));
    return l;
}

// Forward + loss + backward of a whole model (training mode: dropout masks come
// from the model's seeded generators, identical for float and double).
template <class T>
struct ModelRun {
    Tensor<T> logits;
    double loss = 0;
    std::vector<Tensor<T>> grads;
};
template <class T>
ModelRun<T> run_model(Sequential<T>& m, const Tensor<T>& x, const std::vector<std::uint8_t>& y,
                      bool training) {
    ModelRun<T> r;
    SoftmaxCrossEntropy<T> loss;
    m.zero_grad();
    r.logits = m.forward(x, training);
    r.loss = loss.forward(r.logits, y.data());
    Tensor<T> d;
    loss.backward(d);
    m.backward(d);
    for (auto* p : m.params()) r.grads.push_back(p->grad);
    return r;
}

}  // namespace

TEST_CASE("float and double Conv2D agree (forward and backward)", "[precision][conv2d]") {
    struct Case {
        Shape in;
        int f, kh, kw, stride;
        Padding pad;
        Activation act;
    };
    const Case cases[] = {
        {Shape::image(3, 13, 11), 5, 3, 3, 2, Padding::same, Activation::relu},
        {Shape::image(2, 12, 9), 4, 4, 2, 1, Padding::valid, Activation::linear},
        {Shape::image(1, 28, 28), 4, 2, 2, 1, Padding::valid, Activation::relu},
    };
    std::uint64_t seed = 1;
    for (const auto& c : cases) {
        INFO("input " << c.in.str() << " filters " << c.f << " kernel " << c.kh << "x" << c.kw);
        Rng rd(seed), rf(seed);
        ++seed;
        Conv2D<double> cd(c.f, {c.kh, c.kw}, c.act, c.pad, c.stride);
        Conv2D<float> cf(c.f, {c.kh, c.kw}, c.act, c.pad, c.stride);
        REQUIRE(cd.build(c.in, rd) == cf.build(c.in, rf));
        Rng rng(seed * 77);
        for (Eigen::Index i = 0; i < cd.bias().value.size(); ++i)
            cd.bias().value.data()[i] = 0.1 * rng.normal();
        cf.kernel().value = cast<float>(cd.kernel().value);
        cf.bias().value = cast<float>(cd.bias().value);

        const Tensor<double> xd = random_normal<double>(4, c.in, rng);
        const Tensor<float> xf = cast<float>(xd);
        Tensor<double> yd;
        Tensor<float> yf;
        cd.forward(xd, yd, false);
        cf.forward(xf, yf, false);
        CHECK(rel_diff(yf, yd) < 1e-4);

        const Tensor<double> dyd = random_normal<double>(4, cd.output_shape(), rng);
        const Tensor<float> dyf = cast<float>(dyd);
        Tensor<double> dxd;
        Tensor<float> dxf;
        cd.backward(xd, yd, dyd, &dxd);
        cf.backward(xf, yf, dyf, &dxf);
        CHECK(rel_diff(dxf, dxd) < 1e-4);
        CHECK(rel_diff(cf.kernel().grad, cd.kernel().grad) < 1e-4);
        CHECK(rel_diff(cf.bias().grad, cd.bias().grad) < 1e-4);
    }
}

TEST_CASE("float and double zoo models agree: logits, loss, gradients", "[precision][model]") {
    for (const std::string name : {"keck", "lenet5"}) {
        INFO("model " << name);
        auto md = zoo::mnist_model<double>(name, 5);
        auto mf = zoo::mnist_model<float>(name, 6);  // other seed: the copy must matter
        Rng rng(9);
        // Non-zero biases, so that they take part in the comparison.
        for (auto* p : md.params())
            if (p->name == "bias")
                for (Eigen::Index i = 0; i < p->value.size(); ++i) p->value.data()[i] = 0.05 * rng.normal();
        copy_weights(md, mf);

        const Eigen::Index N = 16;
        Tensor<double> xd(N, 1, 28, 28);
        for (Eigen::Index i = 0; i < xd.size(); ++i) xd.data()[i] = rng.uniform();
        const Tensor<float> xf = cast<float>(xd);
        const auto labels = random_labels(N, 10, rng);

        // Eval mode: logits.
        const Tensor<double> ld = md.forward(xd, false);
        const Tensor<float> lf = mf.forward(xf, false);
        CHECK(rel_diff(lf, ld) < 1e-4);
        CHECK(max_abs(ld) > 0.1);  // the comparison is not between two zero tensors

        // Training mode (keck has Dropout): loss and every parameter's gradient.
        // The models were built from different seeds, so give their Dropout layers
        // the same generator state: then the masks are equal (drawn in double).
        for (size_t i = 0; i < md.size(); ++i)
            if (auto* d = dynamic_cast<Dropout<double>*>(&md.layer(i)))
                dynamic_cast<Dropout<float>&>(mf.layer(i)).rng() = d->rng();
        const auto rd = run_model(md, xd, labels, true);
        const auto rf = run_model(mf, xf, labels, true);
        CHECK(rel_diff(rf.logits, rd.logits) < 1e-4);
        CHECK(std::abs(rf.loss - rd.loss) < 1e-4 * std::abs(rd.loss));
        REQUIRE(rd.grads.size() == rf.grads.size());
        for (size_t k = 0; k < rd.grads.size(); ++k) {
            INFO("parameter tensor " << k);
            CHECK(max_abs(rd.grads[k]) > 0);
            CHECK(rel_diff(rf.grads[k], rd.grads[k]) < 1e-4);
        }
    }
}

namespace {

// Runs forward and backward of `layer` on (x, dy) with `threads` threads; returns
// y, dx, and the parameter gradients (zeroed first).
template <class T>
std::vector<Tensor<T>> conv_pass(Conv2D<T>& layer, const Tensor<T>& x, const Tensor<T>& dy,
                                 int threads) {
    set_threads(threads);
    REQUIRE(max_threads() == threads);
    Tensor<T> y, dx;
    layer.kernel().grad.setZero();
    layer.bias().grad.setZero();
    layer.forward(x, y, true);
    layer.backward(x, y, dy, &dx);
    return {y, dx, layer.kernel().grad, layer.bias().grad};
}

template <class T>
void check_conv_threads(const Shape& in, Eigen::Index N, int filters, int k, Padding pad,
                        int stride, double tol) {
    Rng rng(31);
    Conv2D<T> conv(filters, {k, k}, Activation::relu, pad, stride);
    const Shape out = conv.build(in, rng);
    const std::int64_t P = out.h() * out.w(), ckk = in.c() * k * k;
    INFO("input " << in.str() << " x " << N << ", " << filters << " filters " << k << "x" << k);
    // Every loop of the layer is above the threshold of core/parallel.hpp: the
    // im2col/col2im and scatter/gather loops, and the whole layer's GEMM work.
    REQUIRE(N >= 2);
    REQUIRE(ckk * N * P >= kMinParallelWork);
    REQUIRE(filters * N * P >= kMinParallelWork);
    REQUIRE(filters * ckk * N * P >= kMinParallelWork);
    for (Eigen::Index i = 0; i < conv.bias().value.size(); ++i)
        conv.bias().value.data()[i] = T(0.05 * rng.normal());
    const Tensor<T> x = random_normal<T>(N, in, rng);
    const Tensor<T> dy = random_normal<T>(N, out, rng);

    const auto one = conv_pass(conv, x, dy, 1);
    const auto two = conv_pass(conv, x, dy, 2);
    const auto two_again = conv_pass(conv, x, dy, 2);
    const char* names[] = {"y", "dx", "dkernel", "dbias"};
    for (size_t i = 0; i < one.size(); ++i) {
        INFO(names[i] << (bitwise_equal(one[i], two[i]) ? " (bitwise equal)" : ""));
        CHECK(max_abs(one[i]) > 0);
        CHECK(rel_diff(two[i], one[i]) <= tol);
        CHECK(bitwise_equal(two[i], two_again[i]));  // static schedule: reproducible
    }
}

}  // namespace

TEST_CASE("1 and 2 threads agree: Conv2D forward and gradients", "[threads][conv2d]") {
#ifndef _OPENMP
    WARN("built without OpenMP: the thread tests compare the serial path with itself");
#endif
    ThreadGuard guard;
    // A mid-sized layer (every parallel_for of Conv2D is above the threshold).
    check_conv_threads<double>(Shape::image(3, 32, 32), 16, 8, 5, Padding::same, 1, 1e-12);
    check_conv_threads<float>(Shape::image(3, 31, 33), 16, 8, 3, Padding::same, 2, 1e-5);
    // kerascnn's second layer: Conv2D(64, 3x3) on (32, 26, 26).
    check_conv_threads<float>(Shape::image(32, 26, 26), 4, 64, 3, Padding::valid, 1, 1e-5);
}

TEST_CASE("1 and 2 threads agree: keck model forward and gradients", "[threads][model]") {
    ThreadGuard guard;
    auto m = zoo::mnist_model<float>("keck", 3);
    Rng rng(17);
    const Eigen::Index N = 64;
    // MaxPool2D: N*C*H*W = 64*4*27*27 > kMinParallelWork, so it runs threaded too.
    REQUIRE(N * 4 * 27 * 27 >= kMinParallelWork);
    Tensor<float> x(N, 1, 28, 28);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float(rng.uniform());
    const auto labels = random_labels(N, 10, rng);

    // Eval mode, so no dropout mask depends on how often the model ran.
    set_threads(1);
    const auto one = run_model(m, x, labels, false);
    set_threads(2);
    REQUIRE(max_threads() == 2);
    const auto two = run_model(m, x, labels, false);
    const auto two_again = run_model(m, x, labels, false);

    CHECK(rel_diff(two.logits, one.logits) <= 1e-5);
    CHECK(std::abs(two.loss - one.loss) <= 1e-5 * std::abs(one.loss));
    CHECK(bitwise_equal(two.logits, two_again.logits));
    REQUIRE(one.grads.size() == two.grads.size());
    for (size_t k = 0; k < one.grads.size(); ++k) {
        INFO("parameter tensor " << k);
        CHECK(max_abs(one.grads[k]) > 0);
        CHECK(rel_diff(two.grads[k], one.grads[k]) <= 1e-5);
        CHECK(bitwise_equal(two.grads[k], two_again.grads[k]));
    }
}

namespace {
// Every layer kind the MNIST zoo models above lack, in one small model: BatchNorm
// (in a conv and a dense position), AvgPool2D, GlobalAvgPool2D, LeakyReLU, Tanh,
// Sigmoid, a concat and an add Branches block (one with an identity branch), and a
// Softmax-free head. (1, 12, 12) -> (10).
template <class T>
Sequential<T> mixed_model(std::uint64_t seed) {
    using K = std::array<int, 2>;
    Sequential<T> m(Shape::image(1, 12, 12), seed);
    m.template add<Conv2D>(6, K{3, 3}, Activation::linear, Padding::same);  // (6, 12, 12)
    m.template add<BatchNorm>(0.9);
    m.template add<LeakyReLU>(0.1);
    m.template add<AvgPool2D>(K{2, 2});                                      // (6, 6, 6)
    auto cat = std::make_unique<Branches<T>>(Merge::concat);                 // (4 + 3 + 6, 6, 6)
    auto& b0 = cat->branch();
    b0.template add<Conv2D>(4, K{1, 1});
    b0.template add<Tanh>();
    auto& b1 = cat->branch();
    b1.template add<Conv2D>(3, K{3, 3}, Activation::linear, Padding::same);
    b1.template add<Sigmoid>();
    cat->branch();  // identity
    m.add(std::move(cat));
    auto res = std::make_unique<Branches<T>>(Merge::add);                    // (13, 6, 6)
    res->branch().template add<Conv2D>(13, K{3, 3}, Activation::relu, Padding::same);
    res->branch();  // shortcut
    m.add(std::move(res));
    m.template add<GlobalAvgPool2D>();                                       // (13)
    m.template add<Dense>(16);
    m.template add<BatchNorm>(0.9);
    m.template add<Tanh>();
    m.template add<Dense>(10);
    return m;
}
}  // namespace

TEST_CASE("float and double agree on BatchNorm, pools, activations and Branches", "[precision][model]") {
    auto md = mixed_model<double>(5);
    auto mf = mixed_model<float>(6);  // other seed: the copy must matter
    Rng rng(19);
    for (auto* p : md.params())
        if (p->name == "bias" || p->name == "beta")
            for (Eigen::Index i = 0; i < p->value.size(); ++i) p->value.data()[i] = 0.05 * rng.normal();
    copy_weights(md, mf);
    REQUIRE(md.param_count() == mf.param_count());

    const Eigen::Index N = 12;
    Tensor<double> xd(N, 1, 12, 12);
    for (Eigen::Index i = 0; i < xd.size(); ++i) xd.data()[i] = rng.uniform();
    const Tensor<float> xf = cast<float>(xd);
    const auto labels = random_labels(N, 10, rng);

    // Training mode: batch statistics; loss and every parameter's gradient.
    const auto rd = run_model(md, xd, labels, true);
    const auto rf = run_model(mf, xf, labels, true);
    CHECK(max_abs(rd.logits) > 0.1);
    CHECK(rel_diff(rf.logits, rd.logits) < 1e-4);
    CHECK(std::abs(rf.loss - rd.loss) < 1e-4 * std::abs(rd.loss));
    REQUIRE(rd.grads.size() == rf.grads.size());
    double gscale = 0;
    for (auto& g : rd.grads) gscale = std::max(gscale, max_abs(g));
    int zero_biases = 0;
    for (size_t k = 0; k < rd.grads.size(); ++k) {
        INFO("parameter tensor " << k << " (" << md.params()[k]->name << ")");
        if (max_abs(rd.grads[k]) < 1e-12 * gscale) {
            // The bias of a layer followed by BatchNorm: BN subtracts the batch mean,
            // so the loss does not depend on it and its gradient is 0 (rounding noise
            // only, in float too). Both such biases here (the first Conv2D's and the
            // first Dense's) must be it.
            CHECK(md.params()[k]->name == "bias");
            CHECK(max_abs(rf.grads[k]) < 1e-5 * gscale);  // float rounding: ~10 eps
            ++zero_biases;
            continue;
        }
        CHECK(rel_diff(rf.grads[k], rd.grads[k]) < 1e-4);
    }
    CHECK(zero_biases == 2);
    // Eval mode: the moving statistics the training pass above updated, in both.
    const Tensor<double> ld = md.forward(xd, false);
    const Tensor<float> lf = mf.forward(xf, false);
    CHECK(max_abs(ld) > 0.1);
    CHECK(rel_diff(lf, ld) < 1e-4);
}
