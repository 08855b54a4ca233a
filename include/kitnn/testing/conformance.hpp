// kitnn/testing/conformance.hpp — everything a layer must do to be a kitnn layer,
// checked in one call: for the library's layers (tests/test_conformance.cpp runs it on
// every registered type) and for your own (examples/custom_layer.cpp).
//
//   auto report = kitnn::testing::check_layer_conformance(
//       [] { return std::make_unique<GELU<double>>(); }, Shape::image(2, 3, 5));
//   if (!report.ok()) std::cerr << report.str();
//
// `make` returns a new, unbuilt layer each call (always the same hyperparameters); the
// layer is checked on input shape `in`:
//   registered   its type() is in the layer registry (layers/registry.hpp)
//   config       make_layer(type(), config()) gives the same type and config, for
//                double and float (the model file and clone_model rely on it)
//   footprint    footprint(in) before build counts exactly the values of params()
//                and state() that build allocates (the model loader's limit check)
//   gradients    check_layer_gradients (testing/gradient_check.hpp) at two batch sizes
//                in inference mode, and in training mode
//   empty batch  forward and backward of a batch of 0 samples: shapes (0, ...), no
//                error, parameter gradients unchanged
//   save/load    a model holding the layer, serialised and read back (double, and
//                float when the layer has no branches): the same weights and state and
//                bit-identical outputs
//   clone        clone_model of that model: bit-identical outputs
#pragma once

#include "kitnn/io/model_file.hpp"
#include "kitnn/layers/registry.hpp"
#include "kitnn/model/clone.hpp"
#include "kitnn/model/sequential.hpp"
#include "kitnn/testing/gradient_check.hpp"

#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace kitnn::testing {

struct ConformanceOptions {
    std::vector<Eigen::Index> batches{1, 3};  // inference-mode gradient checks
    Eigen::Index training_batch = 2;          // the training-mode one (0: skip)
    std::uint64_t seed = 1;
};

struct ConformanceReport {
    std::string layer;
    Shape input;
    std::vector<std::string> passed;         // the checks that passed
    std::vector<std::string> failures;       // "check: what went wrong"
    std::vector<GradientReport> gradients;   // one per gradient check
    bool ok() const { return failures.empty(); }
    std::string str() const {
        std::ostringstream s;
        s << layer << " on " << input.str() << ": " << (ok() ? "conforms" : "DOES NOT CONFORM") << "\n";
        for (auto& p : passed) s << "  ok     " << p << "\n";
        for (auto& f : failures) s << "  FAILED " << f << "\n";
        for (auto& g : gradients) s << "  " << g.str();
        return s.str();
    }
};

namespace detail {

inline bool same_config(const Config& a, const Config& b) { return a.items() == b.items(); }

template <class T>
bool same_tensors(Sequential<T>& a, Sequential<T>& b, std::string& why) {
    std::vector<Param<T>*> pa, pb;
    kitnn::detail::for_each_layer(a, [&](const std::string&, Layer<T>& l) {
        for (auto* p : l.params()) pa.push_back(p);
        for (auto* p : l.state()) pa.push_back(p);
    });
    kitnn::detail::for_each_layer(b, [&](const std::string&, Layer<T>& l) {
        for (auto* p : l.params()) pb.push_back(p);
        for (auto* p : l.state()) pb.push_back(p);
    });
    if (pa.size() != pb.size()) {
        why = std::to_string(pa.size()) + " tensors became " + std::to_string(pb.size());
        return false;
    }
    for (size_t k = 0; k < pa.size(); ++k)
        if (pa[k]->name != pb[k]->name || !(as_vector(pa[k]->value) == as_vector(pb[k]->value))) {
            why = "tensor '" + pa[k]->name + "' differs";
            return false;
        }
    return true;
}

template <class T>
bool same_outputs(Sequential<T>& a, Sequential<T>& b, const Tensor<T>& x) {
    const Tensor<T> ya = a.forward(x, false);
    const Tensor<T>& yb = b.forward(x, false);
    if (ya.dimensions() != yb.dimensions()) return false;
    for (Eigen::Index i = 0; i < ya.size(); ++i)
        if (!(ya.data()[i] == yb.data()[i])) return false;  // bit-identical (and no NaN)
    return true;
}

// Sets every parameter and state tensor to random values (a freshly built layer has
// zero biases and unit statistics, which would hide a bias or state lost on the way).
template <class T>
void randomize(Sequential<T>& m, Rng& rng) {
    kitnn::detail::for_each_layer(m, [&](const std::string&, Layer<T>& l) {
        for (auto* p : l.params())
            for (Eigen::Index i = 0; i < p->value.size(); ++i) p->value.data()[i] = T(0.5 * rng.normal());
        for (auto* p : l.state())  // positive, as a variance must be
            for (Eigen::Index i = 0; i < p->value.size(); ++i) p->value.data()[i] = T(0.5 + rng.uniform());
    });
}

// Save/load and clone of a one-layer model holding `layer`; "" or what went wrong.
template <class T>
std::string round_trip(std::unique_ptr<Layer<T>> layer, const Shape& in, std::uint64_t seed, bool clone) {
    Sequential<T> m(in, seed);
    m.add(std::move(layer));
    Rng rng(seed + 17);
    randomize(m, rng);
    Tensor<T> x(3, in.chw()[0], in.chw()[1], in.chw()[2]);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = T(rng.normal());
    std::string why;
    if (!clone) {
        Sequential<T> back = deserialize_model<T>(serialize_model(m), "(conformance)");
        if (back.size() != 1 || back.layer(0).type() != m.layer(0).type() ||
            !same_config(back.layer(0).config(), m.layer(0).config()))
            return "the loaded layer has another type or config";
        if (!same_tensors(m, back, why)) return "after loading, " + why;
        if (!same_outputs(m, back, x)) return "the loaded model's outputs differ";
    } else {
        Sequential<T> copy = clone_model(m);
        if (!same_tensors(m, copy, why)) return "in the clone, " + why;
        if (!same_outputs(m, copy, x)) return "the clone's outputs differ";
    }
    return "";
}

}  // namespace detail

