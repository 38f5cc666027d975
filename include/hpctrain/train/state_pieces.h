// The pieces of a training run's state that a checkpoint holds, each a ckpt::Stateful with its
// save and load side by side: model, optimizer, sampler, RNG, schedule, trainer state (with the
// running sums since the last log) and stateful callbacks. To add a piece: give it a key, write
// save() and load() next to each other reading what save() wrote in the same order, check in
// load() what must match and name both values when it does not, and register it in the Trainer.
// What a load reads is parsed and checked in saved_state.h, which verify runs too.
#pragma once

#include <torch/optim/optimizer.h>

#include <cstdint>
#include <functional>
#include <string>

#include "hpctrain/ckpt/state.h"
#include "hpctrain/data/sampler.h"
#include "hpctrain/models/model.h"
#include "hpctrain/train/callbacks.h"
#include "hpctrain/train/saved_state.h"
#include "hpctrain/train/scheduler.h"
#include "hpctrain/train/trainer_state.h"

namespace hpctrain::data {
class ShardSet;
}

namespace hpctrain::train {

/// "model": every parameter and buffer, after a check of the model's fingerprint (task,
/// architecture, names, dtypes and shapes) that names the first entries that differ.
class ModelState : public ckpt::Stateful {
 public:
  explicit ModelState(models::Model& model) : model_(model) {}
  std::string key() const override { return "model"; }
  void save(ckpt::StateWriter& w) const override;
  void load(const ckpt::StateReader& r) override;

 private:
  models::Model& model_;
};

/// "optimizer": the per-parameter state of the optimizer kind (adamw, adam, sgd), saved and
/// loaded through one table entry per kind. A checkpoint of another kind is refused.
class OptimizerState : public ckpt::Stateful {
 public:
  OptimizerState(torch::optim::Optimizer& optimizer, models::Model& model, std::string kind);
  std::string key() const override { return "optimizer"; }
  void save(ckpt::StateWriter& w) const override;
  void load(const ckpt::StateReader& r) override;

 private:
  torch::optim::Optimizer& optimizer_;
  models::Model& model_;
  std::string kind_;
};

/// "sampler": where the data stand (epoch, samples consumed), the order they are read in
/// (data_seed, shuffle, shuffle_block) and which training set it is (samples, shard names and
/// sizes). Resuming with another order or another set is refused naming both values, unless
/// `allow_change` (resume_allow_data_change): then it goes on at the same epoch and position.
class SamplerState : public ckpt::Stateful {
 public:
  struct Order {
    std::int64_t data_seed = 0;
    bool shuffle = true;
    std::int64_t shuffle_block = 0;
  };
  SamplerState(data::SamplerState& position, const data::ShardSet& set, Order order, bool allow_change)
      : position_(position), set_(set), order_(order), allow_change_(allow_change) {}
  std::string key() const override { return "sampler"; }
  void save(ckpt::StateWriter& w) const override;
  void load(const ckpt::StateReader& r) override;

 private:
  data::SamplerState& position_;
  const data::ShardSet& set_;
  Order order_;
  bool allow_change_;
};

/// "rng": every rank's CPU generator state. Ranks the saving job did not have derive theirs from
/// the seed, the step and the rank.
class RngState : public ckpt::Stateful {
 public:
  RngState(std::int64_t seed, int rank) : seed_(seed), rank_(rank) {}
  std::string key() const override { return "rng"; }
  void save(ckpt::StateWriter& w) const override;
  void load(const ckpt::StateReader& r) override;

 private:
  std::int64_t seed_;
  int rank_;
};

/// "scheduler": the schedule the steps so far followed. The schedule is a function of the step, so
/// a changed one (a longer max_steps, another warmup) is allowed and said in the log.
class ScheduleState : public ckpt::Stateful {
 public:
  ScheduleState(const LrSchedule& schedule, int rank) : schedule_(schedule), rank_(rank) {}
  std::string key() const override { return "scheduler"; }
  void save(ckpt::StateWriter& w) const override;
  void load(const ckpt::StateReader& r) override;

 private:
  const LrSchedule& schedule_;
  int rank_;
};

/// "trainer_state": TrainerState (trainer_state.json, as Hugging Face writes it), the global batch
/// (elastic resume keeps it: gradient accumulation is set from it) and every rank's LogSums.
class TrainerStatePiece : public ckpt::Stateful {
 public:
  struct Batch {
    std::int64_t per_device = 0;
    std::int64_t* accumulation = nullptr;  ///< set on an elastic resume
    int world = 1;
    int rank = 0;
    std::function<void()> replan;  ///< after an elastic resume set the global batch: the run's length again
  };
  TrainerStatePiece(TrainerState& state, LogSums& sums, Batch batch) : state_(state), sums_(sums), batch_(batch) {}
  std::string key() const override { return "trainer_state"; }
  void save(ckpt::StateWriter& w) const override;
  void load(const ckpt::StateReader& r) override;

 private:
  TrainerState& state_;
  LogSums& sums_;
  Batch batch_;
};

/// "callbacks/<name>": a stateful callback's state(). A callback the checkpoint has no state for
/// (added on resume) starts fresh.
class CallbackState : public ckpt::Stateful {
 public:
  explicit CallbackState(TrainerCallback& callback) : callback_(callback) {}
  std::string key() const override { return "callbacks/" + callback_.state_name(); }
  void save(ckpt::StateWriter& w) const override;
  void load(const ckpt::StateReader& r) override;
  void missing(const std::string& where) override;

 private:
  TrainerCallback& callback_;
};

}  // namespace hpctrain::train
