// The table of configuration keys: each key bound to its field, with help text and how its text
// is read and written. The one place a new key is added.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

#include "hpctrain/core/text.h"
#include "hpctrain/config/config.h"

namespace hpctrain::config {
namespace {

using Kind = OptionSpec::Kind;

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The setters throw std::invalid_argument with what was expected; the parser adds the key, the
// value and where it came from.
OptionSpec make(std::string key, std::string group, std::int64_t* f, std::string help) {
  OptionSpec o{std::move(key), std::move(group), std::move(help), Kind::kInt, {}, {}, {}};
  o.set = [f](const std::string& s) {
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno == ERANGE) throw std::invalid_argument("expected an integer");
    *f = v;
  };
  o.get = [f] { return std::to_string(*f); };
  return o;
}

OptionSpec make(std::string key, std::string group, double* f, std::string help) {
  OptionSpec o{std::move(key), std::move(group), std::move(help), Kind::kFloat, {}, {}, {}};
  o.set = [f](const std::string& s) {
    errno = 0;
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
      throw std::invalid_argument("expected a finite number");
    *f = v;
  };
  o.get = [f] { return format_shortest(*f); };
  return o;
}

OptionSpec make(std::string key, std::string group, bool* f, std::string help) {
  OptionSpec o{std::move(key), std::move(group), std::move(help), Kind::kBool, {}, {}, {}};
  o.set = [f](const std::string& s) {
    const std::string v = lower(s);
    if (v == "true" || v == "1" || v == "yes" || v == "on") *f = true;
    else if (v == "false" || v == "0" || v == "no" || v == "off") *f = false;
    else throw std::invalid_argument("expected true or false");
  };
  o.get = [f] { return std::string(*f ? "true" : "false"); };
  return o;
}

OptionSpec make(std::string key, std::string group, std::string* f, std::string help) {
  OptionSpec o{std::move(key), std::move(group), std::move(help), Kind::kString, {}, {}, {}};
  o.set = [f](const std::string& s) { *f = s; };
  o.get = [f] { return *f; };
  return o;
}

// An integer >= 1, or "auto" (stored as 0).
OptionSpec make_auto(std::string key, std::string group, std::int64_t* f, std::string help) {
  OptionSpec o = make(std::move(key), std::move(group), f, std::move(help));
  o.set = [f](const std::string& s) {
    if (lower(s) == "auto") {
      *f = 0;
      return;
    }
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno == ERANGE || v < 1) throw std::invalid_argument("expected auto or an integer >= 1");
    *f = v;
  };
  o.get = [f] { return *f == 0 ? std::string("auto") : std::to_string(*f); };
  return o;
}

// What a setter says when the text is none of the setting's words.
std::invalid_argument not_one_of(const std::vector<std::string>& words) {
  std::string list;
  for (const auto& w : words) list += (list.empty() ? "" : ", ") + w;
  return std::invalid_argument("expected one of: " + list);
}

// A setting that is one of an enum's words (EnumNames): parsed once here, held as the enum.
template <class E>
OptionSpec choice(std::string key, std::string group, E* f, std::string help) {
  OptionSpec o{std::move(key), std::move(group), std::move(help), Kind::kChoice, all_names<E>(), {}, {}};
  o.set = [f, allowed = o.choices](const std::string& s) {
    const auto e = from_name<E>(s);
    if (!e) throw not_one_of(allowed);
    *f = *e;
  };
  o.get = [f] { return std::string(to_name(*f)); };
  return o;
}

}  // namespace

