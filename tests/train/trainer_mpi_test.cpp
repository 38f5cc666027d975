// Multi-rank tests of the Trainer: data-parallel equivalence with one big batch, gradient
// accumulation, bitwise reproducibility, callback order, early stopping, model/data checks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <torch/nn/modules/linear.h>
#include <map>
#include <memory>

#include "common/mpi_env.h"
#include "common/subprocess.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/json.h"
#include "hpctrain/data/convert.h"
#include "hpctrain/dist/mpi_communicator.h"
#include "hpctrain/models/model.h"
#include "hpctrain/train/trainer.h"

namespace hpctrain::train {
namespace {

using testing::env;

// A shared data set made once by rank 0: 10 classes, 16 features; 600 train, 200 eval samples.
const std::string& data_dir() {
  static const std::string dir = [] {
    std::string d = env().rank() == 0 ? testing::temp_dir("hpct-trainer") : "";
    d = env().broadcast_string(d, 0);
    if (env().rank() == 0) {
      auto s = data::synth_classification(800, {16}, 10, 2.0, 5);
      data::write_shards(s, {}, 0, 600, d + "/train", 3, {});
      data::write_shards(s, {}, 600, 800, d + "/eval", 2, {});
    }
    MPI_Barrier(env().comm());
    return d;
  }();
  return dir;
}

Config base_config(std::int64_t per_device, std::int64_t accum) {
  Config c;
  c.command = "train";
  c.model.name = "mlp";
  c.model.hidden_sizes = "32";
  c.model.dropout = 0.0;
  c.data.train = data_dir() + "/train";
  c.data.eval = data_dir() + "/eval";
  c.args.output_dir = testing::temp_dir("hpct-run");
  c.args.per_device_train_batch_size = per_device;
  c.args.gradient_accumulation_steps = accum;
  c.args.learning_rate = 1e-2;
  c.args.weight_decay = 0.01;
  c.args.max_steps = 8;
  c.args.logging_steps = 4;
  c.args.save_strategy = SaveStrategy::kNo;
  c.args.warmup_steps = 2;
  c.args.dataloader_prefetch = 1;
  return c;
}

std::vector<torch::Tensor> params_after(Config c, std::shared_ptr<dist::Communicator> comm = nullptr) {
  Trainer t(env(), std::move(c), models::builtin_models(), {}, std::move(comm));
  t.train();
  std::vector<torch::Tensor> out;
  for (auto& p : t.model().parameters()) out.push_back(p.detach().clone());
  return out;
}

double max_diff(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, (a[i] - b[i]).abs().max().item<double>());
  return d;
}

std::shared_ptr<dist::Communicator> self_comm() { return dist::make_mpi_communicator(env(), MPI_COMM_SELF, 60); }

TEST(Trainer, DataParallelMatchesOneRankWithTheWholeBatch) {
  const int world = env().size();
  if (48 % world != 0) GTEST_SKIP();
  // 8 steps of a global batch of 48 cross the 600-sample epoch boundary? No: 12.5 steps/epoch; the
  // comparison covers warmup, decay and clipping.
  auto parallel = params_after(base_config(48 / world, 1));
  auto reference = params_after(base_config(48, 1), self_comm());
  EXPECT_LT(max_diff(parallel, reference), 2e-5) << "world " << world;
}

TEST(Trainer, AccumulationMatchesOneLargerBatch) {
  auto accumulated = params_after(base_config(12, 2), self_comm());
  auto whole = params_after(base_config(24, 1), self_comm());
  EXPECT_LT(max_diff(accumulated, whole), 2e-5);
}

TEST(Trainer, ShortLastStepsAreWeightedExactly) {
  // 600 samples, global batch 256: steps of 256, 256, 88 per epoch; 6 steps = 2 epochs.
  const int world = env().size();
  if (256 % world != 0) GTEST_SKIP();
  Config a = base_config(256 / world, 1), b = base_config(256, 1);
  a.args.max_steps = b.args.max_steps = 6;
  EXPECT_LT(max_diff(params_after(a), params_after(b, self_comm())), 2e-5);
}

TEST(Trainer, SameSeedSameWorldIsBitwiseIdentical) {
  Config c = base_config(8, 2);
  c.model.dropout = 0.2;
  auto a = params_after(c), b = params_after(c);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
  Config other = c;
  other.args.seed = 43;
  EXPECT_GT(max_diff(a, params_after(other)), 1e-4);
}

class Recorder : public TrainerCallback {
 public:
  std::vector<std::string> events;
  void on_init_end(const TrainingArguments&, TrainerState&, TrainerControl&) override { events.push_back("init_end"); }
  void on_train_begin(const TrainingArguments&, TrainerState&, TrainerControl&) override { events.push_back("train_begin"); }
  void on_train_end(const TrainingArguments&, TrainerState&, TrainerControl&) override { events.push_back("train_end"); }
  void on_epoch_begin(const TrainingArguments&, TrainerState&, TrainerControl&) override { events.push_back("epoch_begin"); }
  void on_epoch_end(const TrainingArguments&, TrainerState&, TrainerControl&) override { events.push_back("epoch_end"); }
  void on_step_begin(const TrainingArguments&, TrainerState&, TrainerControl&) override { events.push_back("step_begin"); }
  void on_step_end(const TrainingArguments&, TrainerState& s, TrainerControl&) override {
    events.push_back("step_end " + std::to_string(s.global_step));
  }
  void on_evaluate(const TrainingArguments&, TrainerState&, TrainerControl&, const Json&) override {
    events.push_back("evaluate");
  }
  void on_log(const TrainerState&, const Json& logs) override {
    events.push_back(logs.contains("eval_loss") ? "log eval" : logs.contains("train_runtime") ? "log summary" : "log");
  }
};

TEST(Trainer, CallbackEventsFireInOrder) {
  Config c = base_config(300 / env().size(), 1);  // 2 steps per epoch
  c.args.max_steps = 4;
  c.args.logging_steps = 2;
  c.args.eval_strategy = EvalStrategy::kEpoch;
  auto rec = std::make_shared<Recorder>();
  Trainer t(env(), c, models::builtin_models(), {rec});
  t.train();
  const std::vector<std::string> expected = {
      "init_end",   "train_begin", "step_begin", "epoch_begin", "step_end 1", "step_begin", "step_end 2", "log",
      "epoch_end",  "evaluate",    "log eval",   "step_begin",  "epoch_begin", "step_end 3", "step_begin", "step_end 4",
      "log",        "epoch_end",   "evaluate",   "log eval",    "log summary", "train_end"};
  EXPECT_EQ(rec->events, expected);
  EXPECT_EQ(t.state().global_step, 4);
  EXPECT_DOUBLE_EQ(t.state().epoch, 2.0);
  EXPECT_EQ(t.state().log_history.size(), 5u);
}

// Nothing improves after the first evaluation (learning rate 0), one evaluation per step.
Config early_stopping_config(std::int64_t patience) {
  Config c = base_config(8, 1);
  c.args.learning_rate = 0;
  c.args.warmup_steps = 0;
  c.args.max_steps = 50;
  c.args.eval_strategy = EvalStrategy::kSteps;
  c.args.eval_steps = 1;
  c.args.metric_for_best_model = "loss";
  c.args.early_stopping_patience = patience;
  return c;
}

TEST(Trainer, EarlyStoppingStopsEveryRankTogether) {
  Config c = early_stopping_config(2);
  Trainer t(env(), c, models::builtin_models());
  t.train();
  EXPECT_EQ(t.state().global_step, 3);  // best at 1, no improvement at 2 and 3
  ASSERT_TRUE(t.state().has_best);
}

std::string shared_dir(const std::string& prefix) {
  return env().broadcast_string(env().rank() == 0 ? testing::temp_dir(prefix) : "", 0);
}

TEST(Trainer, EarlyStoppingCarriesItsPatienceThroughAResume) {
  const Config c = early_stopping_config(3);
  Config whole = c;
  whole.args.output_dir = shared_dir("hpct-es-whole");
  Trainer uninterrupted(env(), whole, models::builtin_models());
  uninterrupted.train();
  ASSERT_EQ(uninterrupted.state().global_step, 4);  // best at 1, misses at 2, 3 and 4
  // The same run stopped at step 2 (one miss counted) with its final checkpoint, then resumed.
  Config cut = c;
  cut.args.output_dir = shared_dir("hpct-es-cut");
  cut.args.max_steps = 2;
  cut.args.save_strategy = SaveStrategy::kSteps;
  cut.args.save_steps = 1000;
  Trainer first(env(), cut, models::builtin_models());
  first.train();
  cut.args.max_steps = 50;
  cut.args.resume_from_checkpoint = "auto";
  Trainer resumed(env(), cut, models::builtin_models());
  resumed.train();
  EXPECT_EQ(resumed.state().global_step, 4) << "the patience started again after the resume";
}

// A user callback re-times the flow: it suppresses the evaluation that the settings put at step
// 4, ends the second epoch early at step 13 (should_epoch_stop), and optionally stops training at
// step 13 (to cut the run there and resume it).
class FlowEditor : public TrainerCallback {
 public:
  explicit FlowEditor(bool stop_at_13) : stop_at_13_(stop_at_13) {}
  std::vector<std::int64_t> evaluations, epoch_ends;
  void on_step_end(const TrainingArguments&, TrainerState& s, TrainerControl& control) override {
    EXPECT_EQ(control.should_evaluate, s.global_step % 2 == 0) << "the flow's flag at step " << s.global_step;
    if (s.global_step == 4) control.should_evaluate = false;
    if (s.global_step == 13) {
      control.should_epoch_stop = true;
      if (stop_at_13_) control.should_training_stop = true;
    }
  }
  void on_epoch_end(const TrainingArguments&, TrainerState& s, TrainerControl&) override {
    epoch_ends.push_back(s.global_step);
  }
  void on_evaluate(const TrainingArguments&, TrainerState& s, TrainerControl&, const Json&) override {
    evaluations.push_back(s.global_step);
  }

