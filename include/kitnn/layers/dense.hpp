// kitnn/layers/dense.hpp — fully connected layer, y = act(x W + b).
//
//   x     : (N, IN)       flat input (put Flatten before it for images)
//   kernel: (IN, OUT)     Keras's layout, viewed as a matrix for the GEMM
//   bias  : (OUT)
//   y     : (N, OUT)
// Backward: dz = dy * act'(y);  dW += x^T dz;  db += colsum(dz);  dx = dz W^T.
#pragma once

#include "kitnn/core/init.hpp"
#include "kitnn/core/parallel.hpp"
#include "kitnn/layers/layer.hpp"
#include "kitnn/layers/registry.hpp"

namespace kitnn {

template <class T>
class Dense : public Layer<T> {
public:
    explicit Dense(int units, Activation act = Activation::linear,
                   Init init = Init::glorot_uniform)
        : units_(units), act_(act), init_(init) {
        if (units < 1) throw std::invalid_argument("Dense: units must be >= 1");
        kernel_.name = "kernel";
        bias_.name = "bias";
    }

    static constexpr const char* kType = "Dense";
    std::string type() const override { return kType; }
    Config config() const override {
        Config c;
        c.set("units", units_).set("activation", to_string(act_)).set("init", to_string(init_));
        return c;
    }
    static std::unique_ptr<Dense> from_config(const Config& c) {
        return std::make_unique<Dense>(c.int_value("units"), activation_from_string(c.str("activation")),
                                       init_from_string(c.str("init")));
    }
    // kernel IN*OUT + bias OUT, for any input (build refuses an image later)
    LayerFootprint footprint(const Shape& in) const override {
        return {std::int64_t(units_) * (in.size() + 1), 0};  // 2^24 * (2^26 + 1): no overflow
    }
    std::vector<Param<T>*> params() override { return {&kernel_, &bias_}; }
    std::int64_t macs() const override { return std::int64_t(in_units_) * units_; }
    Param<T>& kernel() { return kernel_; }
    Param<T>& bias() { return bias_; }

    void forward(const Tensor<T>& x, Tensor<T>& y, bool) override {
        this->check_input(x);
        const Eigen::Index N = x.dimension(0);
        ensure(y, N, this->out_);
        auto X = as_matrix(x);                                       // (N, IN)
        ConstMatMap<T> Wm(kernel_.value.data(), in_units_, units_);  // (IN, OUT)
        auto Y = as_matrix(y);                                       // (N, OUT)
        const GemmThreads gemm_threads(std::int64_t(N) * in_units_ * units_);
        Y.noalias() = X * Wm;
        const auto b = ConstVecMap<T>(bias_.value.data(), units_).transpose();
        if (act_ == Activation::relu) Y = (Y.rowwise() + b).cwiseMax(T(0));  // one pass
        else Y.rowwise() += b;
    }

    void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>* dx) override {
        const Eigen::Index N = dy.dimension(0);
        // An empty batch adds nothing. (Eigen's column sums over a (0, OUT) map of a null
        // pointer would also offset the null pointer: undefined behaviour, found by UBSan.)
        if (N == 0) {
            if (dx) ensure(*dx, 0, this->in_);
            return;
        }
        auto X = as_matrix(x);
        auto dY = as_matrix(dy);
        const T* dz_data = dy.data();
        if (act_ == Activation::relu) {  // dz = dy where y > 0
            dz_.resize(N, units_);
            dz_ = (as_matrix(y).array() > T(0)).select(dY, T(0));
            dz_data = dz_.data();
        }
        ConstMatMap<T> dZ(dz_data, N, units_);
        const GemmThreads gemm_threads(std::int64_t(N) * in_units_ * units_);
        MatMap<T>(kernel_.grad.data(), in_units_, units_).noalias() += X.transpose() * dZ;
        VecMap<T>(bias_.grad.data(), units_) += dZ.colwise().sum().transpose();
        if (!dx) return;
        ensure(*dx, N, this->in_);
        ConstMatMap<T> Wm(kernel_.value.data(), in_units_, units_);
        as_matrix(*dx).noalias() = dZ * Wm.transpose();
    }

protected:
    Shape do_build(const Shape& in, Rng& rng) override {
        if (!in.is_flat())
            this->shape_error("needs a flat input (F), got " + in.str() +
                              "; add Flatten before it");
        in_units_ = in.c();
        kernel_.resize(in_units_, units_, 1, 1);
        bias_.resize(units_, 1, 1, 1);
        initialize(kernel_.value, init_, double(in_units_), double(units_), rng);
        return Shape::flat(units_);
    }

private:
    int units_;
    Activation act_;
    Init init_;
    Eigen::Index in_units_ = 0;
    Param<T> kernel_, bias_;
    MatrixRM<T> dz_;  // (N, OUT) workspace for the masked gradient
};
KITNN_LIBRARY_LAYER(Dense);

}  // namespace kitnn
