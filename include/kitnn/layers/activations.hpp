// kitnn/layers/activations.hpp — the elementwise activations, each y = f(x) value by
// value on any shape: ReLU, LeakyReLU, Tanh, Sigmoid, GELU, SiLU. (Conv2D and Dense
// can also fuse ReLU.)
//
// Each is an Elementwise layer: forward and backward are written once below, and an
// activation gives only its two formulas, side by side, as Eigen array expressions on
// the whole batch seen as one vector (x, y, dy, dx: N * features values each):
//   apply(x, y)                 y  = f(x)
//   gradient(x, y, dy, dx)      dx = dy * f'(x)   (from x or from y, whichever is cheaper)
// A new activation is a class here (or in its own file) with kType, those two
// functions and KITNN_LIBRARY_LAYER; a test line in tests/test_conformance.cpp then
// puts it through the gradient check and the other conformance checks.
#pragma once

#include "kitnn/layers/layer.hpp"
#include "kitnn/layers/registry.hpp"

#include <cmath>
#include <memory>
#include <stdexcept>

namespace kitnn {

template <class T>
class Elementwise : public Layer<T> {
public:
    using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
    using In = Eigen::Map<const Array>;  // x, y, dy: (N * features)
    using Out = Eigen::Map<Array>;       // y, dx:    (N * features)

    void forward(const Tensor<T>& x, Tensor<T>& y, bool) final {
        this->check_input(x);
        ensure(y, x.dimension(0), this->out_);
        Out yv(y.data(), y.size());
        apply(In(x.data(), x.size()), yv);
    }
    // No parameters: without dx there is nothing to do.
    void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>* dx) final {
        if (!dx) return;
        ensure(*dx, dy.dimension(0), this->in_);
        Out dxv(dx->data(), dx->size());
        gradient(In(x.data(), x.size()), In(y.data(), y.size()), In(dy.data(), dy.size()), dxv);
    }

protected:
    virtual void apply(const In& x, Out& y) const = 0;
    virtual void gradient(const In& x, const In& y, const In& dy, Out& dx) const = 0;
    Shape do_build(const Shape& in, Rng&) override { return in; }
};

// y = max(x, 0); dx = dy where x > 0 (the derivative at exactly 0 is taken as 0, as in Keras).
template <class T>
class ReLU : public Elementwise<T> {
public:
    using typename Elementwise<T>::In, typename Elementwise<T>::Out;
    static constexpr const char* kType = "ReLU";
    std::string type() const override { return kType; }
    Config config() const override { return {}; }

protected:
    void apply(const In& x, Out& y) const override { y = x.max(T(0)); }
    void gradient(const In& x, const In&, const In& dy, Out& dx) const override {
        dx = (x > T(0)).select(dy, T(0));
    }
};
KITNN_LIBRARY_LAYER(ReLU);

// Keras's LeakyReLU, default alpha 0.3: y = x for x > 0, alpha * x otherwise. Backward
// from the output: for alpha >= 0, y > 0 exactly when x > 0, so dx = dy where y > 0,
// alpha * dy elsewhere (the derivative at exactly 0 is taken as alpha, the x <= 0 side,
// as ReLU takes 0). That equivalence is why a negative alpha is refused.
template <class T>
class LeakyReLU : public Elementwise<T> {
public:
    using typename Elementwise<T>::In, typename Elementwise<T>::Out;
    static constexpr const char* kType = "LeakyReLU";
    explicit LeakyReLU(double alpha = 0.3) : alpha_(alpha) {
        if (!(alpha >= 0 && std::isfinite(alpha)))
            throw std::invalid_argument("LeakyReLU: alpha must be finite and >= 0");
    }
    std::string type() const override { return kType; }
    Config config() const override {
        Config c;
        c.set("alpha", alpha_);
        return c;
    }
    static std::unique_ptr<LeakyReLU> from_config(const Config& c) {
        return std::make_unique<LeakyReLU>(c.real("alpha"));
    }
    double alpha() const { return alpha_; }

protected:
    void apply(const In& x, Out& y) const override { y = (x > T(0)).select(x, T(alpha_) * x); }
    void gradient(const In&, const In& y, const In& dy, Out& dx) const override {
        dx = (y > T(0)).select(dy, T(alpha_) * dy);
    }

private:
    double alpha_;
};
KITNN_LIBRARY_LAYER(LeakyReLU);

