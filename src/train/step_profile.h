// Where a step's time goes: the phases of the steps since the last log (their fractions ride in
// every log line) and, for profile_steps = A-B, a Chrome trace of those steps per rank from
// libtorch's profiler with the phases as ranges of their own.
#pragma once

#include <torch/csrc/autograd/profiler_legacy.h>

#include <ATen/record_function.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>

#include "hpctrain/core/json.h"

namespace hpctrain::train {

enum class Phase { kData, kForward, kBackward, kAllreduce, kOptimizer, kCheckpoint };
constexpr std::size_t kPhases = 6;

/// Seconds spent in each phase since reset(). scope() times a phase and, while libtorch's
/// profiler records, marks it as a range "hpctrain/<phase>" in the trace.
class StepPhases {
 public:
  class Scope {
   public:
    Scope(StepPhases& owner, Phase p);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    StepPhases& owner_;
    Phase phase_;
    std::chrono::steady_clock::time_point start_;
    at::RecordFunction range_;
  };
  Scope scope(Phase p) { return Scope(*this, p); }
  void reset() { seconds_.fill(0); }
  const std::array<double, kPhases>& seconds() const { return seconds_; }

  /// The log keys: phase_data, phase_forward, phase_backward, phase_allreduce, phase_optimizer,
  /// phase_checkpoint, then phase_other (what is left of the window: evaluation, logging,
  /// callbacks). `fractions` holds kPhases + 1 values that sum to 1.
  static void add_to_log(Json& log, const double* fractions);
  /// This rank's fractions of `elapsed` seconds (kPhases + 1 values, the rest as other).
  void fractions(double elapsed, double* out) const;

 private:
  std::array<double, kPhases> seconds_{};
};

/// profile_steps = A-B: libtorch's (legacy, CPU) profiler from the start of step A to the end of
/// step B on every rank; the trace is written to output_dir/profile/trace-rank<r>.json (Chrome
/// trace JSON, for chrome://tracing or Perfetto) when step B ends or the run does. A run that
/// starts inside the window (a resume) records from its first step.
class StepTrace {
 public:
  StepTrace(std::string output_dir, int rank, std::int64_t first, std::int64_t last)
      : dir_(std::move(output_dir)), rank_(rank), first_(first), last_(last) {}
  ~StepTrace();
  void before_step(std::int64_t step);
  void after_step(std::int64_t step);
  /// Ends a recording in progress (the run ended inside the window) and writes it.
  void finish();

 private:
  std::string dir_;
  int rank_;
  std::int64_t first_, last_;
  bool done_ = false;
  std::unique_ptr<std::ostringstream> out_;
  std::unique_ptr<torch::autograd::profiler::RecordProfile> recording_;
};

}  // namespace hpctrain::train
