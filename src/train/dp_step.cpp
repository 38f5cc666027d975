// The data-parallel step: one flat gradient buffer, one allreduce, clipping, the optimizer.
#include "dp_step.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <cstring>

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
  numel_ = total;
  grads_ = torch::zeros({total + 3}, torch::TensorOptions().dtype(torch::kFloat).device(device));
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

DataParallelStep::Reduced DataParallelStep::reduce(double loss_sum, double loss_count, bool loss_finite, bool want_norm) {
  const float mine[3] = {static_cast<float>(loss_sum), static_cast<float>(loss_count), loss_finite ? 0.0f : 1.0f};
  float all[3];
  if (grads_.is_cpu()) {  // a step can be 1 ms: no tensor made for 3 numbers
    std::memcpy(grads_.data_ptr<float>() + numel_, mine, sizeof(mine));
    comm_.allreduce_sum(grads_);
    std::memcpy(all, grads_.data_ptr<float>() + numel_, sizeof(all));
  } else {
    grads_.narrow(0, numel_, 3).copy_(torch::from_blob(const_cast<float*>(mine), {3}, torch::kFloat));
    comm_.allreduce_sum(grads_);
    const torch::Tensor back = grads_.narrow(0, numel_, 3).to(torch::kCPU);
    std::memcpy(all, back.data_ptr<float>(), sizeof(all));
  }
  Reduced r;
  r.loss_sum = all[0];
  r.loss_count = all[1];
  r.nonfinite_ranks = all[2];
  // The norm is a pass over every gradient (4% of a small model's step): taken when clipping
  // needs it or the caller does, as Hugging Face logs the clip's norm.
  if (args_.max_grad_norm > 0 || want_norm) r.norm = grads_.narrow(0, 0, numel_).norm().item<double>();
  return r;
}

void DataParallelStep::update(double lr, const Reduced& reduced) {
  if (args_.max_grad_norm > 0 && *reduced.norm > args_.max_grad_norm)
    grads_.mul_(args_.max_grad_norm / (*reduced.norm + 1e-6));
  for (auto& g : optimizer_->param_groups()) g.options().set_lr(lr);
  optimizer_->step();
  grads_.zero_();
}

}  // namespace hpctrain::train
