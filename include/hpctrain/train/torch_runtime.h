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

/// Host memory for tensors stays in the process: glibc's mmap and trim thresholds are raised to
/// 256 MiB (mallopt), so that the large tensors freed and allocated again every step come from the
/// heap instead of fresh zeroed pages from the kernel (measured: the GPT step took twice as long
/// with glibc's defaults in an MPI process). Once per process; not when the user chose malloc
/// settings (GLIBC_TUNABLES glibc.malloc.*, MALLOC_*_ variables) or HPCTRAIN_HOST_ALLOCATOR=default.
/// Returns what it did, for the log.
std::string tune_host_allocator();

}  // namespace hpctrain::train