std::vector<OptionSpec> option_table(Config& c) {
  TrainingArguments& a = c.args;
  const std::string run = "Run", len = "Length and batch", opt = "Optimizer", sch = "Learning-rate schedule",
                    lg = "Logging", ev = "Evaluation", ck = "Checkpointing", dist = "Precision and distribution",
                    model = "Model ([model] section)", data = "Data ([data] section)";
  return {
      make("output_dir", run, &a.output_dir, "directory for checkpoints, metrics.jsonl and the resolved config"),
      make("run_name", run, &a.run_name, "name of the run in logs and reports (default: output_dir's name)"),
      make("seed", run, &a.seed, "random seed for model initialisation and data order (>= 0)"),
      make("data_seed", run, &a.data_seed, "seed of the data order; -1 uses seed"),
      make("resume_from_checkpoint", run, &a.resume_from_checkpoint,
           "none, auto (newest valid checkpoint in output_dir), or a checkpoint directory; empty: auto under "
           "SLURM, none otherwise"),

      make("num_train_epochs", len, &a.num_train_epochs, "epochs to train (fractions allowed) when max_steps <= 0"),
      make("max_steps", len, &a.max_steps, "optimizer steps to train; -1: use num_train_epochs"),
      make("per_device_train_batch_size", len, &a.per_device_train_batch_size, "training samples per rank per micro-batch"),
      make("per_device_eval_batch_size", len, &a.per_device_eval_batch_size, "evaluation samples per rank per batch"),
      make("gradient_accumulation_steps", len, &a.gradient_accumulation_steps,
           "micro-batches per optimizer step (global batch = per_device_train_batch_size x ranks x this)"),
      make("dataloader_drop_last", len, &a.dataloader_drop_last, "drop the last incomplete global batch of an epoch"),
      make("dataloader_prefetch", len, &a.dataloader_prefetch, "batches the I/O thread reads ahead (0: read in the loop)"),

      choice("optim", opt, &a.optim, "optimizer"),
      make("learning_rate", opt, &a.learning_rate, "peak learning rate"),
      make("weight_decay", opt, &a.weight_decay, "decoupled weight decay (not applied to biases and norm weights)"),
      make("adam_beta1", opt, &a.adam_beta1, "Adam beta1, in [0, 1)"),
      make("adam_beta2", opt, &a.adam_beta2, "Adam beta2, in [0, 1)"),
      make("adam_epsilon", opt, &a.adam_epsilon, "Adam epsilon, > 0"),
      make("sgd_momentum", opt, &a.sgd_momentum, "SGD momentum, in [0, 1)"),
      make("max_grad_norm", opt, &a.max_grad_norm, "clip the global gradient norm to this; 0 disables clipping"),
      choice("on_anomaly", opt, &a.on_anomaly,
             "a step whose loss or gradient norm is not finite on any rank (or spikes, anomaly_zscore): skip (no "
             "optimizer step), rollback or stop after anomaly_patience in a row (skipping until then), off"),
      make("anomaly_patience", opt, &a.anomaly_patience, "anomalous steps in a row before rollback or stop, in [1, 1000000]"),
      make("anomaly_zscore", opt, &a.anomaly_zscore,
           "also anomalous: a loss or gradient norm this many standard deviations above the last 128 steps' (0: off; "
           "else in [3, 1000000])"),

      choice("lr_scheduler_type", sch, &a.lr_scheduler_type, "learning-rate schedule"),
      make("warmup_steps", sch, &a.warmup_steps, "linear warmup steps (exclusive with warmup_ratio)"),
      make("warmup_ratio", sch, &a.warmup_ratio, "warmup as a fraction of the total steps, in [0, 1)"),

      make("logging_steps", lg, &a.logging_steps, "log loss, learning rate, throughput every this many steps"),
      make("logging_first_step", lg, &a.logging_first_step, "also log the first step"),
      make("profile_steps", lg, &a.profile_steps,
           "A-B: a Chrome trace of steps A to B per rank (libtorch's profiler) in output_dir/profile/; at most 100 "
           "steps; empty: none"),
      make("report_to", lg, &a.report_to,
           "where logged metrics go, comma-separated: jsonl (output_dir/metrics.jsonl), tensorboard (event files "
           "in output_dir), all, or none"),
      choice("log_level", lg, &a.log_level, "log level of rank 0 (passive: info)"),
      choice("log_level_replica", lg, &a.log_level_replica, "log level of the other ranks (passive: warning)"),

      choice("eval_strategy", ev, &a.eval_strategy, "when to evaluate"),
      make("eval_steps", ev, &a.eval_steps, "evaluate every this many steps with eval_strategy=steps; 0: logging_steps"),
      make("metric_for_best_model", ev, &a.metric_for_best_model,
           "metric that defines the best model, e.g. loss or accuracy (eval_ prefix optional)"),
      choice("greater_is_better", ev, &a.greater_is_better,
             "whether a larger metric is better; auto: false for metrics ending in loss"),
      make("early_stopping_patience", ev, &a.early_stopping_patience,
           "stop after this many evaluations without improvement; 0: never"),
      make("early_stopping_threshold", ev, &a.early_stopping_threshold, "least improvement that counts (>= 0)"),

      choice("save_strategy", ck, &a.save_strategy, "when to save a checkpoint"),
      make_auto("save_steps", ck, &a.save_steps,
                "save every this many steps with save_strategy=steps; auto: Young/Daly's interval sqrt(2 x save cost x "
                "mtbf_hours), from the measured cost of a save"),
      make("save_total_limit", ck, &a.save_total_limit, "checkpoints to keep (the best is never deleted); 0: all"),
      make("save_only_model", ck, &a.save_only_model, "save the model only (no optimizer, scheduler, RNG state)"),
      make("load_best_model_at_end", ck, &a.load_best_model_at_end, "restore the best checkpoint when training ends"),
      choice("save_async", ck, &a.save_async,
             "write checkpoints in the background while training goes on (auto: unless MPI lacks "
             "MPI_THREAD_MULTIPLE or a rank's share of the state is over a quarter of the free memory)"),
      make("mtbf_hours", ck, &a.mtbf_hours,
           "expected time between failures of the job (node loss, preemption), in hours: save_steps=auto plans for it"),
      choice("save_failure", ck, &a.save_failure,
             "a periodic checkpoint that cannot be written (disk full, quota, I/O error): stop the run (exit code 6, "
             "the previous checkpoint stays valid) or warn and go on (the next save tries again); the last checkpoint "
             "of a run or a preemption always stops on failure"),
      make("resume_allow_data_change", ck, &a.resume_allow_data_change,
           "resume from a checkpoint whose data order (data_seed, shuffle) or training set differs, at the same epoch "
           "and position (default: refuse, naming what changed)"),

      choice("predict_output", ev, &a.predict_output,
             "what predictions.h5 holds for [data] test: classes (argmax) or logits (regression: values)"),
      make("preemption_signals", ck, &a.preemption_signals,
           "signals that make every rank checkpoint at the next step and stop (comma-separated)"),
      make("time_limit_margin", ck, &a.time_limit_margin,
           "under SLURM, checkpoint and stop (and requeue) this many seconds before the job's time limit; auto: 30 s + "
           "twice the longest step + twice the longest save; off: only on signals"),
      make("preemption_timeout", ck, &a.preemption_timeout,
           "seconds a preemption signal may wait for a step boundary (start-up, a stuck data loader, a step or save longer "
           "than this): then the process exits without a new checkpoint (code 4, requeued), the last one staying valid"),
      make("slurm_query_timeout", ck, &a.slurm_query_timeout,
           "seconds squeue may take to tell the job's time left (asked on a thread of its own, never on the step path)"),
      choice("requeue", ck, &a.requeue,
             "after a preemption or time-limit checkpoint, requeue the SLURM job (auto: when running under SLURM)"),
      make("bf16", dist, &a.bf16, "bfloat16 autocast for forward and backward"),
      choice("ddp_backend", dist, &a.ddp_backend,
             "collective backend; auto: nccl on GPU ranks when built with NCCL, else mpi"),
      make("ddp_timeout", dist, &a.ddp_timeout,
           "seconds a collective may take before the job is aborted; every live rank then writes its last collectives "
           "to output_dir/flight/ and the job's last message names the ranks that never arrived"),
      make("ddp_check_collectives", dist, &a.ddp_check_collectives,
           "debug: before each collective every rank checks that all call the same operation, count and dtype, and "
           "names the ranks that differ (one extra small collective each)"),
      make("ddp_bucket_cap_mb", dist, &a.ddp_bucket_cap_mb,
           "gradients reduced in buckets of this many MiB while the backward pass goes on (PyTorch DDP's name); 0: one "
           "allreduce after it; auto: buckets of 25 MiB with nccl for gradients of 50 MiB and more, else one allreduce"),
      choice("optimizer_sharding", dist, &a.optimizer_sharding,
             "zero1: each rank keeps 1/N of the optimizer state and updates 1/N of the parameters (gradients "
             "reduce-scattered, parameters all-gathered); none: every rank keeps all of it"),
      make("torch_threads", dist, &a.torch_threads,
           "torch intra-op threads per rank; 0: OMP_NUM_THREADS, else the rank's cores"),

      make("model.name", model, &c.model.name, "model to train (required for train, evaluate, predict): mlp, cnn"),
      make("model.hidden_sizes", model, &c.model.hidden_sizes, "mlp: hidden layer widths, comma-separated"),
      make("model.channels", model, &c.model.channels, "cnn: channels of the residual stages, comma-separated"),
      choice("model.activation", model, &c.model.activation, "activation function"),
      make("model.dropout", model, &c.model.dropout, "dropout probability after hidden layers, in [0, 1)"),
      make("model.num_classes", model, &c.model.num_classes,
           "classification: number of classes; 0 = 1 + the largest training target"),
      make("model.n_layer", model, &c.model.n_layer, "gpt: transformer blocks"),
      make("model.n_head", model, &c.model.n_head, "gpt: attention heads (d_model must be a multiple)"),
      make("model.d_model", model, &c.model.d_model, "gpt: model width"),
      make("model.vocab_size", model, &c.model.vocab_size, "gpt: vocabulary size (token ids in [0, vocab_size)); required"),
      make("model.tie_word_embeddings", model, &c.model.tie_word_embeddings, "gpt: output layer shares the token embedding"),
      make("model.task", model, &c.model.task,
           "torchscript:<file.pt> models: classification, regression or language_modeling"),

      make("data.train", data, &c.data.train, "training shards: a glob, a directory or a comma-separated list"),
      make("data.eval", data, &c.data.eval, "evaluation shards (same forms)"),
      make("data.test", data, &c.data.test, "prediction shards (same forms)"),
      choice("data.format", data, &c.data.format,
             "samples: inputs and targets datasets; tokens: a 1-D token stream cut into windows"),
      make("data.inputs_key", data, &c.data.inputs_key, "HDF5 path of the inputs (samples along the first axis)"),
      make("data.targets_key", data, &c.data.targets_key, "HDF5 path of the targets (same length as the inputs)"),
      make("data.tokens_key", data, &c.data.tokens_key, "HDF5 path of the 1-D integer token stream (format=tokens)"),
      make("data.seq_len", data, &c.data.seq_len, "tokens per window (format=tokens); windows do not cross files"),
      make("data.inputs_scale", data, &c.data.inputs_scale, "inputs become float32 x * inputs_scale + inputs_offset"),
      make("data.inputs_offset", data, &c.data.inputs_offset, "see inputs_scale"),
      make("data.shuffle", data, &c.data.shuffle, "shuffle the training order every epoch (false: file order)"),
      make("data.shuffle_block", data, &c.data.shuffle_block,
           "> 0: shuffle blocks of this many consecutive samples, then within each block (near-sequential reads)"),
      make("data.check_finite", data, &c.data.check_finite, "fail on NaN or Inf in float inputs, naming the sample"),
  };
}

}  // namespace hpctrain::config
