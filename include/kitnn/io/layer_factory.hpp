// kitnn/io/layer_factory.hpp — rebuild a layer from its type tag and Config, and check
// a file's hyperparameters before building: what the model loader uses.
//
// make_layer (layers/registry.hpp) looks the type up in the layer registry, where
// every layer registers itself in its own header; this header includes every
// built-in layer (layers/all.hpp), so they are all registered.
#pragma once

#include "kitnn/layers/all.hpp"
#include "kitnn/layers/registry.hpp"

#include <cstdint>
#include <string>

namespace kitnn {

// Checks, BEFORE `layer` (made from a file's hyperparameters, not built yet) is built
// for input `in`, that it stays within sane bounds (its Layer::footprint): the weights
// it will allocate must fit in `bytes_left` (the rest of the file, `scalar_size` bytes
// each), and its largest per-sample work buffer (a convolution's im2col) in
// `max_workspace` values. A crafted "units = 2^40", or a 1024x1024 "same" kernel on a
// 28x28 image (3 GB of im2col per image), is refused without allocating. Returns an
// empty string when fine, else what is wrong (a ShapeError's message when `in` does
// not fit).
template <class T>
std::string check_layer_limits(const Layer<T>& layer, const Shape& in, std::uint64_t bytes_left,
                               size_t scalar_size, std::int64_t max_workspace) {
    LayerFootprint f;
    try {
        f = layer.footprint(in);
    } catch (const std::exception& e) {
        const std::string msg = e.what(), prefix = layer.type() + ": ";
        return msg.compare(0, prefix.size(), prefix) == 0 ? msg.substr(prefix.size()) : msg;
    }
    using I = __int128;
    if (I(f.weights) * I(scalar_size) > I(bytes_left))
        return "its hyperparameters need " + std::to_string(f.weights) + " weights, more than the " +
               std::to_string(bytes_left) + " bytes left in the file";
    if (f.workspace > max_workspace)
        return "its hyperparameters need a work buffer of " + std::to_string(f.workspace) +
               " values per sample (limit " + std::to_string(max_workspace) + ")";
    return "";
}

// The same from a type name and Config (any error of make_layer is returned as text).
// The work buffer limit is the model loader's, 2^26 values per sample.
inline std::string check_layer_limits(const std::string& type, const Config& c, const Shape& in,
                                      std::uint64_t bytes_left, size_t scalar_size) {
    try {
        const auto layer = make_layer<float>(type, c);
        return check_layer_limits(*layer, in, bytes_left, scalar_size, std::int64_t(1) << 26);
    } catch (const std::exception& e) {
        return e.what();
    }
}

}  // namespace kitnn
