// The report `hpctrain env` prints: each rank's place in the job, device, backends, torch, SLURM.
#pragma once

#include <string>

namespace hpctrain::dist {
class Environment;
}

namespace hpctrain::train {

/// This rank's block of the report (several lines, no trailing newline).
std::string describe_rank(const dist::Environment& env);

/// Collective: every rank's block, gathered to rank 0 and printed there to stdout in rank order.
void print_env_report(const dist::Environment& env);

}  // namespace hpctrain::train