// y = tanh(x). Backward from the output: tanh'(x) = 1 - y^2, no second tanh.
template <class T>
class Tanh : public Elementwise<T> {
public:
    using typename Elementwise<T>::In, typename Elementwise<T>::Out;
    static constexpr const char* kType = "Tanh";
    std::string type() const override { return kType; }
    Config config() const override { return {}; }

protected:
    // std::tanh per value: saturates to +-1, never NaN. (Eigen's vectorised .tanh() is
    // a rational approximation, and its AVX-512 float path trips GCC 12's
    // -Wmaybe-uninitialized inside the intrinsics.)
    void apply(const In& x, Out& y) const override { y = x.unaryExpr([](T v) { return std::tanh(v); }); }
    void gradient(const In&, const In& y, const In& dy, Out& dx) const override {
        dx = dy * (T(1) - y.square());
    }
};
KITNN_LIBRARY_LAYER(Tanh);

// y = 1 / (1 + exp(-x)), stable for any x: with e = exp(-|x|) in (0, 1],
//   x >= 0: y = 1 / (1 + e)        x < 0: y = e / (1 + e)
// so exp never overflows (1/(1 + exp(1000)) would be 1/inf, and exp(x)/(1 + exp(x))
// inf/inf = NaN); x = +-1000 gives exactly 1 and 0. Backward from the output:
// sigmoid'(x) = y * (1 - y).
template <class T>
class Sigmoid : public Elementwise<T> {
public:
    using typename Elementwise<T>::In, typename Elementwise<T>::Out;
    static constexpr const char* kType = "Sigmoid";
    std::string type() const override { return kType; }
    Config config() const override { return {}; }
    static T sigmoid(T v) {
        const T e = std::exp(-std::abs(v));
        return v >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    }

protected:
    void apply(const In& x, Out& y) const override { y = x.unaryExpr([](T v) { return sigmoid(v); }); }
    void gradient(const In&, const In& y, const In& dy, Out& dx) const override {
        dx = dy * y * (T(1) - y);
    }
};
KITNN_LIBRARY_LAYER(Sigmoid);

// GELU, exact (Keras's default approximate=False, PyTorch's default):
//   y = x * Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2, the standard normal CDF
//   dy/dx = Phi(x) + x * phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
// Backward needs x (y alone does not give Phi). For large |x| erf saturates and
// exp(-x^2/2) underflows to 0: y -> x or 0, never NaN.
template <class T>
class GELU : public Elementwise<T> {
public:
    using typename Elementwise<T>::In, typename Elementwise<T>::Out;
    static constexpr const char* kType = "GELU";
    std::string type() const override { return kType; }
    Config config() const override { return {}; }

protected:
    static T cdf(T v) { return T(0.5) * (T(1) + std::erf(v * T(0.70710678118654752440))); }
    void apply(const In& x, Out& y) const override { y = x.unaryExpr([](T v) { return v * cdf(v); }); }
    void gradient(const In& x, const In&, const In& dy, Out& dx) const override {
        dx = dy * x.unaryExpr([](T v) {
            return cdf(v) + v * T(0.39894228040143267794) * std::exp(T(-0.5) * v * v);
        });
    }
};
KITNN_LIBRARY_LAYER(GELU);

// SiLU (swish): y = x * sigmoid(x), dy/dx = s + x * s * (1 - s) = s + y * (1 - s),
// s = sigmoid(x) recomputed in backward (stable for any x, see Sigmoid).
template <class T>
class SiLU : public Elementwise<T> {
public:
    using typename Elementwise<T>::In, typename Elementwise<T>::Out;
    static constexpr const char* kType = "SiLU";
    std::string type() const override { return kType; }
    Config config() const override { return {}; }

protected:
    void apply(const In& x, Out& y) const override {
        y = x.unaryExpr([](T v) { return v * Sigmoid<T>::sigmoid(v); });
    }
    void gradient(const In& x, const In& y, const In& dy, Out& dx) const override {
        const auto s = x.unaryExpr([](T v) { return Sigmoid<T>::sigmoid(v); });
        dx = dy * (s + y * (T(1) - s));
    }
};
KITNN_LIBRARY_LAYER(SiLU);

}  // namespace kitnn
