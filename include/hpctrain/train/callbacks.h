// Callbacks with Hugging Face's events. Every rank runs every callback (so decisions such as
// early stopping agree); callbacks that print or write check state.is_world_process_zero.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "hpctrain/core/files.h"
#include "hpctrain/core/json.h"
#include "hpctrain/train/trainer_state.h"
#include "hpctrain/train/arguments.h"

namespace hpctrain::train {

class TrainerCallback {
 public:
  virtual ~TrainerCallback() = default;
  virtual void on_init_end(const TrainingArguments&, TrainerState&, TrainerControl&) {}
  virtual void on_train_begin(const TrainingArguments&, TrainerState&, TrainerControl&) {}
  virtual void on_train_end(const TrainingArguments&, TrainerState&, TrainerControl&) {}
  virtual void on_epoch_begin(const TrainingArguments&, TrainerState&, TrainerControl&) {}
  virtual void on_epoch_end(const TrainingArguments&, TrainerState&, TrainerControl&) {}
  virtual void on_step_begin(const TrainingArguments&, TrainerState&, TrainerControl&) {}
  virtual void on_step_end(const TrainingArguments&, TrainerState&, TrainerControl&) {}
  /// `metrics` holds eval_* values (the same on every rank).
  virtual void on_evaluate(const TrainingArguments&, TrainerState&, TrainerControl&, const Json& /*metrics*/) {}
  /// `logs` is the event just appended to log_history.
  virtual void on_log(const TrainerState&, const Json& /*logs*/) {}
  virtual void on_save(const TrainingArguments&, TrainerState&, TrainerControl&) {}

  /// Stateful callbacks (Hugging Face's ExportableState): a non-empty name puts state() into every
  /// checkpoint as "callbacks/<name>" and hands it back to load_state() on resume, so that a
  /// preempted run decides as the uninterrupted one would. state() must be the same on every rank.
  virtual std::string state_name() const { return ""; }
  virtual Json state() const { return Json::object(); }
  /// Throws ConfigError naming what is wrong when `state` is not what state() writes.
  virtual void load_state(const Json& /*state*/) {}
};

using Callbacks = std::vector<std::shared_ptr<TrainerCallback>>;

/// When to log, evaluate and save, from the arguments (Hugging Face's DefaultFlowCallback). The
/// Trainer registers it first and clears should_log, should_evaluate and should_save before every
/// step (should_epoch_stop before every epoch), so that a callback after it can add an event or
/// suppress one; the Trainer acts on the flags alone. save_strategy=best and save_steps=auto are
/// decided by the Trainer (they need the evaluation's result and the ranks' agreement).
class DefaultFlowCallback : public TrainerCallback {
 public:
  /// Whether the settings log step `step` (the Trainer asks before the step, to take the gradient
  /// norm only for a step that shows it).
  static bool log_due(const TrainingArguments& args, const TrainerState& state, std::int64_t step);
  void on_step_end(const TrainingArguments& args, TrainerState& state, TrainerControl& control) override;
  void on_epoch_end(const TrainingArguments& args, TrainerState& state, TrainerControl& control) override;
};

/// Rank 0: one line per logged event on the log, and a live progress line on a terminal.
class ProgressCallback : public TrainerCallback {
 public:
  void on_train_begin(const TrainingArguments&, TrainerState&, TrainerControl&) override;
  void on_step_end(const TrainingArguments&, TrainerState&, TrainerControl&) override;
  void on_log(const TrainerState&, const Json& logs) override;
  void on_train_end(const TrainingArguments&, TrainerState&, TrainerControl&) override;

 private:
  bool tty_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::string last_loss_;
};

/// Rank 0: the one writer of output_dir/metrics.jsonl (one JSON object per line). Training starts
/// it afresh from the run's history (a resumed run's, up to its checkpoint); every logged event is
/// appended. Every write is checked (a full disk ends the run with WriteError naming the file),
/// and the file is flushed to disk when training ends.
class MetricsFileCallback : public TrainerCallback {
 public:
  explicit MetricsFileCallback(std::string path) : path_(std::move(path)) {}
  void on_train_begin(const TrainingArguments&, TrainerState& state, TrainerControl&) override;
  void on_log(const TrainerState&, const Json& logs) override;
  void on_train_end(const TrainingArguments&, TrainerState&, TrainerControl&) override;

 private:
  std::string path_;
  files::AppendFile file_;
  bool ended_ = false;  // after training: each later line (predictions' metrics) is synced at once
};

/// Stops training after `patience` evaluations without an improvement of the best metric by more
/// than `threshold`.
class EarlyStoppingCallback : public TrainerCallback {
 public:
  EarlyStoppingCallback(std::int64_t patience, double threshold) : patience_(patience), threshold_(threshold) {}
  void on_evaluate(const TrainingArguments&, TrainerState&, TrainerControl&, const Json& metrics) override;
  std::int64_t misses() const { return misses_; }
  std::string state_name() const override { return "early_stopping"; }
  /// {"args": {"patience", "threshold"}, "attributes": {"has_best", "best", "misses"}}, as HF's.
  Json state() const override;
  void load_state(const Json& state) override;

 private:
  std::int64_t patience_;
  double threshold_;
  std::int64_t misses_ = 0;
  bool has_best_ = false;
  double best_ = 0;
};

}  // namespace hpctrain::train
