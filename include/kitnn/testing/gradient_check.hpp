// kitnn/testing/gradient_check.hpp — check a layer's backward against its forward
// (after dlib's test_layer): for the library's layers and for your own.
//
//   GELU<double> layer;
//   auto report = kitnn::testing::check_layer_gradients(layer, Shape::image(2, 3, 5));
//   if (!report.ok()) std::cerr << report.str();      // what failed, and the worst errors
//
// Method. For a layer f and a Gaussian random projection R shaped like its output,
// the scalar L(x, w) = sum(f(x; w) * R) has dL/dy = R. One backward(x, y, R, &dx) is
// compared, in double precision and for EVERY input element and EVERY parameter
// element, with central differences (L(p + e) - L(p - e)) / 2e, e = 1e-5. An entry
// passes when |a - n| <= abs_tol + rel_tol * max(|a|, |n|) (1e-7 and 1e-6 by default:
// double central differences are exact up to rounding, ~1e-10, for piecewise-linear
// layers, while an off-by-one in an index is an error of order 0.1 to 1).
// Sentinels check the rest of the layer contract (layers/layer.hpp):
//   - y is pre-filled with NaN: forward must OVERWRITE every output value;
//   - dx is pre-filled with NaN: backward must overwrite every entry of dx;
//   - parameter gradients are pre-filled with random noise, subtracted afterwards, and
//     a second backward must add the same gradient again: backward ACCUMULATES (+=);
//   - backward with dx = nullptr (what the first layer of a model gets) must give the
//     same parameter gradients.
// Layers that draw random numbers (Dropout, through Layer::generator(), nested ones
// too) get their generator restored before every forward, so every evaluation sees
// the same mask. An inference pass (training = false) is differentiated with folding
// off (layers/fusion.hpp: a folded pass has no backward): check_model_gradients restores
// the model's setting afterwards, check_layer_gradients leaves a container's folding on
// (the default). Nothing here needs a test framework: the report says what failed.
#pragma once

#include "kitnn/layers/layer.hpp"
#include "kitnn/loss/softmax_cross_entropy.hpp"
#include "kitnn/model/sequential.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace kitnn::testing {

struct GradientCheckOptions {
    Eigen::Index batch = 2;
    std::uint64_t seed = 1;                // input, projection R and noise; also build's
    bool training = false;                 // the mode of every forward
    std::function<void()> before_forward;  // run before every forward (after the replay)
    double step = 1e-5;                    // e of the central differences
    double abs_tol = 1e-7, rel_tol = 1e-6;
};

// One checked tensor: the input gradient or one parameter's.
struct GradientStats {
    std::string name;            // "input" or the parameter's name ("kernel", "bias", ...)
    Eigen::Index checked = 0;    // elements compared
    double max_abs_err = 0;      // worst |analytic - numeric|
    double max_rel_err = 0;      // worst |a - n| / max(|a|, |n|) (0 when both are 0)
    double worst_score = 0;      // worst |a - n| / (abs_tol + rel_tol * max(|a|, |n|)): < 1 passes
    Eigen::Index worst_index = -1;
    double worst_analytic = 0, worst_numeric = 0;
};

struct GradientReport {
    std::string layer;                  // the layer's type()
    Shape input;
    Eigen::Index batch = 0;
    std::vector<GradientStats> tensors;  // "input" first (layers only), then the parameters
    std::vector<std::string> failures;   // every failed check, in words
    bool ok() const { return failures.empty(); }
    double worst_score() const {
        double w = 0;
        for (auto& t : tensors) w = std::max(w, t.worst_score);
        return w;
    }
    // A table of the tensors and every failure.
    std::string str() const {
        std::ostringstream s;
        s << layer << " on " << input.str() << ", batch " << batch << ": "
          << (ok() ? "passed" : "FAILED") << "\n";
        for (auto& t : tensors)
            s << "  " << t.name << ": " << t.checked << " checked, max abs err " << t.max_abs_err
              << ", max rel err " << t.max_rel_err << ", worst/tolerance " << t.worst_score << "\n";
        for (auto& f : failures) s << "  FAILED: " << f << "\n";
        return s.str();
    }
};

namespace detail {

inline Tensor<double> random_tensor(Eigen::Index n, const Shape& s, Rng& rng) {
    const auto c = s.chw();
    Tensor<double> t(n, c[0], c[1], c[2]);
    for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = rng.normal();
    return t;
}

// The accumulation sentinel: fills every parameter gradient with Gaussian noise and
// returns the noise, shaped like each gradient (it is subtracted from it afterwards, and
// Eigen checks, without NDEBUG, that both sides of a difference have one shape).
inline std::vector<Tensor<double>> fill_with_noise(const std::vector<Param<double>*>& params, Rng& rng) {
    std::vector<Tensor<double>> noise;
    for (auto* p : params) {
        Tensor<double> g(p->grad.dimensions());
        for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] = rng.normal();
        std::copy(g.data(), g.data() + g.size(), p->grad.data());
        noise.push_back(std::move(g));
    }
    return noise;
}

