// kitnn/layers/registry.hpp — every layer type by name: how to make it from its Config.
//
// Each layer registers itself in its own header, after its class:
//
//   template <class T>
//   class GELU : public Elementwise<T> {
//   public:
//       static constexpr const char* kType = "GELU";   // the name in model files
//       std::string type() const override { return kType; }
//       ...
//   };
//   KITNN_LIBRARY_LAYER(GELU);     // KITNN_REGISTER_LAYER(GELU) outside the library
//
// and the model loader (io/model_file.hpp), clone_model, make_layer and the
// conformance test (kitnn/testing/conformance.hpp) find it here. A layer from outside
// the library registers the same way, in its own namespace (examples/custom_layer.cpp).
//
// How it is made from a Config: `static std::unique_ptr<L<T>> from_config(const Config&)`
// when the class has one (the inverse of config(), next to it in the layer's file),
// else the default constructor (layers without hyperparameters). Both scalar types
// (float, double) are registered.
//
// Why an inline variable: the macro defines `inline const bool kitnn_registered_L`,
// initialised before main by calling register_layer<L>(). C++17 gives an inline
// variable ONE definition in the whole program however many files include the header,
// so the registration runs once (no ODR violation, no duplicate). The registry itself
// is a function-local static, created on first use, so the order in which files
// initialise does not matter.
//
// Not registered? save_model, serialize_model and clone_model throw
// UnregisteredLayerError naming the type (a file the loader would refuse must not be
// written), and the conformance test fails for a library layer that is not in the
// registry or a registered type it has no case for.
#pragma once

#include "kitnn/layers/layer.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeindex>
#include <utility>
#include <vector>

namespace kitnn {

// A layer type that is not in the registry was asked to be saved, cloned or made.
struct UnregisteredLayerError : std::logic_error {
    using std::logic_error::logic_error;
};

template <class T>
using LayerMaker = std::unique_ptr<Layer<T>> (*)(const Config&);

// One registered type: its name and how to make it for each scalar type.
struct LayerType {
    std::string name;
    LayerMaker<float> make_float = nullptr;
    LayerMaker<double> make_double = nullptr;
    std::type_index cls = typeid(void);  // the class (its float version), to spot a clash

    template <class T>
    std::unique_ptr<Layer<T>> make(const Config& c) const {
        static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                      "kitnn layers are registered for float and double");
        if constexpr (std::is_same<T, float>::value) return make_float(c);
        else return make_double(c);
    }
};

class LayerRegistry {
public:
    // The program's registry.
    static LayerRegistry& global() {
        static LayerRegistry r;
        return r;
    }

    // Adds `t`. The same class again under its name is ignored (e.g. one header seen by
    // two shared libraries); another class under a taken name is a programming error.
    void add(LayerType t) {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = types_.find(t.name);
        if (it != types_.end()) {
            if (it->second.cls == t.cls) return;
            throw std::logic_error("layer type '" + t.name + "' is registered twice, by two different classes");
        }
        const std::string name = t.name;
        types_.emplace(name, std::move(t));
    }
    // nullptr when `name` is not registered. The entry stays valid (never removed).
    const LayerType* find(const std::string& name) const {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = types_.find(name);
        return it == types_.end() ? nullptr : &it->second;
    }
    bool has(const std::string& name) const { return find(name) != nullptr; }
    // Every registered name, sorted.
    std::vector<std::string> names() const {
        std::lock_guard<std::mutex> lock(mu_);
        std::vector<std::string> r;
        for (auto& kv : types_) r.push_back(kv.first);
        return r;
    }

private:
    LayerRegistry() = default;
    mutable std::mutex mu_;
    std::map<std::string, LayerType> types_;
};

namespace detail {
template <class L, class = void>
struct has_from_config : std::false_type {};
template <class L>
struct has_from_config<L, std::void_t<decltype(L::from_config(std::declval<const Config&>()))>>
    : std::true_type {};

template <template <class> class L, class T>
std::unique_ptr<Layer<T>> make_registered(const Config& c) {
    if constexpr (has_from_config<L<T>>::value) {
        return L<T>::from_config(c);
    } else {
        static_assert(std::is_default_constructible<L<T>>::value,
                      "a layer with hyperparameters needs static std::unique_ptr<L<T>> "
                      "from_config(const Config&)");
        return std::make_unique<L<T>>();
    }
}
}  // namespace detail

