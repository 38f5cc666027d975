// The Trainer: start-up (data, model, every rank from rank 0's parameters), resume and
// checkpoints, and the training loop in named phases with exact global-batch loss normalisation,
// callbacks and state. The data-parallel step (dp_step) and the evaluator (evaluator) are pieces
// of their own.
#include "hpctrain/train/trainer.h"

#include <sys/resource.h>
#include <torch/utils.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>

#include "hpctrain/ckpt/interval.h"
#include "hpctrain/ckpt/manager.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/files.h"
#include "hpctrain/core/signals.h"
#include "hpctrain/core/log.h"
#include "hpctrain/data/loader.h"
#include "hpctrain/dist/communicator.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/models/model.h"
#include "hpctrain/slurm/time_limit.h"
#include "hpctrain/train/scheduler.h"
#include "hpctrain/train/saved_state.h"
#include "hpctrain/train/state_pieces.h"
#include "hpctrain/train/tensorboard.h"
#include "hpctrain/train/torch_compat.h"
#include "hpctrain/train/torch_runtime.h"
#include "anomaly_guard.h"
#include "dp_step.h"
#include "sharded_state.h"
#include "step_profile.h"
#include "evaluator.h"
#include "tensor_comm.h"

namespace hpctrain::train {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// MemAvailable of /proc/meminfo in bytes (0 when unknown).
double available_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

// Runs `f` on every rank; a ConfigError/DataError becomes a CollectiveError when every rank
// throws it (the inputs are identical everywhere), so it is reported once.
template <class F>
auto collectively(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const CollectiveError&) {
    throw;
  } catch (const Error& e) {
    throw CollectiveError(e.what(), e.exit_code());
  }
}

}  // namespace

struct Trainer::Impl {
  const dist::Environment& env;
  Config config;
  const TrainingArguments& args;
  std::shared_ptr<dist::Communicator> comm;
  int rank = 0, world = 1;
  torch::Device device{torch::kCPU};
  std::shared_ptr<data::ShardSet> train_set, eval_set, test_set;
  std::shared_ptr<models::Model> model;
  models::Task task = models::Task::kClassification;
  std::int64_t num_outputs = 0;
  LrSchedule schedule;
  TrainerState state;
  TrainerControl control;
  data::SamplerState sampler_state;  // where the data stand after the last finished step
  LogSums sums;                      // running sums between logs, per rank
  std::int64_t last_saved_step = -1;
  bool last_save_full = false;  // the last save held the whole state (not save_only_model)
  int preempted_by = 0;
  bool time_limited = false;  // stopped before the job's time limit
  std::string anomaly_stop;   // on_anomaly=stop: why the run stopped ("" when it did not)
  Callbacks callbacks;
  double data_wait = 0;
  std::unique_ptr<TensorComm> tensors;     // collectives on tensors (after the device is known)
  std::unique_ptr<DataParallelStep> dp;     // flat gradients, their reduction, clipping, the optimizer
  AnomalyGuard guard{args};                 // non-finite or spiking steps: skip, roll back, stop
  // The pieces of state a checkpoint holds, and the manager that saves and loads them (declared
  // after everything the pieces refer to, so that it is destroyed first).
  std::vector<std::unique_ptr<ckpt::Stateful>> pieces;
  std::unique_ptr<ckpt::CheckpointManager> checkpoints;
  std::unique_ptr<ckpt::AutoInterval> auto_interval;  // save_steps = auto
  std::unique_ptr<BatchModel> batch_model;  // batches through the model, the loss
  std::unique_ptr<Evaluator> evaluator;     // evaluation and prediction passes
  StepPhases phases;                        // where the steps' time went since the last log
  std::unique_ptr<StepTrace> trace;         // profile_steps: a Chrome trace of those steps

  Impl(const dist::Environment& e, Config c, std::shared_ptr<dist::Communicator> cm)
      : env(e), config(std::move(c)), args(config.args), comm(std::move(cm)) {}

  template <class Event>
  void fire(Event&& event) {
    for (auto& cb : callbacks) event(*cb);
  }

