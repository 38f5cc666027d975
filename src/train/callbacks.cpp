// Built-in callbacks: progress, metrics file, early stopping; and TrainerState's JSON.
#include "hpctrain/train/callbacks.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <cstdio>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "hpctrain/core/error.h"
#include "hpctrain/core/files.h"
#include "hpctrain/core/log.h"
#include "hpctrain/config/config.h"

namespace hpctrain::train {

Json TrainerState::to_json() const {
  Json history = Json::array();
  for (const auto& e : log_history) history.push_back(e);
  Json j = Json::object();
  j["best_metric"] = has_best ? Json(best_metric) : Json(nullptr);
  j["best_model_checkpoint"] = best_model_checkpoint.empty() ? Json(nullptr) : Json(best_model_checkpoint);
  j["epoch"] = epoch;
  j["eval_steps"] = eval_steps;
  j["global_step"] = global_step;
  j["is_world_process_zero"] = is_world_process_zero;
  j["log_history"] = history;
  j["logging_steps"] = logging_steps;
  j["max_steps"] = max_steps;
  j["num_train_epochs"] = num_train_epochs;
  j["save_steps"] = save_steps;
  j["train_batch_size"] = train_batch_size;
  j["trial_name"] = trial_name.empty() ? Json(nullptr) : Json(trial_name);
  j["trial_params"] = trial_params;
  return j;
}

namespace {
std::string fmt(double v, int precision = 4) {
  std::ostringstream os;
  os << std::setprecision(precision) << v;
  return os.str();
}
std::string duration(double s) {
  char buf[32];
  const long t = static_cast<long>(s);
  std::snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  return buf;
}
}  // namespace

bool DefaultFlowCallback::log_due(const TrainingArguments& args, const TrainerState& state, std::int64_t step) {
  return step % args.logging_steps == 0 || (args.logging_first_step && step == 1) || step == state.max_steps;
}

void DefaultFlowCallback::on_step_end(const TrainingArguments& args, TrainerState& state, TrainerControl& control) {
  const std::int64_t step = state.global_step;
  if (log_due(args, state, step)) control.should_log = true;
  if (args.eval_strategy == EvalStrategy::kSteps && step % args.eval_steps == 0) control.should_evaluate = true;
  if (args.save_strategy == SaveStrategy::kSteps && args.save_steps > 0 && step % args.save_steps == 0) control.should_save = true;
}

void DefaultFlowCallback::on_epoch_end(const TrainingArguments& args, TrainerState&, TrainerControl& control) {
  if (args.eval_strategy == EvalStrategy::kEpoch) control.should_evaluate = true;
  if (args.save_strategy == SaveStrategy::kEpoch) control.should_save = true;
}

void ProgressCallback::on_train_begin(const TrainingArguments&, TrainerState& state, TrainerControl&) {
  tty_ = state.is_world_process_zero && isatty(STDERR_FILENO);
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

void ProgressCallback::on_step_end(const TrainingArguments&, TrainerState& state, TrainerControl&) {
  if (!tty_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100) && state.global_step < state.max_steps) return;
  last_draw_ = now;
  const double el = std::chrono::duration<double>(now - start_).count();
  const double eta = state.global_step > 0 ? el / state.global_step * (state.max_steps - state.global_step) : 0;
  std::fprintf(stderr, "\r%lld/%lld steps | epoch %.2f | loss %s | %s elapsed, %s left   ",
               static_cast<long long>(state.global_step), static_cast<long long>(state.max_steps), state.epoch,
               last_loss_.c_str(), duration(el).c_str(), duration(eta).c_str());
  std::fflush(stderr);
}

void ProgressCallback::on_log(const TrainerState& state, const Json& logs) {
  if (!state.is_world_process_zero) return;
  if (const Json* l = json::find(logs, "loss")) last_loss_ = fmt(json::number(*l));
  std::ostringstream os;
  for (const auto& [k, v] : logs.items()) {
    if (k == "step") continue;
    os << (os.tellp() > 0 ? ", " : "") << k << " " << (v.is_number() ? fmt(json::number(v), 5) : json::dump(v));
  }
  if (tty_) std::fprintf(stderr, "\r");
  HPCT_LOG(info) << "step " << state.global_step << "/" << state.max_steps << ": " << os.str();
}

void ProgressCallback::on_train_end(const TrainingArguments&, TrainerState&, TrainerControl&) {
  if (tty_) std::fprintf(stderr, "\n");
}

void MetricsFileCallback::on_train_begin(const TrainingArguments&, TrainerState& state, TrainerControl&) {
  if (!state.is_world_process_zero) return;
  // A resumed run keeps the history up to its checkpoint, without the steps it will redo.
  file_.close();
  std::string history;
  for (const auto& e : state.log_history) history += json::dump(e) + "\n";
  files::write_atomic(path_, history);
}

void MetricsFileCallback::on_log(const TrainerState& state, const Json& logs) {
  if (!state.is_world_process_zero) return;
  if (!file_.is_open()) file_.open(path_, "the metrics file");
  file_.append(json::dump(logs) + "\n");
  if (ended_) file_.close();
}

void MetricsFileCallback::on_train_end(const TrainingArguments&, TrainerState& state, TrainerControl&) {
  if (!state.is_world_process_zero) return;
  ended_ = true;
  file_.close();
}

void EarlyStoppingCallback::on_evaluate(const TrainingArguments& args, TrainerState&, TrainerControl& control,
                                        const Json& metrics) {
  const Json* v = find_metric(metrics, args.metric_for_best_model);
  if (!v) return;
  const double x = json::number(*v);
  const bool greater = args.greater_is_better == AutoBool::kTrue;
  const bool better = !has_best_ || (greater ? x > best_ + threshold_ : x < best_ - threshold_);
  if (better) {
    best_ = x;
    has_best_ = true;
    misses_ = 0;
  } else if (++misses_ >= patience_) {
    control.should_training_stop = true;
    HPCT_LOG(info) << "early stopping: " << args.metric_for_best_model << " has not improved for " << misses_
                   << " evaluations (best " << best_ << ")";
  }
}

Json EarlyStoppingCallback::state() const {
  Json args = Json::object(), attributes = Json::object();
  args["patience"] = patience_;
  args["threshold"] = threshold_;
  attributes["has_best"] = has_best_;
  attributes["best"] = best_;
  attributes["misses"] = misses_;
  Json s = Json::object();
  s["args"] = args;
  s["attributes"] = attributes;
  return s;
}

void EarlyStoppingCallback::load_state(const Json& state) {
  const Json* a = json::find(state, "attributes");
  const Json* has = a ? json::find(*a, "has_best") : nullptr;
  const Json* best = a ? json::find(*a, "best") : nullptr;
  const Json* misses = a ? json::find(*a, "misses") : nullptr;
  if (!has || !has->is_boolean() || !best || !best->is_number() || !misses || !json::is_int64(*misses) || misses->get<std::int64_t>() < 0)
    throw ConfigError("early stopping state in the checkpoint is not {attributes: {has_best, best, misses}}: " + json::dump(state));
  has_best_ = has->get<bool>();
  best_ = json::number(*best);
  misses_ = misses->get<std::int64_t>();
  const Json* args = json::find(state, "args");
  if (const Json* p = args ? json::find(*args, "patience") : nullptr; p && json::is_int64(*p) && p->get<std::int64_t>() != patience_) {
    HPCT_LOG(info) << "early stopping: the checkpoint counted against a patience of " << p->get<std::int64_t>()
                   << ", this run uses " << patience_ << " (" << misses_ << " evaluations without improvement so far)";
  }
}

}  // namespace hpctrain::train
