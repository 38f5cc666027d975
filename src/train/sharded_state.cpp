// The sharded optimizer state: each rank's parts saved into, and loaded out of, whole datasets.
#include "sharded_state.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include "hpctrain/core/error.h"
#include "hpctrain/train/saved_state.h"
#include "hpctrain/train/torch_compat.h"
#include "tensor_io.h"

namespace hpctrain::train {
namespace {

// The fields of one optimizer kind, as the replicated piece (state_pieces.cpp) writes them: the
// per-element ones shaped like the parameter, then Adam's step count as an int64 scalar.
struct Fields {
  std::vector<const char*> elementwise;
  bool step = false;
};
Fields fields_of(const std::string& kind) {
  if (kind == "sgd") return {{"momentum_buffer"}, false};
  return {{"exp_avg", "exp_avg_sq"}, true};
}

// A part's per-element state tensor `field`, and its step count.
template <class State>
torch::Tensor adam_field(const State& s, const std::string& field) {
  HPCT_CHECK(!s.max_exp_avg_sq().defined(), "optimizer_sharding=zero1 does not shard AMSGrad's max_exp_avg_sq");
  return field == "exp_avg" ? s.exp_avg() : s.exp_avg_sq();
}
torch::Tensor field_of(const torch::optim::OptimizerParamState& s, const std::string& field) {
  if (const auto* a = dynamic_cast<const torch::optim::AdamWParamState*>(&s)) return adam_field(*a, field);
  if (const auto* b = dynamic_cast<const torch::optim::AdamParamState*>(&s)) return adam_field(*b, field);
  if (const auto* c = dynamic_cast<const torch::optim::SGDParamState*>(&s)) return c->momentum_buffer();
  throw Error("optimizer state of an unknown kind");
}
std::int64_t step_of(const torch::optim::OptimizerParamState& s) {
  if (const auto* a = dynamic_cast<const torch::optim::AdamWParamState*>(&s)) return a->step();
  if (const auto* b = dynamic_cast<const torch::optim::AdamParamState*>(&s)) return b->step();
  return 0;
}

template <class State>
std::unique_ptr<torch::optim::OptimizerParamState> adam_state(torch::Tensor exp_avg, torch::Tensor exp_avg_sq, std::int64_t step) {
  auto s = std::make_unique<State>();
  s->exp_avg(std::move(exp_avg));
  s->exp_avg_sq(std::move(exp_avg_sq));
  s->step(step);
  return s;
}

}  // namespace

ShardedOptimizerState::ShardedOptimizerState(DataParallelStep& dp, models::Model& model, std::string kind)
    : dp_(dp), model_(model), kind_(std::move(kind)) {
  HPCT_CHECK(dp_.sharded(), "the sharded optimizer state needs optimizer_sharding=zero1");
}

void ShardedOptimizerState::save(ckpt::StateWriter& w) const {
  w.info()["kind"] = kind_;
  if (!dp_.has_state()) return;  // not stepped yet: no entries, as a replicated run writes
  const Fields fields = fields_of(kind_);
  torch::optim::Optimizer* opt = dp_.shard_optimizer();
  // Every name a parameter has (tied weights have two), as the replicated piece writes them.
  for (const auto& item : model_.named_parameters()) {
    const torch::Tensor& p = item.value();
    if (p.numel() == 0) continue;
    const std::size_t i = index_of(p);
    const std::vector<std::int64_t> elems = dp_.part_bounds(i);
    std::vector<std::size_t> bounds;
    for (auto e : elems) bounds.push_back(static_cast<std::size_t>(e) * sizeof(float));
    const DataParallelStep::Part& part = dp_.part(i);
    const torch::optim::OptimizerParamState* s = nullptr;
    if (part.tensor.defined()) {
      auto& states = opt->state();
      using Map = std::decay_t<decltype(states)>;
      auto it = states.find(compat::optimizer_state_key<Map>(part.tensor));
      HPCT_CHECK(it != states.end(), "rank's part of " << item.key() << " has no optimizer state");
      s = it->second.get();
    }
    const std::string base = item.key() + "/";
    for (const char* f : fields.elementwise) {
      const torch::Tensor own = s ? field_of(*s, f) : torch::Tensor();
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
    if (fields.step) {
      // The rank holding the parameter's first element writes the step count (the same on all parts).
      std::vector<std::size_t> one;
      for (auto e : elems) one.push_back(e > 0 ? sizeof(std::int64_t) : 0);
      one.back() = sizeof(std::int64_t);
      const std::int64_t step = s ? step_of(*s) : 0;
      w.sharded_tensor(base + "step", ckpt::DType::kInt64, {}, one, &step, /*live=*/false);
    }
  }
}

void ShardedOptimizerState::load(const ckpt::StateReader& r) {
  const std::string theirs = saved::optimizer_kind(r);
  if (theirs != kind_)
    throw ConfigError(r.where() + " holds optimizer state of optim=" + theirs + ", this run has optim=" + kind_ +
                      "; resume with the checkpoint's optimizer, or start a new run");
  const Fields fields = fields_of(kind_);
  // First, on every rank alike, what the checkpoint holds (its manifest only): state for every
  // parameter or for none, each field shaped like its parameter. A rank reads only the datasets of
  // its parts, so a fault found there alone would stop some ranks and not the others.
  bool any = false, all = true;
  for (const auto& item : model_.named_parameters()) {
    const torch::Tensor& p = item.value();
    if (p.numel() == 0) continue;
    const std::string base = item.key() + "/";
    const bool held = r.has(base + fields.elementwise.front());
    any = any || held;
    all = all && held;
    if (!held) continue;
    for (const char* f : fields.elementwise) {
      if (!r.has(base + f) || r.shape(base + f) != p.sizes().vec() || r.type(base + f) != ckpt::DType::kFloat32)
        throw ConfigError(r.where() + ": /optimizer/" + base + f + " is missing or not float32 shaped like the parameter");
    }
    if (fields.step && (!r.has(base + "step") || !r.shape(base + "step").empty() || r.type(base + "step") != ckpt::DType::kInt64))
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
    // The whole dataset is read (and its checksum checked), then this rank's elements kept.
    const std::string base = item.key() + "/";
    std::vector<torch::Tensor> values;
    for (const char* f : fields.elementwise) {
      torch::Tensor whole = torch::empty(p.sizes(), torch::kFloat);
      tensor_io::get(r, this->key(), base + f, whole);
      values.push_back(whole.reshape({-1}).narrow(0, part.lo, part.hi - part.lo).to(part.tensor.device()).clone());
    }
    std::unique_ptr<torch::optim::OptimizerParamState> state;
    if (kind_ == "sgd") {
      auto s = std::make_unique<torch::optim::SGDParamState>();
      s->momentum_buffer(values[0]);
      state = std::move(s);
    } else {
      const std::int64_t step =
          tensor_io::read_like(r, this->key(), base + "step", torch::zeros({}, torch::kLong)).item<std::int64_t>();
      if (kind_ == "adamw") state = adam_state<torch::optim::AdamWParamState>(values[0], values[1], step);
      else state = adam_state<torch::optim::AdamParamState>(values[0], values[1], step);
    }
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
