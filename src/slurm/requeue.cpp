// Requeue after a preemption checkpoint.
#include "hpctrain/slurm/requeue.h"

#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/slurm/command.h"

namespace hpctrain::slurm {

int after_preemption(const dist::Environment& env, const std::string& mode, const std::string& reason) {
  int code = exit_code::kPreempted;
  if (env.rank() == 0) {
    const auto& s = env.slurm();
    const bool want = mode == "true" || (mode == "auto" && s.present);
    if (!want) {
      HPCT_LOG(warning) << "stopped by " << reason << " after a checkpoint; resume with resume_from_checkpoint=auto";
    } else if (!s.present) {
      HPCT_LOG(error) << "requeue=true but this is not a SLURM job; exit code " << exit_code::kRequeueMe;
      code = exit_code::kRequeueMe;
    } else {
      // A preemption that requeues by itself (PreemptMode=REQUEUE, or `scontrol requeue` from
      // outside) sends TERM and then requeues: scontrol then answers that the job is pending.
      const CommandResult r = run_command("scontrol requeue " + s.requeue_id());
      const int rc = r.status;
      const std::string& out = r.output;
      if (rc == 0) {
        HPCT_LOG(warning) << "stopped by " << reason << " after a checkpoint; job " << s.requeue_id()
                          << " requeued (restart count so far " << s.restart_count << ")";
      } else if (out.find("pending execution") != std::string::npos) {
        HPCT_LOG(warning) << "stopped by " << reason << " after a checkpoint; SLURM has requeued job " << s.requeue_id()
                          << " already (a preemption that requeues, or scontrol requeue from outside)";
      } else {
        HPCT_LOG(error) << "'scontrol requeue " << s.requeue_id() << "' failed (status " << rc << ": "
                        << (out.empty() ? std::string("no output") : out) << "); exiting with code "
                        << exit_code::kRequeueMe << " so that the job script requeues";
        code = exit_code::kRequeueMe;
      }
    }
  }
  return std::stoi(env.broadcast_string(std::to_string(code), 0));
}

}  // namespace hpctrain::slurm
