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
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  std::string path_;
  bool held_ = false;
};

}  // namespace hpctrain::slurm
