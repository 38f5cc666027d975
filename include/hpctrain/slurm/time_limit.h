// The job's time limit: under SLURM the trainer checkpoints and stops (and requeues) before the
// limit, even when no signal comes, leaving a margin for the step in progress and the save.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace hpctrain::dist {
class Environment;
struct SlurmInfo;
}  // namespace hpctrain::dist

namespace hpctrain::slurm {

/// Seconds of a SLURM duration: "[days-]hours:minutes:seconds", "minutes:seconds", "minutes"
/// (squeue %L, sbatch --time). nullopt for UNLIMITED, NOT_SET, INVALID or unreadable text.
std::optional<double> parse_duration(const std::string& text);

/// Seconds the job has left: `squeue -h -j <job> -o %L`. nullopt when not under SLURM, unlimited,
/// or SLURM cannot be asked.
std::optional<double> job_seconds_left(const dist::SlurmInfo& slurm);

/// Decides, on rank 0, when to stop for the time limit; the trainer joins the decision to the
/// per-step preemption allreduce so that every rank stops at the same step.
class TimeLimit {
 public:
  /// `margin`: "auto" (30 s + twice the longest step + twice the longest save), "off", or seconds.
  /// Only rank 0 asks SLURM (at the start and every 10 minutes, as the limit can be changed).
  TimeLimit(const dist::Environment& env, const std::string& margin);

  /// Rank 0: whether to checkpoint and stop after this step. `step_s`: the longest step so far;
  /// `save_s`: the longest save so far (or an estimate before the first). A margin as long as the
  /// time the run had is ignored with a warning (every run would stop after one step).
  bool should_stop(double step_s, double save_s);
  /// Whether a deadline is known (rank 0).
  bool active() const { return deadline_.has_value(); }
  /// The margin in seconds for these step and save times.
  double margin_seconds(double step_s, double save_s) const;
  /// Seconds to the deadline (rank 0, when active).
  double seconds_left() const;

 private:
  using Clock = std::chrono::steady_clock;
  void refresh();
  const dist::Environment& env_;
  bool enabled_ = false;
  double fixed_margin_ = -1;  ///< < 0: auto
  std::optional<Clock::time_point> deadline_;
  double initial_left_ = 0;  ///< seconds left when this run started
  Clock::time_point asked_;
};

}  // namespace hpctrain::slurm
