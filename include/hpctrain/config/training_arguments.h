// TrainingArguments: the trainer's settings, named as in Hugging Face's TrainingArguments
// (plain data; parsed in config.cpp, checked in validate.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "hpctrain/core/enum_names.h"

namespace hpctrain::config {

enum class Optimizer { kAdamW, kAdam, kSgd };
/// passive: the component's default (info on rank 0, warning on the others), as Hugging Face has it.
enum class LogLevel { kPassive, kDebug, kInfo, kWarning, kError, kCritical };
enum class SchedulerType { kConstant, kConstantWithWarmup, kLinear, kCosine };
enum class EvalStrategy { kNo, kSteps, kEpoch };
enum class SaveStrategy { kNo, kSteps, kEpoch, kBest };
/// auto, true or false (greater_is_better, save_async, requeue): auto is resolved where it is used.
enum class AutoBool { kAuto, kTrue, kFalse };
enum class SaveFailure { kStop, kWarn };
enum class PredictOutput { kClasses, kLogits };
enum class DdpBackend { kAuto, kMpi, kNccl };
/// What a numerically anomalous step does (on_anomaly): off (no check), skip (no optimizer step),
/// rollback or stop after anomaly_patience anomalous steps in a row.
enum class OnAnomaly { kOff, kSkip, kRollback, kStop };
/// Where the optimizer state lives (optimizer_sharding): on every rank whole (none), or each rank
/// holding 1/N of it with the gradients reduce-scattered and the parameters all-gathered (zero1).
enum class OptimizerSharding { kNone, kZero1 };

struct TrainingArguments {
  // Run
  std::string output_dir = "output";  ///< checkpoints, metrics.jsonl, resolved config
  std::string run_name;               ///< defaults to the output_dir's name
  std::int64_t seed = 42;
  std::int64_t data_seed = -1;  ///< -1: use seed
  std::string resume_from_checkpoint;  ///< "" (auto under SLURM, else none), none, auto, or a path

  // Length and batch
  double num_train_epochs = 3.0;
  std::int64_t max_steps = -1;  ///< > 0 overrides num_train_epochs
  std::int64_t per_device_train_batch_size = 8;
  std::int64_t per_device_eval_batch_size = 8;
  std::int64_t gradient_accumulation_steps = 1;
  bool dataloader_drop_last = false;
  std::int64_t dataloader_prefetch = 2;

  // Optimizer
  Optimizer optim = Optimizer::kAdamW;
  double learning_rate = 5e-5;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  double sgd_momentum = 0.0;
  double max_grad_norm = 1.0;  ///< 0 disables clipping

  // Schedule
  SchedulerType lr_scheduler_type = SchedulerType::kLinear;
  std::int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;

  // Logging
  std::int64_t logging_steps = 500;
  bool logging_first_step = false;
  LogLevel log_level = LogLevel::kPassive;          ///< rank 0 (passive: info)
  LogLevel log_level_replica = LogLevel::kWarning;  ///< ranks other than 0 (passive: warning)
  std::string report_to = "jsonl,tensorboard";      ///< sinks of logged metrics (reports_to)
  std::string profile_steps;  ///< "A-B": a Chrome trace of steps A to B per rank (profile_window); "": none

  // Evaluation
  EvalStrategy eval_strategy = EvalStrategy::kNo;
  std::int64_t eval_steps = 0;       ///< 0: same as logging_steps
  std::string metric_for_best_model;  ///< e.g. loss, accuracy (with or without the eval_ prefix)
  AutoBool greater_is_better = AutoBool::kAuto;  ///< auto: false for *loss metrics (finalize resolves it)
  std::int64_t early_stopping_patience = 0;  ///< evaluations without improvement before stopping; 0: off
  double early_stopping_threshold = 0.0;

  // Numerical anomalies (a non-finite loss or gradient norm on any rank; a spike beyond anomaly_zscore)
  OnAnomaly on_anomaly = OnAnomaly::kSkip;
  std::int64_t anomaly_patience = 5;  ///< anomalous steps in a row before rollback or stop
  double anomaly_zscore = 0;          ///< 0: off; else a loss or norm this many deviations above the last 128 steps'

  // Checkpointing
  SaveStrategy save_strategy = SaveStrategy::kSteps;
  std::int64_t save_steps = 0;          ///< 0: auto (Young/Daly from the measured save cost and mtbf_hours)
  std::int64_t save_total_limit = 0;  ///< 0: keep all
  bool save_only_model = false;
  bool load_best_model_at_end = false;
  AutoBool save_async = AutoBool::kAuto;  ///< write checkpoints in a background thread (auto: when memory allows)
  double mtbf_hours = 24;              ///< expected time between failures, for save_steps = auto
  bool resume_allow_data_change = false;  ///< resume even when the data order or training set changed
  SaveFailure save_failure = SaveFailure::kStop;  ///< what a periodic checkpoint that cannot be written does

  // Prediction
  PredictOutput predict_output = PredictOutput::kClasses;  ///< argmax classes or logits, for [data] test

