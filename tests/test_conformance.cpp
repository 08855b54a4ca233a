// Every registered layer through kitnn::testing::check_layer_conformance (gradients at
// two batch sizes and in training mode, an empty batch, config round trip, footprint,
// save/load, clone), driven by the layer registry: a registered type without a case
// here fails, and so does a case whose layer is not registered.
//
// Adding a layer: its header (which registers it) and ONE line in kCases below.
#include <kitnn/kitnn.hpp>
#include <kitnn/testing/conformance.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <vector>

using namespace kitnn;
using K = std::array<int, 2>;

namespace {

struct Case {
    Shape in;
    std::function<std::unique_ptr<Layer<double>>()> make;
};

// A case for layer template L on input `in`, made as L<double>(args...).
template <template <class> class L, class... A>
Case layer_case(Shape in, A... args) {
    return {std::move(in), [=] { return std::unique_ptr<Layer<double>>(new L<double>(args...)); }};
}

// An Inception-like container: a conv branch, a pool branch and the identity, concatenated.
std::unique_ptr<Layer<double>> branches_example() {
    auto b = std::make_unique<Branches<double>>(Merge::concat);
    b->branch().add<Conv2D>(2, K{3, 3}, Activation::relu, Padding::same);
    b->branch().add<MaxPool2D>(K{3, 3}, K{1, 1}, Padding::same);
    b->branch();
    return b;
}

// An ensemble-like container: two small networks whose outputs are averaged.
std::unique_ptr<Layer<double>> branches_mean_example() {
    auto b = std::make_unique<Branches<double>>(Merge::mean);
    auto& n0 = b->branch();
    n0.add<Conv2D>(2, K{3, 3}, Activation::relu);
    n0.add<Flatten>();
    n0.add<Dense>(3);
    auto& n1 = b->branch();
    n1.add<MaxPool2D>(K{2, 2});
    n1.add<Flatten>();
    n1.add<Dense>(3, Activation::relu);
    return b;
}

// One line per layer (a layer may have several, with other hyperparameters). Odd
// sizes, several channels, non-default hyperparameters.
const std::vector<Case>& cases() {
    static const std::vector<Case> kCases = {
        layer_case<Conv2D>(Shape::image(2, 6, 5), 3, K{3, 2}, Activation::relu, Padding::same, 2, Init::he_normal),
        layer_case<Conv2D>(Shape::image(2, 5, 5), 2, K{3, 3}, Activation::linear, /*pad=*/1, 1, Init::glorot_uniform, false),
        layer_case<Dense>(Shape::flat(7), 4, Activation::relu, Init::he_uniform),
        layer_case<MaxPool2D>(Shape::image(2, 5, 7), K{3, 2}, K{2, 1}, Padding::same),
        layer_case<AvgPool2D>(Shape::image(2, 5, 6), K{3, 3}, K{2, 2}, Padding::same),
        layer_case<GlobalAvgPool2D>(Shape::image(3, 3, 4)),
        layer_case<BatchNorm>(Shape::image(2, 3, 3), 0.8, 1e-3),
        layer_case<Dropout>(Shape::image(2, 3, 3), 0.4),
        layer_case<Flatten>(Shape::image(2, 3, 4)),
        layer_case<Softmax>(Shape::flat(6)),
        layer_case<ReLU>(Shape::image(2, 3, 5)),
        layer_case<LeakyReLU>(Shape::image(2, 3, 5), 0.1),
        layer_case<Tanh>(Shape::flat(9)),
        layer_case<Sigmoid>(Shape::image(2, 3, 5)),
        layer_case<GELU>(Shape::image(2, 3, 5)),
        layer_case<SiLU>(Shape::image(2, 3, 5)),
        {Shape::image(2, 5, 5), branches_example},
        {Shape::image(2, 5, 5), branches_mean_example},
    };
    return kCases;
}

}  // namespace

