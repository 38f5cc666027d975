// The data-parallel step: every parameter's gradient is a view into one flat buffer, summed over
// the ranks in one allreduce after the backward passes of a step, clipped by the global norm, then
// applied by the optimizer (two groups: weight decay on weights, not on biases and norms).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <optional>
#include <vector>

#include "hpctrain/config/training_arguments.h"
#include "tensor_comm.h"

namespace hpctrain::train {

class DataParallelStep {
 public:
  /// Makes the flat gradient buffer on `device`, points every parameter's .grad into it, and builds
  /// the optimizer that `args` names.
  DataParallelStep(TensorComm& comm, std::vector<torch::Tensor> params, const config::TrainingArguments& args,
                   torch::Device device);

  const std::vector<torch::Tensor>& params() const { return params_; }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  std::int64_t numel() const { return numel_; }

  /// What the step's one allreduce gives every rank alike.
  struct Reduced {
    double loss_sum = 0, loss_count = 0;  ///< the step's summed loss and its count, over the ranks
    double nonfinite_ranks = 0;           ///< ranks whose own loss was not finite
    std::optional<double> norm;           ///< the global gradient norm, when taken
  };
  /// After the step's backward passes: sums the gradients over the ranks, and in the same
  /// allreduce (three more elements of the flat buffer) this rank's loss sum and count and whether
  /// its loss was finite, so that the anomaly guard needs no collective of its own. Takes the
  /// global gradient norm for clipping or when `want_norm` (a log line shows it).
  Reduced reduce(double loss_sum, double loss_count, bool loss_finite, bool want_norm);
  /// Then either: clips the gradients to max_grad_norm, steps the optimizer at learning rate `lr`
  /// and zeroes the gradients;
  void update(double lr, const Reduced& reduced);
  /// or drops them (a skipped step: parameters and optimizer state stay as they are).
  void discard() { grads_.zero_(); }

 private:
  TensorComm& comm_;
  std::vector<torch::Tensor> params_;
  const config::TrainingArguments& args_;
  std::int64_t numel_ = 0;  // parameters' elements; the flat buffer has 3 more (Reduced's)
  torch::Tensor grads_;     // every parameter's .grad is a view into this flat buffer
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
};

}  // namespace hpctrain::train
