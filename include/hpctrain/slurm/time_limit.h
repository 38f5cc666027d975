// The job's time limit: under SLURM the trainer checkpoints and stops (and requeues) before the
// limit, even when no signal comes, leaving a margin for the step in progress and the save.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace hpctrain::dist {
class Environment;
struct SlurmInfo;
}  // namespace hpctrain::dist

namespace hpctrain::slurm {

/// Seconds of a SLURM duration: "[days-]hours:minutes:seconds", "minutes:seconds", "minutes"
/// (squeue %L, sbatch --time). nullopt for UNLIMITED, NOT_SET, INVALID or unreadable text.
std::optional<double> parse_duration(const std::string& text);

/// Seconds the job has left: `squeue -h -j <job> -o %L`, given at most `timeout_s` to answer.
/// nullopt when not under SLURM, unlimited, or SLURM cannot be asked (`*timed_out` says whether
/// squeue was too slow).
std::optional<double> job_seconds_left(const dist::SlurmInfo& slurm, double timeout_s = 30, bool* timed_out = nullptr,
                                       const std::atomic<bool>* cancel = nullptr);

/// Decides, on rank 0, when to stop for the time limit; the trainer joins the decision to the
/// per-step preemption allreduce so that every rank stops at the same step. SLURM is asked on a
/// thread of its own, never on the step path: a slow or unreachable slurmctld costs training
/// nothing (the last answer stands; a query that does not answer in time is reported once).
class TimeLimit {
 public:
  /// `margin`: "auto" (30 s + twice the longest step + twice the longest save), "off", or seconds.
  /// Only rank 0 asks SLURM (at the start and every 10 minutes, as the limit can be changed), each
  /// query given `query_timeout_s`.
  TimeLimit(const dist::Environment& env, const std::string& margin, double query_timeout_s = 30);
  ~TimeLimit();
  TimeLimit(const TimeLimit&) = delete;
  TimeLimit& operator=(const TimeLimit&) = delete;

  /// Rank 0: whether to checkpoint and stop after this step. `step_s`: the longest step so far;
  /// `save_s`: the longest save so far (or an estimate before the first). A margin as long as the
  /// time the run had is ignored with a warning (every run would stop after one step).
  bool should_stop(double step_s, double save_s);
  /// Whether a deadline is known (rank 0).
  bool active() const;
  /// The margin in seconds for these step and save times.
  double margin_seconds(double step_s, double save_s) const;
  /// Seconds to the deadline (rank 0, when active).
  double seconds_left() const;

 private:
  using Clock = std::chrono::steady_clock;
  void loop();
  const dist::Environment& env_;
  bool enabled_ = false;
  double fixed_margin_ = -1;  ///< < 0: auto
  double query_timeout_s_;
  mutable std::mutex mu_;  // guards what the query thread learns
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<bool> cancel_{false};  // ends a query in flight when the run is over
  std::optional<Clock::time_point> deadline_;
  double initial_left_ = 0;  ///< seconds left when this run started
  std::thread thread_;
};

}  // namespace hpctrain::slurm
