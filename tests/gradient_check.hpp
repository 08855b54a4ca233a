// tests/gradient_check.hpp — ONE gradient checker for every layer (after dlib's test_layer).
//
// For a layer f and a random projection R (Gaussian, shaped like the output),
// the scalar L(x, w) = sum(f(x; w) * R) has dL/dy = R. We hand R to backward and
// compare its dL/dx and dL/dw with central differences (L(p+e) - L(p-e)) / 2e, for
// EVERY input element and EVERY parameter, in double precision.
// Sentinels check the interface contract of layer.hpp:
//   - dx is pre-filled with NaN: backward must OVERWRITE every entry;
//   - parameter gradients are pre-filled with random noise that is subtracted
//     afterwards: backward must ACCUMULATE (+=) and write every entry it owns.
#pragma once

#include <kitnn/kitnn.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

namespace kitnn_test {

using kitnn::Layer;
using kitnn::Rng;
using kitnn::Shape;
using Tensor = kitnn::Tensor<double>;

inline Tensor random_tensor(Eigen::Index n, const Shape& s, Rng& rng, double scale = 1.0) {
    auto c = s.chw();
    Tensor t(n, c[0], c[1], c[2]);
    for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = scale * rng.normal();
    return t;
}

struct GradCheckResult {
    double max_err_input = 0, max_err_param = 0;
    Eigen::Index checked_inputs = 0, checked_params = 0;
};

// Pass when |a - n| <= 1e-7 + 1e-6 * max(|a|, |n|), i.e. err(a, n) < 1. Tight: double
// central differences with e = 1e-5 are exact up to rounding (~1e-10) for the
// piecewise-linear layers and within ~1e-10 for softmax, while an off-by-one in
// im2col or a wrong pooling index is an error of order 0.1 to 1.
inline double grad_err(double a, double n) {
    return std::abs(a - n) / (1e-7 + 1e-6 * std::max(std::abs(a), std::abs(n)));
}

// Central differences for every element of every parameter, against the analytic
// gradient left by backward minus the noise pre-filled into it (accumulation check).
inline void check_param_gradients(const std::vector<kitnn::Param<double>*>& params,
                                  const std::vector<Tensor>& noise,
                                  const std::function<double()>& loss, const std::string& what,
                                  GradCheckResult& res) {
    const double e = 1e-5;
    for (size_t k = 0; k < params.size(); ++k) {
        auto* p = params[k];
        for (Eigen::Index i = 0; i < p->value.size(); ++i) {
            INFO(what << " parameter tensor " << k << " ('" << p->name << "'), element " << i
                      << " of " << p->value.size());
            const double analytic = p->grad.data()[i] - noise[k].data()[i];
            const double old = p->value.data()[i];
            p->value.data()[i] = old + e;
            const double lp = loss();
            p->value.data()[i] = old - e;
            const double lm = loss();
            p->value.data()[i] = old;
            const double num = (lp - lm) / (2 * e);
            const double err = grad_err(analytic, num);
            INFO("analytic " << analytic << " numeric " << num);
            REQUIRE(err < 1.0);
            res.max_err_param = std::max(res.max_err_param, err);
            ++res.checked_params;
        }
    }
}

// `before_forward` runs before every forward (e.g. to replay a dropout mask).
inline GradCheckResult check_layer_gradients(
    Layer<double>& layer, const Shape& in, Eigen::Index batch, std::uint64_t seed,
    bool training = false, std::function<void()> before_forward = [] {}) {
    Rng rng(seed);
    Shape out = layer.build(in, rng);
    Tensor x = random_tensor(batch, in, rng);
    Tensor R = random_tensor(batch, out, rng);
    Tensor y;

    auto loss = [&]() {
        before_forward();
        layer.forward(x, y, training);
        double s = 0;
        for (Eigen::Index i = 0; i < y.size(); ++i) s += y.data()[i] * R.data()[i];
        return s;
    };

    loss();
    REQUIRE(kitnn::matches(y, out));
    REQUIRE(y.dimension(0) == batch);

    // Sentinels.
    std::vector<Tensor> noise;
    for (auto* p : layer.params()) {
        Tensor g = random_tensor(1, Shape{p->grad.size()}, rng);
        std::copy(g.data(), g.data() + g.size(), p->grad.data());
        noise.push_back(g);
    }
    auto ic = in.chw();
    Tensor dx(batch, ic[0], ic[1], ic[2]);
    dx.setConstant(std::numeric_limits<double>::quiet_NaN());

    layer.backward(x, y, R, &dx);

    GradCheckResult res;
    const double e = 1e-5;
    for (Eigen::Index i = 0; i < x.size(); ++i) {
        INFO(layer.type() << " input gradient, element " << i << " of " << x.size());
        REQUIRE(std::isfinite(dx.data()[i]));  // NaN sentinel: never written
        const double old = x.data()[i];
        x.data()[i] = old + e;
        const double lp = loss();
        x.data()[i] = old - e;
        const double lm = loss();
        x.data()[i] = old;
        const double num = (lp - lm) / (2 * e);
        const double err = grad_err(dx.data()[i], num);
        INFO("analytic " << dx.data()[i] << " numeric " << num);
        REQUIRE(err < 1.0);
        res.max_err_input = std::max(res.max_err_input, err);
        ++res.checked_inputs;
    }
    check_param_gradients(layer.params(), noise, loss, layer.type(), res);
    return res;
}

// Whole-model check: L = SoftmaxCrossEntropy(model.forward(x, training), labels).
// Every parameter gradient that model.backward() accumulates (onto random noise,
// subtracted afterwards, so += and full coverage are checked too) is compared with
// central differences. `before_forward` runs before every forward (e.g. to replay
// the dropout masks). Returns the largest errors and how many entries were checked.
inline GradCheckResult check_model_gradients(kitnn::Sequential<double>& model, const Tensor& x,
                                             const std::vector<std::uint8_t>& labels,
                                             bool training, std::uint64_t seed,
                                             std::function<void()> before_forward = [] {}) {
    REQUIRE(Eigen::Index(labels.size()) == x.dimension(0));
    kitnn::SoftmaxCrossEntropy<double> ce;
    auto loss = [&]() {
        before_forward();
        return ce.forward(model.forward(x, training), labels.data());
    };

    Rng rng(seed);
    auto params = model.params();
    std::vector<Tensor> noise;
    for (auto* p : params) {
        Tensor g = random_tensor(1, Shape{p->grad.size()}, rng);
        std::copy(g.data(), g.data() + g.size(), p->grad.data());
        noise.push_back(g);
    }
    loss();
    Tensor dlogits;
    ce.backward(dlogits);
    model.backward(dlogits);

    GradCheckResult res;
    check_param_gradients(params, noise, loss, "model", res);
    return res;
}

}  // namespace kitnn_test