  void build(const models::Registry& registry) {
    rank = comm->rank();
    world = comm->size();
    state.is_world_process_zero = rank == 0;
    const std::string& cmd = config.command;
    const data::DataArguments& d = config.data;
    if (cmd == "train" || !d.train.empty())
      train_set = std::make_shared<data::ShardSet>(data::ShardSet::open(env, d.train, d, "[data] train"));
    if (!d.eval.empty())
      eval_set = std::make_shared<data::ShardSet>(data::ShardSet::open(env, d.eval, d, "[data] eval"));
    if (!d.test.empty())
      test_set = std::make_shared<data::ShardSet>(data::ShardSet::open(env, d.test, d, "[data] test", /*targets_optional=*/true));

    const data::ShardSet& ref = train_set ? *train_set : eval_set ? *eval_set : *test_set;
    models::DataSpec spec;
    spec.input_shape = ref.input_shape();
    spec.target_shape = ref.target_shape();
    spec.integer_inputs = ref.integer_inputs();
    spec.integer_targets = ref.integer_targets();
    const bool labels = ref.integer_targets() && !ref.tokens() && ref.has_targets();

    collectively([&] {
      // num_classes, or 1 + the largest label (bounded); every label checked against it.
      spec.num_classes = labels ? ref.classes(config.model.num_classes) : 0;
      for (const auto& other : {eval_set, test_set}) {
        if (!other || &ref == other.get()) continue;
        if (ref.input_shape() != other->input_shape() ||
            (other->has_targets() && ref.integer_targets() != other->integer_targets()))
          throw DataError(other->what() + " does not match " + ref.what() + ": per-sample inputs or target types differ");
      }
      torch::manual_seed(static_cast<std::uint64_t>(args.seed));
      model = registry.create(config.model, spec);
      task = model->task();
      if (task == models::Task::kClassification) {
        num_outputs = config.model.num_classes > 0 ? config.model.num_classes : spec.num_classes;
        if (eval_set && eval_set->target_max() >= num_outputs)
          throw DataError("[data] eval: " + eval_set->target_max_where() + " holds the label " +
                          std::to_string(eval_set->target_max()) + " but the model has " + std::to_string(num_outputs) +
                          " classes (0.." + std::to_string(num_outputs - 1) + "); set [model] num_classes");
        if (rank == 0 && config.model.num_classes == 0) {
          HPCT_LOG(info) << "model: " << num_outputs << " classes, from the largest label in " << ref.what()
                         << " (set [model] num_classes to fix the count)";
        }
      }
      if (args.bf16 && !env.device().cuda && rank == 0) {
        HPCT_LOG(warning) << "bf16 on CPU: autocast runs matrix products in bfloat16, which is slow on most CPUs";
      }
      return 0;
    });

    if (env.device().cuda) {
      if (!torch_cuda_available())
        throw Error("rank " + std::to_string(env.rank()) + " has " + env.device().str() +
                    " but this libtorch has no CUDA; use a CUDA build of libtorch");
      device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.device().index));
    }
    model->to(device);
    tensors = std::make_unique<TensorComm>(comm, device);
    batch_model = std::make_unique<BatchModel>(model, device, config.model.vocab_size, args.bf16);
    evaluator = std::make_unique<Evaluator>(env, *tensors, *batch_model, args, config.data);

    // Every rank starts from rank 0's parameters and buffers.
    {
      torch::NoGradGuard no_grad;
      for (auto t : model->parameters()) tensors->broadcast0(t);
      for (auto t : model->buffers()) tensors->broadcast0(t);
    }
    // Dropout masks must differ between ranks.
    torch::manual_seed(static_cast<std::uint64_t>(args.seed) + 1000003ULL * static_cast<std::uint64_t>(rank + 1));

    dp = std::make_unique<DataParallelStep>(*tensors, model->parameters(), args, device,
                                            /*threads_ok=*/env.thread_level() >= MPI_THREAD_SERIALIZED);

    state.train_batch_size = args.per_device_train_batch_size * world * args.gradient_accumulation_steps;
    state.logging_steps = args.logging_steps;
    if (config.sweep.index >= 0) {
      state.trial_name = args.run_name;
      state.trial_params = Json::object();
      for (const auto& [key, value] : config.sweep.params) {
        char* end = nullptr;
        const double v = std::strtod(value.c_str(), &end);
        const bool number = !value.empty() && *end == '\0' && std::isfinite(v);
        state.trial_params[key] = number ? Json(v) : Json(value);
      }
    }
    state.eval_steps = args.eval_steps;
    state.save_steps = args.save_steps;
    state.num_train_epochs = args.num_train_epochs;
    if (train_set) plan_length();

    if (rank == 0) {
      HPCT_LOG(info) << "model: " << model->describe() << ", " << dp->numel() << " parameters, on " << device.str();
      HPCT_LOG(info) << "data parallel: " << dp->describe();
      if (train_set) {
        HPCT_LOG(info) << "data: " << train_set->size() << " training samples in " << train_set->shards().size()
                       << " shards" << (eval_set ? ", " + std::to_string(eval_set->size()) + " eval samples" : "")
                       << "; global batch " << state.train_batch_size << " = " << args.per_device_train_batch_size
                       << " x " << world << " ranks x " << args.gradient_accumulation_steps << " accumulation";
      }
    }
    build_checkpoints();
  }

  // max_steps and the schedule from the global batch (again after an elastic resume, which keeps
  // the checkpoint's global batch: the run then has the same length as the one that saved it).
  void plan_length() {
    const std::int64_t n = train_set->size();
    const std::int64_t per_epoch = args.dataloader_drop_last ? n / state.train_batch_size
                                                              : (n + state.train_batch_size - 1) / state.train_batch_size;
    collectively([&] {
      if (per_epoch < 1)
        throw DataError("[data] train has " + std::to_string(n) + " samples, fewer than one global batch of " +
                        std::to_string(state.train_batch_size) + " with dataloader_drop_last=true");
      return 0;
    });
    state.max_steps = args.max_steps > 0 ? args.max_steps
                                         : static_cast<std::int64_t>(std::ceil(args.num_train_epochs * per_epoch));
    const std::int64_t warmup = args.warmup_steps > 0 ? args.warmup_steps
                                                      : static_cast<std::int64_t>(std::ceil(args.warmup_ratio * state.max_steps));
    schedule = LrSchedule{args.lr_scheduler_type, warmup, state.max_steps};
  }

  // Bytes of a checkpoint: parameters, buffers and the optimizer's per-parameter state.
  double state_bytes() const {
    const double per_param = args.optim == Optimizer::kSgd ? (args.sgd_momentum > 0 ? 2 : 1) : 3;
    double n = 0;
    for (const auto& p : dp->params()) n += static_cast<double>(p.numel() * p.element_size()) * per_param;
    for (const auto& b : model->buffers()) n += static_cast<double>(b.numel() * b.element_size());
    return n;
  }

  // The checkpoint manager and the pieces of state it saves and loads.
  void build_checkpoints() {
    ckpt::CheckpointManager::Options o;
    o.output_dir = args.output_dir;
    o.save_total_limit = args.save_total_limit;
    o.timeout_seconds = args.ddp_timeout;
    // Background saves keep a rank's share of the state in host memory. Every rank takes the same
    // decision (one rank short of memory makes them all save synchronously).
    const double share = state_bytes() / world * env.local_size();  // all ranks of this node
    const double available = available_memory();
    const bool short_of_memory = args.save_async == AutoBool::kAuto && available > 0 && share > available / 4;
    const bool some_node_short = env.first_failing_rank(short_of_memory) >= 0;
    o.background = args.save_async != AutoBool::kFalse && !some_node_short;
    o.in_place = some_node_short;
    if (args.save_async == AutoBool::kAuto && some_node_short && rank == 0) {
      HPCT_LOG(warning) << "save_async=auto: checkpoints are written synchronously, in place: on some node the host "
                           "copies of its ranks' shares of the state would take over a quarter of its free memory";
    }
    o.check_state = saved::check_saved_state;
    checkpoints = std::make_unique<ckpt::CheckpointManager>(env, o);
    if (!o.in_place && args.save_strategy != SaveStrategy::kNo && config.command == "train")
      checkpoints->reserve(static_cast<std::size_t>(state_bytes()));
    using Scope = ckpt::CheckpointManager::Scope;
    auto add = [&](std::unique_ptr<ckpt::Stateful> piece, Scope scope) {
      checkpoints->add(*piece, scope);
      pieces.push_back(std::move(piece));
    };
    add(std::make_unique<ModelState>(*model), Scope::kModel);
    if (dp->sharded()) add(std::make_unique<ShardedOptimizerState>(*dp, *model, to_name(args.optim)), Scope::kTraining);
    else add(std::make_unique<OptimizerState>(dp->optimizer(), *model, to_name(args.optim)), Scope::kTraining);
    if (train_set) {
      SamplerState::Order order{args.data_seed, config.data.shuffle, config.data.shuffle_block};
      add(std::make_unique<SamplerState>(sampler_state, *train_set, order, args.resume_allow_data_change), Scope::kTraining);
    }
    add(std::make_unique<RngState>(args.seed, rank), Scope::kTraining);
    // The trainer state before the schedule: an elastic resume re-plans the run's length first.
    TrainerStatePiece::Batch batch{args.per_device_train_batch_size, &config.args.gradient_accumulation_steps, world, rank,
                                   [this] {
                                     if (train_set) plan_length();
                                   }};
    add(std::make_unique<TrainerStatePiece>(state, sums, batch), Scope::kTraining);
    add(std::make_unique<ScheduleState>(schedule, rank), Scope::kTraining);
    for (auto& cb : callbacks) add_callback_state(*cb);
    if (args.save_strategy == SaveStrategy::kSteps && args.save_steps == 0) {
      auto_interval = std::make_unique<ckpt::AutoInterval>(args.mtbf_hours * 3600);
      auto_interval->estimate(static_cast<std::size_t>(state_bytes()), world, checkpoints->background());
    }
  }

  void add_callback_state(TrainerCallback& cb) {
    if (cb.state_name().empty() || !checkpoints) return;
    auto piece = std::make_unique<CallbackState>(cb);
    checkpoints->add(*piece, ckpt::CheckpointManager::Scope::kTraining);
    pieces.push_back(std::move(piece));
  }

  Json evaluate() {
    HPCT_CHECK(eval_set, "evaluate: no eval data set ([data] eval)");
    const auto t0 = Clock::now();
    const Evaluator::PassSums pass = evaluator->run_pass(eval_set, nullptr);
    if (pass.stopped_by != 0) return Json::object({{"stopped_by_signal", pass.stopped_by}});
    Json m = evaluator->metrics("eval", pass);
    const double runtime = std::chrono::duration<double>(Clock::now() - t0).count();
    m["eval_runtime"] = runtime;
    m["eval_samples_per_second"] = static_cast<double>(eval_set->size()) / runtime;
    m["epoch"] = state.epoch;
    m["step"] = state.global_step;

    if (!args.metric_for_best_model.empty()) {
      if (const Json* v = find_metric(m, args.metric_for_best_model)) {
        const bool greater = args.greater_is_better == AutoBool::kTrue;
        // A metric that is not finite (a diverged evaluation) is never the best.
        if (std::isfinite(json::number(*v)) &&
            (!state.has_best || (greater ? json::number(*v) > state.best_metric : json::number(*v) < state.best_metric))) {
          state.best_metric = json::number(*v);
          state.has_best = true;
        }
      } else {
        std::string names;
        for (const auto& kv : m.items()) names += (names.empty() ? "" : ", ") + kv.key();
        throw CollectiveError("metric_for_best_model=" + args.metric_for_best_model + ": evaluation has no such metric (it has " +
                                  names + ")",
                              exit_code::kConfig);
      }
    }
    fire([&](TrainerCallback& cb) { cb.on_evaluate(args, state, control, m); });
    log(m);
    return m;
  }

  Json predict() {
    HPCT_CHECK(test_set, "predict: no test data set ([data] test)");
    const auto t0 = Clock::now();
    const Evaluator::PassSums sums = evaluator->predict(test_set);
    if (sums.stopped_by != 0) return Json::object({{"stopped_by_signal", sums.stopped_by}});
    Json m = test_set->has_targets() ? evaluator->metrics("test", sums) : Json::object();
    m["test_runtime"] = std::chrono::duration<double>(Clock::now() - t0).count();
    m["step"] = state.global_step;
    log(m);
    return m;
  }

  void log(const Json& entry) {
    state.log_history.push_back(entry);
    fire([&](TrainerCallback& cb) { cb.on_log(state, entry); });
  }

  // ---- checkpoints ----

  // Before the loop: the checkpoint to continue from (resume_from_checkpoint). Its pieces check
  // that it fits this run; an elastic resume keeps the global batch.
  void resume() {
    std::string spec = args.resume_from_checkpoint;
    if (spec.empty()) spec = env.slurm().present ? "auto" : "none";
    auto dir = checkpoints->find(spec, /*need_training_state=*/true);
    if (!dir) return;
    load_training_state(*dir);
    if (rank == 0) {
      HPCT_LOG(info) << "resumed from " << *dir << " at step " << state.global_step << " (epoch " << state.epoch << ")";
    }
  }

  // Every rank loads the whole training state of checkpoint `dir`, which then counts as this run's
  // last save (a resume, a rollback).
  void load_training_state(const std::string& dir) {
    collectively([&] {
      checkpoints->load(dir, /*model_only=*/false);
      return 0;
    });
    last_saved_step = state.global_step;
    last_save_full = true;
  }

  // A periodic checkpoint. With save_failure=warn a save that cannot be written is logged and
  // training goes on (the next save tries again); with stop (the default) the run ends with it.
  void periodic_save(data::Loader* loader) {
    try {
      save_checkpoint(loader, /*wait=*/false, /*full=*/false);
    } catch (const CollectiveError& e) {
      // A synchronous save, or the save before it in flight, failed on every rank alike.
      if (args.save_failure != SaveFailure::kWarn) throw;
      if (loader) loader->resume();
      warn_save_failed(e.what());
    }
  }

  // A background save failed (the per-step agreement says so on every rank): its error, for all.
  void settle_failed_save() {
    try {
      checkpoints->wait();
    } catch (const CollectiveError& e) {
      if (args.save_failure != SaveFailure::kWarn) throw;
      warn_save_failed(e.what());
    }
  }

  void warn_save_failed(const std::string& what) {
    if (rank == 0) {
      HPCT_LOG(warning) << what << "; save_failure=warn: training goes on, the next save tries again (the last "
                        << "committed checkpoint stays valid)";
    }
  }

  // Checkpoints this step: in the background unless `wait` (a stop, the end of training) or
  // save_async=false. `full`: the whole state even with save_only_model (a preemption must resume).
  void save_checkpoint(data::Loader* loader, bool wait, bool full) {
    const auto timed = phases.scope(Phase::kCheckpoint);  // what the save blocks training for
    // A checkpoint never holds non-finite parameters (on_anomaly=off lets them in): the same on
    // every rank, since the parameters are, so every rank refuses alike.
    for (const auto& item : model->named_parameters()) {
      if (!torch::isfinite(item.value()).all().template item<bool>())
        throw CollectiveError("refusing to checkpoint step " + std::to_string(state.global_step) + ": parameter " + item.key() +
                                  " holds non-finite values (the run diverged; on_anomaly=skip, rollback or stop "
                                  "keeps such steps out)",
                              exit_code::kAnomaly);
    }
    const bool pause = loader && (wait || !checkpoints->background());
    if (pause) loader->pause();  // a synchronous write has the disk to itself
    ckpt::CheckpointManager::SaveRequest request;
    request.step = state.global_step;
    request.model_only = args.save_only_model && !full;
    request.wait = wait;
    request.protect = state.best_model_checkpoint;
    checkpoints->save(request);
    last_saved_step = state.global_step;
    last_save_full = !request.model_only;
    if (pause) loader->resume();
    fire([&](TrainerCallback& cb) { cb.on_save(args, state, control); });
  }

  // ---- the training loop ----

  // What one call of train() keeps between its steps.
  struct Run {
    std::unique_ptr<data::Loader> loader;  // reads from sampler_state on; opened again after an epoch ended early
    double closed_loaders_wait = 0;
    std::int64_t steps_per_epoch = 0, epoch_limit = 0, per_sample = 1, start_step = 0;
    std::unique_ptr<slurm::TimeLimit> time_limit;
    double save_estimate = 0, max_step_seconds = 0;
    Clock::time_point t_start, t_window, t_step;
    double window_wait = 0;  // data wait since the last log
    std::int64_t window_steps = 0, window_samples = 0, epoch = -1;
    double grad_norm = 0, step_lr = 0;
    bool has_grad_norm = false;
    std::int64_t skipped = 0;  // steps the anomaly guard skipped in this run
    AnomalyGuard::Action anomaly = AnomalyGuard::Action::kApply;  // the last step's
    std::int64_t saves_seen = 0;
    int eval_stopped_by = 0;     // a preemption signal made an evaluation give way
    bool epoch_skipped = false;  // this step's epoch was ended early by a callback
    data::Batch b;               // the step's last micro-batch
  };

  TrainOutput train() {
    HPCT_CHECK(train_set, "train: no training data set ([data] train)");
    resume();
    Run run;
    start_run(run);
    while (state.global_step < state.max_steps && preempted_by == 0) {
      if (trace) trace->before_step(state.global_step + 1);
      const bool end_of_epoch = train_step(run);
      if (run.anomaly == AnomalyGuard::Action::kRollback) {
        if (roll_back(run)) continue;
        break;  // nothing to roll back to: a stop
      }
      if (run.anomaly == AnomalyGuard::Action::kStop) break;  // finish_run checkpoints the last good state
      act_on_flags(run);
      if (trace) trace->after_step(state.global_step);
      if (!finish_epoch_if_ended(run, end_of_epoch)) break;  // the run's epochs are done
      if (control.should_training_stop) break;
      if (agree_to_stop(run)) break;
    }
    return finish_run(run);
  }

  void open_loader(Run& run) {
    if (run.loader) run.closed_loaders_wait += run.loader->wait_seconds();
    run.loader.reset();  // its I/O thread ends before the next one starts
    data::TrainPlan plan(data::Sampler(train_set->size(), static_cast<std::uint64_t>(args.data_seed), config.data.shuffle,
                                       config.data.shuffle_block),
                         rank, world, args.per_device_train_batch_size, args.gradient_accumulation_steps,
                         args.dataloader_drop_last);
    run.steps_per_epoch = plan.steps_per_epoch();
    plan.restore(sampler_state);
    run.loader = std::make_unique<data::Loader>(train_set, config.data, data::train_source(plan),
                                                static_cast<int>(args.dataloader_prefetch));
  }

  double save_seconds(const Run& run) const {
    return checkpoints->max_write_seconds() > 0 ? checkpoints->max_write_seconds() : run.save_estimate;
  }

  void start_run(Run& run) {
    open_loader(run);
    // Epochs this run may start: as many as its steps span (Hugging Face's bound), so that epochs
    // ended early by a callback shorten the run instead of adding epochs.
    run.epoch_limit = (state.max_steps + run.steps_per_epoch - 1) / run.steps_per_epoch;
    if (rank == 0) {
      fs::create_directories(args.output_dir);
      files::write_atomic((fs::path(args.output_dir) / "config.ini").string(), to_ini(config));
    }
    model->train();
    run.per_sample = batch_model->elements_per_sample(*train_set);
    // Time limit (SLURM): rank 0 decides; until this run's first save, the save time is estimated
    // from the checkpoint's size (model and optimizer state) at 200 MB/s.
    run.time_limit = std::make_unique<slurm::TimeLimit>(env, args.time_limit_margin, args.slurm_query_timeout);
    run.save_estimate = 5 + state_bytes() / 200e6;
    control.should_training_stop = false;
    fire([&](TrainerCallback& cb) { cb.on_train_begin(args, state, control); });
    run.t_start = run.t_window = Clock::now();
    phases.reset();
    if (const auto window = profile_window(args)) trace = std::make_unique<StepTrace>(args.output_dir, rank, window->first, window->second);
    run.saves_seen = checkpoints->saves_committed();
    run.start_step = state.global_step;
    // A signal during start-up (data, model, resume): every rank stops before the first step, with
    // nothing new to save.
    if (const auto early = tensors->allreduce({static_cast<double>(signals::received())}, dist::ReduceOp::kMax); early[0] != 0) {
      preempted_by = static_cast<int>(early[0]);
      signals::acknowledge();
      if (rank == 0) {
        HPCT_LOG(warning) << "signal " << preempted_by << " received before the first step: stopping, nothing to save";
      }
    }
  }

  // One optimizer step: its micro-batches forward and backward, then the data-parallel step.
  // Returns whether the step ended its epoch.
  bool train_step(Run& run) {
    run.t_step = Clock::now();
    run.epoch_skipped = false;
    const bool saving = checkpoints->in_flight();  // a background save shares the machine with this step
    control.should_log = control.should_evaluate = control.should_save = false;  // as Hugging Face's handler
    fire([&](TrainerCallback& cb) { cb.on_step_begin(args, state, control); });
    data::Batch& b = run.b;
    bool end_of_epoch = false;
    std::int64_t step_samples = 0;
    double step_loss = 0, step_count = 0;  // this rank's, until the guard has seen the step
    for (std::int64_t micro = 0; micro < args.gradient_accumulation_steps; ++micro) {
      const double wait_before = run.loader->wait_seconds();
      {
        const auto timed = phases.scope(Phase::kData);
        HPCT_CHECK(run.loader->next(&b), "the training plan ended early");
      }
      run.window_wait += run.loader->wait_seconds() - wait_before;
      if (b.plan.epoch != run.epoch) {
        run.epoch = b.plan.epoch;
        control.should_epoch_stop = false;
        fire([&](TrainerCallback& cb) { cb.on_epoch_begin(args, state, control); });
      }
      step_samples = b.plan.step_samples;
      end_of_epoch = b.plan.last_in_epoch;
      if (b.size() == 0) continue;  // a short last step can leave a rank without samples
      torch::Tensor loss;
      {
        const auto timed = phases.scope(Phase::kForward);
        const torch::Tensor out = batch_model->forward(b);
        loss = batch_model->loss(out, batch_model->targets(b));
      }
      {
        const auto timed = phases.scope(Phase::kBackward);
        // Normalised by the whole step's sample count: the summed gradients of all ranks and
        // micro-batches are exactly the mean over the global batch, whatever the split.
        if (micro + 1 == args.gradient_accumulation_steps) dp->before_last_backward();
        (loss / static_cast<double>(step_samples * run.per_sample)).backward();
        step_loss += loss.item<double>();
      }
      step_count += static_cast<double>(b.size() * run.per_sample);
    }
    run.step_lr = args.learning_rate * schedule.factor(state.global_step);
    const bool finite = std::isfinite(step_loss);
    if (!finite) {  // each rank names itself; the decision below is every rank's alike
      HPCT_LOG(warning) << "step " << state.global_step + 1 << ": non-finite loss (" << step_loss << ") on this rank";
    }
    std::optional<StepPhases::Scope> timed(std::in_place, phases, Phase::kAllreduce);
    // The norm is taken for clipping (the default: the guard then checks it at every step) and for
    // a log line; without clipping the guard adds no pass over the gradients (its cost stays far
    // below 1% of a step) and a non-finite gradient with a finite loss shows in the next loss.
    const DataParallelStep::Reduced reduced =
        dp->reduce(step_loss, step_count, finite, DefaultFlowCallback::log_due(args, state, state.global_step + 1));
    timed.emplace(phases, Phase::kOptimizer);
    const double mean_loss = reduced.loss_count > 0 ? reduced.loss_sum / reduced.loss_count : 0.0;
    const std::string why = guard.check(reduced.nonfinite_ranks, mean_loss, reduced.norm);
    run.anomaly = guard.record(why, mean_loss, reduced.norm);
    if (run.anomaly == AnomalyGuard::Action::kApply) {
      dp->update(run.step_lr, reduced);
      sums.window_loss += step_loss;
      sums.total_loss += step_loss;
      sums.window_count += step_count;
      sums.total_count += step_count;
    } else {
      dp->discard();
      run.skipped += 1;
      timed.reset();
      if (rank == 0) {
        const char* then = run.anomaly == AnomalyGuard::Action::kRollback ? ": rolling back"
                           : run.anomaly == AnomalyGuard::Action::kStop  ? ": stopping"
                                                                         : "";
        HPCT_LOG(warning) << "step " << state.global_step + 1 << " skipped (no optimizer step): " << why << "; "
                          << guard.in_row() << " anomalous in a row, " << guard.total() << " in this process"
                          << then;
      }
      if (run.anomaly == AnomalyGuard::Action::kStop)
        anomaly_stop = why + " in " + std::to_string(guard.in_row()) + " steps in a row (to step " +
                       std::to_string(state.global_step + 1) + ")";
    }
    timed.reset();
    run.has_grad_norm = reduced.norm.has_value();
    if (reduced.norm) run.grad_norm = *reduced.norm;
    if (auto_interval) auto_interval->step(since(run.t_step), saving);

    state.global_step += 1;
    sampler_state = b.plan.after;
    state.epoch = epoch_at(sampler_state);
    run.window_steps += 1;
    run.window_samples += step_samples;
    fire([&](TrainerCallback& cb) { cb.on_step_end(args, state, control); });
    if (!end_of_epoch) take_epoch_stop(run);
    return end_of_epoch;
  }

  // on_anomaly=rollback, its patience spent: back to the newest committed checkpoint, but on the
  // data after the anomalous steps, so that the window that caused them is skipped (PaLM's
  // remedy for loss spikes). Within the process, as a resume: the sinks (metrics.jsonl,
  // TensorBoard) go back to the checkpoint's history through on_train_begin. Returns false, and
  // turns the rollback into a stop, when no checkpoint with the training state exists.
  bool roll_back(Run& run) {
    const std::int64_t bad_to = state.global_step;
    checkpoints->wait();  // a save in flight commits first: it may be the newest
    const auto dir = checkpoints->find("auto", /*need_training_state=*/true);
    if (!dir) {
      anomaly_stop = std::to_string(guard.in_row()) + " anomalous steps in a row (to step " + std::to_string(bad_to) +
                     ") and no checkpoint to roll back to";
      if (rank == 0) {
        HPCT_LOG(warning) << "on_anomaly=rollback: no checkpoint to roll back to: stopping";
      }
      return false;
    }
    const data::SamplerState after_window = sampler_state;
    load_training_state(*dir);
    sampler_state = after_window;
    state.epoch = epoch_at(sampler_state);
    guard.rolled_back();
    run.anomaly = AnomalyGuard::Action::kApply;
    start_window(run);
    open_loader(run);
    if (rank == 0) {
      HPCT_LOG(warning) << "on_anomaly=rollback: " << args.anomaly_patience << " anomalous steps in a row to step " << bad_to
                        << ": rolled back to " << *dir << " (step " << state.global_step
                        << "); training goes on from there with the data after step " << bad_to;
    }
    fire([&](TrainerCallback& cb) { cb.on_train_begin(args, state, control); });
    return true;
  }

  // A callback ended the epoch (should_epoch_stop) before it ended by itself: the data move on to
  // the next epoch's start, recorded before anything is saved.
  void take_epoch_stop(Run& run) {
    if (!control.should_epoch_stop || run.epoch_skipped) return;
    run.epoch_skipped = true;
    const std::int64_t ended = run.b.plan.after.epoch;
    sampler_state = data::SamplerState{ended + 1, 0};
    state.epoch = static_cast<double>(sampler_state.epoch);
    if (rank == 0) {
      HPCT_LOG(info) << "a callback ended epoch " << ended << " at step " << state.global_step;
    }
  }

  // After a step's flags have been acted on: when the epoch ended (by itself or by a callback),
  // its end events, and the loader moved on after an early end. Returns false when the run's
  // epochs are done before its steps (only after an epoch ended early).
  bool finish_epoch_if_ended(Run& run, bool end_of_epoch) {
    if (!end_of_epoch) take_epoch_stop(run);  // a callback may have asked during the flags' events
    if (!end_of_epoch && !run.epoch_skipped) return true;
    fire([&](TrainerCallback& cb) { cb.on_epoch_end(args, state, control); });
    act_on_flags(run);
    if (state.global_step >= state.max_steps) return true;
    const std::int64_t next = run.epoch_skipped ? sampler_state.epoch : run.b.plan.after.epoch + 1;
    if (next >= run.epoch_limit) {
      if (rank == 0) {
        HPCT_LOG(info) << "the run's " << run.epoch_limit << " epochs are done at step " << state.global_step << " of "
                       << state.max_steps << " (an epoch was ended early)";
      }
      return false;
    }
    if (run.epoch_skipped) open_loader(run);
    return true;
  }

  // What the flags ask, in Hugging Face's order: log, evaluate, save. Called after on_step_end and
  // again after on_epoch_end; each flag is cleared once acted on.
  void act_on_flags(Run& run) {
    if (control.should_log) {
      control.should_log = false;
      log_window(run);
    }
    bool improved = false;
    if (control.should_evaluate) {
      control.should_evaluate = false;
      if (eval_set) {
        const double before = state.best_metric;
        const bool had = state.has_best;
        const Json m = evaluate();
        improved = state.has_best && (!had || state.best_metric != before);
        if (args.save_strategy == SaveStrategy::kBest && improved) control.should_save = true;
        // A preemption during the evaluation: it gave way; the stop below checkpoints this step.
        if (const Json* sig = json::find(m, "stopped_by_signal")) run.eval_stopped_by = static_cast<int>(json::number(*sig));
      }
    }
    run.max_step_seconds = std::max(run.max_step_seconds, since(run.t_step));
    if (control.should_save) {
      control.should_save = false;
      // As in HF, best_model_checkpoint names a checkpoint saved at a step whose metric was the best.
      if (improved) state.best_model_checkpoint = checkpoints->dir_for(state.global_step);
      periodic_save(run.loader.get());
    }
  }

  // The training log line: the window's loss over every rank, rate, timings, memory.
  void log_window(Run& run) {
    const double el = since(run.t_window);
    // The phases' fractions of this rank's window, averaged over the ranks in the same allreduce.
    double fractions[kPhases + 1];
    phases.fractions(el, fractions);
    std::vector<double> summed = {sums.window_loss, sums.window_count, run.window_wait};
    summed.insert(summed.end(), fractions, fractions + kPhases + 1);
    auto reduced = tensors->allreduce(summed, dist::ReduceOp::kSum);
    auto maxes = tensors->allreduce({peak_rss_mb(), static_cast<double>(dp->optimizer_state_bytes()) / 1e6}, dist::ReduceOp::kMax);
    for (std::size_t i = 0; i <= kPhases; ++i) fractions[i] = reduced[3 + i] / world;
    Json e = Json::object();
    e["loss"] = reduced[1] > 0 ? reduced[0] / reduced[1] : 0.0;
    if (run.has_grad_norm) e["grad_norm"] = run.grad_norm;
    e["learning_rate"] = run.step_lr;
    e["epoch"] = state.epoch;
    e["step"] = state.global_step;
    e["train_samples_per_second"] = run.window_samples / el;
    e["step_time"] = el / std::max<std::int64_t>(run.window_steps, 1);
    e["data_wait_fraction"] = reduced[2] / world / el;
    e["peak_rss_mb"] = maxes[0];
    e["optimizer_state_mb"] = maxes[1];  // the largest rank's
    StepPhases::add_to_log(e, fractions);
    if (run.skipped > 0) e["skipped_steps"] = run.skipped;  // by the anomaly guard, in this run so far
    log(e);
    start_window(run);
  }

  // A new log window: its loss sums, data wait, step and sample counts and phase times from zero.
  void start_window(Run& run) {
    sums.window_loss = sums.window_count = run.window_wait = 0;
    run.window_steps = run.window_samples = 0;
    phases.reset();
    run.t_window = Clock::now();
  }

  // The epoch, with its fraction, at data position `s`.
  double epoch_at(const data::SamplerState& s) const {
    return static_cast<double>(s.epoch) + static_cast<double>(s.consumed) / static_cast<double>(train_set->size());
  }

  // The per-step agreement (one tiny allreduce): a preemption signal on any rank, the job's time
  // limit near (rank 0 asks SLURM), a background save that failed on any rank, and rank 0's
  // save_steps=auto timing, so that every rank acts on the same step. Returns whether to stop.
  bool agree_to_stop(Run& run) {
    const bool near_limit =
        state.global_step < state.max_steps && run.time_limit->should_stop(run.max_step_seconds, save_seconds(run));
    const std::int64_t since_save = state.global_step - std::max<std::int64_t>(last_saved_step, 0);
    const bool auto_due = auto_interval && rank == 0 && state.global_step < state.max_steps &&
                          auto_interval->steps() > 0 && since_save >= auto_interval->steps();
    const auto agreed = tensors->allreduce({static_cast<double>(signals::received()), near_limit ? 1.0 : 0.0,
                                            checkpoints->failed() ? 1.0 : 0.0, auto_due ? 1.0 : 0.0},
                                           dist::ReduceOp::kMax);
    if (agreed[2] != 0) settle_failed_save();  // every rank: the save's error, stopping or warned
    checkpoints->collect();
    if (auto_interval && checkpoints->saves_committed() != run.saves_seen) {
      run.saves_seen = checkpoints->saves_committed();
      auto_interval->saved(checkpoints->last());
    }
    if (agreed[0] != 0 || agreed[1] != 0 || run.eval_stopped_by != 0) {
      signals::acknowledge();
      preempted_by = run.eval_stopped_by != 0 ? run.eval_stopped_by : static_cast<int>(agreed[0]);
      time_limited = preempted_by == 0;
      if (rank == 0 && time_limited) {
        HPCT_LOG(warning) << static_cast<long long>(run.time_limit->seconds_left())
                          << " s left before the job's time limit (margin "
                          << static_cast<long long>(run.time_limit->margin_seconds(run.max_step_seconds, save_seconds(run)))
                          << " s): checkpointing step " << state.global_step << " and stopping";
      } else if (rank == 0) {
        HPCT_LOG(warning) << "signal " << preempted_by << " received: checkpointing step " << state.global_step << " and stopping";
      }
      return true;
    }
    if (agreed[3] != 0) periodic_save(run.loader.get());
    if (auto_interval && auto_interval->take_change()) {
      state.save_steps = auto_interval->steps();
      if (rank == 0) {
        HPCT_LOG(info) << "save_steps=auto: a checkpoint " << auto_interval->describe();
      }
    }
    return false;
  }

  // The end of a run: the last checkpoint (always one a stop can resume from), the best model
  // when asked, the summary line, trainer_state.json and the TorchScript module.
  TrainOutput finish_run(Run& run) {
    signals::acknowledge();  // from here the run ends anyway: a signal now changes nothing
    if (trace) trace->finish();  // the run ended inside profile_steps: what was recorded
    const bool stopped_early = preempted_by != 0 || time_limited || !anomaly_stop.empty();
    // A stop must leave a checkpoint to resume from: the whole state, even after a model-only save
    // of this very step (save_only_model); a stop before the first step has nothing new to save.
    const bool saved_now = last_saved_step == state.global_step && (last_save_full || !stopped_early);
    if ((args.save_strategy != SaveStrategy::kNo || stopped_early) && !saved_now &&
        !(stopped_early && state.global_step == run.start_step))
      save_checkpoint(run.loader.get(), /*wait=*/true, /*full=*/stopped_early);
    checkpoints->wait();  // the save in flight commits before the best model is loaded or the run ends
    if (args.load_best_model_at_end && !state.best_model_checkpoint.empty() && !stopped_early) {
      checkpoints->load(state.best_model_checkpoint, /*model_only=*/true);
      if (rank == 0) {
        HPCT_LOG(info) << "loaded the best model (" << args.metric_for_best_model << " " << state.best_metric << ") from "
                       << state.best_model_checkpoint;
      }
    }
    data_wait = run.closed_loaders_wait + run.loader->wait_seconds();
    const double runtime = since(run.t_start);
    auto totals = tensors->allreduce({sums.total_loss, sums.total_count}, dist::ReduceOp::kSum);
    TrainOutput o;
    o.preempted_by = preempted_by;
    o.time_limit = time_limited;
    o.checkpointed = stopped_early && state.global_step != run.start_step;
    o.anomaly = anomaly_stop;
    o.global_step = state.global_step;
    o.training_loss = totals[1] > 0 ? totals[0] / totals[1] : 0;
    Json m = Json::object();
    m["train_runtime"] = runtime;
    m["train_samples_per_second"] = static_cast<double>(state.global_step * state.train_batch_size) / runtime;
    m["train_steps_per_second"] = state.global_step / runtime;
    m["train_loss"] = o.training_loss;
    m["epoch"] = state.epoch;
    m["step"] = state.global_step;
    log(m);
    o.metrics = m;
    fire([&](TrainerCallback& cb) { cb.on_train_end(args, state, control); });
    if (rank == 0) {
      files::write_atomic((fs::path(args.output_dir) / "trainer_state.json").string(), json::dump(state.to_json(), 2) + "\n");
      const std::string scripted = (fs::path(args.output_dir) / "model.pt").string();
      if (model->save_torchscript(scripted)) {
        HPCT_LOG(info) << "trained TorchScript module saved to " << scripted;
      }
    }
    return o;
  }
};

