// Process-wide torch settings: intra-op threads, version, CUDA availability.
#include "hpctrain/train/torch_runtime.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include "hpctrain/train/torch_compat.h"

namespace hpctrain::train {

void set_torch_threads(int threads) { at::set_num_threads(threads); }

int torch_threads() { return at::get_num_threads(); }

std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

bool torch_cuda_available() { return at::hasCUDA() && at::getNumGPUs() > 0; }

}  // namespace hpctrain::train