 private:
  bool stop_at_13_;
};

// 600 samples, a global batch of 60: 10 steps an epoch; 30 steps span 3 epochs.
Config flow_config(const std::string& dir) {
  Config c = base_config(60 / env().size(), 1);
  c.args.output_dir = dir;
  c.args.max_steps = 30;
  c.args.logging_steps = 1;
  c.args.eval_strategy = EvalStrategy::kSteps;
  c.args.eval_steps = 2;
  c.args.save_strategy = SaveStrategy::kSteps;
  c.args.save_steps = 13;
  return c;
}

TEST(Trainer, ACallbackSuppressesAnEvaluationAndEndsAnEpochEarly) {
  if (60 % env().size() != 0) GTEST_SKIP();
  auto editor = std::make_shared<FlowEditor>(false);
  Trainer whole(env(), flow_config(shared_dir("hpct-flow-whole")), models::builtin_models(), {editor});
  whole.train();
  // Epoch 0: steps 1-10; epoch 1 ended by the callback at 13; epoch 2: steps 14-23, the last epoch
  // the run's 30 steps span, so the run ends there.
  EXPECT_EQ(editor->evaluations, (std::vector<std::int64_t>{2, 6, 8, 10, 12, 14, 16, 18, 20, 22}));
  EXPECT_EQ(editor->epoch_ends, (std::vector<std::int64_t>{10, 13, 23}));
  EXPECT_EQ(whole.state().global_step, 23);
  EXPECT_DOUBLE_EQ(whole.state().epoch, 3.0);
  // The data moved on to the next epoch's start: step 14 is the first step of epoch 2.
  std::map<std::int64_t, double> epoch_at;
  for (const Json& e : whole.state().log_history)
    if (e.contains("loss") && e.contains("step")) epoch_at[e.at("step").get<std::int64_t>()] = e.at("epoch").get<double>();
  EXPECT_DOUBLE_EQ(epoch_at.at(12), 1.2);
  EXPECT_DOUBLE_EQ(epoch_at.at(13), 2.0);
  EXPECT_DOUBLE_EQ(epoch_at.at(14), 2.1);

  // The same run cut at step 13 (its checkpoint is saved after the epoch was ended) and resumed
  // ends bitwise equal to the uninterrupted one.
  const std::string dir = shared_dir("hpct-flow-cut");
  auto stopper = std::make_shared<FlowEditor>(true);
  Trainer cut(env(), flow_config(dir), models::builtin_models(), {stopper});
  cut.train();
  ASSERT_EQ(cut.state().global_step, 13);
  Config again = flow_config(dir);
  again.args.resume_from_checkpoint = "auto";
  auto later = std::make_shared<FlowEditor>(false);
  Trainer resumed(env(), again, models::builtin_models(), {later});
  resumed.train();
  EXPECT_EQ(resumed.state().global_step, 23);
  EXPECT_EQ(later->evaluations, (std::vector<std::int64_t>{14, 16, 18, 20, 22}));
  auto a = whole.model().parameters(), b = resumed.model().parameters();
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
}

// A model registered by user code: one linear layer, or with a hidden layer of `hidden`.
class Custom : public models::Model {
 public:
  Custom(std::int64_t in, std::int64_t classes, std::int64_t hidden) {
    if (hidden > 0) {
      a_ = register_module("a", torch::nn::Linear(in, hidden));
      in = hidden;
    }
    b_ = register_module("b", torch::nn::Linear(in, classes));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    torch::Tensor h = x.flatten(1);
    if (a_) h = torch::relu(a_->forward(h));
    return b_->forward(h);
  }
  models::Task task() const override { return models::Task::kClassification; }
  std::string describe() const override { return "custom"; }