// Every random generator of the layer and of the layers nested in it.
inline void collect_generators(Layer<double>& l, std::vector<Rng*>& out) {
    if (Rng* g = l.generator()) out.push_back(g);
    for (size_t b = 0; b < l.branch_count(); ++b)
        for (Layer<double>* inner : l.branch(b)) collect_generators(*inner, out);
}

// Compares `analytic` (grad(i) for i < n) with central differences of `loss` in the
// values value(i), and adds the result to the report.
template <class Value, class Grad>
void compare(GradientReport& rep, const std::string& name, Eigen::Index n, Value value, Grad analytic,
             const std::function<double()>& loss, const GradientCheckOptions& o) {
    GradientStats st;
    st.name = name;
    Eigen::Index bad = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
        double& v = value(i);
        const double old = v;
        v = old + o.step;
        const double lp = loss();
        v = old - o.step;
        const double lm = loss();
        v = old;
        const double num = (lp - lm) / (2 * o.step), a = analytic(i);
        const double diff = std::abs(a - num), mag = std::max(std::abs(a), std::abs(num));
        const double score = std::isfinite(a) ? diff / (o.abs_tol + o.rel_tol * mag)
                                              : std::numeric_limits<double>::infinity();
        st.max_abs_err = std::max(st.max_abs_err, std::isfinite(a) ? diff : score);
        if (mag > 0) st.max_rel_err = std::max(st.max_rel_err, diff / mag);
        if (st.worst_index < 0 || !(score <= st.worst_score)) {  // NaN counts as worst
            st.worst_score = score;
            st.worst_index = i;
            st.worst_analytic = a;
            st.worst_numeric = num;
        }
        if (!(score < 1)) ++bad;
        ++st.checked;
    }
    if (bad) {
        std::ostringstream s;
        s << name << ": " << bad << " of " << n << " gradient entries differ from central differences; "
          << "worst at element " << st.worst_index << ": analytic " << st.worst_analytic << ", numeric "
          << st.worst_numeric;
        rep.failures.push_back(s.str());
    }
    rep.tensors.push_back(st);
}

}  // namespace detail

// Builds `layer` for `in` (with an Rng seeded from options.seed) and checks its
// gradients and contract; see the top of this file. The layer is left built.
inline GradientReport check_layer_gradients(Layer<double>& layer, const Shape& in,
                                            const GradientCheckOptions& o = {}) {
    GradientReport rep;
    rep.layer = layer.type();
    rep.input = in;
    rep.batch = o.batch;
    Rng rng(o.seed);
    Shape out;
    try {
        out = layer.build(in, rng);
    } catch (const std::exception& e) {
        rep.failures.push_back(std::string("build failed: ") + e.what());
        return rep;
    }
    layer.set_fusion(false);  // backward needs every inner layer's output
    struct FoldingBack {
        Layer<double>& l;
        ~FoldingBack() { l.set_fusion(true); }
    } folding_back{layer};
    Tensor<double> x = detail::random_tensor(o.batch, in, rng);
    const Tensor<double> R = detail::random_tensor(o.batch, out, rng);
    std::vector<Rng*> gens;
    detail::collect_generators(layer, gens);
    std::vector<Rng> saved;
    for (Rng* g : gens) saved.push_back(*g);

    Tensor<double> y;
    ensure(y, o.batch, out);
    y.setConstant(std::numeric_limits<double>::quiet_NaN());  // overwrite sentinel
    auto run = [&]() {
        for (size_t k = 0; k < gens.size(); ++k) *gens[k] = saved[k];
        if (o.before_forward) o.before_forward();
        layer.forward(x, y, o.training);
    };
    auto loss = [&]() {
        run();
        double s = 0;
        for (Eigen::Index i = 0; i < y.size(); ++i) s += y.data()[i] * R.data()[i];
        return s;
    };
    try {
        run();
    } catch (const std::exception& e) {
        rep.failures.push_back(std::string("forward failed: ") + e.what());
        return rep;
    }
    if (!matches(y, out) || y.dimension(0) != o.batch) {
        rep.failures.push_back("forward gave " + batch_str(y) + ", build promised (N=" +
                               std::to_string(o.batch) + ": " + out.str() + ")");
        return rep;
    }
    if (!as_vector(y).allFinite())
        rep.failures.push_back("forward left non-finite values in y (it must overwrite its output)");

    // Sentinels: noise in the parameter gradients, NaN in dx.
    const auto params = layer.params();
    const std::vector<Tensor<double>> noise = detail::fill_with_noise(params, rng);
    std::vector<Tensor<double>> first;
    const auto ic = in.chw();
    Tensor<double> dx(o.batch, ic[0], ic[1], ic[2]);
    dx.setConstant(std::numeric_limits<double>::quiet_NaN());
    try {
        layer.backward(x, y, R, &dx);
    } catch (const std::exception& e) {
        rep.failures.push_back(std::string("backward failed: ") + e.what());
        return rep;
    }
    if (!matches(dx, in) || dx.dimension(0) != o.batch) {
        rep.failures.push_back("backward gave dx " + batch_str(dx) + ", expected the input's shape");
        return rep;
    }
    Eigen::Index unwritten = 0;
    for (Eigen::Index i = 0; i < dx.size(); ++i) unwritten += std::isnan(dx.data()[i]) ? 1 : 0;
    if (unwritten)
        rep.failures.push_back("backward left " + std::to_string(unwritten) + " of " +
                               std::to_string(dx.size()) + " entries of dx unwritten (NaN sentinel)");
    // The gradient of this one backward, then checks of += and of dx = nullptr.
    for (size_t k = 0; k < params.size(); ++k) {
        Tensor<double> g = params[k]->grad - noise[k];
        first.push_back(g);
    }
    const Tensor<double> dx_first = dx;
    auto same = [&](const Tensor<double>& a, const Tensor<double>& b) {
        for (Eigen::Index i = 0; i < a.size(); ++i)
            if (std::abs(a.data()[i] - b.data()[i]) > 1e-9 * (1 + std::abs(a.data()[i]))) return false;
        return true;
    };
    try {
        run();  // the same forward again (backward may use what it cached)
        layer.backward(x, y, R, &dx);
        for (size_t k = 0; k < params.size(); ++k) {
            const Tensor<double> twice = params[k]->grad - noise[k];
            const Tensor<double> expect = first[k] * 2.0;
            if (!same(twice, expect))
                rep.failures.push_back("backward does not accumulate into '" + params[k]->name +
                                       "' (a second backward did not add the same gradient again)");
        }
        for (auto* p : params) p->grad.setZero();
        run();
        layer.backward(x, y, R, nullptr);
        for (size_t k = 0; k < params.size(); ++k)
            if (!same(params[k]->grad, first[k]))
                rep.failures.push_back("backward with dx = nullptr gives another gradient for '" +
                                       params[k]->name + "'");
    } catch (const std::exception& e) {
        rep.failures.push_back(std::string("a repeated backward failed: ") + e.what());
        return rep;
    }

    // Central differences for every input and parameter element.
    detail::compare(rep, "input", x.size(), [&](Eigen::Index i) -> double& { return x.data()[i]; },
                    [&](Eigen::Index i) { return dx_first.data()[i]; }, loss, o);
    for (size_t k = 0; k < params.size(); ++k)
        detail::compare(rep, "'" + params[k]->name + "'", params[k]->value.size(),
                        [&](Eigen::Index i) -> double& { return params[k]->value.data()[i]; },
                        [&](Eigen::Index i) { return first[k].data()[i]; }, loss, o);
    return rep;
}

