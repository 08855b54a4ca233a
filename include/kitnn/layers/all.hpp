// kitnn/layers/all.hpp — every built-in layer. Each header registers its layers
// (layers/registry.hpp), so including this one lets the model loader rebuild any of
// them. The conformance test checks that every header of this folder is listed here.
#pragma once

#include "kitnn/layers/activations.hpp"
#include "kitnn/layers/avg_pool2d.hpp"
#include "kitnn/layers/batch_norm.hpp"
#include "kitnn/layers/branches.hpp"
#include "kitnn/layers/conv2d.hpp"
#include "kitnn/layers/dense.hpp"
#include "kitnn/layers/dropout.hpp"
#include "kitnn/layers/flatten.hpp"
#include "kitnn/layers/fusion.hpp"
#include "kitnn/layers/global_avg_pool2d.hpp"
#include "kitnn/layers/im2col.hpp"
#include "kitnn/layers/layer.hpp"
#include "kitnn/layers/leaky_relu.hpp"
#include "kitnn/layers/max_pool2d.hpp"
#include "kitnn/layers/padding.hpp"
#include "kitnn/layers/pool_window.hpp"
#include "kitnn/layers/registry.hpp"
#include "kitnn/layers/relu.hpp"
#include "kitnn/layers/sigmoid.hpp"
#include "kitnn/layers/softmax.hpp"
#include "kitnn/layers/tanh.hpp"
#include "kitnn/layers/winograd.hpp"
#include "kitnn/layers/winograd_1d.hpp"
