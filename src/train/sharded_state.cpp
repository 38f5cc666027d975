// The sharded optimizer state: each rank's parts saved into, and loaded out of, whole datasets.
#include "sharded_state.h"

#include <map>

#include "hpctrain/core/error.h"
#include "hpctrain/train/saved_state.h"
#include "hpctrain/train/torch_compat.h"
#include "optimizer_kinds.h"
#include "tensor_io.h"

namespace hpctrain::train {

ShardedOptimizerState::ShardedOptimizerState(DataParallelStep& dp, models::Model& model, std::string kind)
    : dp_(dp), model_(model), kind_(std::move(kind)) {
  HPCT_CHECK(dp_.sharded(), "the sharded optimizer state needs optimizer_sharding=zero1");
}

void ShardedOptimizerState::save(ckpt::StateWriter& w) const {
  w.info()["kind"] = kind_;
  if (!dp_.has_state()) return;  // not stepped yet: no entries, as a replicated run writes
  const OptimizerKind& kind = optimizer_kind(kind_);
  torch::optim::Optimizer* opt = dp_.shard_optimizer();
  // Every name a parameter has (tied weights have two), as the replicated piece writes them.
  for (const auto& item : model_.named_parameters()) {
    const torch::Tensor& p = item.value();
    if (p.numel() == 0) continue;
    const std::size_t i = index_of(p);
    const std::vector<std::int64_t> elems = dp_.part_bounds(i);
    std::vector<std::size_t> bounds;
    for (auto e : elems) bounds.push_back(static_cast<std::size_t>(e) * sizeof(float));
    // This rank's part's fields, as the kind hands them over (none on a rank without a part; the
    // calls below are every rank's alike).
    std::map<std::string, torch::Tensor> held;
    const DataParallelStep::Part& part = dp_.part(i);
    if (part.tensor.defined()) {
      auto& states = opt->state();
      using Map = std::decay_t<decltype(states)>;
      auto it = states.find(compat::optimizer_state_key<Map>(part.tensor));
      HPCT_CHECK(it != states.end(), "rank's part of " << item.key() << " has no optimizer state");
      kind.save(*it->second, [&](const std::string& field, const torch::Tensor& t, bool) { held[field] = t; });
      HPCT_CHECK(held.size() == kind.elementwise.size() + (kind.step ? 1 : 0),
                 "optimizer_sharding=zero1 shards " << kind.name << "'s usual fields only (not AMSGrad's max_exp_avg_sq)");
    }
    const std::string base = item.key() + "/";
    for (const char* f : kind.elementwise) {
      const torch::Tensor own = part.tensor.defined() ? held.at(f) : torch::Tensor();
      torch::Tensor t = own.defined() ? own.detach().contiguous() : torch::Tensor();
      if (t.defined() && t.is_cuda()) {
        torch::Tensor bytes = t.view({-1}).view(torch::kByte);
        w.sharded_tensor(base + f, ckpt::DType::kFloat32, p.sizes().vec(), bounds,
                         [bytes](std::size_t off, std::size_t len, void* dst) {
                           torch::from_blob(dst, {static_cast<std::int64_t>(len)}, torch::kByte)
                               .copy_(bytes.narrow(0, static_cast<std::int64_t>(off), static_cast<std::int64_t>(len)));
                         });
      } else {
        // Live (written in place by a synchronous save) only when it is the state's own memory.
        w.sharded_tensor(base + f, ckpt::DType::kFloat32, p.sizes().vec(), bounds, t.defined() ? t.data_ptr() : nullptr,
                         /*live=*/t.defined() && t.data_ptr() == own.data_ptr());
      }
    }
    if (kind.step) {
      // The rank holding the parameter's first element writes the step count (the same on all parts).
      std::vector<std::size_t> one;
      for (auto e : elems) one.push_back(e > 0 ? sizeof(std::int64_t) : 0);
      one.back() = sizeof(std::int64_t);
      const std::int64_t step = part.tensor.defined() ? held.at("step").item<std::int64_t>() : 0;
      w.sharded_tensor(base + "step", ckpt::DType::kInt64, {}, one, &step, /*live=*/false);
    }
  }
}

void ShardedOptimizerState::load(const ckpt::StateReader& r) {
  const std::string theirs = saved::optimizer_kind(r);
  if (theirs != kind_)
    throw ConfigError(r.where() + " holds optimizer state of optim=" + theirs + ", this run has optim=" + kind_ +
                      "; resume with the checkpoint's optimizer, or start a new run");
  const OptimizerKind& kind = optimizer_kind(kind_);
  // First, on every rank alike, what the checkpoint holds (its manifest only): state for every
  // parameter or for none, each field shaped like its parameter. A rank reads only the datasets of
  // its parts, so a fault found there alone would stop some ranks and not the others.
  bool any = false, all = true;
  for (const auto& item : model_.named_parameters()) {
    const torch::Tensor& p = item.value();
    if (p.numel() == 0) continue;
    const std::string base = item.key() + "/";
    const bool held = r.has(base + kind.elementwise.front());
    any = any || held;
    all = all && held;
    if (!held) continue;
    for (const char* f : kind.elementwise) {
      if (!r.has(base + f) || r.shape(base + f) != p.sizes().vec() || r.type(base + f) != ckpt::DType::kFloat32)
        throw ConfigError(r.where() + ": /optimizer/" + base + f + " is missing or not float32 shaped like the parameter");
    }
    if (kind.step && (!r.has(base + "step") || !r.shape(base + "step").empty() || r.type(base + "step") != ckpt::DType::kInt64))
      throw ConfigError(r.where() + ": /optimizer/" + base + "step is missing or not an int64 scalar");
  }
  if (any && !all)
    throw ConfigError(r.where() + " holds optimizer state for some parameters and not for others (damaged)");
  torch::optim::Optimizer* opt = dp_.shard_optimizer();
  for (const auto& item : model_.named_parameters()) {
    const torch::Tensor& p = item.value();
    const DataParallelStep::Part& part = dp_.part(index_of(p));
    if (!part.tensor.defined()) continue;  // nothing of it here: its datasets are not read
    auto& states = opt->state();
    using Map = std::decay_t<decltype(states)>;
    const auto key = compat::optimizer_state_key<Map>(part.tensor);
    if (!any) {
      states.erase(key);
      continue;
    }
    // The kind builds the state from its fields: a per-element one is read whole (its checksum
    // checked) and this rank's elements kept; the step as it is.
    const std::string base = item.key() + "/";
    auto state = kind.load([&](const std::string& field) { return r.has(base + field); },
                           [&](const std::string& field, const torch::Tensor& like) {
                             if (like.defined()) return tensor_io::read_like(r, this->key(), base + field, like);
                             torch::Tensor whole = torch::empty(p.sizes(), torch::kFloat);
                             tensor_io::get(r, this->key(), base + field, whole);
                             return whole.reshape({-1}).narrow(0, part.lo, part.hi - part.lo).to(part.tensor.device()).clone();
                           });
    states[key] = std::move(state);
  }
  // The checkpoint's fact, the same on every rank (also one without a part of any parameter).
  dp_.set_has_state(any);
}

std::size_t ShardedOptimizerState::index_of(const torch::Tensor& p) const {
  const auto i = dp_.index_of(p);
  HPCT_CHECK(i, "a parameter of the model is not one the optimizer was built with");
  return *i;
}

}  // namespace hpctrain::train
