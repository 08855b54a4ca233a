// kitnn/layers/padding.hpp — how a sliding window (a convolution's kernel, a pooling
// window) covers one axis of an image: the output size and the padding before it.
// Shared by Conv2D (layers/conv2d.hpp) and the pools (layers/pool2d.hpp).
//
// For an axis of `in` pixels and a window of `k` pixels moved `stride` pixels at a time:
//   valid   : no padding, out = (in - k) / stride + 1 (floor); needs in >= k
//   same    : TensorFlow's rule, out = ceil(in / stride); the padding needed,
//             total = max((out - 1) * stride + k - in, 0), is split total / 2 before
//             and the rest (the odd pixel) after
//   explicit: PyTorch's padding=p, p zero pixels on both sides,
//             out = (in + 2p - k) / stride + 1; needs in + 2p >= k
// Window o then covers input positions [o * stride - before, o * stride - before + k);
// the padding after the last pixel is implied by `out`.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace kitnn {

// explicit_pad: a fixed number of zero pixels on every side (Conv2D's `pad`).
enum class Padding { valid, same, explicit_pad };
inline const char* to_string(Padding p) {
    return p == Padding::same ? "same" : p == Padding::explicit_pad ? "explicit" : "valid";
}
inline Padding padding_from_string(const std::string& s) {
    if (s == "same") return Padding::same;
    if (s == "valid") return Padding::valid;
    if (s == "explicit") return Padding::explicit_pad;
    throw std::runtime_error("unknown padding '" + s + "' (expected valid, same or explicit)");
}

struct WindowAxis {
    Eigen::Index out = 0;  // number of window positions (output size); 0: the window does not fit
    int before = 0;        // padded pixels before the first real one
};

// `pad` is used by explicit_pad only. out = 0 when the (padded) axis is shorter than
// the window, which the caller reports with its own message.
inline WindowAxis window_axis(Eigen::Index in, int k, int stride, Padding padding, int pad = 0) {
    WindowAxis a;
    if (padding == Padding::same) {
        a.out = (in + stride - 1) / stride;
        a.before = int(std::max<Eigen::Index>((a.out - 1) * stride + k - in, 0) / 2);
        return a;
    }
    const int p = padding == Padding::explicit_pad ? pad : 0;
    if (in + 2 * p < k) return a;
    a.out = (in + 2 * p - k) / stride + 1;
    a.before = p;
    return a;
}

}  // namespace kitnn
