// tests/gradient_check.hpp — the Catch2 side of kitnn's public gradient checker
// (include/kitnn/testing/gradient_check.hpp, which explains the method and the
// sentinels): every check there becomes a test failure here, with the report.
#pragma once

#include <kitnn/kitnn.hpp>
#include <kitnn/testing/gradient_check.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
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
    double max_err_input = 0, max_err_param = 0;  // worst error / tolerance (< 1 passes)
    Eigen::Index checked_inputs = 0, checked_params = 0;
};

// err(a, n) < 1 passes: |a - n| <= 1e-7 + 1e-6 * max(|a|, |n|), the checker's default.
inline double grad_err(double a, double n) {
    return std::abs(a - n) / (1e-7 + 1e-6 * std::max(std::abs(a), std::abs(n)));
}

inline GradCheckResult summarize(const kitnn::testing::GradientReport& rep) {
    INFO(rep.str());
    REQUIRE(rep.ok());
    GradCheckResult r;
    for (const auto& t : rep.tensors) {
        if (t.name == "input") {
            r.max_err_input = t.worst_score;
            r.checked_inputs += t.checked;
        } else {
            r.max_err_param = std::max(r.max_err_param, t.worst_score);
            r.checked_params += t.checked;
        }
    }
    return r;
}

// `before_forward` runs before every forward (the checker also replays the layer's
// random generator itself).
inline GradCheckResult check_layer_gradients(Layer<double>& layer, const Shape& in, Eigen::Index batch,
                                             std::uint64_t seed, bool training = false,
                                             std::function<void()> before_forward = {}) {
    kitnn::testing::GradientCheckOptions o;
    o.batch = batch;
    o.seed = seed;
    o.training = training;
    o.before_forward = std::move(before_forward);
    return summarize(kitnn::testing::check_layer_gradients(layer, in, o));
}

inline GradCheckResult check_model_gradients(kitnn::Sequential<double>& model, const Tensor& x,
                                             const std::vector<std::uint8_t>& labels, bool training,
                                             std::uint64_t seed, std::function<void()> before_forward = {}) {
    kitnn::testing::GradientCheckOptions o;
    o.seed = seed;
    o.training = training;
    o.before_forward = std::move(before_forward);
    return summarize(kitnn::testing::check_model_gradients(model, x, labels, o));
}

}  // namespace kitnn_test