// Whole-model check: L = SoftmaxCrossEntropy(model.forward(x, training), labels). Every
// parameter gradient model.backward accumulates (onto noise, subtracted afterwards) is
// compared with central differences; dropout masks are replayed as for one layer.
inline GradientReport check_model_gradients(Sequential<double>& model, const Tensor<double>& x,
                                            const std::vector<std::uint8_t>& labels,
                                            const GradientCheckOptions& o = {}) {
    GradientReport rep;
    rep.layer = "model";
    rep.input = model.input_shape();
    rep.batch = x.dimension(0);
    if (Eigen::Index(labels.size()) != x.dimension(0)) {
        rep.failures.push_back("labels and batch differ in size");
        return rep;
    }
    struct FoldingBack {  // backward needs every layer's output: folding off during the check
        Sequential<double>& m;
        bool was;
        ~FoldingBack() { m.set_fusion(was); }
    } folding_back{model, model.fusion()};
    model.set_fusion(false);
    std::vector<Rng*> gens;
    for (size_t i = 0; i < model.size(); ++i) detail::collect_generators(model.layer(i), gens);
    std::vector<Rng> saved;
    for (Rng* g : gens) saved.push_back(*g);
    SoftmaxCrossEntropy<double> ce;
    auto loss = [&]() {
        for (size_t k = 0; k < gens.size(); ++k) *gens[k] = saved[k];
        if (o.before_forward) o.before_forward();
        return ce.forward(model.forward(x, o.training), labels.data());
    };
    Rng rng(o.seed);
    const auto params = model.params();
    const std::vector<Tensor<double>> noise = detail::fill_with_noise(params, rng);
    loss();
    Tensor<double> dlogits;
    ce.backward(dlogits);
    model.backward(dlogits);
    for (size_t k = 0; k < params.size(); ++k)
        detail::compare(rep, "'" + params[k]->name + "' (tensor " + std::to_string(k) + ")",
                        params[k]->value.size(),
                        [&](Eigen::Index i) -> double& { return params[k]->value.data()[i]; },
                        [&](Eigen::Index i) { return params[k]->grad.data()[i] - noise[k].data()[i]; },
                        loss, o);
    return rep;
}

}  // namespace kitnn::testing
