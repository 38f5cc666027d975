// The run's state pieces: each save() beside its load(), reading back what it wrote in order.
#include "hpctrain/train/state_pieces.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cstring>
#include <filesystem>
#include <functional>

#include "hpctrain/ckpt/manager.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "hpctrain/data/shard_set.h"
#include "hpctrain/train/torch_compat.h"
#include "optimizer_kinds.h"
#include "tensor_io.h"

namespace hpctrain::train {
namespace tensor_io {

ckpt::DType dtype_of(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat: return ckpt::DType::kFloat32;
    case torch::kDouble: return ckpt::DType::kFloat64;
    case torch::kLong: return ckpt::DType::kInt64;
    case torch::kByte: return ckpt::DType::kUInt8;
    default: break;
  }
  std::ostringstream os;
  os << "checkpoints store float32, float64, int64 and uint8 tensors, not " << t.scalar_type();
  throw Error(os.str());
}

// Hands a tensor to the writer: host memory directly, a GPU tensor through byte-range copies.
// `live`: the tensor is part of the run's state (a parameter, an optimizer buffer), not a
// temporary made for the save; when it is also contiguous, a synchronous save writes it in place.
void put(ckpt::StateWriter& w, const std::string& name, const torch::Tensor& t, bool live) {
  torch::Tensor c = t.detach().contiguous();
  if (!c.is_cuda()) {
    if (live && c.data_ptr() == t.data_ptr()) w.live_tensor(name, dtype_of(c), c.sizes().vec(), c.data_ptr());
    else w.tensor(name, dtype_of(c), c.sizes().vec(), c.data_ptr());
    return;
  }
  torch::Tensor bytes = c.view({-1}).view(torch::kByte);
  w.tensor(name, dtype_of(c), c.sizes().vec(), [bytes](std::size_t off, std::size_t len, void* dst) {
    torch::from_blob(dst, {static_cast<std::int64_t>(len)}, torch::kByte)
        .copy_(bytes.narrow(0, static_cast<std::int64_t>(off), static_cast<std::int64_t>(len)));
  });
}

// Reads `name` into `target` after checking its shape and type against the target's.
void get(const ckpt::StateReader& r, const std::string& key, const std::string& name, torch::Tensor target) {
  const std::string path = "/" + key + "/" + name;
  if (!r.has(name)) throw ConfigError(r.where() + " lacks " + path);
  const auto shape = r.shape(name);
  if (shape != target.sizes().vec() || r.type(name) != dtype_of(target)) {
    std::ostringstream os;
    os << r.where() << ": " << path << " is " << ckpt::dtype_name(r.type(name)) << " " << c10::IntArrayRef(shape)
       << ", this run needs " << target.scalar_type() << " " << target.sizes();
    throw ConfigError(os.str());
  }
  torch::Tensor host = torch::empty(target.sizes(), target.options().device(torch::kCPU));
  r.read(name, dtype_of(host), host.data_ptr());
  torch::NoGradGuard no_grad;
  target.copy_(host);
}

torch::Tensor read_like(const ckpt::StateReader& r, const std::string& key, const std::string& name, const torch::Tensor& like) {
  torch::Tensor t = torch::empty(like.sizes(), like.options());
  get(r, key, name, t);
  return t;
}

}  // namespace tensor_io

using tensor_io::get;
using tensor_io::put;
using tensor_io::read_like;

// ---- model ----

void ModelState::save(ckpt::StateWriter& w) const {
  const models::Fingerprint f = model_.fingerprint();
  Json entries = Json::array();
  for (const auto& e : f.entries) entries.push_back(e);
  w.info()["fingerprint"] = f.hash;
  w.info()["entries"] = entries;
  for (const auto& p : model_.named_parameters()) put(w, p.key(), p.value(), /*live=*/true);
  for (const auto& b : model_.named_buffers()) put(w, b.key(), b.value(), /*live=*/true);
}

