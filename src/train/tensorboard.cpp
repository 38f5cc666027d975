// The TensorBoard sink: logged events as scalar records in event files (core/tfevents).
#include "hpctrain/train/tensorboard.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "hpctrain/core/tfevents.h"

namespace hpctrain::train {
namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::vector<std::pair<std::string, float>> TensorBoardCallback::scalars(const Json& logs) {
  std::vector<std::pair<std::string, float>> out;
  if (!logs.is_object()) return out;
  for (const auto& kv : logs.items()) {
    const std::string& k = kv.key();
    if (k == "step" || !kv.value().is_number()) continue;
    std::string tag;
    if (k.rfind("eval_", 0) == 0) tag = "eval/" + k.substr(5);
    else if (k.rfind("test_", 0) == 0) tag = "test/" + k.substr(5);
    else tag = "train/" + k;
    out.emplace_back(std::move(tag), static_cast<float>(kv.value().get<double>()));
  }
  return out;
}

void TensorBoardCallback::on_train_begin(const TrainingArguments&, TrainerState& state, TrainerControl&) {
  if (!state.is_world_process_zero) return;
  file_.close();
  last_step_.clear();
  training_ = true;
  ended_ = false;
  // A new file for each start; the name sorts by time, as TensorBoard reads a run's files.
  const long t = static_cast<long>(now());
  const std::string base = (std::filesystem::path(dir_) / ("events.out.tfevents." + std::to_string(t) + "." +
                                                           host_ + "." + std::to_string(::getpid())))
                               .string();
  std::string path = base;
  for (int i = 1; !file_.open(path, "the TensorBoard event file", /*exclusive=*/true); ++i) {
    if (i > 100) throw WriteError("cannot create a TensorBoard event file: " + base + " and 100 more names exist");
    path = base + "." + std::to_string(i);
  }
  std::string head = tfevents::record(tfevents::file_version_event(now()));
  if (state.global_step > 0) head += tfevents::record(tfevents::session_start_event(now(), state.global_step + 1));
  hparams_ = state.trial_params.is_object() && !state.trial_params.empty();
  if (hparams_) {
    std::vector<std::pair<std::string, tfevents::HParam>> hp;
    for (const auto& kv : state.trial_params.items()) {
      tfevents::HParam h;
      if (kv.value().is_boolean()) {
        h.kind = tfevents::HParam::Kind::kBool;
        h.flag = kv.value().get<bool>();
      } else if (kv.value().is_number()) {
        h.number = kv.value().get<double>();
      } else {
        h.kind = tfevents::HParam::Kind::kString;
        h.text = kv.value().is_string() ? kv.value().get<std::string>() : json::dump(kv.value());
      }
      hp.emplace_back(kv.key(), std::move(h));
    }
    head += tfevents::record(tfevents::hparams_start_event(now(), hp, state.trial_name));
  }
  file_.append(head);
}

void TensorBoardCallback::on_log(const TrainerState& state, const Json& logs) {
  if (!state.is_world_process_zero || !training_) return;
  const Json* step = json::find(logs, "step");
  const std::int64_t s = step && json::is_int64(*step) ? step->get<std::int64_t>() : state.global_step;
  // A tag once per step: evaluation and the final summary repeat the step's epoch.
  std::vector<std::pair<std::string, float>> values;
  for (auto& v : scalars(logs)) {
    auto [it, fresh] = last_step_.emplace(v.first, s);
    if (!fresh && it->second == s) continue;
    it->second = s;
    values.push_back(std::move(v));
  }
  if (values.empty()) return;
  if (!file_.is_open()) file_.open(file_.path(), "the TensorBoard event file");  // after training: predictions
  file_.append(tfevents::record(tfevents::scalars_event(now(), s, values)));
  if (ended_) file_.close();
}

void TensorBoardCallback::on_train_end(const TrainingArguments&, TrainerState& state, TrainerControl&) {
  if (!state.is_world_process_zero || !file_.is_open()) return;
  // A run that stopped early to resume later (a preemption) has not ended its session.
  if (hparams_ && state.global_step >= state.max_steps)
    file_.append(tfevents::record(tfevents::hparams_end_event(now(), /*success=*/1)));
  ended_ = true;
  file_.close();
}

}  // namespace hpctrain::train
