// kitnn/core/init.hpp — weight initialisers. Biases start at zero (Keras's default).
#pragma once

#include "kitnn/core/rng.hpp"
#include "kitnn/core/tensor.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace kitnn {

enum class Init {
    glorot_uniform,  // U(-l, l), l = sqrt(6 / (fan_in + fan_out)); Keras's default
    he_uniform,      // U(-l, l), l = sqrt(6 / fan_in); for ReLU networks
    he_normal,       // N(0, sqrt(2 / fan_in))
};

inline const char* to_string(Init i) {
    switch (i) {
        case Init::glorot_uniform: return "glorot_uniform";
        case Init::he_uniform: return "he_uniform";
        case Init::he_normal: return "he_normal";
    }
    return "?";
}
inline Init init_from_string(const std::string& s) {
    if (s == "glorot_uniform") return Init::glorot_uniform;
    if (s == "he_uniform") return Init::he_uniform;
    if (s == "he_normal") return Init::he_normal;
    throw std::runtime_error("unknown initialiser '" + s + "'");
}

// Fills w from rng; fan_in / fan_out count the connections of one output / input unit.
template <class T>
void initialize(Tensor<T>& w, Init kind, double fan_in, double fan_out, Rng& rng) {
    T* p = w.data();
    const Eigen::Index n = w.size();
    switch (kind) {
        case Init::glorot_uniform: {
            const double l = std::sqrt(6.0 / (fan_in + fan_out));
            for (Eigen::Index i = 0; i < n; ++i) p[i] = T(rng.uniform(-l, l));
            break;
        }
        case Init::he_uniform: {
            const double l = std::sqrt(6.0 / fan_in);
            for (Eigen::Index i = 0; i < n; ++i) p[i] = T(rng.uniform(-l, l));
            break;
        }
        case Init::he_normal: {
            const double s = std::sqrt(2.0 / fan_in);
            for (Eigen::Index i = 0; i < n; ++i) p[i] = T(s * rng.normal());
            break;
        }
    }
}

}  // namespace kitnn