// Registers layer template L under L<T>::kType, for float and double. Returns true, so
// it can initialise the variable KITNN_REGISTER_LAYER defines.
template <template <class> class L>
bool register_layer() {
    LayerType t;
    t.name = L<float>::kType;
    t.make_float = &detail::make_registered<L, float>;
    t.make_double = &detail::make_registered<L, double>;
    t.cls = typeid(L<float>);
    LayerRegistry::global().add(std::move(t));
    return true;
}

// Use after the layer's class, in its namespace, with the template's plain name.
#define KITNN_REGISTER_LAYER(L) inline const bool kitnn_registered_##L = ::kitnn::register_layer<L>()

// The library's own layers register with KITNN_LIBRARY_LAYER(L) instead: the same
// registration, plus the option of compiling them once per program.
//
// Why: registering a layer makes the compiler instantiate all of it (forward, backward,
// the im2col GEMMs) for float and double in every file that includes the header, even a
// file that never builds a network. That is most of the compile time of a small program
// (an empty main including kitnn.hpp: 35 s at -O3; mnist_apply.cpp: 55 s). Defining
// KITNN_PRECOMPILED_LAYERS turns the layers into `extern template` declarations: the
// file compiles in 7 s (22 s for mnist_apply.cpp), and ONE file of the program compiles
// them, in two halves that can build in parallel:
//     #define KITNN_INSTANTIATE_FLOAT_LAYERS    // (or ..._DOUBLE_LAYERS)
//     #include "kitnn/layers/all.hpp"
// The project's own programs and tests are built this way (cmake/kitnn_layers.cpp,
// option KITNN_PRECOMPILED_LAYERS); a user's program that includes kitnn without these
// macros gets the plain header-only behaviour, with identical code. A layer from outside
// the library keeps KITNN_REGISTER_LAYER: it is compiled where it is included.
#if defined(KITNN_INSTANTIATE_FLOAT_LAYERS)
#define KITNN_FLOAT_LAYER_INSTANCE_(L) template class L<float>;
#elif defined(KITNN_PRECOMPILED_LAYERS) || defined(KITNN_INSTANTIATE_DOUBLE_LAYERS)
#define KITNN_FLOAT_LAYER_INSTANCE_(L) extern template class L<float>;
#else
#define KITNN_FLOAT_LAYER_INSTANCE_(L)
#endif
#if defined(KITNN_INSTANTIATE_DOUBLE_LAYERS)
#define KITNN_DOUBLE_LAYER_INSTANCE_(L) template class L<double>;
#elif defined(KITNN_PRECOMPILED_LAYERS) || defined(KITNN_INSTANTIATE_FLOAT_LAYERS)
#define KITNN_DOUBLE_LAYER_INSTANCE_(L) extern template class L<double>;
#else
#define KITNN_DOUBLE_LAYER_INSTANCE_(L)
#endif
#define KITNN_LIBRARY_LAYER(L) \
    KITNN_FLOAT_LAYER_INSTANCE_(L) KITNN_DOUBLE_LAYER_INSTANCE_(L) KITNN_REGISTER_LAYER(L)

// Rebuilds a layer from its type name and Config (what the model file stores): the
// inverse of Layer::type() + Layer::config(). Throws std::runtime_error for a name
// nobody registered and whatever the layer's from_config throws for bad values.
template <class T>
std::unique_ptr<Layer<T>> make_layer(const std::string& type, const Config& c) {
    const LayerType* t = LayerRegistry::global().find(type);
    if (!t)
        throw std::runtime_error("unknown layer type '" + type +
                                 "' (written by a newer kitnn, not a kitnn model, or a custom "
                                 "layer this program does not register)");
    return t->make<T>(c);
}

// Throws UnregisteredLayerError unless `l` (and every layer nested in it) can be
// rebuilt from the registry: called before a model is written.
template <class T>
void require_registered(Layer<T>& l) {
    if (!LayerRegistry::global().has(l.type()))
        throw UnregisteredLayerError(
            "layer type '" + l.type() +
            "' is not registered, so a model file holding it could not be read back: add "
            "KITNN_REGISTER_LAYER(" + l.type() + ") after its class (see kitnn/layers/registry.hpp)");
    for (size_t b = 0; b < l.branch_count(); ++b)
        for (Layer<T>* inner : l.branch(b)) require_registered(*inner);
}

}  // namespace kitnn
