// kitnn/layers/flatten.hpp — (N, C, H, W) -> (N, C*H*W), channel-major order.
// Memory is already in that order, so forward and backward are plain copies.
#pragma once

#include "kitnn/layers/layer.hpp"
#include "kitnn/layers/registry.hpp"

namespace kitnn {

template <class T>
class Flatten : public Layer<T> {
public:
    static constexpr const char* kType = "Flatten";
    std::string type() const override { return kType; }
    Config config() const override { return {}; }

    void forward(const Tensor<T>& x, Tensor<T>& y, bool) override {
        this->check_input(x);
        ensure(y, x.dimension(0), this->out_);
        as_vector(y) = as_vector(x);
    }
    void backward(const Tensor<T>&, const Tensor<T>&, const Tensor<T>& dy,
                  Tensor<T>* dx) override {
        if (!dx) return;
        ensure(*dx, dy.dimension(0), this->in_);
        as_vector(*dx) = as_vector(dy);
    }

protected:
    Shape do_build(const Shape& in, Rng&) override { return Shape::flat(in.size()); }
};
KITNN_LIBRARY_LAYER(Flatten);

}  // namespace kitnn
