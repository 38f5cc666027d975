// Internal: constructors of the communicator backends, used by make_communicator.
#pragma once

#include <memory>
#include <string>

#include "hpctrain/dist/communicator.h"
#include "hpctrain/dist/watchdog.h"

namespace hpctrain::dist {

/// The watchdog every backend arms around its collectives: on expiry it logs which collective
/// stalled on which rank and aborts the job with exit_code::kTimeout.
std::unique_ptr<Watchdog> make_collective_watchdog(const Environment& env, double timeout_s);

/// "allreduce #12: 1000 float32 (sum)": names a collective in stall and error messages.
std::string describe_collective(const char* name, std::uint64_t seq, std::size_t count, DType type,
                                const char* op);

std::unique_ptr<Communicator> make_mpi_communicator(const Environment& env, const CommOptions& options);
#ifdef HPCTRAIN_HAVE_NCCL
std::unique_ptr<Communicator> make_nccl_communicator(const Environment& env, const CommOptions& options);
#endif

}  // namespace hpctrain::dist