 private:
  torch::nn::Linear a_{nullptr}, b_{nullptr};
};

models::Registry registry_with_custom(std::int64_t hidden) {
  models::Registry r = models::builtin_models();
  r.add("custom",
        [hidden](const models::ModelArguments&, const models::DataSpec& d) {
          return std::make_shared<Custom>(d.input_shape.at(0), d.num_classes, hidden);
        },
        "a test model");
  return r;
}

TEST(Trainer, ARegisteredModelOfAnotherArchitectureUnderTheSameNameIsRefused) {
  Config c = base_config(8, 1);
  c.model.name = "custom";
  c.args.output_dir = shared_dir("hpct-custom");
  c.args.max_steps = 2;
  c.args.save_strategy = SaveStrategy::kSteps;
  c.args.save_steps = 2;
  {
    Trainer t(env(), c, registry_with_custom(0));
    t.train();
  }
  c.args.resume_from_checkpoint = c.args.output_dir + "/checkpoint-2";
  c.args.max_steps = 4;
  // The same architecture resumes.
  {
    Trainer t(env(), c, registry_with_custom(0));
    EXPECT_EQ(t.train().global_step, 4);
  }
  try {
    Trainer t(env(), c, registry_with_custom(12));
    t.train();
    ADD_FAILURE() << "a checkpoint of another architecture was loaded";
  } catch (const CollectiveError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("holds another model than this run"), std::string::npos) << m;
    EXPECT_NE(m.find("checkpoint 'param b.weight Float [10, 16]', this model 'param a.weight Float [12, 16]'"),
              std::string::npos)
        << m;
  }
}

