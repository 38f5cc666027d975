// The data-parallel step: flat gradients; one allreduce, overlapped buckets or ZeRO-1's
// reduce-scatter and all-gather; clipping; the optimizer.
#include "dp_step.h"

#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <cmath>
#include <cstring>
#include <set>
#include <sstream>

#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "optimizer_kinds.h"

namespace hpctrain::train {

namespace {
// The replicated buffer starts with the three loss numbers, padded to 64 bytes so that the
// gradients after them stay as aligned as a fresh allocation.
constexpr std::int64_t kHeader = 16;
// auto: PyTorch DDP's bucket size, for gradients of at least two buckets.
constexpr double kAutoBucketMb = 25;
constexpr double kMiB = 1024.0 * 1024.0;

// Two parameter groups: weights with weight_decay, biases and norm weights (1-D) without, as HF does.
template <class Opt, class Options>
std::unique_ptr<torch::optim::Optimizer> make_optimizer(Options options, double weight_decay, std::vector<torch::Tensor> decay,
                                                        std::vector<torch::Tensor> no_decay) {
  options.weight_decay(0);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::move(decay), std::make_unique<Options>(Options(options).weight_decay(weight_decay)));
  groups.emplace_back(std::move(no_decay), std::make_unique<Options>(options));
  return std::make_unique<Opt>(groups, options);
}

std::unique_ptr<torch::optim::Optimizer> build_optimizer(const config::TrainingArguments& args, std::vector<torch::Tensor> decay,
                                                         std::vector<torch::Tensor> no_decay) {
  const double lr = args.learning_rate;
  using config::Optimizer;
  if (args.optim == Optimizer::kSgd)
    return make_optimizer<torch::optim::SGD>(torch::optim::SGDOptions(lr).momentum(args.sgd_momentum), args.weight_decay,
                                             std::move(decay), std::move(no_decay));
  if (args.optim == Optimizer::kAdam)
    return make_optimizer<torch::optim::Adam>(
        torch::optim::AdamOptions(lr).betas({args.adam_beta1, args.adam_beta2}).eps(args.adam_epsilon), args.weight_decay,
        std::move(decay), std::move(no_decay));
  return make_optimizer<torch::optim::AdamW>(
      torch::optim::AdamWOptions(lr).betas({args.adam_beta1, args.adam_beta2}).eps(args.adam_epsilon), args.weight_decay,
      std::move(decay), std::move(no_decay));
}
}  // namespace

DataParallelStep::DataParallelStep(TensorComm& comm, std::vector<torch::Tensor> params, const config::TrainingArguments& args,
                                   torch::Device device, bool threads_ok)
    : comm_(comm), args_(args) {
  // A parameter listed twice (weights tied with register_parameter) is one tensor: one gradient
  // view, one optimizer entry, one hook; stepped or reduced twice it would go wrong.
  std::set<const void*> seen;
  for (auto& p : params)
    if (seen.insert(p.unsafeGetTensorImpl()).second) params_.push_back(std::move(p));
  for (const auto& p : params_) numel_ += p.numel();
  sharded_ = args.optimizer_sharding == config::OptimizerSharding::kZero1;
  if (sharded_) build_sharded(device);
  else build_replicated(device, threads_ok);
}

DataParallelStep::~DataParallelStep() {
  thread_.reset();  // waits for a bucket in flight
  // Released, the accumulators go with the graph's last reference: no hook outlives this object.
  accumulators_.clear();
}

