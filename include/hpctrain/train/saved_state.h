// What a resume reads of the Trainer's own pieces of state, parsed and checked before any of it is
// applied: types, ranges, finite numbers, agreement between the pieces. The pieces' load() read
// their state through these functions, and check_saved_state() runs every one of them over a
// checkpoint, so that a checkpoint that verifies (hpctrain-ckpt verify, `auto` choosing one) is
// one whose load gets past them. What a load compares with the run (the model's fingerprint, the
// data order) is the run's to check; it is a mismatch, not damage. No torch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hpctrain/ckpt/format.h"
#include "hpctrain/ckpt/state.h"
#include "hpctrain/core/json.h"

namespace hpctrain::train {

/// Running sums between two logs, per rank: in the checkpoint so that the first log after a
/// resume averages the same steps as the uninterrupted run's.
struct LogSums {
  double window_loss = 0, window_count = 0;  ///< since the last log
  double total_loss = 0, total_count = 0;    ///< since the start of training
};

namespace saved {

/// Steps and epochs a checkpoint may hold: the bounds of max_steps and num_train_epochs.
constexpr std::int64_t kMaxStep = std::int64_t{1} << 40;
/// A global batch: per-device batch (2^20) x accumulation x ranks, far beyond any real one.
constexpr std::int64_t kMaxGlobalBatch = std::int64_t{1} << 50;

/// "trainer_state": its info and trainer_state.json.
struct TrainerStateData {
  std::int64_t step = 0, global_batch = 0;
  double epoch = 0;
  std::vector<Json> log_history;
  bool has_best = false;
  double best_metric = 0;
  std::string best_model_checkpoint;
};
TrainerStateData trainer_state(const ckpt::StateReader& r);
/// Rank `rank`'s running sums (32 bytes: four finite doubles, counts not negative).
LogSums log_sums(const ckpt::StateReader& r, int rank);
/// The running sums of every saved rank added up (an elastic resume: rank 0 carries them), every
/// row checked, in one pass over the rows.
LogSums log_sums_of_all(const ckpt::StateReader& r);

/// "sampler": the position, the order and the training set it was reading.
struct SamplerData {
  std::int64_t epoch = 0, consumed = 0, samples = 0;
  std::int64_t data_seed = 0, shuffle_block = 0;
  bool shuffle = true;
  Json shards;  ///< [[file name, samples], ...]
};
SamplerData sampler(const ckpt::StateReader& r);

/// "scheduler": the schedule the steps so far followed.
struct ScheduleData {
  std::string type;
  std::int64_t warmup_steps = 0, total_steps = 0;
};
ScheduleData schedule(const ckpt::StateReader& r);

/// "optimizer": its kind (adamw, adam, sgd).
std::string optimizer_kind(const ckpt::StateReader& r);

/// "model": its fingerprint and the entries it was made from.
struct ModelData {
  std::string fingerprint;
  std::vector<std::string> entries;
};
ModelData model(const ckpt::StateReader& r);

/// "rng": one CPU generator state per saving rank.
void rng(const ckpt::StateReader& r);

/// Every check above over a checkpoint's pieces of these kinds (all ranks' sums), after the
/// checksums: throws DataError naming the checkpoint, the piece and the value.
void check_saved_state(const ckpt::FileReader& f);

/// ckpt::verify() and check_saved_state(): "" when a load would get past both, else why not.
std::string verify(const std::string& dir);

}  // namespace saved
}  // namespace hpctrain::train
