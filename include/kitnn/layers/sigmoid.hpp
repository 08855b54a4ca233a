// kitnn/layers/sigmoid.hpp — kept for existing includes: the layer now lives with the
// other elementwise activations in kitnn/layers/activations.hpp.
#pragma once

#include "kitnn/layers/activations.hpp"
