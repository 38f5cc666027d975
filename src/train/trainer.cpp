// The Trainer: data-parallel training over the Communicator with gradients in one flat buffer,
// exact global-batch loss normalisation, evaluation reduced on every rank, callbacks and state.
#include "hpctrain/train/trainer.h"

#include <sys/resource.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "hpctrain/ckpt/checkpoint.h"
#include "hpctrain/core/bytes.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/signals.h"
#include "hpctrain/core/log.h"
#include "hpctrain/data/loader.h"
#include "hpctrain/data/writer.h"
#include "hpctrain/dist/communicator.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/models/model.h"
#include "hpctrain/slurm/time_limit.h"
#include "hpctrain/train/scheduler.h"
#include "hpctrain/train/torch_compat.h"
#include "hpctrain/train/torch_runtime.h"
#include "hpctrain/version.h"

namespace hpctrain::train {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

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
  std::vector<torch::Tensor> params;
  torch::Tensor grads;  // every parameter's .grad is a view into this flat buffer
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  LrSchedule schedule;
  TrainerState state;
  TrainerControl control;
  data::SamplerState sampler_state;  // where the data stand after the last finished step
  std::int64_t last_saved_step = -1;
  int preempted_by = 0;
  bool time_limited = false;  // stopped before the job's time limit
  double max_save_seconds = 0;
  Callbacks callbacks;
  double data_wait = 0;

  Impl(const dist::Environment& e, Config c, std::shared_ptr<dist::Communicator> cm)
      : env(e), config(std::move(c)), args(config.args), comm(std::move(cm)) {}

  template <class Event>
  void fire(Event&& event) {
    for (auto& cb : callbacks) event(*cb);
  }

  // Moves a tensor through the communicator, staging through host memory when the backend wants
  // host buffers and the tensor lives on a GPU (or the reverse).
  template <class Op>
  void through_comm(torch::Tensor& t, Op&& op) {
    const bool want_device = comm->device_buffers();
    if (t.is_cuda() == want_device && t.is_contiguous()) {
      op(t);
      return;
    }
    torch::Tensor staged = t.to(want_device ? device : torch::Device(torch::kCPU)).contiguous();
    op(staged);
    t.copy_(staged);
  }
  void allreduce_sum(torch::Tensor& t) {
    through_comm(t, [&](torch::Tensor& x) {
      if (x.scalar_type() == torch::kFloat) comm->allreduce(x.data_ptr<float>(), static_cast<std::size_t>(x.numel()), dist::ReduceOp::kSum);
      else comm->allreduce(x.data_ptr<double>(), static_cast<std::size_t>(x.numel()), dist::ReduceOp::kSum);
    });
  }
  std::vector<double> allreduce(std::vector<double> v, dist::ReduceOp op) {
    torch::Tensor t = torch::tensor(v, torch::kDouble);
    if (comm->device_buffers()) t = t.to(device);
    through_comm(t, [&](torch::Tensor& x) { comm->allreduce(x.data_ptr<double>(), v.size(), op); });
    t = t.cpu();
    return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + v.size());
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
    spec.num_classes = ref.integer_targets() && !ref.tokens() ? ref.target_max() + 1 : 0;

