// The stop guard: a preemption signal acts within a bounded time. When no step boundary takes the
// stop in hand (signals::acknowledge) within the timeout (start-up, a stuck loader, a step longer
// than the scheduler's grace), the process records why, asks SLURM to requeue the job (rank 0),
// and exits with code 4 (5 when the requeue failed) without a new checkpoint: the last one stays
// valid. A thread that looks at the signal flag ten times a second.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

namespace hpctrain::dist {
class Environment;
}

namespace hpctrain::slurm {

class StopGuard {
 public:
  /// `record(status, detail)` writes run_status.json (rank 0) before the exit.
  using Record = std::function<void(const std::string& status, const std::string& detail)>;
  StopGuard(const dist::Environment& env, double timeout_s, std::string requeue_mode, Record record);
  ~StopGuard();
  StopGuard(const StopGuard&) = delete;
  StopGuard& operator=(const StopGuard&) = delete;

 private:
  void loop();
  const dist::Environment& env_;
  double timeout_s_;
  std::string requeue_mode_;
  Record record_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace hpctrain::slurm
