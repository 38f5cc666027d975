// HPCT_CUDA_CHECK and HPCT_NCCL_CHECK: CUDA runtime and NCCL failures as hpctrain::Error.
// Only for translation units built with HPCTRAIN_HAVE_NCCL.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "hpctrain/core/error.h"

namespace hpctrain::dist::detail {
[[noreturn]] void throw_cuda_error(const char* call, cudaError_t code, const char* file, int line);
/// Includes ncclGetErrorString and, where the comm is known, ncclGetLastError's detail.
[[noreturn]] void throw_nccl_error(const char* call, ncclResult_t code, ncclComm_t comm,
                                   const char* file, int line);
}  // namespace hpctrain::dist::detail

#define HPCT_CUDA_CHECK(call)                                                             \
  do {                                                                                    \
    cudaError_t hpct_cuda_rc_ = (call);                                                   \
    if (hpct_cuda_rc_ != cudaSuccess)                                                     \
      ::hpctrain::dist::detail::throw_cuda_error(#call, hpct_cuda_rc_, __FILE__, __LINE__); \
  } while (0)

#define HPCT_NCCL_CHECK(call, comm)                                                                 \
  do {                                                                                              \
    ncclResult_t hpct_nccl_rc_ = (call);                                                            \
    if (hpct_nccl_rc_ != ncclSuccess && hpct_nccl_rc_ != ncclInProgress)                            \
      ::hpctrain::dist::detail::throw_nccl_error(#call, hpct_nccl_rc_, (comm), __FILE__, __LINE__); \
  } while (0)