void ModelState::load(const ckpt::StateReader& r) {
  const models::Fingerprint mine = model_.fingerprint();
  const saved::ModelData theirs_all = saved::model(r);
  if (theirs_all.fingerprint != mine.hash) {
    // Name the entries that differ, the checkpoint's beside this model's.
    const std::vector<std::string>& theirs = theirs_all.entries;
    std::string diff;
    int shown = 0, differing = 0;
    for (std::size_t i = 0; i < std::max(theirs.size(), mine.entries.size()); ++i) {
      const std::string a = i < theirs.size() ? theirs[i] : "(nothing)";
      const std::string b = i < mine.entries.size() ? mine.entries[i] : "(nothing)";
      if (a == b) continue;
      ++differing;
      if (shown++ < 3) diff += "; checkpoint '" + a + "', this model '" + b + "'";
    }
    throw ConfigError(r.where() + " holds another model than this run (" + std::to_string(differing) +
                      " of its parameters, buffers or settings differ" + diff + ")");
  }
  for (const auto& p : model_.named_parameters()) get(r, key(), p.key(), p.value());
  for (const auto& b : model_.named_buffers()) get(r, key(), b.key(), b.value());
}

// ---- optimizer ----

namespace {

template <class State>
const State& as(const torch::optim::OptimizerParamState& s, const char* kind) {
  const auto* p = dynamic_cast<const State*>(&s);
  HPCT_CHECK(p, "optimizer state is not the " << kind << " kind");
  return *p;
}

template <class State>
OptimizerKind adam_like(const char* name) {
  return {name,
          {"exp_avg", "exp_avg_sq"},
          /*step=*/true,
          [name](const torch::optim::OptimizerParamState& ps, const OptimizerKind::Put& put) {
            const State& s = as<State>(ps, name);
            put("exp_avg", s.exp_avg(), true);
            put("exp_avg_sq", s.exp_avg_sq(), true);
            if (s.max_exp_avg_sq().defined()) put("max_exp_avg_sq", s.max_exp_avg_sq(), true);
            put("step", torch::tensor(static_cast<std::int64_t>(s.step()), torch::kLong), false);
          },
          [](const OptimizerKind::Has& has, const OptimizerKind::Get& get) -> std::unique_ptr<torch::optim::OptimizerParamState> {
            if (!has("exp_avg")) return nullptr;
            auto s = std::make_unique<State>();
            s->exp_avg(get("exp_avg", {}));
            s->exp_avg_sq(get("exp_avg_sq", {}));
            if (has("max_exp_avg_sq")) s->max_exp_avg_sq(get("max_exp_avg_sq", {}));
            s->step(get("step", torch::zeros({}, torch::kLong)).item<std::int64_t>());
            return s;
          }};
}

const std::vector<OptimizerKind>& optimizer_kinds() {
  static const std::vector<OptimizerKind> kinds = {
      adam_like<torch::optim::AdamWParamState>("adamw"),
      adam_like<torch::optim::AdamParamState>("adam"),
      {"sgd",
       {"momentum_buffer"},
       /*step=*/false,
       [](const torch::optim::OptimizerParamState& ps, const OptimizerKind::Put& put) {
         const auto& s = as<torch::optim::SGDParamState>(ps, "sgd");
         if (s.momentum_buffer().defined()) put("momentum_buffer", s.momentum_buffer(), true);
       },
       [](const OptimizerKind::Has& has, const OptimizerKind::Get& get) -> std::unique_ptr<torch::optim::OptimizerParamState> {
         if (!has("momentum_buffer")) return nullptr;
         auto s = std::make_unique<torch::optim::SGDParamState>();
         s->momentum_buffer(get("momentum_buffer", {}));
         return s;
       }},
  };
  return kinds;
}

}  // namespace

const OptimizerKind& optimizer_kind(const std::string& name) {
  for (const auto& k : optimizer_kinds())
    if (name == k.name) return k;
  throw ConfigError("optim=" + name + ": checkpoints know adamw, adam and sgd");
}

OptimizerState::OptimizerState(torch::optim::Optimizer& optimizer, models::Model& model, std::string kind)
    : optimizer_(optimizer), model_(model), kind_(std::move(kind)) {
  optimizer_kind(kind_);
}

void OptimizerState::save(ckpt::StateWriter& w) const {
  const OptimizerKind& kind = optimizer_kind(kind_);
  w.info()["kind"] = kind_;
  auto& states = optimizer_.state();
  using Map = std::decay_t<decltype(states)>;
  for (const auto& p : model_.named_parameters()) {
    auto it = states.find(compat::optimizer_state_key<Map>(p.value()));
    if (it == states.end()) continue;  // a parameter that has not been stepped yet
    kind.save(*it->second,
              [&](const std::string& field, const torch::Tensor& t, bool live) { put(w, p.key() + "/" + field, t, live); });
  }
}

