// HPCT_MPI_CHECK: turns a failed MPI call into hpctrain::Error with MPI's own message.
#pragma once

#include <mpi.h>

#include "hpctrain/core/error.h"

namespace hpctrain::dist::detail {
[[noreturn]] void throw_mpi_error(const char* call, int code, const char* file, int line);
}  // namespace hpctrain::dist::detail

/// The communicators hpctrain uses return errors (MPI_ERRORS_RETURN) so that this can report
/// them; MPI_COMM_WORLD keeps MPI's default fatal handler.
#define HPCT_MPI_CHECK(call)                                                           \
  do {                                                                                 \
    int hpct_mpi_rc_ = (call);                                                         \
    if (hpct_mpi_rc_ != MPI_SUCCESS)                                                   \
      ::hpctrain::dist::detail::throw_mpi_error(#call, hpct_mpi_rc_, __FILE__, __LINE__); \
  } while (0)
