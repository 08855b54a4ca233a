// kitnn/layers/pool_window.hpp — what MaxPool2D and AvgPool2D share: their
// hyperparameters (pool, stride, padding), config, shape rules and window ranges.
//
// Windows of (PH, PW) pixels every (SH, SW) pixels, "valid" (floor) or "same"
// (TensorFlow's out = ceil(in / stride)); the rule for one axis is window_axis
// (layers/padding.hpp). Window o covers input positions [o * stride - before, ... + pool);
// begin[o] and end[o] are that range clipped to the real pixels [0, in). Padded cells
// are never read: MaxPool2D takes the max over real pixels only (padding never wins)
// and AvgPool2D divides by the number of real pixels (TensorFlow's
// count_include_pad=False). With same padding every window still holds at least one
// real pixel: before <= (pool - 1) / 2 < pool, and the last window starts at
// (out - 1) * stride - before <= in - 1.
#pragma once

#include "kitnn/layers/layer.hpp"
#include "kitnn/layers/padding.hpp"

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <vector>

namespace kitnn {

struct PoolAxis {
    Eigen::Index out = 0;                  // number of windows (output size)
    int pad_before = 0;                    // padded cells before the first pixel
    std::vector<Eigen::Index> begin, end;  // (out) real input range [begin, end) of each window
};

// The caller checks in >= pool for valid padding (with a message naming the layer).
inline PoolAxis pool_axis(Eigen::Index in, int pool, int stride, Padding padding) {
    const WindowAxis w = window_axis(in, pool, stride, padding);
    PoolAxis a;
    a.out = w.out;
    a.pad_before = w.before;
    a.begin.resize(size_t(a.out));
    a.end.resize(size_t(a.out));
    for (Eigen::Index o = 0; o < a.out; ++o) {
        const Eigen::Index start = o * stride - a.pad_before;
        a.begin[size_t(o)] = std::max<Eigen::Index>(start, 0);
        a.end[size_t(o)] = std::min<Eigen::Index>(start + pool, in);
    }
    return a;
}

// The common part of the 2-D pools: construction, config, from_config and the window
// geometry. A pool (P = MaxPool2D<T> or AvgPool2D<T>) derives from Pool2D<T, P>, names
// itself in kType and implements forward and backward over the windows rows_ (along H)
// and cols_ (along W).
template <class T, class P>
class Pool2D : public Layer<T> {
public:
    std::string type() const override { return P::kType; }
    Config config() const override {
        Config c;
        c.set("pool_h", ph_).set("pool_w", pw_).set("stride_h", sh_).set("stride_w", sw_);
        c.set("padding", to_string(padding_));
        return c;
    }
    std::int64_t macs() const override { return 0; }

    // The inverse of config(). Files written before the pools had padding have no
    // "padding" key: valid.
    static std::unique_ptr<P> from_config(const Config& c) {
        return std::make_unique<P>(std::array<int, 2>{c.int_value("pool_h"), c.int_value("pool_w")},
                                   std::array<int, 2>{c.int_value("stride_h"), c.int_value("stride_w")},
                                   padding_from_string(c.has("padding") ? c.str("padding") : "valid"));
    }

protected:
    // stride {0, 0} means "= pool" (Keras's strides=None).
    Pool2D(std::array<int, 2> pool, std::array<int, 2> stride, Padding padding)
        : ph_(pool[0]), pw_(pool[1]), sh_(stride[0] ? stride[0] : pool[0]),
          sw_(stride[1] ? stride[1] : pool[1]), padding_(padding) {
        if (ph_ < 1 || pw_ < 1 || sh_ < 1 || sw_ < 1)
            throw std::invalid_argument(std::string(P::kType) + ": pool size and stride must be >= 1");
        if (padding != Padding::valid && padding != Padding::same)
            throw std::invalid_argument(std::string(P::kType) + ": padding must be valid or same");
    }

    Shape do_build(const Shape& in, Rng&) override {
        if (!in.is_image()) this->shape_error("needs an image input (C,H,W), got " + in.str());
        if (padding_ == Padding::valid && (in.h() < ph_ || in.w() < pw_))
            this->shape_error("pool " + std::to_string(ph_) + "x" + std::to_string(pw_) +
                              " is larger than the input " + in.str() + " (valid padding)");
        rows_ = pool_axis(in.h(), ph_, sh_, padding_);
        cols_ = pool_axis(in.w(), pw_, sw_, padding_);
        oh_ = rows_.out;
        ow_ = cols_.out;
        return Shape::image(in.c(), oh_, ow_);
    }

    int ph_, pw_, sh_, sw_;
    Padding padding_;
    Eigen::Index oh_ = 0, ow_ = 0;
    PoolAxis rows_, cols_;  // window ranges along H (OH of them) and W (OW)
};

}  // namespace kitnn
