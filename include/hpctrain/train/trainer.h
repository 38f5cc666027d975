// Trainer: owns the model, data, optimizer, schedule, callbacks and state of a data-parallel run
// and checks that they fit together before any expensive work (Hugging Face's Trainer, in C++).
#pragma once

#include <memory>
#include <string>

#include "hpctrain/core/json.h"
#include "hpctrain/train/callbacks.h"
#include "hpctrain/train/arguments.h"
#include "hpctrain/train/trainer_state.h"

namespace hpctrain::dist {
class Communicator;
class Environment;
}  // namespace hpctrain::dist
namespace hpctrain::models {
class Model;
class Registry;
}  // namespace hpctrain::models

namespace hpctrain::train {

struct TrainOutput {
  std::int64_t global_step = 0;
  double training_loss = 0;  ///< mean loss over all steps
  Json metrics;              ///< train_runtime, train_samples_per_second, ...
  int preempted_by = 0;      ///< the signal that stopped training (0: none)
  bool time_limit = false;   ///< stopped because the job's time limit was near
  bool checkpointed = false; ///< a stop left a checkpoint of global_step (false: stopped before the first step)
  std::string anomaly;       ///< on_anomaly=stop stopped the run: why ("" when it did not)
};

class Trainer {
 public:
  /// Collective over the communicator's ranks. Validates the configuration, opens the data sets
  /// (rank 0 checks the files), builds the model from `registry` and checks it against the data,
  /// makes every rank start from rank 0's parameters, and prepares the optimizer and schedule.
  /// Problems are thrown as CollectiveError (reported once). `comm` defaults to the job's
  /// communicator for ddp_backend; tests pass their own (e.g. one over MPI_COMM_SELF).
  Trainer(const dist::Environment& env, Config config, const models::Registry& registry, Callbacks callbacks = {},
          std::shared_ptr<dist::Communicator> comm = nullptr);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  /// Runs the training loop to max_steps (or until a callback stops it).
  TrainOutput train();
  /// Evaluates on the eval set; every rank gets the same eval_* metrics.
  Json evaluate();
  /// Predicts the test set ([data] test): every rank its exact share, gathered on rank 0 into
  /// output_dir/predictions.h5 in sample order. Returns test_* metrics when the set has targets.
  Json predict();

  /// For evaluate and predict: loads the model weights of resume_from_checkpoint (a directory, or
  /// auto/empty: the newest valid checkpoint in output_dir). Returns the directory, or "" if none.
  std::string load_model_from_checkpoint();

  const TrainerState& state() const;
  models::Model& model();
  const Config& config() const;
  void add_callback(std::shared_ptr<TrainerCallback> callback);
  /// Seconds the training loop spent waiting for data.
  double data_wait_seconds() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hpctrain::train
