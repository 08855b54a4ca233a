// kitnn/core/tensor.hpp — the one tensor type every layer speaks, and shapes.
//
// Activations, parameters and gradients are all rank-4 row-major Eigen tensors,
// so memory order equals index order: an activation batch is (N, C, H, W) with W
// fastest, exactly the layout im2col and the GEMMs below expect. Flat features
// (after Flatten or Dense) are stored as (N, F, 1, 1): one type keeps the layer
// interface runtime-polymorphic without templates on the rank.
#pragma once

#include <unsupported/Eigen/CXX11/Tensor>
#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace kitnn {

template <class T>
using Tensor = Eigen::Tensor<T, 4, Eigen::RowMajor, Eigen::Index>;

// A row-major matrix view used for GEMMs on tensor memory (no copies).
template <class T>
using MatrixRM = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatMap = Eigen::Map<MatrixRM<T>>;
template <class T>
using ConstMatMap = Eigen::Map<const MatrixRM<T>>;
template <class T>
using VecMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstVecMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;

// Shape of ONE sample (no batch axis): {C, H, W} for images, {F} for features.
struct Shape {
    std::vector<Eigen::Index> dims;

    Shape() = default;
    Shape(std::initializer_list<Eigen::Index> d) : dims(d) {}
    explicit Shape(std::vector<Eigen::Index> d) : dims(std::move(d)) {}

    static Shape image(Eigen::Index c, Eigen::Index h, Eigen::Index w) { return Shape{c, h, w}; }
    static Shape flat(Eigen::Index f) { return Shape{f}; }

    bool is_image() const { return dims.size() == 3; }
    bool is_flat() const { return dims.size() == 1; }
    Eigen::Index c() const { return dims.at(0); }
    Eigen::Index h() const { return is_image() ? dims[1] : 1; }
    Eigen::Index w() const { return is_image() ? dims[2] : 1; }
    Eigen::Index size() const {
        Eigen::Index s = 1;
        for (auto d : dims) s *= d;
        return dims.empty() ? 0 : s;
    }
    // The (C, H, W) a batch of this shape has in a Tensor (flat -> (F, 1, 1)).
    std::array<Eigen::Index, 3> chw() const { return {c(), h(), w()}; }

    bool operator==(const Shape& o) const { return dims == o.dims; }
    bool operator!=(const Shape& o) const { return !(*this == o); }

    // Keras order for people: (None, H, W, C) or (None, F).
    std::string keras() const {
        std::ostringstream s;
        s << "(None";
        if (is_image()) s << ", " << dims[1] << ", " << dims[2] << ", " << dims[0];
        else
            for (auto d : dims) s << ", " << d;
        s << ")";
        return s.str();
    }
    // Storage order, used in error messages: (C,H,W) or (F).
    std::string str() const {
        std::ostringstream s;
        s << "(";
        for (size_t i = 0; i < dims.size(); ++i) s << (i ? "," : "") << dims[i];
        s << ")";
        return s.str();
    }
};

// Thrown for incompatible shapes; the message names the layer and both shapes.
struct ShapeError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A batch tensor's dimensions for error messages: "(N=5: 4,13,13)".
template <class T>
inline std::string batch_str(const Tensor<T>& x) {
    std::ostringstream s;
    s << "(N=" << x.dimension(0) << ": " << x.dimension(1) << "," << x.dimension(2) << ","
      << x.dimension(3) << ")";
    return s.str();
}

template <class T>
inline bool matches(const Tensor<T>& x, const Shape& s) {
    auto c = s.chw();
    return x.dimension(1) == c[0] && x.dimension(2) == c[1] && x.dimension(3) == c[2];
}

// Resize only when the size changes: Eigen keeps the buffer when the element count
// is unchanged, so steady-state training never allocates.
template <class T>
inline void ensure(Tensor<T>& t, Eigen::Index n, const Shape& s) {
    auto c = s.chw();
    if (t.dimension(0) != n || t.dimension(1) != c[0] || t.dimension(2) != c[1] ||
        t.dimension(3) != c[2])
        t.resize(n, c[0], c[1], c[2]);
}

// (N, C*H*W); the column count comes from the dimensions, so an empty batch is
// (0, C*H*W), not (0, 0), and products with weight matrices still conform.
template <class T>
inline MatMap<T> as_matrix(Tensor<T>& t) {
    return MatMap<T>(t.data(), t.dimension(0), t.dimension(1) * t.dimension(2) * t.dimension(3));
}
template <class T>
inline ConstMatMap<T> as_matrix(const Tensor<T>& t) {
    return ConstMatMap<T>(t.data(), t.dimension(0), t.dimension(1) * t.dimension(2) * t.dimension(3));
}
template <class T>
inline VecMap<T> as_vector(Tensor<T>& t) { return VecMap<T>(t.data(), t.size()); }
template <class T>
inline ConstVecMap<T> as_vector(const Tensor<T>& t) { return ConstVecMap<T>(t.data(), t.size()); }

// A trainable tensor with its gradient. Gradients are ACCUMULATED by backward()
// (+=), so Sequential::zero_grad() runs once per step, as in llm.c.
template <class T>
struct Param {
    std::string name;  // "kernel" or "bias", as in Keras
    Tensor<T> value;
    Tensor<T> grad;
    void resize(Eigen::Index a, Eigen::Index b, Eigen::Index c, Eigen::Index d) {
        value.resize(a, b, c, d);
        grad.resize(a, b, c, d);
        value.setZero();
        grad.setZero();
    }
};

}  // namespace kitnn
