// TensorBoard event files of a training run (report_to = tensorboard): rank 0 writes every logged
// scalar, as Hugging Face's TensorBoardCallback names them, beside metrics.jsonl.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "hpctrain/core/files.h"
#include "hpctrain/train/callbacks.h"

namespace hpctrain::train {

/// Each training start opens a new file output_dir/events.out.tfevents.<unix time>.<host>.<pid>
/// (the file-version record first). A resumed run (global step c > 0) writes a session start at
/// step c + 1 first, so TensorBoard discards what an earlier run logged after the checkpoint and
/// no step shows twice. A sweep point writes its parameters as the HParams plugin's session start
/// (and a session end when training ends). Every logged event is one record, written at once;
/// the file is flushed to disk when training ends. A tag shows once per step: evaluation events
/// and the final summary repeat the step's epoch, which is written once, from the first. Every
/// write is checked: a full disk ends the run with WriteError naming the file. Logs outside
/// training (`hpctrain evaluate`) are not written here: a step-0 event after a run's last step
/// would make TensorBoard discard the run.
class TensorBoardCallback : public TrainerCallback {
 public:
  /// `host`: this machine's name, part of the file name (the Environment's).
  TensorBoardCallback(std::string output_dir, std::string host) : dir_(std::move(output_dir)), host_(std::move(host)) {}
  void on_train_begin(const TrainingArguments&, TrainerState& state, TrainerControl&) override;
  void on_log(const TrainerState& state, const Json& logs) override;
  void on_train_end(const TrainingArguments&, TrainerState& state, TrainerControl&) override;

  /// The scalars of one logged event under TensorBoard tags: eval_x -> eval/x, test_x -> test/x,
  /// every other number x -> train/x (train_loss -> train/train_loss, as Hugging Face's); "step"
  /// is the event's step, not a scalar, and what is not a number (or is a bool) is left out.
  static std::vector<std::pair<std::string, float>> scalars(const Json& logs);

 private:
  std::string dir_, host_;
  files::AppendFile file_;
  bool training_ = false, ended_ = false, hparams_ = false;
  std::map<std::string, std::int64_t> last_step_;  // tag -> the step it was last written at
};

}  // namespace hpctrain::train
