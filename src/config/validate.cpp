// validate() and finalize(): every rule a configuration must satisfy before any work starts,
// each problem reported with its key, its value and what would be valid.
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <type_traits>
#include <vector>

#include "hpctrain/core/error.h"
#include "hpctrain/core/signals.h"
#include "hpctrain/core/text.h"
#include "hpctrain/dist/communicator.h"
#include "hpctrain/config/config.h"
#include "hpctrain/train/trainer_state.h"

namespace hpctrain::config {
namespace {

class Problems {
 public:
  template <class V>
  void add(const std::string& key, const V& value, const std::string& expected) {
    std::ostringstream os;
    os << key << "=";
    if constexpr (std::is_enum_v<V>) os << to_name(value);
    else os << value;
    os << ": " << expected;
    list_.push_back(os.str());
  }
  void add_text(const std::string& text) { list_.push_back(text); }
  bool empty() const { return list_.empty(); }
  std::string join() const {
    std::string out = list_.size() == 1 ? "invalid configuration: " : "invalid configuration (" +
                                                                          std::to_string(list_.size()) + " problems):";
    for (std::size_t i = 0; i < list_.size(); ++i) out += (list_.size() == 1 ? "" : "\n  - ") + list_[i];
    return out;
  }

 private:
  std::vector<std::string> list_;
};

bool path_exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

// Limits of numbers a user can type, each with the reason the message gives.
constexpr std::int64_t kMaxBatch = std::int64_t{1} << 20;
constexpr std::int64_t kMaxAccumulation = 65536;
constexpr double kMaxEpochs = 1e6;
constexpr std::int64_t kMaxSteps = std::int64_t{1} << 40;
constexpr std::int64_t kMaxPrefetch = 64;
constexpr std::int64_t kMaxThreads = 1024;
constexpr double kMaxDdpTimeout = 7 * 86400.0;
constexpr double kMaxMargin = 30 * 86400.0;
constexpr std::int64_t kMaxVocab = std::int64_t{1} << 24;
constexpr std::int64_t kMaxWidth = 65536;
constexpr std::int64_t kMaxLayers = 1024;
constexpr std::int64_t kMaxSeqLen = std::int64_t{1} << 20;
constexpr std::size_t kMaxPath = 4000;  // PATH_MAX is 4096, with room for the run's own file names
constexpr std::size_t kMaxName = 255;   // NAME_MAX

// No control characters (NUL, newlines, escapes); bytes of UTF-8 text are welcome.
bool printable(const std::string& s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}


std::string strip_eval(const std::string& metric) {
  return metric.rfind("eval_", 0) == 0 ? metric.substr(5) : metric;
}

}  // namespace

void validate(const Config& config) {
  const TrainingArguments& a = config.args;
  const std::string& cmd = config.command;
  Problems p;

  // The seed's rules.
  const bool needs_model = cmd == "train" || cmd == "evaluate" || cmd == "predict";
  if (needs_model && config.model.name.empty())
    p.add_text("Must provide a model: set name in the [model] section (or --model.name)");
  if (a.eval_strategy != EvalStrategy::kNo && config.data.eval.empty() && cmd == "train")
    p.add("eval_strategy", a.eval_strategy,
          "evaluation needs an eval dataset: set eval in the [data] section, or eval_strategy=no");
  if (a.save_strategy == SaveStrategy::kBest && a.metric_for_best_model.empty())
    p.add("save_strategy", a.save_strategy, "needs metric_for_best_model (e.g. loss or accuracy) to know what is best");

  // Data a command needs.
  if (cmd == "train" && config.data.train.empty())
    p.add_text("train needs a training dataset: set train in the [data] section (or --data.train)");
  if (cmd == "evaluate" && config.data.eval.empty())
    p.add_text("evaluate needs an eval dataset: set eval in the [data] section (or --data.eval)");
  if (cmd == "predict" && config.data.test.empty())
    p.add_text("predict needs a test dataset: set test in the [data] section (or --data.test)");

  // Model shape (names are checked against the registry when the model is built).
  if (config.model.dropout < 0 || config.model.dropout >= 1)
    p.add("model.dropout", config.model.dropout, "expected a number in [0, 1)");
  if (config.model.num_classes < 0 || config.model.num_classes == 1 || config.model.num_classes > kMaxVocab)
    p.add("model.num_classes", config.model.num_classes, "expected 0 (from the data) or an integer in [2, 2^24]");

  const models::ModelArguments& m = config.model;
  if (m.name == "gpt") {
    if (m.vocab_size < 2 || m.vocab_size > kMaxVocab)
      p.add("model.vocab_size", m.vocab_size,
            "gpt needs the vocabulary size: an integer in [2, 2^24] (the largest tokenizers have about 2^18)");
    if (m.n_layer < 1 || m.n_layer > kMaxLayers) p.add("model.n_layer", m.n_layer, "expected an integer in [1, 1024]");
    if (m.d_model > kMaxWidth) p.add("model.d_model", m.d_model, "expected at most 65536 (a layer of that width has 4 G weights)");
    if (m.n_head < 1 || m.d_model < 1 || m.d_model % std::max<std::int64_t>(1, m.n_head) != 0)
      p.add("model.d_model", m.d_model, "expected a positive multiple of model.n_head (" + std::to_string(m.n_head) + ")");
    if (config.data.format != data::DataFormat::kTokens) p.add("data.format", to_name(config.data.format), "gpt trains on token streams: set format = tokens");
  }
  if (m.name.rfind("torchscript:", 0) == 0 && m.task != "classification" && m.task != "regression" &&
      m.task != "language_modeling")
    p.add("model.task", m.task.empty() ? "\"\"" : m.task,
          "a TorchScript model needs its task: classification, regression or language_modeling");

  // Data layout.
  const data::DataArguments& d = config.data;
  if (d.format == data::DataFormat::kTokens && (d.seq_len < 1 || d.seq_len > kMaxSeqLen))
    p.add("data.seq_len", d.seq_len, "format=tokens needs the window length: an integer in [1, 2^20]");
  if (d.format == data::DataFormat::kSamples && d.seq_len != 0)
    p.add("data.seq_len", d.seq_len, "only used with format=tokens (format is samples)");
  if (d.format == data::DataFormat::kSamples && (d.inputs_key.empty() || d.targets_key.empty()))
    p.add_text("data.inputs_key and data.targets_key must name HDF5 datasets (got '" + d.inputs_key + "' and '" +
               d.targets_key + "')");
  if (d.format == data::DataFormat::kTokens && d.tokens_key.empty()) p.add("data.tokens_key", "\"\"", "must name an HDF5 dataset");
  if (d.shuffle_block < 0) p.add("data.shuffle_block", d.shuffle_block, "expected an integer >= 0 (0: full shuffle)");
  if (d.shuffle_block > 0 && !d.shuffle)
    p.add("data.shuffle_block", d.shuffle_block, "has no effect with data.shuffle=false");
  if (d.inputs_scale == 0) p.add("data.inputs_scale", d.inputs_scale, "expected a nonzero number");

  // Sizes and ranges.
  if (a.output_dir.empty()) p.add("output_dir", "\"\"", "a directory path");
  else if (a.output_dir.size() > kMaxPath || !printable(a.output_dir))
    p.add("output_dir", shown_value(a.output_dir),
          "expected a path without control characters, at most " + std::to_string(kMaxPath) +
              " bytes (the system's limit is 4096, and the run's files go below it)");
  else {
    std::stringstream parts(a.output_dir);
    for (std::string part; std::getline(parts, part, '/');)
      if (part.size() > kMaxName)
        p.add("output_dir", shown_value(a.output_dir), "a path component is longer than 255 bytes, the file system's limit");
    struct stat st {};
    if (stat(a.output_dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
      p.add("output_dir", a.output_dir, "exists and is not a directory; expected a directory (it is created when absent)");
  }
  if (!printable(a.run_name) || a.run_name.size() > kMaxName)
    p.add("run_name", shown_value(a.run_name),
          "expected at most 255 bytes without control characters (it names files and log lines)");
  if (a.seed < 0) p.add("seed", a.seed, "expected an integer >= 0");
  if (a.data_seed < -1) p.add("data_seed", a.data_seed, "expected an integer >= 0, or -1 to use seed");
  if (a.max_steps == 0 || a.max_steps < -1)
    p.add("max_steps", a.max_steps, "expected a positive number of steps, or -1 to use num_train_epochs");
  if (a.max_steps <= 0 && !(a.num_train_epochs > 0))
    p.add("num_train_epochs", a.num_train_epochs, "expected > 0 (or set max_steps)");
  if (a.max_steps > kMaxSteps)
    p.add("max_steps", a.max_steps, "expected at most 2^40 steps: more than any job's budget (-1 to use num_train_epochs)");
  if (a.max_steps <= 0 && a.num_train_epochs > kMaxEpochs)
    p.add("num_train_epochs", a.num_train_epochs, "expected at most 1e6 epochs; for a long step budget set max_steps");
  const std::string batch_why = "expected an integer in [1, 1048576]: a larger batch per rank fits no device's memory "
                                "(use gradient_accumulation_steps for a larger global batch)";
  if (a.per_device_train_batch_size < 1 || a.per_device_train_batch_size > kMaxBatch)
    p.add("per_device_train_batch_size", a.per_device_train_batch_size, batch_why);
  if (a.per_device_eval_batch_size < 1 || a.per_device_eval_batch_size > kMaxBatch)
    p.add("per_device_eval_batch_size", a.per_device_eval_batch_size, batch_why);
  if (a.gradient_accumulation_steps < 1 || a.gradient_accumulation_steps > kMaxAccumulation)
    p.add("gradient_accumulation_steps", a.gradient_accumulation_steps,
          "expected an integer in [1, 65536]: more micro-batches per step would make one step last for hours");
  else if (a.per_device_train_batch_size >= 1 && a.per_device_train_batch_size <= kMaxBatch &&
           a.per_device_train_batch_size * a.gradient_accumulation_steps > (std::int64_t{1} << 31))
    p.add("gradient_accumulation_steps", a.gradient_accumulation_steps,
          "per_device_train_batch_size x gradient_accumulation_steps is above 2^31 samples per rank and step");
  if (a.dataloader_prefetch < 0 || a.dataloader_prefetch > kMaxPrefetch)
    p.add("dataloader_prefetch", a.dataloader_prefetch,
          "expected an integer in [0, 64]: each batch read ahead holds memory, and a deeper queue no longer hides anything");

  if (a.learning_rate < 0) p.add("learning_rate", a.learning_rate, "expected a number >= 0");
  if (a.weight_decay < 0) p.add("weight_decay", a.weight_decay, "expected a number >= 0");
  if (a.adam_beta1 < 0 || a.adam_beta1 >= 1) p.add("adam_beta1", a.adam_beta1, "expected a number in [0, 1)");
  if (a.adam_beta2 < 0 || a.adam_beta2 >= 1) p.add("adam_beta2", a.adam_beta2, "expected a number in [0, 1)");
  if (!(a.adam_epsilon > 0)) p.add("adam_epsilon", a.adam_epsilon, "expected a number > 0");
  if (a.sgd_momentum < 0 || a.sgd_momentum >= 1) p.add("sgd_momentum", a.sgd_momentum, "expected a number in [0, 1)");
  if (a.sgd_momentum != 0 && a.optim != Optimizer::kSgd)
    p.add("sgd_momentum", a.sgd_momentum, std::string("only used with optim=sgd (optim is ") + to_name(a.optim) + ")");
  if (a.max_grad_norm < 0) p.add("max_grad_norm", a.max_grad_norm, "expected a number >= 0 (0 disables clipping)");

  if (a.anomaly_patience < 1 || a.anomaly_patience > 1000000)
    p.add("anomaly_patience", a.anomaly_patience, "expected an integer in [1, 1000000] (anomalous steps in a row)");
  if (!(a.anomaly_zscore == 0 || (a.anomaly_zscore >= 3 && a.anomaly_zscore <= 1e6)))
    p.add("anomaly_zscore", a.anomaly_zscore,
          "expected 0 (off) or a number in [3, 1000000]: below 3 deviations ordinary noise would count as a spike");
  if (a.on_anomaly == OnAnomaly::kRollback && a.save_strategy == SaveStrategy::kNo)
    p.add("on_anomaly", a.on_anomaly, "rollback goes back to the last checkpoint: it needs save_strategy other than no");
  if (a.anomaly_zscore > 0 && a.on_anomaly == OnAnomaly::kOff)
    p.add("anomaly_zscore", a.anomaly_zscore, "needs on_anomaly skip, rollback or stop (it is off)");
  if (a.warmup_steps < 0) p.add("warmup_steps", a.warmup_steps, "expected an integer >= 0");
  if (a.warmup_ratio < 0 || a.warmup_ratio >= 1) p.add("warmup_ratio", a.warmup_ratio, "expected a number in [0, 1)");
  if (a.warmup_steps > 0 && a.warmup_ratio > 0)
    p.add("warmup_ratio", a.warmup_ratio, "set either warmup_steps (" + std::to_string(a.warmup_steps) +
                                              ") or warmup_ratio, not both");
  if (a.lr_scheduler_type == SchedulerType::kConstant && (a.warmup_steps > 0 || a.warmup_ratio > 0))
    p.add("lr_scheduler_type", a.lr_scheduler_type, "has no warmup; use constant_with_warmup with warmup_steps/ratio");

  if (a.logging_steps < 1) p.add("logging_steps", a.logging_steps, "expected an integer >= 1");
  if (!trim(a.profile_steps).empty()) {
    const auto w = profile_window(a);
    if (!w) {
      p.add("profile_steps", a.profile_steps, "expected A-B, the first and last step to trace, 1 <= A <= B (e.g. 10-12)");
    } else if (w->second - w->first >= 100) {
      p.add("profile_steps", a.profile_steps,
            "expected at most 100 steps: a trace holds every operator of every step, and a longer one is too large to open");
    }
  }
  {
    const std::vector<std::string> words = split_list(a.report_to);
    for (const auto& w : words) {
      if (w != "jsonl" && w != "tensorboard" && w != "all" && w != "none") {
        p.add("report_to", a.report_to, "expected a comma-separated list of jsonl, tensorboard, all or none ('" + w +
                                            "' is none of them)");
        break;
      }
      if (w == "none" && words.size() > 1) {
        p.add("report_to", a.report_to, "none reports nowhere: it goes alone");
        break;
      }
    }
  }
  if (a.eval_strategy == EvalStrategy::kSteps && a.eval_steps < 0)
    p.add("eval_steps", a.eval_steps, "expected an integer >= 1 (or 0 to use logging_steps)");
  if (a.save_steps < 0) p.add("save_steps", a.save_steps, "expected auto or an integer >= 1");
  if (!(a.mtbf_hours >= 0.01 && a.mtbf_hours <= 87600))
    p.add("mtbf_hours", a.mtbf_hours,
          "expected hours in [0.01, 87600]: below 36 s no checkpoint interval makes sense, above 10 years it is no failure rate");
  if (a.save_total_limit < 0) p.add("save_total_limit", a.save_total_limit, "expected an integer >= 0 (0 keeps all)");

  // The best model.
  if (a.load_best_model_at_end) {
    if (a.eval_strategy == EvalStrategy::kNo)
      p.add("load_best_model_at_end", "true", "needs evaluation: set eval_strategy to steps or epoch");
    else if (std::string(to_name(a.save_strategy)) != to_name(a.eval_strategy) && a.save_strategy != SaveStrategy::kBest)
      p.add("load_best_model_at_end", "true",
            std::string("needs save_strategy to match eval_strategy (or be best), got save_strategy=") +
                to_name(a.save_strategy) + " and eval_strategy=" + to_name(a.eval_strategy));
    else if (a.eval_strategy == EvalStrategy::kSteps && a.save_strategy == SaveStrategy::kSteps) {
      const std::int64_t eval_every = a.eval_steps > 0 ? a.eval_steps : a.logging_steps;
      if (a.save_steps == 0)
        p.add("save_steps", "auto",
              "load_best_model_at_end needs saves at evaluation steps: set save_steps to a multiple of eval_steps (" +
                  std::to_string(eval_every) + ") or save_strategy=best");
      else if (eval_every > 0 && a.save_steps % eval_every != 0)
        p.add("save_steps", a.save_steps,
              "load_best_model_at_end needs save_steps to be a multiple of eval_steps (" + std::to_string(eval_every) + ")");
    }
  }
  if (a.early_stopping_patience < 0)
    p.add("early_stopping_patience", a.early_stopping_patience, "expected an integer >= 0 (0 disables)");
  if (a.early_stopping_threshold < 0)
    p.add("early_stopping_threshold", a.early_stopping_threshold, "expected a number >= 0");
  if (a.early_stopping_patience > 0 && a.eval_strategy == EvalStrategy::kNo)
    p.add("early_stopping_patience", a.early_stopping_patience, "needs evaluation: set eval_strategy to steps or epoch");
  if (a.early_stopping_patience > 0 && a.metric_for_best_model.empty() && !a.load_best_model_at_end)
    p.add("early_stopping_patience", a.early_stopping_patience, "needs metric_for_best_model to judge improvement");
  if (a.greater_is_better != AutoBool::kAuto && a.metric_for_best_model.empty() && !a.load_best_model_at_end)
    p.add("greater_is_better", a.greater_is_better, "only meaningful with metric_for_best_model");
  if (!a.metric_for_best_model.empty() &&
      (a.metric_for_best_model.size() > 128 ||
       !std::all_of(a.metric_for_best_model.begin(), a.metric_for_best_model.end(), [](char c) {
         return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-' || c == '/';
       })))
    p.add("metric_for_best_model", shown_value(a.metric_for_best_model),
          "expected a metric name such as loss, accuracy or eval_loss (letters, digits, _ . - /)");
  if (!a.metric_for_best_model.empty() && a.eval_strategy == EvalStrategy::kNo && cmd == "train")
    p.add("metric_for_best_model", a.metric_for_best_model,
          "is measured by evaluation: set eval_strategy to steps or epoch");

  // Resume.
  const std::string& r = a.resume_from_checkpoint;
  if (!r.empty() && r != "none" && r != "auto" && !path_exists(r))
    p.add("resume_from_checkpoint", r, "no such checkpoint directory; expected none, auto or an existing path");

  // Preemption.
  {
    std::stringstream ss(a.preemption_signals);
    bool empty_entry = !a.preemption_signals.empty() && a.preemption_signals.back() == ',';
    for (std::string n; std::getline(ss, n, ',');) {
      if (n.empty()) empty_entry = true;
      else if (signals::number(n) < 0)
        p.add("preemption_signals", shown_value(a.preemption_signals),
              "unknown signal '" + shown_value(n) + "'; expected USR1, USR2, TERM, INT, HUP or XCPU");
    }
    if (empty_entry)
      p.add("preemption_signals", shown_value(a.preemption_signals), "an empty entry; expected signal names separated by commas");
  }

  // Distribution.
  if (a.time_limit_margin != "auto" && a.time_limit_margin != "off") {
    char* end = nullptr;
    const double m = std::strtod(a.time_limit_margin.c_str(), &end);
    if (a.time_limit_margin.empty() || *end != '\0' || !(m >= 0) || !(m <= kMaxMargin))
      p.add("time_limit_margin", shown_value(a.time_limit_margin),
            "expected auto, off, or seconds in [0, 2592000] (no SLURM job runs longer than 30 days)");
  }
  if (!(a.ddp_timeout >= 1 && a.ddp_timeout <= kMaxDdpTimeout))
    p.add("ddp_timeout", a.ddp_timeout,
          "expected seconds in [1, 604800]: a healthy collective on a busy machine can take a second, and one that has "
          "not completed in a week is hung");
  if (!(a.slurm_query_timeout >= 1 && a.slurm_query_timeout <= 600))
    p.add("slurm_query_timeout", a.slurm_query_timeout,
          "expected seconds in [1, 600]: squeue answers in well under a second on a healthy cluster, and a limit of "
          "more than 10 minutes would be older than the next query");
  if (!(a.preemption_timeout >= 1 && a.preemption_timeout <= 86400))
    p.add("preemption_timeout", a.preemption_timeout,
          "expected seconds in [1, 86400]: a signal must end the process within a day, and a timeout below 1 s "
          "would leave no step boundary the time to come");
  if (a.ddp_bucket_cap_mb != "auto") {
    char* end = nullptr;
    const double mb = std::strtod(a.ddp_bucket_cap_mb.c_str(), &end);
    if (a.ddp_bucket_cap_mb.empty() || *end != '\0' || !(mb == 0 || (mb >= 1 && mb <= 65536)))
      p.add("ddp_bucket_cap_mb", shown_value(a.ddp_bucket_cap_mb),
            "expected auto, 0 (one allreduce after the backward pass) or MiB in [1, 65536]: below 1 MiB a bucket's "
            "collective costs its latency alone, and no device holds 64 GiB of gradients");
    else if (mb > 0 && a.optimizer_sharding == OptimizerSharding::kZero1)
      p.add("ddp_bucket_cap_mb", shown_value(a.ddp_bucket_cap_mb),
            "optimizer_sharding=zero1 reduce-scatters the gradients in one collective after the backward pass; "
            "buckets are for the replicated path (use auto or 0)");
  }
  if (a.torch_threads < 0 || a.torch_threads > kMaxThreads)
    p.add("torch_threads", a.torch_threads,
          "expected an integer in [0, 1024] (0: automatic): no node has more cores per rank, and creating that many "
          "threads can exhaust the process limit");
  if (a.ddp_backend == DdpBackend::kNccl && dist::compiled_backends().find("nccl") == std::string::npos)
    p.add("ddp_backend", a.ddp_backend,
          "this hpctrain was built without NCCL (compiled backends: " + dist::compiled_backends() + ")");

  if (!p.empty()) throw ConfigError(p.join());
}

const Json* find_metric(const Json& metrics, const std::string& name) {
  if (const Json* v = json::find(metrics, name)) return v;
  if (name.rfind("eval_", 0) != 0) return json::find(metrics, "eval_" + name);
  return nullptr;
}

bool greater_is_better_for(const std::string& metric, AutoBool setting) {
  if (setting != AutoBool::kAuto) return setting == AutoBool::kTrue;
  const std::string m = strip_eval(metric);
  return !(m.size() >= 4 && m.compare(m.size() - 4, 4, "loss") == 0);
}

void finalize(Config& config) {
  TrainingArguments& a = config.args;
  if (a.eval_steps <= 0) a.eval_steps = a.logging_steps;
  if (a.load_best_model_at_end && a.metric_for_best_model.empty()) a.metric_for_best_model = "loss";
  if (!a.metric_for_best_model.empty())
    a.greater_is_better = greater_is_better_for(a.metric_for_best_model, a.greater_is_better) ? AutoBool::kTrue : AutoBool::kFalse;
  if (a.run_name.empty()) {
    std::string d = a.output_dir;
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    auto slash = d.rfind('/');
    a.run_name = slash == std::string::npos ? d : d.substr(slash + 1);
  }
  if (a.data_seed < 0) a.data_seed = a.seed;
}

std::optional<std::pair<std::int64_t, std::int64_t>> profile_window(const TrainingArguments& a) {
  // "A-B" with 1 <= A <= B; nullopt when it is empty or not that.
  const std::string t = trim(a.profile_steps);
  const auto dash = t.find('-');
  if (dash == std::string::npos || dash == 0) return std::nullopt;
  const std::string lo = t.substr(0, dash), hi = t.substr(dash + 1);
  const auto digits = [](const std::string& x) {
    return !x.empty() && x.size() <= 15 && x.find_first_not_of("0123456789") == std::string::npos;
  };
  if (!digits(lo) || !digits(hi)) return std::nullopt;
  const std::int64_t first = std::stoll(lo), last = std::stoll(hi);
  if (first < 1 || last < first) return std::nullopt;
  return std::make_pair(first, last);
}

std::optional<double> bucket_cap_mb(const TrainingArguments& a) {
  if (a.ddp_bucket_cap_mb == "auto") return std::nullopt;
  return std::strtod(a.ddp_bucket_cap_mb.c_str(), nullptr);
}

bool reports_to(const TrainingArguments& a, const std::string& sink) {
  for (const auto& w : split_list(a.report_to))
    if (w == sink || w == "all") return true;
  return false;
}

}  // namespace hpctrain::config
