// The job's failure policy: an exception on any rank is logged once, with its rank and host,
// and ends the whole job at once (MPI_Abort), so no rank waits forever in a collective.
#pragma once

#include <functional>

namespace hpctrain::dist {

class Environment;

/// Runs `body` and returns its exit code. An exception escaping it (on any thread, through
/// std::terminate) is logged at critical level with this rank's place in the job, then the
/// whole job is aborted with the error's exit code (hpctrain::exit_code).
int run_guarded(const Environment& env, const std::function<int()>& body);

}  // namespace hpctrain::dist
