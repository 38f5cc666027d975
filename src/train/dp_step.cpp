// The data-parallel step: one flat gradient buffer, one allreduce, clipping, the optimizer.
#include "dp_step.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

namespace hpctrain::train {

namespace {
// Two parameter groups: weights with weight_decay, biases and norm weights (1-D) without, as HF does.
template <class Opt, class Options>
std::unique_ptr<torch::optim::Optimizer> make_optimizer(Options options, double weight_decay,
                                                        const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& p : params) (p.dim() >= 2 ? decay : no_decay).push_back(p);
  options.weight_decay(0);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<Options>(Options(options).weight_decay(weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<Options>(options));
  return std::make_unique<Opt>(groups, options);
}
}  // namespace

DataParallelStep::DataParallelStep(TensorComm& comm, std::vector<torch::Tensor> params,
                                   const config::TrainingArguments& args, torch::Device device)
    : comm_(comm), params_(std::move(params)), args_(args) {
  std::int64_t total = 0;
  for (const auto& p : params_) total += p.numel();
  grads_ = torch::zeros({total}, torch::TensorOptions().dtype(torch::kFloat).device(device));
  std::int64_t off = 0;
  for (auto& p : params_) {
    p.mutable_grad() = grads_.narrow(0, off, p.numel()).view_as(p);
    off += p.numel();
  }
  const double lr = args.learning_rate;
  using config::Optimizer;
  if (args.optim == Optimizer::kSgd) {
    optimizer_ = make_optimizer<torch::optim::SGD>(torch::optim::SGDOptions(lr).momentum(args.sgd_momentum),
                                                   args.weight_decay, params_);
  } else if (args.optim == Optimizer::kAdam) {
    optimizer_ = make_optimizer<torch::optim::Adam>(
        torch::optim::AdamOptions(lr).betas({args.adam_beta1, args.adam_beta2}).eps(args.adam_epsilon), args.weight_decay,
        params_);
  } else {
    optimizer_ = make_optimizer<torch::optim::AdamW>(
        torch::optim::AdamWOptions(lr).betas({args.adam_beta1, args.adam_beta2}).eps(args.adam_epsilon), args.weight_decay,
        params_);
  }
}

std::optional<double> DataParallelStep::apply(double lr, bool want_norm) {
  comm_.allreduce_sum(grads_);
  // The norm is a pass over every gradient (4% of a small model's step): taken when clipping
  // needs it or the step's log line shows it, as Hugging Face logs the clip's norm.
  std::optional<double> norm;
  if (args_.max_grad_norm > 0 || want_norm) norm = grads_.norm().item<double>();
  if (args_.max_grad_norm > 0 && *norm > args_.max_grad_norm) grads_.mul_(args_.max_grad_norm / (*norm + 1e-6));
  for (auto& g : optimizer_->param_groups()) g.options().set_lr(lr);
  optimizer_->step();
  grads_.zero_();
  return norm;
}

}  // namespace hpctrain::train