TEST(Trainer, EvaluationIsExactOnAnyWorldSize) {
  Config c = base_config(8, 1);
  Trainer parallel(env(), c, models::builtin_models());
  Trainer alone(env(), c, models::builtin_models(), {}, self_comm());
  const Json a = parallel.evaluate(), b = alone.evaluate();
  EXPECT_NEAR(a.at("eval_loss").get<double>(), b.at("eval_loss").get<double>(), 1e-6);
  EXPECT_DOUBLE_EQ(a.at("eval_accuracy").get<double>(), b.at("eval_accuracy").get<double>());
}

TEST(Trainer, ModelsThatDoNotFitTheDataAreRefused) {
  auto message = [](Config c) {
    try {
      Trainer t(env(), std::move(c), models::builtin_models());
    } catch (const CollectiveError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  Config c = base_config(8, 1);
  c.model.name = "cnn";
  EXPECT_NE(message(c).find("model.name=cnn needs image inputs of shape [H, W] or [C, H, W]"), std::string::npos);
  c = base_config(8, 1);
  c.model.num_classes = 5;
  const std::string labels = message(c);
  EXPECT_NE(labels.find("holds the label 9, but model.num_classes=5 (labels 0..4)"), std::string::npos) << labels;
  EXPECT_NE(labels.find("' sample "), std::string::npos) << "the sample is named: " << labels;
  c = base_config(8, 1);
  c.model.name = "transformer";
  EXPECT_NE(message(c).find("model.name=transformer: no such model; registered models: cnn, gpt, mlp (or torchscript:<file.pt>)"), std::string::npos);
  c = base_config(8, 1);
  c.args.eval_strategy = EvalStrategy::kSteps;
  c.data.eval.clear();
  EXPECT_NE(message(c).find("evaluation needs an eval dataset"), std::string::npos);
}

// ---- the numerical-anomaly guard ----

// A model that returns NaN from the training forward passes number [from, from + count) of one
// rank (the last): a NaN injected into that rank's loss at those steps (one micro-batch a step).
class Poisoned : public models::Model {
 public:
  Poisoned(std::shared_ptr<models::Model> inner, int rank, std::int64_t from, std::int64_t count, float factor)
      : inner_(register_module("inner", std::move(inner))), rank_(rank), from_(from), count_(count), factor_(factor) {}
  torch::Tensor forward(const torch::Tensor& x) override {
    torch::Tensor y = inner_->forward(x);
    if (!is_training() || env().rank() != rank_) return y;
    ++calls_;
    return calls_ >= from_ && calls_ < from_ + count_ ? y * factor_ : y;
  }
  models::Task task() const override { return inner_->task(); }
  std::string describe() const override { return "poisoned " + inner_->describe(); }

 private:
  std::shared_ptr<models::Model> inner_;
  int rank_;
  std::int64_t from_, count_, calls_ = 0;
  float factor_;
};

// `factor` scales the poisoned outputs: NaN by default, a large finite number for a spike.
models::Registry registry_with_poison(std::int64_t from, std::int64_t count,
                                      float factor = std::numeric_limits<float>::quiet_NaN()) {
  models::Registry r = models::builtin_models();
  r.add("poisoned",
        [from, count, factor](const models::ModelArguments& a, const models::DataSpec& d) {
          models::ModelArguments mlp = a;
          mlp.name = "mlp";
          return std::make_shared<Poisoned>(models::builtin_models().create(mlp, d), env().size() - 1, from, count, factor);
        },
        "an mlp whose last rank's loss is NaN at chosen steps");
  return r;
}

Config anomaly_config(std::int64_t steps) {
  Config c = base_config(16 / env().size(), 1);
  c.args.max_steps = steps;
  c.args.logging_steps = 10;
  c.args.warmup_steps = 0;
  c.args.lr_scheduler_type = SchedulerType::kConstant;  // the same rate at step n whatever max_steps is
  c.args.output_dir = shared_dir("hpct-anomaly");
  return c;
}

// A poisoned run with on_anomaly `mode`, saving every `save_steps`.
Config poisoned_config(std::int64_t steps, config::OnAnomaly mode, std::int64_t save_steps) {
  Config c = anomaly_config(steps);
  c.model.name = "poisoned";
  c.args.on_anomaly = mode;
  c.args.save_strategy = SaveStrategy::kSteps;
  c.args.save_steps = save_steps;
  return c;
}

std::vector<torch::Tensor> params_of(Trainer& t) {
  std::vector<torch::Tensor> out;
  for (auto& p : t.model().parameters()) out.push_back(p.detach().clone());
  return out;
}

TEST(AnomalyGuard, ANonFiniteLossOnOneRankSkipsTheStepOnEveryRank) {
  // The last rank's loss is NaN at step 40: on every rank the parameters after step 40 are
  // bitwise those after step 39, and the skip is logged.
  Config clean = anomaly_config(39);
  const auto before = params_after(clean);
  Config c = anomaly_config(40);
  c.model.name = "poisoned";
  Trainer t(env(), c, registry_with_poison(40, 1));
  const TrainOutput out = t.train();
  EXPECT_EQ(out.global_step, 40);
  const auto after = params_of(t);
  ASSERT_EQ(after.size(), before.size());
  for (std::size_t i = 0; i < after.size(); ++i) EXPECT_TRUE(torch::equal(after[i], before[i])) << i;
  const Json* skipped = nullptr;
  for (const auto& e : t.state().log_history)
    if (json::find(e, "loss") && json::find(e, "step")->get<std::int64_t>() == 40) skipped = json::find(e, "skipped_steps");
  ASSERT_NE(skipped, nullptr) << "the step-40 log line has no skipped_steps";
  EXPECT_EQ(skipped->get<std::int64_t>(), 1);
  // The logged loss leaves the skipped step out: it is finite.
  EXPECT_TRUE(std::isfinite(json::number(t.state().log_history.back().at("train_loss"))));
}

// Counts the collectives a run makes.
class CountingComm : public dist::Communicator {
 public:
  explicit CountingComm(std::unique_ptr<dist::Communicator> inner) : inner_(std::move(inner)) {}
  const char* backend() const override { return inner_->backend(); }
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  bool device_buffers() const override { return inner_->device_buffers(); }
  void allreduce(void* d, std::size_t n, dist::DType t, dist::ReduceOp op) override {
    ++calls;
    inner_->allreduce(d, n, t, op);
  }
  void broadcast(void* d, std::size_t n, dist::DType t, int root) override {
    ++calls;
    inner_->broadcast(d, n, t, root);
  }
  void reduce(void* d, std::size_t n, dist::DType t, dist::ReduceOp op, int root) override {
    ++calls;
    inner_->reduce(d, n, t, op, root);
  }
  void reduce_scatter(const void* s, void* r, std::size_t n, dist::DType t, dist::ReduceOp op) override {
    ++calls;
    ++reduce_scatters;
    inner_->reduce_scatter(s, r, n, t, op);
  }
  void allgather(void* d, std::size_t n, dist::DType t) override {
    ++calls;
    ++allgathers;
    inner_->allgather(d, n, t);
  }
  void barrier() override {
    ++calls;
    inner_->barrier();
  }
  std::int64_t calls = 0, reduce_scatters = 0, allgathers = 0;

 private:
  std::unique_ptr<dist::Communicator> inner_;
};

TEST(AnomalyGuard, AddsNoCollective) {
  auto count = [](config::OnAnomaly mode, double clip) {
    Config c = anomaly_config(20);
    c.args.on_anomaly = mode;
    c.args.max_grad_norm = clip;
    c.args.save_strategy = SaveStrategy::kNo;
    auto comm = std::make_shared<CountingComm>(dist::make_mpi_communicator(env(), env().comm(), 60));
    params_after(c, comm);
    return comm->calls;
  };
  const std::int64_t off = count(config::OnAnomaly::kOff, 1.0);
  EXPECT_GT(off, 20);
  EXPECT_EQ(count(config::OnAnomaly::kSkip, 1.0), off);
  EXPECT_EQ(count(config::OnAnomaly::kStop, 0.0), off);  // without clipping too
}

class TrainBegins : public TrainerCallback {
 public:
  int count = 0;
  void on_train_begin(const TrainingArguments&, TrainerState&, TrainerControl&) override { ++count; }
};

TEST(AnomalyGuard, RollbackAfterItsPatienceReloadsTheCheckpointOnceAndTheRunFinishes) {
  Config c = poisoned_config(40, config::OnAnomaly::kRollback, 10);
  c.args.anomaly_patience = 5;
  auto begins = std::make_shared<TrainBegins>();
  Trainer t(env(), c, registry_with_poison(21, 5), {begins});
  const TrainOutput out = t.train();
  EXPECT_TRUE(out.anomaly.empty()) << out.anomaly;
  EXPECT_EQ(out.global_step, 40);
  EXPECT_EQ(begins->count, 2) << "training starts once and rolls back once";
  for (const auto& p : params_of(t)) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
  // The history went back to checkpoint-20's: each step is logged once, and the rollback's step
  // 30 comes from the data after the anomalous steps.
  std::map<std::int64_t, int> logged;
  for (const auto& e : t.state().log_history)
    if (json::find(e, "loss")) ++logged[json::find(e, "step")->get<std::int64_t>()];
  EXPECT_EQ(logged, (std::map<std::int64_t, int>{{10, 1}, {20, 1}, {30, 1}, {40, 1}}));
  EXPECT_TRUE(std::filesystem::exists(c.args.output_dir + "/checkpoint-40"));
}

TEST(AnomalyGuard, ASpikeIsSkippedAlsoRightAfterAResumeWhichEndsBitwiseEqual) {
  // The last rank's outputs x1000 at step 145 (finite): with anomaly_zscore 6 the loss spikes
  // beyond 6 deviations of the last 128 steps and the step is skipped. Resumed from step 140, the
  // run has the guard's window from the checkpoint, skips the same step and ends bitwise equal.
  Config c = poisoned_config(150, config::OnAnomaly::kSkip, 140);
  c.args.anomaly_zscore = 6;
  c.args.logging_steps = 150;
  Trainer whole(env(), c, registry_with_poison(145, 1, 1000.0f));
  whole.train();
  const Json* skipped = json::find(whole.state().log_history.at(whole.state().log_history.size() - 2), "skipped_steps");
  ASSERT_NE(skipped, nullptr) << "the spike at step 145 was not skipped";
  EXPECT_EQ(skipped->get<std::int64_t>(), 1);

  Config first = c;
  first.args.output_dir = shared_dir("hpct-anomaly-cut");
  first.args.max_steps = 140;
  {
    Trainer t(env(), first, registry_with_poison(1000, 0));
    t.train();
  }
  Config rest = c;
  rest.args.output_dir = first.args.output_dir;
  rest.args.resume_from_checkpoint = "auto";
  Trainer resumed(env(), rest, registry_with_poison(5, 1, 1000.0f));  // its 5th step is step 145
  resumed.train();
  const auto a = params_of(whole), b = params_of(resumed);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
}

TEST(AnomalyGuard, RollbackWithNoCheckpointYetStopsWithTheLastGoodState) {
  Config c = poisoned_config(40, config::OnAnomaly::kRollback, 10);
  c.args.anomaly_patience = 2;
  Trainer t(env(), c, registry_with_poison(3, 2));
  const TrainOutput out = t.train();
  EXPECT_NE(out.anomaly.find("2 anomalous steps in a row (to step 4) and no checkpoint to roll back to"), std::string::npos)
      << out.anomaly;
  EXPECT_EQ(out.global_step, 4);
  EXPECT_TRUE(out.checkpointed);
  EXPECT_TRUE(std::filesystem::exists(c.args.output_dir + "/checkpoint-4"));
}

TEST(AnomalyGuard, OffLetsANanInButNoCheckpointHoldsIt) {
  Config c = poisoned_config(20, config::OnAnomaly::kOff, 10);
  Trainer t(env(), c, registry_with_poison(5, 1));
  try {
    t.train();
    ADD_FAILURE() << "a diverged run saved a checkpoint";
  } catch (const CollectiveError& e) {
    EXPECT_EQ(e.exit_code(), exit_code::kAnomaly);
    EXPECT_NE(std::string(e.what()).find("refusing to checkpoint step 10: parameter "), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(c.args.output_dir + "/checkpoint-10"));
}

TEST(AnomalyGuard, StopCheckpointsTheLastGoodStateWhichResumes) {
  Config clean = anomaly_config(9);
  const auto good = params_after(clean);
  Config c = poisoned_config(40, config::OnAnomaly::kStop, 100);
  c.args.anomaly_patience = 1;
  TrainOutput out;
  {
    Trainer t(env(), c, registry_with_poison(10, 1));
    out = t.train();
  }
  EXPECT_NE(out.anomaly.find("non-finite loss on 1 rank"), std::string::npos) << out.anomaly;
  EXPECT_EQ(out.global_step, 10);
  EXPECT_TRUE(out.checkpointed);
  // The checkpoint of step 10 holds the parameters after step 9, and it loads (verifies).
  Config again = anomaly_config(10);
  again.args.output_dir = c.args.output_dir;
  again.model.name = "poisoned";
  again.args.resume_from_checkpoint = c.args.output_dir + "/checkpoint-10";
  Trainer resumed(env(), again, registry_with_poison(0, 0));
  EXPECT_EQ(resumed.train().global_step, 10);
  const auto loaded = params_of(resumed);
  for (std::size_t i = 0; i < loaded.size(); ++i) EXPECT_TRUE(torch::equal(loaded[i], good[i])) << i;
}


// ---- step profiles ----

TEST(StepProfile, LogLinesSplitTheStepIntoFractionsThatSumToOneAndTracesLoadAsChromeJson) {
  Config c = anomaly_config(8);
  c.args.logging_steps = 4;
  c.args.profile_steps = "3-4";
  c.args.save_strategy = SaveStrategy::kSteps;
  c.args.save_steps = 4;
  Trainer t(env(), c, models::builtin_models());
  t.train();
  int logs = 0;
  for (const auto& e : t.state().log_history) {
    if (!json::find(e, "loss")) continue;
    ++logs;
    double sum = 0;
    for (const char* k : {"phase_data", "phase_forward", "phase_backward", "phase_allreduce", "phase_optimizer",
                          "phase_checkpoint", "phase_other"}) {
      const Json* v = json::find(e, k);
      ASSERT_NE(v, nullptr) << k << " missing in " << json::dump(e);
      EXPECT_GE(json::number(*v), 0.0) << k;
      sum += json::number(*v);
    }
    EXPECT_NEAR(sum, 1.0, 1e-9) << json::dump(e);
    EXPECT_GT(json::number(e.at("phase_forward")), 0.0);
  }
  EXPECT_EQ(logs, 2);
  // Every rank's trace: Chrome trace JSON (complete events) with the phase ranges and libtorch's
  // operators in it, and the ranges only of the recorded steps (2 steps: 2 forward ranges).
  const std::string path = c.args.output_dir + "/profile/trace-rank" + std::to_string(env().rank()) + ".json";
  const Json trace = json::parse(testing::read_file(path), path);
  ASSERT_TRUE(trace.is_array());
  std::map<std::string, int> ranges;
  int ops = 0;
  for (const auto& ev : trace) {
    ASSERT_TRUE(ev.is_object());
    ASSERT_TRUE(json::find(ev, "ts") && json::find(ev, "dur") && json::find(ev, "ph")) << json::dump(ev);
    const std::string name = ev.at("name").get<std::string>();
    if (name.rfind("hpctrain/", 0) == 0) ++ranges[name];
    if (name.rfind("aten::", 0) == 0) ++ops;
  }
  EXPECT_EQ(ranges["hpctrain/forward"], 2);
  EXPECT_EQ(ranges["hpctrain/backward"], 2);
  EXPECT_EQ(ranges["hpctrain/allreduce"], 2);
  EXPECT_EQ(ranges["hpctrain/optimizer"], 2);
  EXPECT_EQ(ranges["hpctrain/data"], 2);
  EXPECT_EQ(ranges["hpctrain/checkpoint"], 1);  // the save at step 4
  EXPECT_GT(ops, 10);
}

// ---- the data-parallel paths: one allreduce, overlapped buckets, ZeRO-1 ----

// 50 steps of 2 micro-batches of a 3-layer MLP of 2.1 MB of gradients: 1 MiB buckets make 3.
Config paths_config(config::OptimizerSharding sharding, const std::string& bucket_mb, config::Optimizer optim) {
  Config c = base_config(6, 2);
  c.model.hidden_sizes = "512,512,512";
  c.args.max_steps = 50;
  c.args.logging_steps = 10;
  c.args.optim = optim;
  if (optim == config::Optimizer::kSgd) c.args.sgd_momentum = 0.9;
  c.args.optimizer_sharding = sharding;
  c.args.ddp_bucket_cap_mb = bucket_mb;
  return c;
}

// The largest difference of a tensor relative to the largest magnitude of its reference.
double max_relative(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& ref) {
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    d = std::max(d, (a[i] - ref[i]).abs().max().item<double>() / std::max(1e-30, ref[i].abs().max().item<double>()));
  return d;
}

bool bitwise_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!torch::equal(a[i], b[i])) return false;
  return true;
}

TEST(DataParallelPaths, ShardedAndBucketedGiveTheReplicatedParametersWithAccumulation) {
  using config::OptimizerSharding;
  // Where the ranks' gradients are added in one order on every path: one rank, two (a sum of two
  // numbers does not depend on the order), or Open MPI told to use its linear algorithms (the
  // ctest entry trainer_mpi_test_same_order_np4 sets HPCT_SAME_SUM_ORDER).
  const bool same_order = env().size() <= 2 || std::getenv("HPCT_SAME_SUM_ORDER") != nullptr;
  for (const auto optim : {config::Optimizer::kAdamW, config::Optimizer::kSgd}) {
    Config start = paths_config(OptimizerSharding::kNone, "0", optim);
    start.args.max_steps = 1;
    start.args.learning_rate = 0;
    const auto initial = params_after(start);
    struct Result {
      std::vector<torch::Tensor> params;
      std::shared_ptr<CountingComm> comm;
      double train_loss = 0;
    };
    auto run_path = [&](OptimizerSharding sharding, const std::string& mb) {
      Result r;
      r.comm = std::make_shared<CountingComm>(dist::make_mpi_communicator(env(), env().comm(), 60));
      Trainer t(env(), paths_config(sharding, mb, optim), models::builtin_models(), {}, r.comm);
      t.train();
      for (auto& p : t.model().parameters()) r.params.push_back(p.detach().clone());
      r.train_loss = json::number(t.state().log_history.back().at("train_loss"));
      return r;
    };
    const Result replicated = run_path(OptimizerSharding::kNone, "0");
    const Result bucketed = run_path(OptimizerSharding::kNone, "1");
    const Result sharded = run_path(OptimizerSharding::kZero1, "auto");
    const std::string what = std::string(to_name(optim)) + " on " + std::to_string(env().size()) + " ranks";
    EXPECT_GT(max_relative(replicated.params, initial), 1e-3) << what << ": the run did not train";
    // The paths really ran: 2 more allreduces a step for the 3 buckets; a reduce-scatter and an
    // all-gather a step for ZeRO.
    EXPECT_EQ(bucketed.comm->calls - replicated.comm->calls, 50 * 2) << what;
    EXPECT_EQ(sharded.comm->reduce_scatters, 50) << what;
    EXPECT_EQ(sharded.comm->allgathers, 50) << what;
    if (same_order) {
      // Nothing but the order of the additions differs between the paths: the optimizer's
      // arithmetic is elementwise, and both clip by a norm taken block by block in rank order.
      EXPECT_TRUE(bitwise_equal(bucketed.params, replicated.params)) << what;
      EXPECT_TRUE(bitwise_equal(sharded.params, replicated.params)) << what;
      continue;
    }
    // Open MPI's default allreduce (ring) and reduce-scatter (recursive halving) add 4 ranks'
    // values in different orders. SGD carries such a last-bit difference along linearly; Adam's
    // update is close to the gradient's sign where the gradient is near zero, and a last-bit
    // difference there can flip a step of size learning_rate: the parameters part, the model does
    // not (its loss agrees to 1e-4).
    EXPECT_LT(max_relative(bucketed.params, replicated.params), 1e-6) << what;
    const double sharded_diff = max_relative(sharded.params, replicated.params);
    std::cout << what << ": zero1 vs replicated, largest relative parameter difference " << sharded_diff << "\n";
    if (optim == config::Optimizer::kSgd) EXPECT_LT(sharded_diff, 1e-6) << what;
    EXPECT_NEAR(sharded.train_loss, replicated.train_loss, 1e-4 * replicated.train_loss) << what;
  }
}

TEST(DataParallelPaths, EachPathIsBitwiseReproducible) {
  using config::OptimizerSharding;
  for (const auto& [sharding, mb] : {std::make_pair(OptimizerSharding::kZero1, "auto"), std::make_pair(OptimizerSharding::kNone, "1")}) {
    Config c = paths_config(sharding, mb, config::Optimizer::kAdamW);
    c.args.max_steps = 20;
    c.model.dropout = 0.1;
    const auto a = params_after(c), b = params_after(c);
    for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << mb << " " << i;
  }
}

TEST(DataParallelPaths, ZeroOneKeepsOneNthOfTheOptimizerStatePerRank) {
  auto state_mb = [](config::OptimizerSharding sharding) {
    Config c = paths_config(sharding, "auto", config::Optimizer::kAdamW);
    c.args.max_steps = 10;
    Trainer t(env(), c, models::builtin_models());
    t.train();
    double mb = -1;
    for (const auto& e : t.state().log_history)
      if (const Json* v = json::find(e, "optimizer_state_mb")) mb = json::number(*v);
    return mb;
  };
  const double whole = state_mb(config::OptimizerSharding::kNone), mine = state_mb(config::OptimizerSharding::kZero1);
  ASSERT_GT(whole, 4.0);  // Adam: two float32 values per parameter
  EXPECT_LE(mine, whole / env().size() * 1.05) << whole << " MB on every rank replicated";
  EXPECT_GE(mine, whole / env().size() * 0.95) << whole << " MB on every rank replicated";
}

TEST(DataParallelPaths, ZeroOneResumesBitwiseFromItsOwnCheckpoint) {
  Config c = paths_config(config::OptimizerSharding::kZero1, "auto", config::Optimizer::kAdamW);
  c.args.max_steps = 30;
  c.args.save_strategy = SaveStrategy::kSteps;
  c.args.save_steps = 20;
  c.args.output_dir = shared_dir("hpct-zero1");
  const auto whole = params_after(c);
  // The same run from its checkpoint at step 20, in a new output_dir holding only that one.
  Config rest = c;
  rest.args.output_dir = shared_dir("hpct-zero1-resumed");
  rest.args.resume_from_checkpoint = c.args.output_dir + "/checkpoint-20";
  const auto resumed = params_after(rest);
  for (std::size_t i = 0; i < whole.size(); ++i) EXPECT_TRUE(torch::equal(whole[i], resumed[i])) << i;
}

// A model whose middle layer is applied twice; with `tie`, its weight is also registered under a
// second name in a last submodule (as a tied output head is), so parameters() lists it twice.
class Twice : public models::Model {
 public:
  Twice(std::int64_t in, std::int64_t classes, bool tie) {
    a_ = register_module("a", torch::nn::Linear(in, 512));
    mid_ = register_module("mid", torch::nn::Linear(512, 512));
    b_ = register_module("b", torch::nn::Linear(512, classes));
    if (tie) {
      auto head = std::make_shared<torch::nn::Module>();
      head->register_parameter("weight", mid_->weight);
      register_module("head", head);
    }
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    torch::Tensor h = torch::relu(a_->forward(x.flatten(1)));
    h = torch::relu(mid_->forward(torch::relu(mid_->forward(h))));
    return b_->forward(h);
  }
  models::Task task() const override { return models::Task::kClassification; }
  std::string describe() const override { return "twice"; }

 private:
  torch::nn::Linear a_{nullptr}, mid_{nullptr}, b_{nullptr};
};

TEST(DataParallelPaths, ATensorListedTwiceIsReducedAndSteppedOnceOnEveryPath) {
  models::Registry r = models::builtin_models();
  for (bool tie : {false, true})
    r.add(tie ? "tied" : "untied",
          [tie](const models::ModelArguments&, const models::DataSpec& d) {
            return std::make_shared<Twice>(d.input_shape.at(0), d.num_classes, tie);
          },
          "a test model");
  auto run_model = [&](const std::string& name, config::OptimizerSharding sharding, const std::string& mb) {
    Config c = paths_config(sharding, mb, config::Optimizer::kAdamW);
    c.model.name = name;
    c.args.max_steps = 10;
    Trainer t(env(), c, r);
    t.train();
    std::vector<torch::Tensor> out;
    for (auto& p : t.model().named_parameters())
      if (p.key() != "head.weight") out.push_back(p.value().detach().clone());
    return out;
  };
  for (const auto& [sharding, mb] : {std::make_pair(config::OptimizerSharding::kNone, "0"),
                                     std::make_pair(config::OptimizerSharding::kNone, "1"),
                                     std::make_pair(config::OptimizerSharding::kZero1, "auto")}) {
    // Tying adds a name, not a tensor: the run is the untied one's, bit for bit (each path against
    // itself, so the ranks' values are added in the same order). Stepped twice, or its gradient
    // reduced while autograd still adds to it, it would differ.
    const std::string what = std::string(to_name(sharding)) + ", buckets " + mb;
    EXPECT_TRUE(bitwise_equal(run_model("tied", sharding, mb), run_model("untied", sharding, mb))) << what;
  }
}

}  // namespace
}  // namespace hpctrain::train
