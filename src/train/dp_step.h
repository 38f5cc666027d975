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
  std::int64_t numel() const { return grads_.numel(); }

  /// After the step's backward passes: sums the gradients over the ranks, clips them to
  /// max_grad_norm, steps the optimizer at learning rate `lr` and zeroes the gradients. Returns the
  /// global gradient norm when it was taken: for clipping, or when `want_norm` (a log line shows it).
  std::optional<double> apply(double lr, bool want_norm);

 private:
  TensorComm& comm_;
  std::vector<torch::Tensor> params_;
  const config::TrainingArguments& args_;
  torch::Tensor grads_;  // every parameter's .grad is a view into this flat buffer
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
};

}  // namespace hpctrain::train