namespace {
// The anomaly guard's state in every checkpoint ("callbacks/anomaly_guard"), through the protocol
// of stateful callbacks: a resumed run counts anomalies in a row and measures spikes as the
// uninterrupted one would.
class GuardState : public TrainerCallback {
 public:
  explicit GuardState(AnomalyGuard& guard) : guard_(guard) {}
  std::string state_name() const override { return "anomaly_guard"; }
  Json state() const override { return guard_.state(); }
  void load_state(const Json& s) override { guard_.load_state(s); }

 private:
  AnomalyGuard& guard_;
};
}  // namespace

Trainer::Trainer(const dist::Environment& env, Config config, const models::Registry& registry, Callbacks callbacks,
                 std::shared_ptr<dist::Communicator> comm) {
  collectively([&] {
    validate(config);
    return 0;
  });
  finalize(config);
  tune_host_allocator();  // also for programs that embed the Trainer (idempotent)
  if (!comm) {
    // The flight recorder's directory: an earlier run's records are kept aside as flight.previous.
    // evaluate and predict keep theirs apart (flight-evaluate, ...), so that they never push a
    // stalled training's records out.
    const std::string flight =
        (fs::path(config.args.output_dir) / (config.command == "train" ? std::string("flight") : "flight-" + config.command))
            .string();
    if (env.rank() == 0) {
      std::error_code ec;
      if (fs::exists(flight, ec)) {
        fs::remove_all(flight + ".previous", ec);
        fs::rename(flight, flight + ".previous", ec);
      }
    }
    comm = dist::make_communicator(
        env, {to_name(config.args.ddp_backend), config.args.ddp_timeout, flight, config.args.ddp_check_collectives});
  }
  impl_ = std::make_unique<Impl>(env, std::move(config), std::move(comm));
  impl_->callbacks.push_back(std::make_shared<DefaultFlowCallback>());  // first: the others may change its flags
  if (impl_->guard.enabled()) impl_->callbacks.push_back(std::make_shared<GuardState>(impl_->guard));
  impl_->callbacks.push_back(std::make_shared<ProgressCallback>());
  if (reports_to(impl_->args, "jsonl"))
    impl_->callbacks.push_back(std::make_shared<MetricsFileCallback>(
        (fs::path(impl_->args.output_dir) / "metrics.jsonl").string()));
  if (reports_to(impl_->args, "tensorboard"))
    impl_->callbacks.push_back(std::make_shared<TensorBoardCallback>(impl_->args.output_dir, env.host()));
  if (impl_->args.early_stopping_patience > 0)
    impl_->callbacks.push_back(std::make_shared<EarlyStoppingCallback>(impl_->args.early_stopping_patience,
                                                                       impl_->args.early_stopping_threshold));
  for (auto& cb : callbacks) impl_->callbacks.push_back(cb);
  impl_->build(registry);
  impl_->fire([&](TrainerCallback& cb) { cb.on_init_end(impl_->args, impl_->state, impl_->control); });
}

Trainer::~Trainer() = default;
Json Trainer::evaluate() { return impl_->evaluate(); }
Json Trainer::predict() { return impl_->predict(); }
std::string Trainer::load_model_from_checkpoint() {
  const std::string& spec = impl_->args.resume_from_checkpoint;
  auto dir = impl_->checkpoints->find(spec.empty() ? "auto" : spec, /*need_training_state=*/false);
  if (!dir) return "";
  collectively([&] {
    impl_->checkpoints->load(*dir, /*model_only=*/true);
    return 0;
  });
  if (impl_->rank == 0) {
    HPCT_LOG(info) << "model loaded from " << *dir;
  }
  return *dir;
}
TrainOutput Trainer::train() { return impl_->train(); }
const TrainerState& Trainer::state() const { return impl_->state; }
models::Model& Trainer::model() { return *impl_->model; }
const Config& Trainer::config() const { return impl_->config; }
void Trainer::add_callback(std::shared_ptr<TrainerCallback> callback) {
  impl_->add_callback_state(*callback);
  impl_->callbacks.push_back(std::move(callback));
}
double Trainer::data_wait_seconds() const { return impl_->data_wait; }

}  // namespace hpctrain::train