  // Preemption
  std::string preemption_signals = "USR1,TERM";  ///< signals that mean: checkpoint now and stop
  std::string time_limit_margin = "auto";        ///< auto, off, or seconds before the SLURM time limit to checkpoint and stop
  AutoBool requeue = AutoBool::kAuto;  ///< scontrol requeue after the save (auto: under SLURM)
  double preemption_timeout = 60;  ///< seconds a signal may wait for a step boundary before the process exits anyway
  double slurm_query_timeout = 30;  ///< seconds squeue may take to answer (asked off the step path)

  // Precision and distribution
  bool bf16 = false;
  DdpBackend ddp_backend = DdpBackend::kAuto;
  double ddp_timeout = 1800;         ///< seconds a collective may take before the job is aborted
  bool ddp_check_collectives = false;  ///< debug: every rank agrees on each collective first
  std::string ddp_bucket_cap_mb = "auto";  ///< gradient buckets reduced during the backward pass: auto, 0 (one allreduce after it) or MB
  OptimizerSharding optimizer_sharding = OptimizerSharding::kNone;
  std::int64_t torch_threads = 0;    ///< intra-op threads per rank; 0: automatic
};

/// Whether `report_to` (validated: a comma-separated list of jsonl, tensorboard, all, none) names
/// `sink` ("jsonl", "tensorboard").
bool reports_to(const TrainingArguments& a, const std::string& sink);

/// ddp_bucket_cap_mb (validated) in MB: 0 for one allreduce after the backward pass, nullopt for
/// auto (decided by the data-parallel step from the gradients' size and the backend).
std::optional<double> bucket_cap_mb(const TrainingArguments& a);

/// profile_steps (validated) as its first and last step; nullopt when empty.
std::optional<std::pair<std::int64_t, std::int64_t>> profile_window(const TrainingArguments& a);

}  // namespace hpctrain::config

namespace hpctrain {
template <>
struct EnumNames<config::LogLevel> {
  static constexpr std::pair<config::LogLevel, const char*> list[] = {
      {config::LogLevel::kPassive, "passive"}, {config::LogLevel::kDebug, "debug"},  {config::LogLevel::kInfo, "info"},
      {config::LogLevel::kWarning, "warning"}, {config::LogLevel::kError, "error"}, {config::LogLevel::kCritical, "critical"}};
};
template <>
struct EnumNames<config::Optimizer> {
  static constexpr std::pair<config::Optimizer, const char*> list[] = {
      {config::Optimizer::kAdamW, "adamw"}, {config::Optimizer::kAdam, "adam"}, {config::Optimizer::kSgd, "sgd"}};
};
template <>
struct EnumNames<config::SchedulerType> {
  static constexpr std::pair<config::SchedulerType, const char*> list[] = {
      {config::SchedulerType::kConstant, "constant"},
      {config::SchedulerType::kConstantWithWarmup, "constant_with_warmup"},
      {config::SchedulerType::kLinear, "linear"},
      {config::SchedulerType::kCosine, "cosine"}};
};
template <>
struct EnumNames<config::EvalStrategy> {
  static constexpr std::pair<config::EvalStrategy, const char*> list[] = {
      {config::EvalStrategy::kNo, "no"}, {config::EvalStrategy::kSteps, "steps"}, {config::EvalStrategy::kEpoch, "epoch"}};
};
template <>
struct EnumNames<config::SaveStrategy> {
  static constexpr std::pair<config::SaveStrategy, const char*> list[] = {{config::SaveStrategy::kNo, "no"},
                                                                         {config::SaveStrategy::kSteps, "steps"},
                                                                         {config::SaveStrategy::kEpoch, "epoch"},
                                                                         {config::SaveStrategy::kBest, "best"}};
};
template <>
struct EnumNames<config::AutoBool> {
  static constexpr std::pair<config::AutoBool, const char*> list[] = {
      {config::AutoBool::kAuto, "auto"}, {config::AutoBool::kTrue, "true"}, {config::AutoBool::kFalse, "false"}};
};
template <>
struct EnumNames<config::SaveFailure> {
  static constexpr std::pair<config::SaveFailure, const char*> list[] = {{config::SaveFailure::kStop, "stop"},
                                                                        {config::SaveFailure::kWarn, "warn"}};
};
template <>
struct EnumNames<config::PredictOutput> {
  static constexpr std::pair<config::PredictOutput, const char*> list[] = {{config::PredictOutput::kClasses, "classes"},
                                                                          {config::PredictOutput::kLogits, "logits"}};
};
template <>
struct EnumNames<config::OnAnomaly> {
  static constexpr std::pair<config::OnAnomaly, const char*> list[] = {{config::OnAnomaly::kOff, "off"},
                                                                      {config::OnAnomaly::kSkip, "skip"},
                                                                      {config::OnAnomaly::kRollback, "rollback"},
                                                                      {config::OnAnomaly::kStop, "stop"}};
};
template <>
struct EnumNames<config::OptimizerSharding> {
  static constexpr std::pair<config::OptimizerSharding, const char*> list[] = {
      {config::OptimizerSharding::kNone, "none"}, {config::OptimizerSharding::kZero1, "zero1"}};
};
template <>
struct EnumNames<config::DdpBackend> {
  static constexpr std::pair<config::DdpBackend, const char*> list[] = {
      {config::DdpBackend::kAuto, "auto"}, {config::DdpBackend::kMpi, "mpi"}, {config::DdpBackend::kNccl, "nccl"}};
};
}  // namespace hpctrain
