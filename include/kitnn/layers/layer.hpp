// kitnn/layers/layer.hpp — the interface every layer implements.
//
// Contract (checked for every registered layer by kitnn/testing/conformance.hpp):
//   build(in, rng)      infers the output shape from the input shape, allocates and
//                       initialises parameters; throws ShapeError if `in` does not fit.
//   forward(x, y, tr)   x: (N, in...) -> y: (N, out...). y is resized if needed and
//                       overwritten. Caches whatever backward needs (argmax, masks).
//   backward(x, y, dy, dx)
//                       dy: dL/dy. Parameter gradients are ACCUMULATED (+=) so that
//                       gradients of several batches can be summed; dx, when not
//                       null, is OVERWRITTEN with dL/dx (the first layer passes null
//                       and skips that work). x and y are the tensors of the last
//                       forward call.
// Nothing in forward/backward allocates once the batch size stays the same:
// workspaces are members, resized only when N changes.
#pragma once

#include "kitnn/core/rng.hpp"
#include "kitnn/core/tensor.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kitnn {

// A layer's hyperparameters as ordered key/value text: enough for summary(), the
// model file and the factory to rebuild the layer without the code that made it.
class Config {
public:
    Config& set(const std::string& key, const std::string& value) {
        for (auto& kv : items_)
            if (kv.first == key) {
                kv.second = value;
                return *this;
            }
        items_.emplace_back(key, value);
        return *this;
    }
    Config& set(const std::string& key, long long v) { return set(key, std::to_string(v)); }
    Config& set(const std::string& key, int v) { return set(key, static_cast<long long>(v)); }
    Config& set(const std::string& key, long v) { return set(key, static_cast<long long>(v)); }
    Config& set(const std::string& key, double v) {
        std::ostringstream s;
        s.precision(17);
        s << v;
        return set(key, s.str());
    }
    Config& set(const std::string& key, const char* v) { return set(key, std::string(v)); }

    bool has(const std::string& key) const {
        for (auto& kv : items_)
            if (kv.first == key) return true;
        return false;
    }
    const std::string& str(const std::string& key) const {
        for (auto& kv : items_)
            if (kv.first == key) return kv.second;
        throw std::runtime_error("layer config: missing key '" + key + "'");
    }
    long long integer(const std::string& key) const {
        const auto& v = str(key);
        try {
            size_t used = 0;
            long long r = std::stoll(v, &used);
            if (used == v.size()) return r;
        } catch (const std::exception&) {
        }
        throw std::runtime_error("layer config: '" + key + "' is not an integer: '" + v + "'");
    }
    double real(const std::string& key) const {
        const auto& v = str(key);
        try {
            size_t used = 0;
            double r = std::stod(v, &used);
            if (used == v.size()) return r;
        } catch (const std::exception&) {
        }
        throw std::runtime_error("layer config: '" + key + "' is not a number: '" + v + "'");
    }
    // A size-like integer (filters, units, kernel, stride, pad): range-checked to
    // 0..2^24 before it is narrowed to int, so a crafted file cannot overflow a product.
    int int_value(const std::string& key) const {
        const long long v = integer(key);
        if (v < 0 || v > (1 << 24))
            throw std::runtime_error("hyperparameter '" + key + "' = " + std::to_string(v) +
                                     " is out of range (0 to 2^24)");
        return int(v);
    }
    // A flag stored as "0" or "1"; `absent` when the key is missing (files written
    // before the flag existed).
    bool flag(const std::string& key, bool absent) const {
        if (!has(key)) return absent;
        const std::string& v = str(key);
        if (v != "0" && v != "1")
            throw std::runtime_error("hyperparameter '" + key + "' = '" + v + "' (expected 0 or 1)");
        return v == "1";
    }
    const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }

private:
    std::vector<std::pair<std::string, std::string>> items_;
};

// Activation fused into Conv2D / Dense (Keras's `activation=`): applied in the
// same pass that adds the bias, and its derivative applied from y in backward.
enum class Activation { linear, relu };

inline const char* to_string(Activation a) { return a == Activation::relu ? "relu" : "linear"; }
inline Activation activation_from_string(const std::string& s) {
    if (s == "relu") return Activation::relu;
    if (s == "linear" || s == "none") return Activation::linear;
    throw std::runtime_error("unknown activation '" + s + "' (expected relu or linear)");
}

// What a layer built for input `in` will hold, computed from its hyperparameters
// without allocating (Layer::footprint). The model loader checks it against the file
// before it builds a layer from untrusted hyperparameters; the conformance test checks
// that `weights` equals what build() then allocates.
struct LayerFootprint {
    std::int64_t weights = 0;    // values of params() and state() (saturates at 2^62)
    std::int64_t workspace = 0;  // values per sample of the largest work buffer (im2col)
};

template <class T>
class Layer {
public:
    virtual ~Layer() = default;

    virtual std::string type() const = 0;  // "Conv2D", "Dense", ...
    virtual Config config() const = 0;     // hyperparameters (not weights)

    // Infers and returns the output shape; allocates and initialises parameters.
    Shape build(const Shape& in, Rng& rng) {
        in_ = in;
        out_ = do_build(in, rng);
        return out_;
    }
    virtual void forward(const Tensor<T>& x, Tensor<T>& y, bool training) = 0;
    virtual void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy,
                          Tensor<T>* dx) = 0;

    virtual std::vector<Param<T>*> params() { return {}; }
    // Non-trainable tensors that belong to the model (BatchNorm's moving mean and
    // variance): saved in the model file after params() and counted as Keras's
    // "Non-trainable params", but never given to the optimizer. Only `value` is used.
    virtual std::vector<Param<T>*> state() { return {}; }

    // Containers (Branches) hold sub-sequences of layers, one per branch. summary(),
    // the model file and the gradient checker recurse through these; plain layers
    // have none. branch(b) lists branch b's layers in order (empty = identity).
    // A layer that draws random numbers (Dropout) exposes its generator, so a
    // training checkpoint can save and restore it and a resumed run continues exactly.
    virtual Rng* generator() { return nullptr; }

    virtual size_t branch_count() const { return 0; }
    virtual std::vector<Layer<T>*> branch(size_t /*b*/) { return {}; }
    // Whether a container (Branches) folds BatchNorm and ReLU into the convolutions of
    // its branches in inference (layers/fusion.hpp); Sequential::set_fusion sets it on all.
    virtual void set_fusion(bool /*on*/) {}
    std::int64_t param_count() {
        std::int64_t n = 0;
        for (auto* p : params()) n += p->value.size();
        return n;
    }
    // Multiply-adds of one forward pass for one sample (for model comparisons).
    virtual std::int64_t macs() const { return 0; }
    // See LayerFootprint. Throws ShapeError when `in` does not fit, as build would.
    // A layer with weights must override it (the conformance test checks).
    virtual LayerFootprint footprint(const Shape& /*in*/) const { return {}; }

    const Shape& input_shape() const { return in_; }
    const Shape& output_shape() const { return out_; }

protected:
    virtual Shape do_build(const Shape& in, Rng& rng) = 0;

    // Every forward starts here: a clear error instead of reading out of bounds.
    void check_input(const Tensor<T>& x) const {
        if (!matches(x, in_))
            throw ShapeError(type() + ": expected input " + in_.str() + ", got " +
                             batch_str(x));
    }
    [[noreturn]] void shape_error(const std::string& what) const {
        throw ShapeError(type() + ": " + what);
    }

    Shape in_, out_;
};

}  // namespace kitnn