void OptimizerState::load(const ckpt::StateReader& r) {
  const std::string theirs = saved::optimizer_kind(r);
  if (theirs != kind_)
    throw ConfigError(r.where() + " holds optimizer state of optim=" + theirs + ", this run has optim=" + kind_ +
                      "; resume with the checkpoint's optimizer, or start a new run");
  const OptimizerKind& kind = optimizer_kind(kind_);
  auto& states = optimizer_.state();
  using Map = std::decay_t<decltype(states)>;
  for (const auto& p : model_.named_parameters()) {
    const std::string base = p.key() + "/";
    const torch::Tensor& param = p.value();
    auto state = kind.load([&](const std::string& field) { return r.has(base + field); },
                           [&](const std::string& field, const torch::Tensor& like) {
                             return read_like(r, key(), base + field, like.defined() ? like : param);
                           });
    const auto k = compat::optimizer_state_key<Map>(param);
    if (state) states[k] = std::move(state);
    else states.erase(k);
  }
}

// ---- sampler ----

void SamplerState::save(ckpt::StateWriter& w) const {
  Json shards = Json::array();
  for (const auto& s : set_.shards())
    shards.push_back(Json::array({Json(std::filesystem::path(s.file).filename().string()), Json(s.num_samples)}));
  Json& i = w.info();
  i["epoch"] = position_.epoch;
  i["consumed"] = position_.consumed;
  i["data_seed"] = order_.data_seed;
  i["shuffle"] = order_.shuffle;
  i["shuffle_block"] = order_.shuffle_block;
  i["samples"] = set_.size();
  i["shards"] = shards;
}

void SamplerState::load(const ckpt::StateReader& r) {
  const saved::SamplerData d = saved::sampler(r);
  const std::int64_t epoch = d.epoch, consumed = d.consumed;
  // What must be the same for the position to mean the same samples.
  std::vector<std::string> differ;
  auto compare = [&](const std::string& what, const std::string& theirs, const std::string& ours) {
    if (theirs != ours) differ.push_back(what + ": checkpoint " + theirs + ", this run " + ours);
  };
  compare("data_seed", std::to_string(d.data_seed), std::to_string(order_.data_seed));
  compare("data.shuffle", d.shuffle ? "true" : "false", order_.shuffle ? "true" : "false");
  compare("data.shuffle_block", std::to_string(d.shuffle_block), std::to_string(order_.shuffle_block));
  compare("training samples", std::to_string(d.samples), std::to_string(set_.size()));
  Json ours = Json::array();
  for (const auto& s : set_.shards())
    ours.push_back(Json::array({Json(std::filesystem::path(s.file).filename().string()), Json(s.num_samples)}));
  const Json& theirs = d.shards;
  if (json::dump(theirs) != json::dump(ours)) {
    const std::size_t a = theirs.size();
    differ.push_back("training shards: checkpoint " + std::to_string(a) + " shards " + json::dump(theirs).substr(0, 200) +
                     ", this run " + std::to_string(set_.shards().size()) + " shards " + json::dump(ours).substr(0, 200));
  }
  if (!differ.empty()) {
    std::string all;
    for (const auto& d : differ) all += "; " + d;
    if (!allow_change_)
      throw ConfigError(r.where() + " was reading other data in another order (" + all.substr(2) +
                        "): its position would mean other samples. Resume with the checkpoint's data settings, or set "
                        "resume_allow_data_change=true to go on at the same epoch and position anyway");
    HPCT_LOG(warning) << "resume_allow_data_change: " << all.substr(2) << "; going on at epoch " << epoch << ", sample "
                      << std::min(consumed, set_.size());
  }
  position_.epoch = epoch;
  position_.consumed = std::min(consumed, set_.size());
  if (position_.consumed >= set_.size()) {
    position_.epoch += 1;
    position_.consumed = 0;
  }
}

// ---- RNG ----

void RngState::save(ckpt::StateWriter& w) const {
  auto gen = at::detail::getDefaultCPUGenerator();
  torch::Tensor state;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    state = gen.get_state();
  }
  const auto* p = state.data_ptr<std::uint8_t>();
  w.per_rank("cpu", std::vector<std::uint8_t>(p, p + state.numel()));
}

