// The MPI backend over a communicator of the caller's choice (e.g. MPI_COMM_SELF for a one-rank
// reference run inside a multi-rank test, or a sub-communicator).
#pragma once

#include <mpi.h>

#include <memory>

#include "hpctrain/dist/communicator.h"

namespace hpctrain::dist {

/// Collectives over a duplicate of `comm`; a collective stalled past timeout_s aborts the job.
std::unique_ptr<Communicator> make_mpi_communicator(const Environment& env, MPI_Comm comm, double timeout_s);

}  // namespace hpctrain::dist
