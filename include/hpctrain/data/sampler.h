// The global sample order (a seeded permutation per epoch, or file order, or block-shuffled
// order) and the plans that cut it into per-rank batches: a training plan whose whole state is
// (epoch, samples consumed), so it resumes at the same sample on any number of ranks, and the
// evaluation split that covers every sample exactly once.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace hpctrain::data {

/// A pseudo-random bijection of [0, n), keyed: a Feistel network with cycle walking. O(1) memory,
/// so the order of a billion samples costs nothing to hold and any position is computed directly.
class Permutation {
 public:
  Permutation(std::uint64_t n, std::uint64_t key);
  std::uint64_t operator()(std::uint64_t i) const;
  std::uint64_t size() const { return n_; }

 private:
  static constexpr int kRounds = 4;  // 4 Feistel rounds of a strong mixer: a well-shuffled order
  std::uint64_t round(std::uint64_t x, int r) const;
  std::uint64_t n_;
  std::uint64_t key_;
  std::uint64_t round_keys_[kRounds];  // splitmix64(key_ + r), computed once (the loader's hot path)
  int half_bits_ = 1;
  std::uint64_t half_mask_ = 1;
};

/// The order in which an epoch visits the samples of a data set.
class Sampler {
 public:
  /// shuffle=false: file order. block > 0: blocks of `block` consecutive samples in a shuffled
  /// order, each block's samples shuffled among themselves (the last, partial block stays last).
  Sampler(std::int64_t num_samples, std::uint64_t seed, bool shuffle, std::int64_t block = 0);
  /// The global sample index at `position` of `epoch`'s order.
  std::int64_t at(std::int64_t epoch, std::int64_t position) const;
  std::int64_t size() const { return n_; }

 private:
  std::int64_t n_;
  std::uint64_t seed_;
  bool shuffle_;
  std::int64_t block_;
  // The current epoch's permutation (of samples, or of blocks) and key, built on first use.
  mutable std::shared_ptr<Permutation> cache_;
  mutable std::int64_t cache_epoch_ = -1;
  mutable std::uint64_t cache_key_ = 0;
};

/// Where training stands in the data: the whole state a checkpoint needs.
struct SamplerState {
  std::int64_t epoch = 0;
  std::int64_t consumed = 0;  ///< samples of this epoch's order already used by finished steps
  bool operator==(const SamplerState& o) const { return epoch == o.epoch && consumed == o.consumed; }
};

/// One rank's share of one optimizer step, micro-batch by micro-batch.
struct MicroBatch {
  std::vector<std::int64_t> indices;  ///< global sample indices for this rank (may be empty)
  std::int64_t epoch = 0;
  int micro = 0;                      ///< 0 .. accumulation-1
  bool last_in_step = false;          ///< the optimizer steps after this micro-batch
  bool last_in_epoch = false;         ///< this step ends the epoch
  std::int64_t step_samples = 0;      ///< samples in the whole step, all ranks and micro-batches
  SamplerState after;                 ///< the state once this step is done
};

/// Cuts each epoch's order into global batches of per_device x world x accumulation samples; a
/// step's samples are the same whatever the world size. Rank r takes a contiguous slice of the
/// step, split into `accumulation` micro-batches; a short last step (without drop_last) is spread
/// as evenly as possible.
class TrainPlan {
 public:
  TrainPlan(Sampler sampler, int rank, int world, std::int64_t per_device, std::int64_t accumulation, bool drop_last);
  /// The next micro-batch of this rank; epochs follow each other without end.
  MicroBatch next();
  SamplerState state() const { return state_; }
  /// Continue from a saved state (taken at a step boundary, on any world size).
  void restore(const SamplerState& s);
  std::int64_t global_batch() const { return global_batch_; }
  /// Optimizer steps per epoch.
  std::int64_t steps_per_epoch() const;

 private:
  Sampler sampler_;
  int rank_, world_;
  std::int64_t per_device_, accumulation_, global_batch_;
  bool drop_last_;
  SamplerState state_;
  int micro_ = 0;
};

/// Evaluation split: rank r's contiguous range [begin, end) of [0, n); ranges cover every sample
/// exactly once and differ in length by at most one.
std::pair<std::int64_t, std::int64_t> eval_range(std::int64_t n, int rank, int world);

/// [begin, end) of part `i` of `parts` near-equal parts of [0, n).
std::pair<std::int64_t, std::int64_t> even_split(std::int64_t n, std::int64_t i, std::int64_t parts);

}  // namespace hpctrain::data
