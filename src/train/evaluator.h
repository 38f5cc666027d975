// The Trainer's evaluator: passes of the model over each rank's exact share of a data set, the
// loss and task metric reduced on every rank, and predictions gathered into predictions.h5. Also
// BatchModel, the batch-to-tensor and loss code that training and evaluation share.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hpctrain/config/training_arguments.h"
#include "hpctrain/core/json.h"
#include "hpctrain/data/data_arguments.h"
#include "hpctrain/data/loader.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/models/model.h"
#include "tensor_comm.h"

namespace hpctrain::train {

/// A batch through the model: its tensors on the device, the forward pass (autocast with bf16),
/// and the summed loss and metric of the task.
class BatchModel {
 public:
  BatchModel(std::shared_ptr<models::Model> model, torch::Device device, std::int64_t vocab_size, bool bf16)
      : model_(std::move(model)), task_(model_->task()), device_(device), vocab_size_(vocab_size), bf16_(bf16) {}

  models::Model& model() { return *model_; }
  models::Task task() const { return task_; }
  /// The inputs as a tensor on the device (token ids checked against the vocabulary).
  torch::Tensor inputs(data::Batch& b) const;
  torch::Tensor targets(data::Batch& b) const;
  /// model(inputs), under autocast when bf16 is on.
  torch::Tensor forward(data::Batch& b) const;
  /// Sum of per-sample losses (per-token for language models) and, when `metric` is given, of the
  /// task metric's numerator (evaluation only: training does not pay for it).
  torch::Tensor loss(const torch::Tensor& out, const torch::Tensor& y, torch::Tensor* metric = nullptr) const;
  /// Loss terms a sample adds: its tokens for sequences, 1 for regression.
  std::int64_t elements_per_sample(const data::ShardSet& set) const;
  /// Whether `t`'s storage lies in one of the batch's buffers (which the loader reuses).
  static bool views_batch(const torch::Tensor& t, const data::Batch& b);

 private:
  void check_tokens(const data::Batch& b) const;
  std::shared_ptr<models::Model> model_;
  models::Task task_;
  torch::Device device_;
  std::int64_t vocab_size_;
  bool bf16_;
};

class Evaluator {
 public:
  /// Sums of one pass, the same on every rank.
  struct PassSums {
    double loss = 0, metric = 0, count = 0;
    int stopped_by = 0;  ///< a preemption signal made the pass give way (the sums are partial)
  };

  Evaluator(const dist::Environment& env, TensorComm& comm, BatchModel& model, const config::TrainingArguments& args,
            const data::DataArguments& data)
      : env_(env), comm_(comm), model_(model), args_(args), data_(data) {}

  /// One pass over this rank's exact share of `set`: loss and metric sums (when the set has
  /// targets), and the outputs themselves (on the host) when `keep` is given.
  PassSums run_pass(const std::shared_ptr<data::ShardSet>& set, std::vector<torch::Tensor>* keep);
  /// <prefix>_loss, _accuracy (classes, next tokens) or _mae (regression), _perplexity (language models).
  Json metrics(const std::string& prefix, const PassSums& s) const;
  /// Predicts `set` into output_dir/predictions.h5 (rank 0 writes it; complete or absent) and
  /// returns the pass's sums (stopped_by set: nothing was written).
  PassSums predict(const std::shared_ptr<data::ShardSet>& set);

 private:
  const dist::Environment& env_;
  TensorComm& comm_;
  BatchModel& model_;
  const config::TrainingArguments& args_;
  const data::DataArguments& data_;
};

}  // namespace hpctrain::train
