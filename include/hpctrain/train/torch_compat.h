// The one place where libtorch 1.13 (Debian, CI) and 2.x (GPU nodes) differ for hpctrain.
#pragma once

#include <torch/version.h>

#ifndef TORCH_VERSION_MAJOR
#error "torch/version.h did not define TORCH_VERSION_MAJOR"
#endif

namespace hpctrain::train::compat {
/// True on libtorch 2.x and later.
constexpr bool kTorch2 = TORCH_VERSION_MAJOR >= 2;
}  // namespace hpctrain::train::compat
