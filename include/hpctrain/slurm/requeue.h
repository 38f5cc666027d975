// What the job does after a preemption checkpoint: requeue itself under SLURM (scontrol requeue,
// with the array-task id for an array task) and pick the exit code every rank returns.
#pragma once

#include <string>

namespace hpctrain::dist {
class Environment;
}

namespace hpctrain::slurm {

/// What became of a stopped job: the exit code, and whether it stays cancelled (scancel: the
/// job is ending) rather than requeued.
struct RequeueOutcome {
  int code = 0;
  bool cancelled = false;
};

/// Collective, after a checkpoint made because of `reason` ("signal 10", "the time limit").
/// `mode`: auto (requeue when under SLURM), true, false. Rank 0 runs
/// `scontrol requeue <id>`; the code is exit_code::kPreempted when requeued or when no requeue
/// was wanted, exit_code::kRequeueMe when it was wanted but scontrol is missing or failed (the
/// job script then requeues). Every rank gets the same outcome.
RequeueOutcome after_preemption(const dist::Environment& env, const std::string& mode, const std::string& reason);

/// The same on rank 0 alone, with no collective (the stop guard, when the other ranks may be stuck).
RequeueOutcome requeue_from_rank0(const dist::Environment& env, const std::string& mode, const std::string& reason);

}  // namespace hpctrain::slurm
