// The run-directory lock: output_dir/.lock names the job holding the directory, so two jobs never
// train into the same run directory. A lock left by a dead job is taken over with a warning.
#pragma once

#include <string>

namespace hpctrain::dist {
class Environment;
}

namespace hpctrain::slurm {

class RunLock {
 public:
  /// Collective: rank 0 takes output_dir/.lock or every rank throws the same CollectiveError
  /// naming the holder. The same SLURM job (a requeued run) takes its own lock back.
  RunLock(const dist::Environment& env, const std::string& output_dir);
  /// Rank 0 removes the lock.
  ~RunLock();

  /// Rank 0 (or, with `any_rank`, this rank: one that fails alone) records what became of the
  /// run in output_dir/run_status.json (written atomically): running, finished, preempted,
  /// cancelled or failed, with a detail such as the error. False when it could not be written
  /// (logged); other ranks: true.
  bool set_status(const std::string& status, const std::string& detail = "", bool any_rank = false) const;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  std::string path_, dir_, holder_, job_;
  int rank_ = 0;
  int restart_count_ = 0;
  bool held_ = false;
};

/// What a run directory tells of its run (for sweep reports): status is
///   pending    no run has started in it;
///   running    its lock is held by a job that is alive (squeue, or the pid on this host);
///   finished   it ran to the end;
///   preempted  it checkpointed and stopped (a signal or the time limit), to be resumed by its
///              requeued job (failed when SLURM no longer knows that job);
///   cancelled  it checkpointed and stopped because its job was cancelled (scancel): resumable,
///              but nothing will resume it unless it is submitted again;
///   failed     a failure was recorded, or the lock's job is gone without recording an end.
struct RunDirStatus {
  std::string status;
  std::string detail;  ///< the holder of a running run, the error of a failed one
};
RunDirStatus inspect_run_dir(const std::string& output_dir);

/// For rank 0 of a sweep point, before it trains: writes <root>/sweep.ini (`space_ini`, the space
/// that `hpctrain-sweep report` reads) unless it is there, by exclusive creation so that the first
/// point wins even across nodes; throws ConfigError when the directory holds another sweep's space
/// (naming `space_file` and `metric`).
void claim_sweep_dir(const std::string& root, const std::string& space_ini, const std::string& space_file,
                     const std::string& metric);

}  // namespace hpctrain::slurm
