// cmake/kitnn_layers.cpp — the library's layers, compiled once for the project's own
// programs and tests (option KITNN_PRECOMPILED_LAYERS in CMakeLists.txt).
//
// CMake compiles this file twice, once with KITNN_INSTANTIATE_FLOAT_LAYERS and once with
// KITNN_INSTANTIATE_DOUBLE_LAYERS defined, so the two halves build in parallel; every
// other file of those programs is compiled with KITNN_PRECOMPILED_LAYERS and sees the
// layers as `extern template` declarations. The list of layers is not written here: each
// layer's header declares its own instances in KITNN_LIBRARY_LAYER (layers/registry.hpp).
#include "kitnn/layers/all.hpp"