    collectively([&] {
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
          throw DataError("[data] eval holds the label " + std::to_string(eval_set->target_max()) + " but the model has " +
                          std::to_string(num_outputs) + " classes (0.." + std::to_string(num_outputs - 1) +
                          "); set [model] num_classes");
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

    // Every rank starts from rank 0's parameters and buffers.
    for (auto& p : model->parameters()) params.push_back(p);
    {
      torch::NoGradGuard no_grad;
      for (auto t : model->parameters()) broadcast0(t);
      for (auto t : model->buffers()) broadcast0(t);
    }
    // Dropout masks must differ between ranks.
    torch::manual_seed(static_cast<std::uint64_t>(args.seed) + 1000003ULL * static_cast<std::uint64_t>(rank + 1));

    std::int64_t total = 0;
    for (const auto& p : params) total += p.numel();
    grads = torch::zeros({total}, torch::TensorOptions().dtype(torch::kFloat).device(device));
    std::int64_t off = 0;
    for (auto& p : params) {
      p.mutable_grad() = grads.narrow(0, off, p.numel()).view_as(p);
      off += p.numel();
    }

    // Weight decay on weights, not on biases and norm parameters (1-D), as HF does.
    std::vector<torch::Tensor> decay, no_decay;
    for (auto& p : params) (p.dim() >= 2 ? decay : no_decay).push_back(p);
    const double lr = args.learning_rate;
    if (args.optim == "sgd") {
      optimizer = make_optimizer<torch::optim::SGD>(torch::optim::SGDOptions(lr).momentum(args.sgd_momentum), decay, no_decay);
    } else if (args.optim == "adam") {
      optimizer = make_optimizer<torch::optim::Adam>(
          torch::optim::AdamOptions(lr).betas({args.adam_beta1, args.adam_beta2}).eps(args.adam_epsilon), decay, no_decay);
    } else {
      optimizer = make_optimizer<torch::optim::AdamW>(
          torch::optim::AdamWOptions(lr).betas({args.adam_beta1, args.adam_beta2}).eps(args.adam_epsilon), decay, no_decay);
    }

    state.train_batch_size = args.per_device_train_batch_size * world * args.gradient_accumulation_steps;
    state.logging_steps = args.logging_steps;
    if (config.sweep.index >= 0) {
      state.trial_name = args.run_name;
      state.trial_params = Json::object();
      for (const auto& [key, value] : config.sweep.params) {
        char* end = nullptr;
        const double v = std::strtod(value.c_str(), &end);
        const bool number = !value.empty() && *end == '\0' && std::isfinite(v);
        state.trial_params.set(key, number ? Json(v) : Json(value));
      }
    }
    state.eval_steps = args.eval_steps;
    state.save_steps = args.save_steps;
    state.num_train_epochs = args.num_train_epochs;
    if (train_set) {
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

    if (rank == 0) {
      std::int64_t n = 0;
      for (const auto& p : params) n += p.numel();
      HPCT_LOG(info) << "model: " << model->describe() << ", " << n << " parameters, on " << device.str();
      if (train_set) {
        HPCT_LOG(info) << "data: " << train_set->size() << " training samples in " << train_set->shards().size()
                       << " shards" << (eval_set ? ", " + std::to_string(eval_set->size()) + " eval samples" : "")
                       << "; global batch " << state.train_batch_size << " = " << args.per_device_train_batch_size
                       << " x " << world << " ranks x " << args.gradient_accumulation_steps << " accumulation";
      }

    }
  }

  // Two parameter groups: weights with args.weight_decay, biases and norm weights without.
  template <class Opt, class Options>
  std::unique_ptr<torch::optim::Optimizer> make_optimizer(Options options, const std::vector<torch::Tensor>& decay,
                                                          const std::vector<torch::Tensor>& no_decay) const {
    options.weight_decay(0);
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(decay, std::make_unique<Options>(Options(options).weight_decay(args.weight_decay)));
    groups.emplace_back(no_decay, std::make_unique<Options>(options));
    return std::make_unique<Opt>(groups, options);
  }

  void broadcast0(torch::Tensor t) {
    through_comm(t, [&](torch::Tensor& x) {
      HPCT_CHECK(x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kLong,
                 "broadcast of a " << x.scalar_type() << " tensor is not supported");
      if (x.scalar_type() == torch::kFloat) comm->broadcast(x.data_ptr<float>(), static_cast<std::size_t>(x.numel()), 0);
      else comm->broadcast(x.data_ptr<std::int64_t>(), static_cast<std::size_t>(x.numel()), 0);
    });
  }

  // Token ids outside the vocabulary would index past the embedding: name the sample instead.
  void check_tokens(const data::Batch& b) const {
    const std::int64_t vocab = config.model.vocab_size;
    if (task != models::Task::kLanguageModeling || vocab <= 0) return;
    const std::int64_t per = b.input_ids.size() / std::max<std::int64_t>(1, b.size());
    for (std::size_t i = 0; i < b.input_ids.size(); ++i) {
      const std::int64_t t = std::max(b.input_ids[i], b.class_targets[i]);
      const std::int64_t lo = std::min(b.input_ids[i], b.class_targets[i]);
      if (t >= vocab || lo < 0)
        throw DataError("token id " + std::to_string(t >= vocab ? t : lo) + " in window " + std::to_string(b.indices[i / per]) +
                        " is outside the vocabulary [0, " + std::to_string(vocab) + "); set [model] vocab_size");
    }
  }

  torch::Tensor inputs_of(data::Batch& b) {
    check_tokens(b);
    std::vector<std::int64_t> shape = {b.size()};
    shape.insert(shape.end(), b.input_shape.begin(), b.input_shape.end());
    torch::Tensor x = b.input_ids.empty() ? torch::from_blob(b.inputs.data(), shape, torch::kFloat)
                                          : torch::from_blob(b.input_ids.data(), shape, torch::kLong);
    return x.to(device);
  }
  torch::Tensor targets_of(data::Batch& b) {
    std::vector<std::int64_t> shape = {b.size()};
    shape.insert(shape.end(), b.target_shape.begin(), b.target_shape.end());
    torch::Tensor y = b.float_targets.empty() ? torch::from_blob(b.class_targets.data(), shape, torch::kLong)
                                              : torch::from_blob(b.float_targets.data(), shape, torch::kFloat);
    return y.to(device);
  }

  // Sum of per-sample losses (per-token for language models) and of the task metric's numerator.
  std::pair<torch::Tensor, torch::Tensor> loss_and_metric(const torch::Tensor& out, const torch::Tensor& y) {
    namespace F = torch::nn::functional;
    if (task == models::Task::kRegression) {
      torch::Tensor pred = out.to(torch::kFloat).reshape(y.sizes());
      return {F::mse_loss(pred, y, F::MSELossFuncOptions().reduction(torch::kSum)), (pred - y).abs().sum()};
    }
    torch::Tensor logits = out.to(torch::kFloat).reshape({-1, out.size(-1)});
    torch::Tensor labels = y.reshape({-1});
    torch::Tensor loss = F::cross_entropy(logits, labels, F::CrossEntropyFuncOptions().reduction(torch::kSum));
    return {loss, (logits.argmax(1) == labels).sum()};
  }

  std::int64_t elements_per_sample(const data::ShardSet& set) const {
    std::int64_t n = 1;
    for (auto d : set.target_shape()) n *= d;
    return task == models::Task::kRegression ? 1 : n;  // per-token loss for sequences; per sample for regression
  }

  // One pass of the model over this rank's exact share of `set`: loss and metric sums (when the
  // set has targets), and the outputs themselves when `keep` is given.
  struct PassSums {
    double loss = 0, metric = 0, count = 0;
  };
  PassSums run_pass(const std::shared_ptr<data::ShardSet>& set, std::vector<torch::Tensor>* keep) {
    model->eval();
    torch::NoGradGuard no_grad;
    const auto [begin, end] = data::eval_range(set->size(), rank, world);
    data::Loader loader(set, config.data, data::eval_source(begin, end, args.per_device_eval_batch_size),
                        static_cast<int>(args.dataloader_prefetch));
    PassSums sums;
    data::Batch b;
    while (loader.next(&b)) {
      if (b.size() == 0) continue;
      torch::Tensor out;
      {
        compat::AutocastGuard autocast(args.bf16, device.is_cuda());
        out = model->forward(inputs_of(b)).to(torch::kFloat);
      }
      if (keep) keep->push_back(out.cpu());
      if (!set->has_targets()) continue;
      auto [l, m] = loss_and_metric(out, targets_of(b));
      sums.loss += l.item<double>();
      sums.metric += m.item<double>();
      sums.count += static_cast<double>(b.size() * elements_per_sample(*set));
    }
    model->train();
    auto reduced = allreduce({sums.loss, sums.metric, sums.count}, dist::ReduceOp::kSum);
    return {reduced[0], reduced[1], reduced[2]};
  }

  // eval_loss, eval_accuracy / eval_mae, eval_perplexity for language models.
  Json metrics(const std::string& prefix, const PassSums& s) const {
    Json m = Json::object();
    m.set(prefix + "_loss", s.loss / s.count);
    if (task == models::Task::kRegression) m.set(prefix + "_mae", s.metric / s.count);
    else m.set(prefix + "_accuracy", s.metric / s.count);  // next-token accuracy for language models
    if (task == models::Task::kLanguageModeling) m.set(prefix + "_perplexity", std::exp(s.loss / s.count));
    return m;
  }

  Json evaluate() {
    HPCT_CHECK(eval_set, "evaluate: no eval data set ([data] eval)");
    const auto t0 = Clock::now();
    Json m = metrics("eval", run_pass(eval_set, nullptr));
    const double runtime = std::chrono::duration<double>(Clock::now() - t0).count();
    m.set("eval_runtime", runtime);
    m.set("eval_samples_per_second", static_cast<double>(eval_set->size()) / runtime);
    m.set("epoch", state.epoch);
    m.set("step", state.global_step);

    if (!args.metric_for_best_model.empty()) {
      if (const Json* v = find_metric(m, args.metric_for_best_model)) {
        const bool greater = args.greater_is_better == "true";
        if (!state.has_best || (greater ? v->number() > state.best_metric : v->number() < state.best_metric)) {
          state.best_metric = v->number();
          state.has_best = true;
        }
      } else {
        std::string names;
        for (const auto& kv : m.fields()) names += (names.empty() ? "" : ", ") + kv.first;
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
    std::vector<torch::Tensor> outs;
    PassSums sums = run_pass(test_set, &outs);
    // classes: argmax over the last axis (per token for language models); regression: the values.
    const bool classes = task != models::Task::kRegression && args.predict_output == "classes";
    torch::Tensor mine = outs.empty() ? torch::Tensor() : torch::cat(outs, 0);
    if (mine.defined() && classes) mine = mine.argmax(-1);
    if (mine.defined() && task == models::Task::kRegression) mine = mine.reshape({mine.size(0), -1});
    // Each rank sends its per-sample shape with its rows, so rank 0 needs no samples of its own.
    ByteWriter w;
    std::vector<std::int64_t> row_shape;
    if (mine.defined()) {
      mine = mine.contiguous();
      for (std::int64_t d = 1; d < mine.dim(); ++d) row_shape.push_back(mine.size(d));
    }
    w.put(row_shape);
    w.put(mine.defined() ? std::string(static_cast<const char*>(mine.data_ptr()), static_cast<std::size_t>(mine.nbytes()))
                         : std::string());
    auto all = env.gather_to_root(w.bytes());
    const std::string path = (fs::path(args.output_dir) / "predictions.h5").string();
    if (rank == 0) {
      std::vector<std::int64_t> shape = {test_set->size()};
      std::string joined;
      for (const auto& part : all) {
        ByteReader r(part);
        auto dims = r.get_vector<std::int64_t>();
        std::string rows = r.get_string();
        if (!rows.empty() && shape.size() == 1) shape.insert(shape.end(), dims.begin(), dims.end());
        joined += rows;
      }
      fs::create_directories(args.output_dir);
      data::ShardWriter out(path);
      out.create("predictions", classes ? "int64" : "float32", shape, {});
      if (classes) out.write_rows("predictions", 0, test_set->size(), reinterpret_cast<const std::int64_t*>(joined.data()));
      else out.write_rows("predictions", 0, test_set->size(), reinterpret_cast<const float*>(joined.data()));
      out.close();
      HPCT_LOG(info) << "predictions of " << test_set->size() << " samples (" << (classes ? "classes" : "values/logits")
                     << ") written to " << path;
    }
    Json m = test_set->has_targets() ? metrics("test", sums) : Json::object();
    m.set("test_runtime", std::chrono::duration<double>(Clock::now() - t0).count());
    m.set("step", state.global_step);
    log(m);
    return m;
  }

  void log(const Json& entry) {
    state.log_history.push_back(entry);
    fire([&](TrainerCallback& cb) { cb.on_log(state, entry); });
  }

  // ---- checkpoints ----

  std::string model_fingerprint() const {
    // What must match for a checkpoint to be loadable: the model and the settings that shape it.
    const models::ModelArguments& m = config.model;
    std::string f = "name=" + m.name + ";outputs=" + std::to_string(num_outputs);
    if (m.name == "mlp") f += ";hidden=" + m.hidden_sizes + ";act=" + m.activation;
    if (m.name == "cnn") f += ";channels=" + m.channels + ";act=" + m.activation;
    if (m.name == "gpt")
      f += ";layers=" + std::to_string(m.n_layer) + ";heads=" + std::to_string(m.n_head) + ";d=" + std::to_string(m.d_model) +
           ";vocab=" + std::to_string(m.vocab_size) + ";tied=" + std::to_string(m.tie_word_embeddings) +
           ";seq=" + std::to_string(config.data.seq_len);
    return f;
  }

  template <class F>
  void for_optimizer_state(F&& f) {
    auto& st = optimizer->state();
    using Map = std::decay_t<decltype(st)>;
    for (const auto& item : model->named_parameters()) {
      auto it = st.find(compat::optimizer_state_key<Map>(item.value()));
      if (it == st.end()) continue;
      f(item.key(), *it->second);
    }
  }

  static ckpt::DType ckpt_type(const torch::Tensor& t) {
    if (t.scalar_type() == torch::kFloat) return ckpt::DType::kFloat32;
    if (t.scalar_type() == torch::kDouble) return ckpt::DType::kFloat64;
    if (t.scalar_type() == torch::kLong) return ckpt::DType::kInt64;
    throw Error("checkpoint: unsupported tensor type");
  }

  void write_tensor(ckpt::Writer& w, const std::string& path, const torch::Tensor& t) {
    torch::Tensor host = t.detach().cpu().contiguous();
    w.tensor(path, ckpt_type(host), host.sizes().vec(), host.data_ptr());
  }

  void save(data::Loader* loader) {
    const auto t0 = Clock::now();
    if (loader) loader->pause();  // no reads compete with the write
    const std::string final_dir = ckpt::checkpoint_dir(args.output_dir, state.global_step);
    const std::string partial = final_dir + ".partial";
    if (rank == 0) {
      fs::remove_all(partial);
      fs::create_directories(partial);
    }
    MPI_Barrier(env.comm());
    {
      ckpt::Writer w(env, partial + "/state.h5");
      for (const auto& item : model->named_parameters()) write_tensor(w, "/model/" + item.key(), item.value());
      for (const auto& item : model->named_buffers()) write_tensor(w, "/model/" + item.key(), item.value());
      if (!args.save_only_model) {
        for_optimizer_state([&](const std::string& name, torch::optim::OptimizerParamState& ps) {
          const std::string base = "/optimizer/" + name + "/";
          if (auto* a = dynamic_cast<torch::optim::AdamWParamState*>(&ps)) {
            write_tensor(w, base + "exp_avg", a->exp_avg());
            write_tensor(w, base + "exp_avg_sq", a->exp_avg_sq());
            write_tensor(w, base + "step", torch::tensor(a->step(), torch::kLong));
          } else if (auto* b = dynamic_cast<torch::optim::AdamParamState*>(&ps)) {
            write_tensor(w, base + "exp_avg", b->exp_avg());
            write_tensor(w, base + "exp_avg_sq", b->exp_avg_sq());
            write_tensor(w, base + "step", torch::tensor(b->step(), torch::kLong));
          } else if (auto* c = dynamic_cast<torch::optim::SGDParamState*>(&ps)) {
            if (c->momentum_buffer().defined()) write_tensor(w, base + "momentum_buffer", c->momentum_buffer());
          }
        });
        write_tensor(w, "/sampler/state",
                     torch::tensor({sampler_state.epoch, sampler_state.consumed, args.data_seed}, torch::kLong));
        write_tensor(w, "/scheduler/step", torch::tensor(state.global_step, torch::kLong));
        torch::Tensor rng;
        {
          auto gen = at::detail::getDefaultCPUGenerator();
          std::lock_guard<std::mutex> lock(gen.mutex());
          rng = gen.get_state();
        }
        w.per_rank("/rng/cpu", std::vector<std::uint8_t>(rng.data_ptr<std::uint8_t>(), rng.data_ptr<std::uint8_t>() + rng.numel()));
      }
      Json meta = Json::object();
      meta.set("format_version", ckpt::kFormatVersion);
      meta.set("hpctrain_version", HPCTRAIN_VERSION);
      meta.set("world_size", world);
      meta.set("global_batch", state.train_batch_size);
      meta.set("global_step", state.global_step);
      meta.set("epoch", state.epoch);
      meta.set("model", model_fingerprint());
      meta.set("model_config", to_ini(config));
      meta.set("save_only_model", args.save_only_model);
      w.meta(meta);
      w.close();
    }
    if (rank == 0) {
      Json js = state.to_json();
      js.set("sampler", Json(Json::Object{{"epoch", sampler_state.epoch}, {"consumed", sampler_state.consumed}}));
      std::ofstream(partial + "/trainer_state.json") << js.dump(2) << "\n";
    }
    MPI_Barrier(env.comm());
    ckpt::commit(env, partial, final_dir, args.output_dir);
    last_saved_step = state.global_step;
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    max_save_seconds = std::max(max_save_seconds, seconds);
    if (rank == 0) {
      ckpt::rotate(args.output_dir, args.save_total_limit, state.best_model_checkpoint);
      HPCT_LOG(info) << "checkpoint " << final_dir << " saved in " << seconds << " s";
    }
    fire([&](TrainerCallback& cb) { cb.on_save(args, state, control); });
    if (loader) loader->resume();
  }

  // Loads /model (and, unless only the model is wanted, the optimizer, RNG, data position and
  // trainer state) from `dir`. Collective only through the checks that every rank makes alike.
  void load(const std::string& dir, bool model_only) {
    ckpt::Reader r(dir + "/state.h5");
    const Json meta = r.meta();
    if (meta.find("model")->str() != model_fingerprint())
      throw CollectiveError("checkpoint '" + dir + "' holds another model (" + meta.find("model")->str() +
                                ") than this configuration (" + model_fingerprint() + ")",
                            exit_code::kConfig);
    torch::NoGradGuard no_grad;
    auto load_into = [&](const std::string& path, torch::Tensor t) {
      if (!r.has(path)) throw CollectiveError("checkpoint '" + dir + "' lacks " + path, exit_code::kConfig);
      if (r.shape(path) != t.sizes().vec())
        throw CollectiveError("checkpoint '" + dir + "': " + path + " has another shape than the model's", exit_code::kConfig);
      torch::Tensor host = torch::empty(t.sizes(), t.options().device(torch::kCPU));
      r.read(path, ckpt_type(host), host.data_ptr());
      t.copy_(host);
    };
    for (const auto& item : model->named_parameters()) load_into("/model/" + item.key(), item.value());
    for (const auto& item : model->named_buffers()) load_into("/model/" + item.key(), item.value());
    if (model_only) return;
    // Optimizer state, recreated for every parameter the checkpoint has state for.
    auto& st = optimizer->state();
    using Map = std::decay_t<decltype(st)>;
    for (const auto& item : model->named_parameters()) {
      const std::string base = "/optimizer/" + item.key() + "/";
      const torch::Tensor& p = item.value();
      auto read_like = [&](const std::string& path) {
        torch::Tensor host = torch::empty(p.sizes(), p.options().device(torch::kCPU));
        r.read(path, ckpt_type(host), host.data_ptr());
        return host.to(p.device());
      };
      auto read_step = [&] {
        std::int64_t s = 0;
        r.read(base + "step", ckpt::DType::kInt64, &s);
        return s;
      };
      if (r.has(base + "exp_avg")) {
        if (args.optim == "adamw") {
          auto ps = std::make_unique<torch::optim::AdamWParamState>();
          ps->exp_avg(read_like(base + "exp_avg")).exp_avg_sq(read_like(base + "exp_avg_sq")).step(read_step());
          st[compat::optimizer_state_key<Map>(p)] = std::move(ps);
        } else if (args.optim == "adam") {
          auto ps = std::make_unique<torch::optim::AdamParamState>();
          ps->exp_avg(read_like(base + "exp_avg")).exp_avg_sq(read_like(base + "exp_avg_sq")).step(read_step());
          st[compat::optimizer_state_key<Map>(p)] = std::move(ps);
        }
      } else if (r.has(base + "momentum_buffer") && args.optim == "sgd") {
        auto ps = std::make_unique<torch::optim::SGDParamState>();
        ps->momentum_buffer(read_like(base + "momentum_buffer"));
        st[compat::optimizer_state_key<Map>(p)] = std::move(ps);
      }
    }
    if (r.has("/sampler/state")) {
      std::int64_t s[3] = {0, 0, 0};
      r.read("/sampler/state", ckpt::DType::kInt64, s);
      sampler_state = {s[0], s[1]};
    }
    // This rank's RNG stream; ranks the saving job did not have derive theirs from seed, step, rank.
    auto mine = r.per_rank("/rng/cpu", rank);
    auto gen = at::detail::getDefaultCPUGenerator();
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      if (!mine.empty()) {
        torch::Tensor t = torch::from_blob(mine.data(), {static_cast<std::int64_t>(mine.size())}, torch::kUInt8).clone();
        gen.set_state(t);
      }
    }
    const std::int64_t step = static_cast<std::int64_t>(meta.find("global_step")->number());
    if (mine.empty())
      torch::manual_seed(static_cast<std::uint64_t>(args.seed) * 1000003ULL + static_cast<std::uint64_t>(step) * 7919ULL +
                         static_cast<std::uint64_t>(rank));
    // Trainer state: step, epoch, best, history.
    const Json js = Json::parse_file(dir + "/trainer_state.json");
    state.global_step = step;
    state.epoch = js.find("epoch")->number();
    state.log_history = js.find("log_history")->items();
    if (const Json* b = js.find("best_metric"); b && b->is_number()) {
      state.best_metric = b->number();
      state.has_best = true;
    }
    if (const Json* b = js.find("best_model_checkpoint"); b && !b->is_null()) state.best_model_checkpoint = b->str();
    last_saved_step = step;
  }

  // Before the loop: the checkpoint to continue from (resume_from_checkpoint), with the global
  // batch kept when the number of ranks changed.
  void maybe_resume() {
    std::string spec = args.resume_from_checkpoint;
    if (spec.empty()) spec = env.slurm().present ? "auto" : "none";
    auto dir = ckpt::find_resume(env, args.output_dir, spec);
    if (!dir) return;
    ckpt::Reader r(*dir + "/state.h5");
    const Json meta = r.meta();
    const std::int64_t saved_batch = static_cast<std::int64_t>(meta.find("global_batch")->number());
    const std::int64_t saved_world = static_cast<std::int64_t>(meta.find("world_size")->number());
    if (saved_batch != state.train_batch_size) {
      const std::int64_t per_step = args.per_device_train_batch_size * world;
      if (saved_batch % per_step != 0) {
        std::string valid;
        for (std::int64_t b = 1; b <= saved_batch; ++b)
          if (saved_batch % (b * world) == 0) valid += (valid.empty() ? "" : ", ") + std::to_string(b);
        throw CollectiveError("resume from '" + *dir + "': the checkpoint's global batch is " + std::to_string(saved_batch) +
                                  " (" + std::to_string(saved_world) + " ranks); with " + std::to_string(world) +
                                  " ranks per_device_train_batch_size must divide it evenly: one of " + valid,
                              exit_code::kConfig);
      }
      config.args.gradient_accumulation_steps = saved_batch / per_step;
      state.train_batch_size = saved_batch;
      if (rank == 0) {
        HPCT_LOG(warning) << "elastic resume: " << saved_world << " -> " << world << " ranks; gradient_accumulation_steps set to "
                          << args.gradient_accumulation_steps << " to keep the global batch of " << saved_batch;
      }
    }
    load(*dir, /*model_only=*/false);
    if (rank == 0) {
      HPCT_LOG(info) << "resumed from " << *dir << " at step " << state.global_step << " (epoch " << state.epoch << ")";
    }
  }

  TrainOutput train() {
    HPCT_CHECK(train_set, "train: no training data set ([data] train)");
    maybe_resume();
    const std::int64_t accum = args.gradient_accumulation_steps;
    data::TrainPlan plan(data::Sampler(train_set->size(), static_cast<std::uint64_t>(args.data_seed), config.data.shuffle,
                                       config.data.shuffle_block),
                         rank, world, args.per_device_train_batch_size, accum, args.dataloader_drop_last);
    plan.restore(sampler_state);
    data::Loader loader(train_set, config.data, data::train_source(plan), static_cast<int>(args.dataloader_prefetch));
    if (rank == 0) {
      fs::create_directories(args.output_dir);
      // A resumed run keeps the history up to its checkpoint, without the steps it will redo.
      std::ofstream m(fs::path(args.output_dir) / "metrics.jsonl", std::ios::trunc);
      for (const auto& e : state.log_history) m << e.dump() << "\n";
      std::ofstream(fs::path(args.output_dir) / "config.ini") << to_ini(config);
    }
    model->train();
    const std::int64_t per_sample = elements_per_sample(*train_set);
    // Time limit (SLURM): rank 0 decides; until this run's first save, the save time is estimated
    // from the checkpoint's size (model and optimizer state) at 200 MB/s.
    slurm::TimeLimit time_limit(env, args.time_limit_margin);
    double checkpoint_bytes = 0;
    for (const auto& p : params) checkpoint_bytes += static_cast<double>(p.numel() * p.element_size()) * 3;
    const double save_estimate = 5 + checkpoint_bytes / 200e6;
    auto save_seconds = [&] { return max_save_seconds > 0 ? max_save_seconds : save_estimate; };
    double max_step_seconds = 0;
    fire([&](TrainerCallback& cb) { cb.on_train_begin(args, state, control); });
    const auto t_start = Clock::now();
    auto t_window = t_start;
    double window_loss = 0, window_count = 0, window_wait = 0, total_loss = 0, total_count = 0;
    std::int64_t window_steps = 0, window_samples = 0, epoch = -1;
    double grad_norm = 0, step_lr = 0;
    data::Batch b;
    while (state.global_step < state.max_steps) {
      const auto t_step = Clock::now();
      fire([&](TrainerCallback& cb) { cb.on_step_begin(args, state, control); });
      bool end_of_epoch = false;
      std::int64_t step_samples = 0;
      for (std::int64_t micro = 0; micro < accum; ++micro) {
        const double wait_before = loader.wait_seconds();
        HPCT_CHECK(loader.next(&b), "the training plan ended early");
        window_wait += loader.wait_seconds() - wait_before;
        if (b.plan.epoch != epoch) {
          epoch = b.plan.epoch;
          fire([&](TrainerCallback& cb) { cb.on_epoch_begin(args, state, control); });
        }
        step_samples = b.plan.step_samples;
        end_of_epoch = b.plan.last_in_epoch;
        if (b.size() == 0) continue;  // a short last step can leave a rank without samples
        torch::Tensor out;
        {
          compat::AutocastGuard autocast(args.bf16, device.is_cuda());
          out = model->forward(inputs_of(b));
        }
        auto [loss, metric] = loss_and_metric(out, targets_of(b));
        // Normalised by the whole step's sample count: the summed gradients of all ranks and
        // micro-batches are exactly the mean over the global batch, whatever the split.
        (loss / static_cast<double>(step_samples * per_sample)).backward();
        const double l = loss.item<double>();
        window_loss += l;
        total_loss += l;
        window_count += static_cast<double>(b.size() * per_sample);
        total_count += static_cast<double>(b.size() * per_sample);
      }
      allreduce_sum(grads);
      grad_norm = grads.norm().item<double>();
      if (args.max_grad_norm > 0 && grad_norm > args.max_grad_norm) grads.mul_(args.max_grad_norm / (grad_norm + 1e-6));
      step_lr = args.learning_rate * schedule.factor(state.global_step);
      for (auto& g : optimizer->param_groups()) g.options().set_lr(step_lr);
      optimizer->step();
      grads.zero_();

      state.global_step += 1;
      sampler_state = b.plan.after;
      state.epoch = static_cast<double>(b.plan.after.epoch) +
                    static_cast<double>(b.plan.after.consumed) / static_cast<double>(train_set->size());
      window_steps += 1;
      window_samples += step_samples;
      fire([&](TrainerCallback& cb) { cb.on_step_end(args, state, control); });

      const bool log_now = state.global_step % args.logging_steps == 0 || (args.logging_first_step && state.global_step == 1) ||
                           control.should_log || state.global_step == state.max_steps;
      if (log_now) {
        auto sums = allreduce({window_loss, window_count, window_wait}, dist::ReduceOp::kSum);
        auto maxes = allreduce({peak_rss_mb()}, dist::ReduceOp::kMax);
        const double el = std::chrono::duration<double>(Clock::now() - t_window).count();
        Json e = Json::object();
        e.set("loss", sums[1] > 0 ? sums[0] / sums[1] : 0.0);
        e.set("grad_norm", grad_norm);
        e.set("learning_rate", step_lr);
        e.set("epoch", state.epoch);
        e.set("step", state.global_step);
        e.set("train_samples_per_second", window_samples / el);
        e.set("step_time", el / window_steps);
        e.set("data_wait_fraction", sums[2] / world / el);
        e.set("peak_rss_mb", maxes[0]);
        log(e);
        window_loss = window_count = window_wait = 0;
        window_steps = window_samples = 0;
        t_window = Clock::now();
        control.should_log = false;
      }
      if (end_of_epoch) fire([&](TrainerCallback& cb) { cb.on_epoch_end(args, state, control); });
      const bool eval_now = (args.eval_strategy == "steps" && state.global_step % args.eval_steps == 0) ||
                            (args.eval_strategy == "epoch" && end_of_epoch) || control.should_evaluate;
      bool improved = false;
      if (eval_now && eval_set) {
        const double before = state.best_metric;
        const bool had = state.has_best;
        evaluate();
        improved = state.has_best && (!had || state.best_metric != before);
        control.should_evaluate = false;
      }
      max_step_seconds = std::max(max_step_seconds, std::chrono::duration<double>(Clock::now() - t_step).count());
      const bool save_now = (args.save_strategy == "steps" && state.global_step % args.save_steps == 0) ||
                            (args.save_strategy == "epoch" && end_of_epoch) || (args.save_strategy == "best" && improved) ||
                            control.should_save;
      if (save_now) {
        // As in HF, best_model_checkpoint names a checkpoint saved at a step whose metric was the best.
        if (improved) state.best_model_checkpoint = ckpt::checkpoint_dir(args.output_dir, state.global_step);
        save(&loader);
        control.should_save = false;
      }
      if (control.should_training_stop) break;
      // Preemption: every rank learns (one tiny allreduce) whether any rank got a signal, or rank 0
      // found the job's time limit near, so all of them checkpoint this same step and stop.
      const bool near_limit =
          state.global_step < state.max_steps &&
          time_limit.should_stop(max_step_seconds, save_seconds());
      const auto stop = allreduce({static_cast<double>(signals::received()), near_limit ? 1.0 : 0.0}, dist::ReduceOp::kMax);
      if (stop[0] != 0 || stop[1] != 0) {
        preempted_by = static_cast<int>(stop[0]);
        time_limited = preempted_by == 0;
        if (rank == 0 && time_limited) {
          HPCT_LOG(warning) << static_cast<long long>(time_limit.seconds_left())
                            << " s left before the job's time limit (margin "
                            << static_cast<long long>(time_limit.margin_seconds(max_step_seconds, save_seconds()))
                            << " s): checkpointing step " << state.global_step << " and stopping";
        } else if (rank == 0) {
          HPCT_LOG(warning) << "signal " << preempted_by << " received: checkpointing step " << state.global_step << " and stopping";
        }
        break;
      }
    }
    const bool stopped_early = preempted_by != 0 || time_limited;
    if ((args.save_strategy != "no" || stopped_early) && last_saved_step != state.global_step) save(&loader);
    if (args.load_best_model_at_end && !state.best_model_checkpoint.empty() && !stopped_early) {
      load(state.best_model_checkpoint, /*model_only=*/true);
      if (rank == 0) {
        HPCT_LOG(info) << "loaded the best model (" << args.metric_for_best_model << " " << state.best_metric << ") from "
                       << state.best_model_checkpoint;
      }
    }
    data_wait = loader.wait_seconds();
    const double runtime = std::chrono::duration<double>(Clock::now() - t_start).count();
    auto sums = allreduce({total_loss, total_count}, dist::ReduceOp::kSum);
    TrainOutput o;
    o.preempted_by = preempted_by;
    o.time_limit = time_limited;
    o.global_step = state.global_step;
    o.training_loss = sums[1] > 0 ? sums[0] / sums[1] : 0;
    Json m = Json::object();
    m.set("train_runtime", runtime);
    m.set("train_samples_per_second", static_cast<double>(state.global_step * state.train_batch_size) / runtime);
    m.set("train_steps_per_second", state.global_step / runtime);
    m.set("train_loss", o.training_loss);
    m.set("epoch", state.epoch);
    m.set("step", state.global_step);
    log(m);
    o.metrics = m;
    fire([&](TrainerCallback& cb) { cb.on_train_end(args, state, control); });
    if (rank == 0) {
      std::ofstream f(fs::path(args.output_dir) / "trainer_state.json");
      f << state.to_json().dump(2) << "\n";
      const std::string scripted = (fs::path(args.output_dir) / "model.pt").string();
      if (model->save_torchscript(scripted)) {
        HPCT_LOG(info) << "trained TorchScript module saved to " << scripted;
      }
    }
    return o;
  }
};

Trainer::Trainer(const dist::Environment& env, Config config, const models::Registry& registry, Callbacks callbacks,
                 std::shared_ptr<dist::Communicator> comm) {
  collectively([&] {
    validate(config);
    return 0;
  });
  finalize(config);
  if (!comm) comm = dist::make_communicator(env, {config.args.ddp_backend, config.args.ddp_timeout});
  impl_ = std::make_unique<Impl>(env, std::move(config), std::move(comm));
  impl_->callbacks.push_back(std::make_shared<ProgressCallback>());
  impl_->callbacks.push_back(std::make_shared<MetricsFileCallback>(
      (fs::path(impl_->args.output_dir) / "metrics.jsonl").string()));
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
  auto dir = ckpt::find_resume(impl_->env, impl_->args.output_dir,
                               impl_->args.resume_from_checkpoint.empty() ? "auto" : impl_->args.resume_from_checkpoint);
  if (!dir) return "";
  impl_->load(*dir, /*model_only=*/true);
  if (impl_->rank == 0) {
    HPCT_LOG(info) << "model loaded from " << *dir;
  }
  return *dir;
}
TrainOutput Trainer::train() { return impl_->train(); }
const TrainerState& Trainer::state() const { return impl_->state; }
models::Model& Trainer::model() { return *impl_->model; }
const Config& Trainer::config() const { return impl_->config; }
void Trainer::add_callback(std::shared_ptr<TrainerCallback> callback) { impl_->callbacks.push_back(std::move(callback)); }
double Trainer::data_wait_seconds() const { return impl_->data_wait; }

}  // namespace hpctrain::train