void DataParallelStep::build_replicated(torch::Device device, bool threads_ok) {
  base_ = kHeader;
  shard_ = shard_size();
  grads_ = torch::zeros({base_ + shard_ * comm_.size()}, torch::TensorOptions().dtype(torch::kFloat).device(device));
  std::int64_t off = base_;
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& p : params_) {
    p.mutable_grad() = grads_.narrow(0, off, p.numel()).view_as(p);
    offsets_.push_back(off);
    off += p.numel();
    (p.dim() >= 2 ? decay : no_decay).push_back(p);
  }
  optimizer_ = build_optimizer(args_, std::move(decay), std::move(no_decay));
  const std::optional<double> cap = config::bucket_cap_mb(args_);
  // auto: buckets where a collective runs beside the computation (NCCL: on the GPU's own engines)
  // and the gradients fill two buckets. With MPI on CPU ranks the reduction takes the cores the
  // backward pass computes on: one allreduce after it was as fast here (README, Scaling).
  const bool big = static_cast<double>(numel_) * 4 >= 2 * kAutoBucketMb * kMiB;
  const double mb = cap ? *cap : (comm_.comm().device_buffers() && big ? kAutoBucketMb : 0);
  if (mb > 0) plan_buckets(mb, threads_ok);
}

void DataParallelStep::plan_buckets(double cap_mb, bool threads_ok) {
  if (!threads_ok) {
    if (comm_.rank() == 0) {
      HPCT_LOG(warning) << "ddp_bucket_cap_mb: MPI gives no thread support for a communication thread; the gradients "
                           "are reduced in one allreduce after the backward pass";
    }
    return;
  }
  bucket_mb_ = cap_mb;
  const auto cap = static_cast<std::int64_t>(std::max(1.0, cap_mb * kMiB / 4));
  // Reverse parameter order: the order autograd finishes them in. The last bucket reaches down
  // to element 0, the header, which reduce() fills once the backward pass is over.
  std::vector<std::size_t> bucket_of(params_.size());
  std::int64_t end = base_ + numel_;
  for (std::size_t k = params_.size(); k-- > 0;) {
    bucket_of[k] = buckets_.size();
    if (end - offsets_[k] >= cap && k > 0) {
      buckets_.push_back({offsets_[k], end, 0, 0});
      end = offsets_[k];
    }
  }
  buckets_.push_back({0, end, 0, 0});
  // A frozen parameter never has a gradient: its bucket does not wait for it.
  for (std::size_t k = 0; k < params_.size(); ++k) {
    const torch::Tensor& p = params_[k];
    if (!p.requires_grad()) continue;
    const std::size_t i = bucket_of[k];
    buckets_[i].params += 1;
    auto acc = torch::autograd::impl::grad_accumulator(p);
    acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          on_gradient(i);
          return outputs;
        }));
    accumulators_.push_back(std::move(acc));
  }
  thread_ = std::make_unique<dist::CommThread>();
}

void DataParallelStep::build_sharded(torch::Device device) {
  const int world = comm_.size(), rank = comm_.rank();
  shard_ = shard_size();
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(device);
  flat_params_ = torch::zeros({shard_ * world}, f32);
  grads_ = torch::zeros({shard_ * world}, f32);
  grad_shard_ = torch::zeros({shard_}, f32);
  const std::int64_t mine_lo = shard_ * rank, mine_hi = shard_ * (rank + 1);
  std::vector<torch::Tensor> decay, no_decay;
  std::int64_t off = 0;
  torch::NoGradGuard no_grad;
  for (auto& p : params_) {
    HPCT_CHECK(p.scalar_type() == torch::kFloat, "optimizer_sharding=zero1 needs float32 parameters, got " << p.scalar_type());
    const std::int64_t n = p.numel();
    // The parameter's data becomes a view into the flat buffer that the all-gather fills.
    flat_params_.narrow(0, off, n).copy_(p.detach().reshape({-1}));
    p.set_data(flat_params_.narrow(0, off, n).view(p.sizes()));
    p.mutable_grad() = grads_.narrow(0, off, n).view_as(p);
    offsets_.push_back(off);
    Part part;
    const std::int64_t lo = std::max(off, mine_lo), hi = std::min(off + n, mine_hi);
    if (hi > lo) {
      part.lo = lo - off;
      part.hi = hi - off;
      part.tensor = flat_params_.narrow(0, lo, hi - lo);
      part.tensor.mutable_grad() = grad_shard_.narrow(0, lo - mine_lo, hi - lo);
      (p.dim() >= 2 ? decay : no_decay).push_back(part.tensor);
    }
    parts_.push_back(std::move(part));
    off += n;
  }
  if (!decay.empty() || !no_decay.empty()) optimizer_ = build_optimizer(args_, std::move(decay), std::move(no_decay));
}

