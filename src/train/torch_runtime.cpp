// Process-wide torch settings: intra-op threads, version, CUDA availability.
#include "hpctrain/train/torch_runtime.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <malloc.h>

#include <cstdlib>

#include "hpctrain/train/torch_compat.h"

namespace hpctrain::train {

void set_torch_threads(int threads) { at::set_num_threads(threads); }

int torch_threads() { return at::get_num_threads(); }

std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

bool torch_cuda_available() { return at::hasCUDA() && at::getNumGPUs() > 0; }

std::string tune_host_allocator() {
  static const std::string done = [] {
    const char* mine = std::getenv("HPCTRAIN_HOST_ALLOCATOR");
    if (mine && std::string(mine) == "default") return std::string("glibc's defaults (HPCTRAIN_HOST_ALLOCATOR=default)");
    const char* tunables = std::getenv("GLIBC_TUNABLES");
    if (tunables && std::string(tunables).find("glibc.malloc.") != std::string::npos)
      return std::string("the user's GLIBC_TUNABLES");
    for (const char* v : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_"})
      if (std::getenv(v)) return std::string("the user's ") + v;
    constexpr int kThreshold = 256 << 20;
    // Both: setting either one turns off glibc's dynamic mmap threshold, and a trim threshold
    // alone leaves every tensor over 128 KiB to mmap (measured 5x slower), a mmap threshold alone
    // gives the top of the heap back to the kernel after each step.
    if (mallopt(M_MMAP_THRESHOLD, kThreshold) != 1 || mallopt(M_TRIM_THRESHOLD, kThreshold) != 1)
      return std::string("glibc's defaults (mallopt refused the thresholds)");
    return std::string("glibc, mmap and trim thresholds 256 MiB");
  }();
  return done;
}

}  // namespace hpctrain::train
