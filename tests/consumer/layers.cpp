// kitnn's layers, compiled once for this program (docs/packaging.md, "Compile time"):
// CMakeLists.txt builds this file twice, with KITNN_INSTANTIATE_FLOAT_LAYERS and with
// KITNN_INSTANTIATE_DOUBLE_LAYERS, and main.cpp with KITNN_PRECOMPILED_LAYERS.
#include <kitnn/layers/all.hpp>