std::int64_t DataParallelStep::shard_size() const {
  return std::max<std::int64_t>(1, (numel_ + comm_.size() - 1) / comm_.size());
}

double DataParallelStep::norm_of_squares(const std::vector<double>& squares) {
  // In rank order on every rank and on both paths: the same bits whichever path took them.
  double sum = 0;
  for (double sq : squares) sum += sq;
  return std::sqrt(sum);
}

double DataParallelStep::square_of_norm(const torch::Tensor& block) {
  const double n = block.norm().item<double>();
  return n * n;
}

std::optional<std::size_t> DataParallelStep::index_of(const torch::Tensor& p) const {
  for (std::size_t i = 0; i < params_.size(); ++i)
    if (params_[i].unsafeGetTensorImpl() == p.unsafeGetTensorImpl()) return i;
  return std::nullopt;
}

std::vector<std::int64_t> DataParallelStep::part_bounds(std::size_t i) const {
  const std::int64_t off = offsets_.at(i), n = params_.at(i).numel();
  std::vector<std::int64_t> b;
  for (int r = 0; r <= comm_.size(); ++r) b.push_back(std::clamp<std::int64_t>(shard_ * r - off, 0, n));
  return b;
}

torch::optim::Optimizer& DataParallelStep::optimizer() {
  HPCT_CHECK(!sharded_ && optimizer_, "the whole-parameter optimizer of a replicated run was asked for under zero1");
  return *optimizer_;
}

std::size_t DataParallelStep::optimizer_state_bytes() const {
  if (!optimizer_) return 0;
  // The state's own tensors, as the checkpoint pieces see them (the step count is not one).
  const OptimizerKind& kind = optimizer_kind(to_name(args_.optim));
  std::size_t n = 0;
  for (const auto& [key, s] : optimizer_->state())
    kind.save(*s, [&](const std::string&, const torch::Tensor& t, bool live) {
      if (live) n += static_cast<std::size_t>(t.numel()) * static_cast<std::size_t>(t.element_size());
    });
  return n;
}

std::string DataParallelStep::describe() const {
  std::ostringstream os;
  if (sharded_) {
    os << "zero1: gradients reduce-scattered, parameters all-gathered; this rank updates " << shard_ << " of " << numel_
       << " parameters and keeps their optimizer state";
  } else if (!buckets_.empty()) {
    os << "gradients in " << buckets_.size() << " buckets of at most " << bucket_mb_
       << " MiB, allreduced during the backward pass; optimizer state on every rank";
  } else {
    os << "gradients in one allreduce after the backward pass; optimizer state on every rank";
  }
  return os.str();
}

void DataParallelStep::before_last_backward() {
  if (buckets_.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  armed_ = true;
}

void DataParallelStep::on_gradient(std::size_t bucket) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!armed_) return;  // an earlier micro-batch of an accumulation: its gradients are not final
  buckets_[bucket].ready += 1;
  // In bucket order on every rank, so that the ranks' collectives pair up; the last bucket, with
  // the header, waits for reduce().
  while (launched_ + 1 < buckets_.size() && buckets_[launched_].ready >= buckets_[launched_].params) post(launched_++);
}

void DataParallelStep::post(std::size_t bucket) {
  const Bucket b = buckets_[bucket];
  thread_->post([this, b] {
    torch::Tensor view = grads_.narrow(0, b.begin, b.end - b.begin);
    comm_.allreduce_sum(view);
  });
}