TEST_CASE("conformance: every registered layer has a case and every case is registered", "[conformance]") {
    std::set<std::string> covered;
    for (const Case& c : cases()) {
        const std::string type = c.make()->type();
        INFO("case for " << type);
        CHECK(LayerRegistry::global().has(type));  // a layer that forgot KITNN_REGISTER_LAYER
        covered.insert(type);
    }
    for (const std::string& name : LayerRegistry::global().names()) {
        INFO("registered type " << name << " has no line in tests/test_conformance.cpp");
        CHECK(covered.count(name) == 1);
    }
    CHECK(covered.size() == LayerRegistry::global().names().size());
}

TEST_CASE("conformance: every layer passes every check", "[conformance]") {
    for (const Case& c : cases()) {
        const auto report = testing::check_layer_conformance(c.make, c.in);
        INFO(report.str());
        CHECK(report.ok());
        CHECK(report.passed.size() >= 8);
    }
}

TEST_CASE("conformance: every header of include/kitnn/layers is in layers/all.hpp", "[conformance]") {
    // all.hpp is what the model loader and the umbrella header include: a layer header
    // missing there would be registered in some programs and unknown in others.
    namespace fs = std::filesystem;
    const fs::path dir = fs::path(KITNN_TEST_DATA_DIR) / ".." / ".." / "include" / "kitnn" / "layers";
    std::ifstream f(dir / "all.hpp");
    REQUIRE(f.good());
    const std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    int headers = 0;
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string name = e.path().filename().string();
        if (e.path().extension() != ".hpp" || name == "all.hpp") continue;
        ++headers;
        INFO(name);
        CHECK(all.find("#include \"kitnn/layers/" + name + "\"") != std::string::npos);
    }
    CHECK(headers >= 10);
}

TEST_CASE("the conformance checks catch broken layers", "[conformance]") {
    // A layer that breaks the contract must fail, each in the check that names it.
    struct HalfDx : Flatten<double> {  // backward writes only half of dx
        void backward(const Tensor<double>&, const Tensor<double>&, const Tensor<double>& dy,
                      Tensor<double>* dx) override {
            if (!dx) return;
            ensure(*dx, dy.dimension(0), this->in_);
            for (Eigen::Index i = 0; i < dx->size() / 2; ++i) dx->data()[i] = dy.data()[i];
        }
    };
    HalfDx half;
    const auto hr = testing::check_layer_gradients(half, Shape::flat(4));
    CHECK_FALSE(hr.ok());
    CHECK_THAT(hr.str(), Catch::Contains("unwritten (NaN sentinel)"));
    // Dense whose gradient is assigned (=) instead of accumulated: the double backward
    // check fails. Simulated with a wrapper that zeroes the gradient first.
    struct Overwrites : Dense<double> {
        Overwrites() : Dense<double>(3) {}
        void backward(const Tensor<double>& x, const Tensor<double>& y, const Tensor<double>& dy,
                      Tensor<double>* dx) override {
            for (auto* p : params()) p->grad.setZero();
            Dense<double>::backward(x, y, dy, dx);
        }
    };
    auto rep = testing::check_layer_gradients(*std::make_unique<Overwrites>(), Shape::flat(4));
    CHECK_FALSE(rep.ok());
    CHECK_THAT(rep.str(), Catch::Contains("does not accumulate"));

    // A type nobody registered: the conformance report says so and stops.
    struct Unregistered : Flatten<double> {
        std::string type() const override { return "NotRegistered"; }
    };
    auto conf = testing::check_layer_conformance([] { return std::make_unique<Unregistered>(); },
                                                 Shape::image(1, 2, 2));
    CHECK_FALSE(conf.ok());
    CHECK_THAT(conf.str(), Catch::Contains("not in the layer registry"));
    // ... and a model holding it cannot be saved or cloned (never a silent fallback).
    Sequential<double> m(Shape::image(1, 2, 2));
    m.add(std::make_unique<Unregistered>());
    CHECK_THROWS_AS(serialize_model(m), UnregisteredLayerError);
    CHECK_THROWS_WITH(clone_model(m), Catch::Contains("NotRegistered") && Catch::Contains("KITNN_REGISTER_LAYER"));
}
