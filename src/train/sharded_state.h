// "optimizer" under optimizer_sharding=zero1: each rank saves its parts of the optimizer state as
// its byte ranges of the very datasets a replicated run writes (/optimizer/<param>/exp_avg, ...),
// and loads its parts out of whole ones, so a checkpoint does not know how it was written: a
// sharded run resumes replicated, on any number of ranks, and the reverse.
#pragma once

#include <string>

#include "dp_step.h"
#include "hpctrain/ckpt/state.h"
#include "hpctrain/models/model.h"

namespace hpctrain::train {

class ShardedOptimizerState : public ckpt::Stateful {
 public:
  ShardedOptimizerState(DataParallelStep& dp, models::Model& model, std::string kind);
  std::string key() const override { return "optimizer"; }
  void save(ckpt::StateWriter& w) const override;
  void load(const ckpt::StateReader& r) override;

 private:
  std::size_t index_of(const torch::Tensor& p) const;
  DataParallelStep& dp_;
  models::Model& model_;
  std::string kind_;
};

}  // namespace hpctrain::train