void RngState::load(const ckpt::StateReader& r) {
  std::vector<std::uint8_t> mine = r.per_rank("cpu", rank_);
  auto gen = at::detail::getDefaultCPUGenerator();
  if (mine.empty()) {
    // A rank the saving job did not have: a stream of its own, the same on every rerun.
    torch::manual_seed(static_cast<std::uint64_t>(seed_) * 1000003ULL + static_cast<std::uint64_t>(r.saved_step()) * 7919ULL +
                       static_cast<std::uint64_t>(rank_));
    return;
  }
  torch::Tensor t = torch::from_blob(mine.data(), {static_cast<std::int64_t>(mine.size())}, torch::kUInt8).clone();
  std::lock_guard<std::mutex> lock(gen.mutex());
  try {
    gen.set_state(t);
  } catch (const c10::Error& e) {
    throw ConfigError(r.where() + ": rank " + std::to_string(rank_) + "'s CPU RNG state (" + std::to_string(mine.size()) +
                      " bytes) is not one this libtorch reads: " + e.what_without_backtrace());
  }
}

// ---- schedule ----

void ScheduleState::save(ckpt::StateWriter& w) const {
  w.info()["type"] = to_name(schedule_.type);
  w.info()["warmup_steps"] = schedule_.warmup_steps;
  w.info()["total_steps"] = schedule_.total_steps;
}

void ScheduleState::load(const ckpt::StateReader& r) {
  const saved::ScheduleData d = saved::schedule(r);
  const std::string theirs =
      d.type + ", warmup " + std::to_string(d.warmup_steps) + " steps, " + std::to_string(d.total_steps) + " steps";
  const std::string ours = to_name(schedule_.type) + std::string(", warmup ") + std::to_string(schedule_.warmup_steps) + " steps, " +
                           std::to_string(schedule_.total_steps) + " steps";
  if (theirs != ours && rank_ == 0) {
    HPCT_LOG(warning) << "the learning-rate schedule differs from the checkpoint's (" << theirs << "); from step "
                      << r.saved_step() << " on the run follows this one (" << ours << ")";
  }
}

// ---- trainer state ----

void TrainerStatePiece::save(ckpt::StateWriter& w) const {
  w.info()["global_step"] = state_.global_step;
  w.info()["global_batch"] = state_.train_batch_size;
  w.info()["epoch"] = state_.epoch;
  w.document("trainer_state.json", state_.to_json());
  const double sums[4] = {sums_.window_loss, sums_.window_count, sums_.total_loss, sums_.total_count};
  std::vector<std::uint8_t> bytes(sizeof(sums));
  std::memcpy(bytes.data(), sums, sizeof(sums));
  w.per_rank("log_sums", std::move(bytes));
}

void TrainerStatePiece::load(const ckpt::StateReader& r) {
  const saved::TrainerStateData d = saved::trainer_state(r);
  // The sums are read (and checked) before anything is changed.
  LogSums sums;
  if (r.saved_world_size() == batch_.world) {
    sums = saved::log_sums(r, batch_.rank);
  } else if (batch_.rank == 0) {
    // On another number of ranks, rank 0 carries all of them.
    sums = saved::log_sums_of_all(r);
  }
  if (d.global_batch != state_.train_batch_size) {
    // Elastic resume: the same global batch, so the same samples per step, on this many ranks.
    *batch_.accumulation =
        ckpt::elastic_accumulation(d.global_batch, r.saved_world_size(), batch_.per_device, batch_.world, r.where());
    state_.train_batch_size = d.global_batch;
    if (batch_.replan) batch_.replan();
    if (batch_.rank == 0) {
      HPCT_LOG(warning) << "elastic resume: " << r.saved_world_size() << " -> " << batch_.world
                        << " ranks; gradient_accumulation_steps set to " << *batch_.accumulation
                        << " to keep the global batch of " << d.global_batch;
    }
  }
  state_.global_step = d.step;
  state_.epoch = d.epoch;
  state_.log_history = d.log_history;
  state_.has_best = d.has_best;
  state_.best_metric = d.best_metric;
  state_.best_model_checkpoint = d.best_model_checkpoint;
  sums_ = sums;
}

// ---- callbacks ----

void CallbackState::save(ckpt::StateWriter& w) const {
  Json s = callback_.state();
  if (!s.is_object()) throw Error("callback '" + callback_.state_name() + "': state() must return a JSON object");
  w.info() = std::move(s);
}

void CallbackState::load(const ckpt::StateReader& r) { callback_.load_state(r.info()); }

void CallbackState::missing(const std::string& where) {
  HPCT_LOG(info) << where << " holds no state for the callback '" << callback_.state_name() << "': it starts fresh";
}

}  // namespace hpctrain::train
