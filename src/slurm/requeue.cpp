// Requeue after a preemption checkpoint.
#include "hpctrain/slurm/requeue.h"

#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/slurm/command.h"

namespace hpctrain::slurm {

namespace {

// Whether SLURM has requeued the job already (pending again, or counting one more restart than
// this run), and whether its state says it is ending (scancel: COMPLETING at once). A job still
// RUNNING (a signal, the time limit, a preemption in its grace time) is requeued by us.
bool requeued(const JobInfo& job, int my_restart_count) {
  const std::string& s = job.state;
  return s == "PENDING" || s == "REQUEUED" || s == "REQUEUE_HOLD" || s == "REQUEUE_FED" || job.restarts > my_restart_count;
}
bool is_ending(const std::string& state) {
  return state == "COMPLETING" || state == "CANCELLED" || state == "COMPLETED" || state == "FAILED" ||
         state == "TIMEOUT" || state == "NODE_FAIL" || state == "BOOT_FAIL" || state == "DEADLINE" ||
         state == "OUT_OF_MEMORY";
}

}  // namespace

RequeueOutcome requeue_from_rank0(const dist::Environment& env, const std::string& mode, const std::string& reason) {
  RequeueOutcome out;
  int& code = out.code;
  code = exit_code::kPreempted;
  {
    const auto& s = env.slurm();
    const bool want = mode == "true" || (mode == "auto" && s.present);
    if (!want) {
      HPCT_LOG(warning) << "stopped by " << reason << " after a checkpoint; resume with resume_from_checkpoint=auto";
    } else if (!s.present) {
      HPCT_LOG(error) << "requeue=true but this is not a SLURM job; exit code " << exit_code::kRequeueMe;
      code = exit_code::kRequeueMe;
    } else {
      const std::string id = s.requeue_id();
      const JobInfo job = job_info(id);
      // A preemption that requeues by itself (PreemptMode=REQUEUE, or `scontrol requeue` from
      // outside) sends TERM and requeues: the job is pending, or counts one more restart, already.
      bool already = requeued(job, s.restart_count);
      CommandResult r;
      if (!already && is_ending(job.state)) {
        // scancel marks the job as ending (JobState=COMPLETING) and sends TERM: it stays cancelled.
        HPCT_LOG(warning) << "stopped by " << reason << " after a checkpoint; job " << id << " is ending (JobState="
                          << job.state << ": cancelled, or ended by SLURM), so it is not requeued (submit it again "
                          << "with the same run directory to resume)";
        out.cancelled = true;
      } else {
        if (!already) {
          // TERM that SLURM sends to the job's processes when the requeue takes effect must not
          // kill scontrol before it reports (it inherits the ignored disposition).
          r = run_command("trap '' TERM; exec scontrol requeue " + id);
          already = r.status != 0 && (r.output.find("pending execution") != std::string::npos ||
                                      requeued(job_info(id), s.restart_count));
        }
        if (already) {
          HPCT_LOG(warning) << "stopped by " << reason << " after a checkpoint; SLURM has requeued job " << id
                            << " already (a preemption that requeues, or scontrol requeue)";
        } else if (r.status == 0) {
          HPCT_LOG(warning) << "stopped by " << reason << " after a checkpoint; job " << id
                            << " requeued (restart count so far " << s.restart_count << ")";
        } else {
          HPCT_LOG(error) << "'scontrol requeue " << id << "' failed (status " << r.status << ": "
                          << (r.output.empty() ? std::string("no output") : r.output) << "); exiting with code "
                          << exit_code::kRequeueMe << " so that the job script requeues";
          code = exit_code::kRequeueMe;
        }
      }
    }
  }
  return out;
}

RequeueOutcome after_preemption(const dist::Environment& env, const std::string& mode, const std::string& reason) {
  RequeueOutcome out;
  if (env.rank() == 0) out = requeue_from_rank0(env, mode, reason);
  const std::string agreed = env.broadcast_string(std::to_string(out.code) + (out.cancelled ? "c" : ""), 0);
  out.code = std::stoi(agreed);
  out.cancelled = agreed.back() == 'c';
  return out;
}

}  // namespace hpctrain::slurm