DataParallelStep::Reduced DataParallelStep::reduce(double loss_sum, double loss_count, bool loss_finite, bool want_norm) {
  Reduced r;
  const bool norm = args_.max_grad_norm > 0 || want_norm;
  if (sharded_) {
    comm_.reduce_scatter_sum(grads_, grad_shard_);
    // The global norm from the slices: each rank's squared norm in a slot of its own (a sum with
    // zeros is exact in any order), sent with the loss numbers, then added in rank order.
    std::vector<double> v(3 + (norm ? comm_.size() : 0), 0.0);
    v[0] = loss_sum;
    v[1] = loss_count;
    v[2] = loss_finite ? 0.0 : 1.0;
    if (norm) v[3 + comm_.rank()] = square_of_norm(grad_shard_);
    const auto all = comm_.allreduce(std::move(v), dist::ReduceOp::kSum);
    r.loss_sum = all[0];
    r.loss_count = all[1];
    r.nonfinite_ranks = all[2];
    if (norm) r.norm = norm_of_squares(std::vector<double>(all.begin() + 3, all.end()));
    return r;
  }
  const float mine[3] = {static_cast<float>(loss_sum), static_cast<float>(loss_count), loss_finite ? 0.0f : 1.0f};
  float all[3];
  if (grads_.is_cpu()) {  // a step can be 1 ms: no tensor made for 3 numbers
    std::memcpy(grads_.data_ptr<float>(), mine, sizeof(mine));
  } else {
    grads_.narrow(0, 0, 3).copy_(torch::from_blob(const_cast<float*>(mine), {3}, torch::kFloat));
  }
  if (buckets_.empty()) {
    comm_.allreduce_sum(grads_);
  } else {
    {
      // The buckets whose gradients autograd never gave (unused parameters, or a rank without
      // samples in its last micro-batch), then the last one with the header.
      std::lock_guard<std::mutex> lock(mu_);
      armed_ = false;
      while (launched_ < buckets_.size()) post(launched_++);
      launched_ = 0;
      for (auto& b : buckets_) b.ready = 0;
    }
    thread_->wait();
  }
  if (grads_.is_cpu()) {
    std::memcpy(all, grads_.data_ptr<float>(), sizeof(all));
  } else {
    const torch::Tensor back = grads_.narrow(0, 0, 3).to(torch::kCPU);
    std::memcpy(all, back.data_ptr<float>(), sizeof(all));
  }
  r.loss_sum = all[0];
  r.loss_count = all[1];
  r.nonfinite_ranks = all[2];
  // The norm is a pass over every gradient (4% of a small model's step): taken when clipping
  // needs it or the caller does, as Hugging Face logs the clip's norm. Block by block as zero1's
  // ranks take it, so that both paths clip by the same number.
  if (norm) {
    std::vector<double> squares;
    for (int k = 0; k < comm_.size(); ++k) squares.push_back(square_of_norm(grads_.narrow(0, base_ + shard_ * k, shard_)));
    r.norm = norm_of_squares(squares);
  }
  return r;
}

void DataParallelStep::update(double lr, const Reduced& reduced) {
  const bool clip = args_.max_grad_norm > 0 && *reduced.norm > args_.max_grad_norm;
  const double coef = clip ? args_.max_grad_norm / (*reduced.norm + 1e-6) : 1.0;
  if (sharded_) {
    if (clip) grad_shard_.mul_(coef);
    if (optimizer_) {
      for (auto& g : optimizer_->param_groups()) g.options().set_lr(lr);
      optimizer_->step();
    }
    comm_.allgather(flat_params_);
    grads_.zero_();
    // Every rank alike, also one without a part: the kinds that keep state have it now.
    if (args_.optim != config::Optimizer::kSgd || args_.sgd_momentum > 0) has_state_ = true;
    return;
  }
  if (clip) grads_.mul_(coef);
  for (auto& g : optimizer_->param_groups()) g.options().set_lr(lr);
  optimizer_->step();
  grads_.zero_();
}

void DataParallelStep::discard() {
  if (!buckets_.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = false;
  }
  grads_.zero_();
}

}  // namespace hpctrain::train
