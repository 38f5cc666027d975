// StopGuard: exits a process whose preemption signal no step boundary has taken in hand in time.
#include "hpctrain/slurm/stop_guard.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "hpctrain/core/signals.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/slurm/requeue.h"

namespace hpctrain::slurm {

StopGuard::StopGuard(const dist::Environment& env, double timeout_s, std::string requeue_mode, Record record)
    : env_(env), timeout_s_(timeout_s), requeue_mode_(std::move(requeue_mode)), record_(std::move(record)) {
  thread_ = std::thread([this] { loop(); });
}

StopGuard::~StopGuard() {
  stop_ = true;
  thread_.join();
}

void StopGuard::loop() {
  // Rank 0 requeues the job; the others leave it time for that before they exit (under srun the
  // first rank to exit ends the step, and with it rank 0): the three SLURM commands of a requeue
  // at their 60 s deadline each, and 15 s more. They exit by themselves only when rank 0 cannot.
  const double wait = timeout_s_ + (env_.rank() == 0 ? 0.0 : 3 * 60.0 + 15.0);
  while (!stop_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const int sig = signals::received();
    if (sig == 0 || signals::acknowledged() || signals::seconds_since_received() < wait) continue;
    if (!signals::claim_for_guard()) continue;  // the run took the stop in hand meanwhile
    signals::hold_repeats();
    const std::string reason = "signal " + std::to_string(sig);
    const std::string detail = reason + ": no step boundary came within preemption_timeout (" +
                               std::to_string(static_cast<long long>(timeout_s_)) +
                               " s) to checkpoint; exited without a new checkpoint (the last one stays valid)";
    int code = exit_code::kPreempted;
    try {
      HPCT_LOG(error) << "rank " << env_.rank() << " (" << env_.host() << "): " << detail;
      if (env_.rank() == 0) {
        const RequeueOutcome out = requeue_from_rank0(env_, requeue_mode_, reason);
        code = out.code;
        if (record_) record_(out.cancelled ? "cancelled" : "preempted", detail);
      }
    } catch (const std::exception& e) {
      std::cerr << "hpctrain: stop guard: " << e.what() << std::endl;
    }
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    ::_exit(code);  // other threads may be stuck where the process cannot unwind
  }
}

}  // namespace hpctrain::slurm
