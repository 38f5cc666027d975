// What the job does after a preemption checkpoint: requeue itself under SLURM (scontrol requeue,
// with the array-task id for an array task) and pick the exit code every rank returns.
#pragma once

#include <string>

namespace hpctrain::dist {
class Environment;
}

namespace hpctrain::slurm {

/// Collective, after a checkpoint made because of `reason` ("signal 10", "the time limit").
/// `mode`: auto (requeue when under SLURM), true, false. Rank 0 runs
/// `scontrol requeue <id>`; returns exit_code::kPreempted when requeued or when no requeue was
/// wanted, exit_code::kRequeueMe when it was wanted but scontrol is missing or failed (the job
/// script then requeues). Every rank gets the same code.
int after_preemption(const dist::Environment& env, const std::string& mode, const std::string& reason);

}  // namespace hpctrain::slurm
