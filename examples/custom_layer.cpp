// examples/custom_layer.cpp — a layer written OUTSIDE the library, used like a built-in:
// defined and registered here, checked with kitnn's public conformance checker
// (gradients, contract, save/load, clone), trained, saved and loaded back.
//
//   build/examples/custom_layer [--epochs N] [--out FILE]
//
// The layer: a Swish whose slope is learned per channel (Ramachandran et al., 2017),
//   y = x * sigmoid(beta_c * x)          beta: (C, 1, 1, 1), one per channel (or feature)
// with, for s = sigmoid(beta_c * x),
//   dy/dx      = s + beta_c * x * s * (1 - s)
//   dy/dbeta_c = x^2 * s * (1 - s)       summed over the batch and the channel's pixels
// The data: synthetic 8x8 images of a horizontal or a vertical bar in noise (no
// download), so the program runs anywhere; it exits 1 if any check fails, and CTest
// runs it (test name custom_layer_example).
#include "cli.hpp"

#include <kitnn/kitnn.hpp>
#include <kitnn/testing/conformance.hpp>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace myproject {

using kitnn::Config;
using kitnn::Layer;
using kitnn::LayerFootprint;
using kitnn::Param;
using kitnn::Rng;
using kitnn::Shape;
using kitnn::Tensor;

template <class T>
class LearnedSwish : public Layer<T> {
public:
    static constexpr const char* kType = "LearnedSwish";  // its name in model files
    LearnedSwish() { beta_.name = "beta"; }
    std::string type() const override { return kType; }
    Config config() const override { return {}; }  // no hyperparameters: no from_config needed
    std::vector<Param<T>*> params() override { return {&beta_}; }
    LayerFootprint footprint(const Shape& in) const override { return {in.c(), 0}; }

    void forward(const Tensor<T>& x, Tensor<T>& y, bool) override {
        this->check_input(x);
        kitnn::ensure(y, x.dimension(0), this->out_);
        each(x, [&](Eigen::Index i, Eigen::Index c) {
            y.data()[i] = x.data()[i] * sigmoid(beta_.value.data()[c] * x.data()[i]);
        });
    }
    void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
        if (dx) kitnn::ensure(*dx, dy.dimension(0), this->in_);
        each(x, [&](Eigen::Index i, Eigen::Index c) {
            const T b = beta_.value.data()[c], v = x.data()[i], s = sigmoid(b * v), g = dy.data()[i];
            beta_.grad.data()[c] += g * v * v * s * (T(1) - s);  // += : gradients accumulate
            if (dx) dx->data()[i] = g * (s + b * v * s * (T(1) - s));  // = : dx is overwritten
        });
    }

protected:
    Shape do_build(const Shape& in, Rng&) override {
        beta_.resize(in.c(), 1, 1, 1);
        beta_.value.setConstant(T(1));  // starts as the plain Swish (SiLU)
        return in;
    }

private:
    static T sigmoid(T v) {  // stable for any v
        const T e = std::exp(-std::abs(v));
        return v >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    }
    // f(i, c) for every value i of the batch, c its channel (NCHW: planes of H*W values).
    template <class F>
    void each(const Tensor<T>& x, F f) const {
        const Eigen::Index C = this->in_.c(), plane = this->in_.h() * this->in_.w();
        for (Eigen::Index i = 0; i < x.size(); ++i) f(i, (i / plane) % C);
    }
    Param<T> beta_;  // (C, 1, 1, 1)
};
KITNN_REGISTER_LAYER(LearnedSwish);  // in this namespace, after the class

}  // namespace myproject

namespace {

// n images (n, 1, 8, 8): label 0 = a horizontal bar, 1 = a vertical one, in noise.
void make_bars(Eigen::Index n, std::uint64_t seed, kitnn::Tensor<float>& x, std::vector<std::uint8_t>& y) {
    kitnn::Rng rng(seed);
    x.resize(n, 1, 8, 8);
    y.resize(size_t(n));
    for (Eigen::Index k = 0; k < n; ++k) {
        const int label = int(rng.below(2)), at = int(rng.below(8));
        y[size_t(k)] = std::uint8_t(label);
        for (int i = 0; i < 8; ++i)
            for (int j = 0; j < 8; ++j)
                x(k, 0, i, j) = float(0.3 * rng.normal() + ((label == 0 ? i : j) == at ? 1.0 : 0.0));
    }
}

int run(int epochs, const std::string& out) {
    using namespace kitnn;
    // 1. The public conformance checker: gradients (every element, central
    //    differences), the contract's sentinels, config, footprint, empty batch,
    //    save/load and clone.
    const auto report = testing::check_layer_conformance(
        [] { return std::make_unique<myproject::LearnedSwish<double>>(); }, Shape::image(3, 4, 5));
    std::cout << report.str();
    if (!report.ok()) return 1;

    // 2. Train a model that uses it.
    Tensor<float> xs;
    std::vector<std::uint8_t> ys;
    make_bars(1200, 7, xs, ys);
    Sequential<float> model(Shape::image(1, 8, 8), /*seed=*/3);
    model.add<Conv2D>(4, std::array<int, 2>{3, 3});
    model.add<myproject::LearnedSwish>();
    model.add<MaxPool2D>();
    model.add<Flatten>();
    model.add<Dense>(2);
    std::cout << model.summary();
    LabelledView train{&xs, &ys, 0, 1000}, val{&xs, &ys, 1000, 1200};
    AdamOptions ao;
    ao.lr = 0.01;
    Adam<float> adam(ao);
    FitOptions fo;
    fo.epochs = epochs;
    fo.batch = 50;
    fo.progress = 0;
    fit(model, adam, train, val, fo);
    const EvalResult r = evaluate(model, val);
    std::printf("validation accuracy: %.4f\n", r.accuracy);
    if (r.accuracy < 0.9) {
        std::cerr << "custom_layer: the model did not learn the bars (accuracy " << r.accuracy << ")\n";
        return 1;
    }

    // 3. Save it and load it back: the loader finds LearnedSwish in the registry.
    save_model(out, model, {{"model", "custom_layer example"}});
    Sequential<float> back = load_model<float>(out);
    const Tensor<float> xv = xs.slice(std::array<Eigen::Index, 4>{1000, 0, 0, 0},
                                      std::array<Eigen::Index, 4>{200, 1, 8, 8});
    const Tensor<float> p1 = model.predict(xv), p2 = back.predict(xv);
    for (Eigen::Index i = 0; i < p1.size(); ++i)
        if (p1.data()[i] != p2.data()[i]) {
            std::cerr << "custom_layer: the reloaded model predicts differently\n";
            return 1;
        }
    std::cout << "saved " << out << " and loaded it back: " << back.layer(1).type()
              << ", identical predictions on " << xv.dimension(0) << " images\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"A layer defined outside kitnn: registered, gradient-checked, trained, saved, reloaded."};
    int epochs = 3;
    std::string out = "custom_layer.kitnn";
    app.add_option("--epochs", epochs, "training epochs")->check(CLI::Range(1, 1000));
    app.add_option("--out", out, "where to save the trained model");
    if (int rc = kitnn_examples::parse(app, argc, argv); rc >= 0) return rc;
    return kitnn_examples::guarded("custom_layer", [&] { return run(epochs, out); });
}
