// TrainerState (as Hugging Face keeps it) and TrainerControl, the flags callbacks set.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hpctrain/core/json.h"

namespace hpctrain::train {

struct TrainerState {
  double epoch = 0;               ///< fractional epoch: epochs done + share of the current one
  std::int64_t global_step = 0;   ///< optimizer steps done
  std::int64_t max_steps = 0;
  double num_train_epochs = 0;
  std::int64_t train_batch_size = 0;  ///< global batch: per device x ranks x accumulation
  std::int64_t logging_steps = 0, eval_steps = 0, save_steps = 0;
  bool has_best = false;
  double best_metric = 0;
  std::string best_model_checkpoint;
  std::string trial_name;  ///< a sweep point's run_name ("" outside sweeps)
  Json trial_params;       ///< a sweep point's values, key -> text (null outside sweeps)
  std::vector<Json> log_history;  ///< every logged event, as written to metrics.jsonl
  bool is_world_process_zero = true;

  /// trainer_state.json as Hugging Face writes it.
  Json to_json() const;
};

/// What callbacks ask the loop to do. DefaultFlowCallback sets should_log, should_evaluate and
/// should_save from the arguments; the loop clears them before every step and
/// should_epoch_stop before every epoch (as Hugging Face's handler does), and clears each flag it
/// acts on. should_epoch_stop moves the data on to the next epoch's start (the run still ends
/// after as many epochs as its steps span); should_training_stop ends the run after this step.
struct TrainerControl {
  bool should_training_stop = false;
  bool should_epoch_stop = false;
  bool should_evaluate = false;
  bool should_save = false;
  bool should_log = false;
};

}  // namespace hpctrain::train
