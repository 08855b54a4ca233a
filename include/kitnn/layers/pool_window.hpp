// kitnn/layers/pool_window.hpp — where the pooling windows fall, along one axis.
//
// Shared by MaxPool2D and AvgPool2D. For an axis of `in` pixels, windows of `pool`
// pixels every `stride` pixels:
//   valid: out = (in - pool) / stride + 1 (floor), no padding (needs in >= pool)
//   same : TensorFlow's rule, out = ceil(in / stride); the padding needed,
//          total = max((out - 1) * stride + pool - in, 0), is split total / 2 before
//          and the rest (the odd pixel) after, as in Conv2D.
// Window o covers input positions [o * stride - pad_before, ... + pool); begin[o] and
// end[o] are that range clipped to the real pixels [0, in). Padded cells are never
// read: MaxPool2D takes the max over real pixels only (padding never wins) and
// AvgPool2D divides by the number of real pixels (TensorFlow's count_include_pad=False).
// With same padding every window still holds at least one real pixel:
// pad_before <= (pool - 1) / 2 < pool, and the last window starts at
// (out - 1) * stride - pad_before <= in - 1.
#pragma once

#include "kitnn/layers/conv2d.hpp"  // Padding, padding_from_string

#include <algorithm>
#include <vector>

namespace kitnn {

struct PoolAxis {
    Eigen::Index out = 0;                  // number of windows (output size)
    int pad_before = 0;                    // padded cells before the first pixel
    std::vector<Eigen::Index> begin, end;  // (out) real input range [begin, end) of each window
};

// The caller checks in >= pool for valid padding (with a message naming the layer).
inline PoolAxis pool_axis(Eigen::Index in, int pool, int stride, Padding padding) {
    PoolAxis a;
    if (padding == Padding::valid) {
        a.out = (in - pool) / stride + 1;
    } else {
        a.out = (in + stride - 1) / stride;
        a.pad_before = int(std::max<Eigen::Index>((a.out - 1) * stride + pool - in, 0) / 2);
    }
    a.begin.resize(size_t(a.out));
    a.end.resize(size_t(a.out));
    for (Eigen::Index o = 0; o < a.out; ++o) {
        const Eigen::Index start = o * stride - a.pad_before;
        a.begin[size_t(o)] = std::max<Eigen::Index>(start, 0);
        a.end[size_t(o)] = std::min<Eigen::Index>(start + pool, in);
    }
    return a;
}

}  // namespace kitnn