inline ConformanceReport check_layer_conformance(const std::function<std::unique_ptr<Layer<double>>()>& make,
                                                 const Shape& in, const ConformanceOptions& o = {}) {
    ConformanceReport rep;
    rep.input = in;
    auto check = [&](const std::string& name, const std::function<std::string()>& f) {
        std::string why;
        try {
            why = f();
        } catch (const std::exception& e) {
            why = std::string("threw: ") + e.what();
        }
        if (why.empty()) rep.passed.push_back(name);
        else rep.failures.push_back(name + ": " + why);
    };
    const std::unique_ptr<Layer<double>> proto = make();
    rep.layer = proto->type();
    const std::string type = proto->type();

    check("registered", [&]() -> std::string {
        if (!LayerRegistry::global().has(type))
            return "type '" + type + "' is not in the layer registry (KITNN_REGISTER_LAYER)";
        return "";
    });
    if (!rep.ok()) return rep;  // the other checks need the registry

    check("config round trip", [&]() -> std::string {
        const Config c = proto->config();
        auto d = make_layer<double>(type, c);
        auto f = make_layer<float>(type, c);
        if (d->type() != type || f->type() != type)
            return "make_layer('" + type + "') made a '" + d->type() + "' (type() and kType differ?)";
        if (!detail::same_config(d->config(), c) || !detail::same_config(f->config(), c))
            return "make_layer(type, config) gives another config";
        return "";
    });

    check("footprint", [&]() -> std::string {
        auto l = make();
        const LayerFootprint f = l->footprint(in);
        Rng rng(o.seed);
        l->build(in, rng);
        std::int64_t n = 0;
        for (auto* p : l->params()) n += p->value.size();
        for (auto* p : l->state()) n += p->value.size();
        if (l->branch_count() == 0 && f.weights != n)
            return "footprint(in).weights = " + std::to_string(f.weights) + ", but build allocated " +
                   std::to_string(n) + " values of params() and state()";
        if (f.workspace < 0) return "negative workspace";
        return "";
    });

    for (Eigen::Index b : o.batches) {
        auto l = make();
        GradientCheckOptions go;
        go.batch = b;
        go.seed = o.seed + std::uint64_t(b);
        rep.gradients.push_back(check_layer_gradients(*l, in, go));
        check("gradients, batch " + std::to_string(b), [&]() -> std::string {
            return rep.gradients.back().ok() ? "" : rep.gradients.back().failures.front();
        });
    }
    if (o.training_batch > 0) {
        auto l = make();
        GradientCheckOptions go;
        go.batch = o.training_batch;
        go.seed = o.seed + 100;
        go.training = true;
        rep.gradients.push_back(check_layer_gradients(*l, in, go));
        check("gradients in training mode, batch " + std::to_string(o.training_batch), [&]() -> std::string {
            return rep.gradients.back().ok() ? "" : rep.gradients.back().failures.front();
        });
    }

    check("empty batch", [&]() -> std::string {
        auto l = make();
        Rng rng(o.seed);
        const Shape out = l->build(in, rng);
        const auto ic = in.chw();
        Tensor<double> x(0, ic[0], ic[1], ic[2]), y, dy, dx;
        for (auto* p : l->params()) p->grad.setZero();
        for (bool training : {false, true}) {
            l->forward(x, y, training);
            if (!matches(y, out) || y.dimension(0) != 0) return "forward gave " + batch_str(y);
            ensure(dy, 0, out);
            l->backward(x, y, dy, &dx);
            if (!matches(dx, in) || dx.dimension(0) != 0) return "backward gave dx " + batch_str(dx);
            l->backward(x, y, dy, nullptr);
        }
        for (auto* p : l->params())
            if (!as_vector(p->grad).isZero(0)) return "an empty batch changed the gradient of '" + p->name + "'";
        return "";
    });

    check("save/load (double)", [&] { return detail::round_trip<double>(make(), in, o.seed, false); });
    if (proto->branch_count() == 0)
        check("save/load (float)", [&] {
            return detail::round_trip<float>(make_layer<float>(type, proto->config()), in, o.seed, false);
        });
    check("clone_model", [&] { return detail::round_trip<double>(make(), in, o.seed, true); });
    return rep;
}

}  // namespace kitnn::testing
