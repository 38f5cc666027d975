// The few process-wide torch settings hpctrain makes, behind a header that includes no torch.
#pragma once

#include <string>

namespace hpctrain::train {

/// Sets torch's intra-op thread count for this process (at::set_num_threads).
void set_torch_threads(int threads);
/// Torch's intra-op thread count now.
int torch_threads();
/// "1.13.1": the libtorch this binary was built against.
std::string torch_version();
/// Whether this libtorch was built with CUDA and sees a device.
bool torch_cuda_available();

}  // namespace hpctrain::train
