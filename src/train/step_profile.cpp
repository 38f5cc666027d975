// Phase timers, their log keys, and the Chrome trace of profile_steps.
#include "step_profile.h"

#include <filesystem>

#include "hpctrain/core/files.h"
#include "hpctrain/core/log.h"

namespace hpctrain::train {
namespace {
constexpr const char* kNames[kPhases + 1] = {"data", "forward", "backward", "allreduce", "optimizer", "checkpoint", "other"};
constexpr const char* kRanges[kPhases] = {"hpctrain/data",      "hpctrain/forward",   "hpctrain/backward",
                                          "hpctrain/allreduce", "hpctrain/optimizer", "hpctrain/checkpoint"};
}  // namespace

StepPhases::Scope::Scope(StepPhases& owner, Phase p)
    : owner_(owner), phase_(p), start_(std::chrono::steady_clock::now()), range_(at::RecordScope::USER_SCOPE) {
  if (range_.isActive()) range_.before(kRanges[static_cast<std::size_t>(p)]);
}

StepPhases::Scope::~Scope() {
  owner_.seconds_[static_cast<std::size_t>(phase_)] +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void StepPhases::fractions(double elapsed, double* out) const {
  double sum = 0;
  for (std::size_t i = 0; i < kPhases; ++i) sum += seconds_[i];
  // The phases are inside the window; a clock read apart can make their sum pass it by a hair.
  const double total = std::max(elapsed, sum);
  for (std::size_t i = 0; i < kPhases; ++i) out[i] = total > 0 ? seconds_[i] / total : 0;
  out[kPhases] = total > 0 ? (total - sum) / total : 1;
}

void StepPhases::add_to_log(Json& log, const double* fractions) {
  for (std::size_t i = 0; i <= kPhases; ++i) log[std::string("phase_") + kNames[i]] = fractions[i];
}

StepTrace::~StepTrace() {
  try {
    finish();
  } catch (const std::exception& e) {
    HPCT_LOG(warning) << "the step trace could not be written: " << e.what();
  }
}

void StepTrace::before_step(std::int64_t step) {
  if (done_ || recording_ || step < first_ || step > last_) return;
  out_ = std::make_unique<std::ostringstream>();
  recording_ = std::make_unique<torch::autograd::profiler::RecordProfile>(*out_);
  if (rank_ == 0) {
    HPCT_LOG(info) << "profile_steps: recording steps " << step << "-" << last_ << " with libtorch's profiler";
  }
}

void StepTrace::after_step(std::int64_t step) {
  if (recording_ && step >= last_) finish();
}

void StepTrace::finish() {
  if (!recording_) return;
  recording_.reset();  // stops the profiler and writes the events to out_
  done_ = true;
  const std::filesystem::path dir = std::filesystem::path(dir_) / "profile";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / ("trace-rank" + std::to_string(rank_) + ".json")).string();
  files::write_atomic(path, out_->str());
  out_.reset();
  if (rank_ == 0) {
    HPCT_LOG(info) << "profile_steps: Chrome traces written to " << dir.string() << "/trace-rank<r>.json";
  }
}

}  // namespace hpctrain::train
