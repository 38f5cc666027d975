// The numerical-anomaly guard: which steps are anomalous (a non-finite loss or gradient norm on
// any rank, or a spike) and what the run does about them (skip, roll back, stop).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "hpctrain/config/training_arguments.h"
#include "hpctrain/core/json.h"

namespace hpctrain::train {

/// Decides from values every rank has alike (the step's loss and gradient norm after the one
/// gradient allreduce, and how many ranks saw a non-finite loss, summed in that same allreduce),
/// so every rank takes the same decision without a collective of its own.
class AnomalyGuard {
 public:
  enum class Action { kApply, kSkip, kRollback, kStop };

  explicit AnomalyGuard(const config::TrainingArguments& args) : args_(args) {}
  bool enabled() const { return args_.on_anomaly != config::OnAnomaly::kOff; }

  /// Why the step is anomalous ("" when it is not): `nonfinite_ranks` ranks had a non-finite
  /// loss; `loss` is the step's mean loss over the ranks, `norm` the global gradient norm. A spike
  /// (anomaly_zscore) is measured against the last 128 applied steps (a full window only).
  std::string check(double nonfinite_ranks, double loss, std::optional<double> norm) const;

  /// Records the step's verdict and returns what to do: apply it, skip it, or (the patience spent)
  /// roll back or stop. An applied step's values join the spike windows.
  Action record(const std::string& why, double loss, std::optional<double> norm);

  std::int64_t in_row() const { return in_row_; }
  std::int64_t total() const { return total_; }
  /// After a rollback: the count in a row starts again (the spike windows are kept: they hold
  /// steps that were applied).
  void rolled_back() { in_row_ = 0; }

  /// The guard's state for checkpoints (the count in a row, the total, the spike windows with
  /// their running sums as they are, so that a resumed run decides bitwise as the uninterrupted
  /// one would). load_state throws ConfigError naming what is wrong.
  Json state() const;
  void load_state(const Json& s);

 private:
  static constexpr std::size_t kWindow = 128;  // llm.c's outlier window
  struct Window {
    std::deque<double> values;
    double sum = 0, sum_sq = 0;
    void add(double x);
    std::optional<double> zscore(double x) const;  // none until the window is full
  };
  const config::TrainingArguments& args_;
  Window loss_window_, norm_window_;
  std::int64_t in_row_ = 0, total_ = 0;
};

}  // namespace hpctrain::train
