// Tests of validate() and finalize(): the seed's rules and every other contradiction, each
// message naming the key, the value and what was expected.
#include <gtest/gtest.h>

#include "hpctrain/core/error.h"
#include "hpctrain/config/config.h"
#include "config/valid_config.h"

namespace hpctrain::config {
namespace {

Config valid() { return testing::valid_config(); }

std::string error_of(const Config& c) {
  try {
    validate(c);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_PROBLEM(config, text)                                       \
  do {                                                                     \
    const std::string e_ = error_of(config);                               \
    EXPECT_NE(e_.find(text), std::string::npos) << "message: " << e_;      \
  } while (0)

TEST(Validate, AValidConfigPasses) { EXPECT_NO_THROW(validate(valid())); }

TEST(Validate, ReportToNamesKnownSinks) {
  Config c = valid();
  for (const char* ok : {"jsonl", "tensorboard", "jsonl, tensorboard", "all", "none"}) {
    c.args.report_to = ok;
    EXPECT_EQ(error_of(c), "") << ok;
  }
  c.args.report_to = "jsonl,wandb";
  EXPECT_PROBLEM(c, "report_to=jsonl,wandb: expected a comma-separated list of jsonl, tensorboard, all or none ('wandb'");
  c.args.report_to = "none,jsonl";
  EXPECT_PROBLEM(c, "report_to=none,jsonl: none reports nowhere: it goes alone");
  c.args.report_to = "tensorboard , jsonl";
  EXPECT_TRUE(reports_to(c.args, "tensorboard") && reports_to(c.args, "jsonl"));
  c.args.report_to = "all";
  EXPECT_TRUE(reports_to(c.args, "tensorboard"));
  c.args.report_to = "none";
  EXPECT_FALSE(reports_to(c.args, "jsonl") || reports_to(c.args, "tensorboard"));
}

TEST(Validate, AnomalySettingsAreBounded) {
  Config c = valid();
  c.args.anomaly_patience = 0;
  EXPECT_PROBLEM(c, "anomaly_patience=0: expected an integer in [1, 1000000]");
  c.args.anomaly_patience = 5;
  c.args.anomaly_zscore = 2;
  EXPECT_PROBLEM(c, "anomaly_zscore=2: expected 0 (off) or a number in [3, 1000000]: below 3 deviations");
  c.args.anomaly_zscore = 6;
  EXPECT_EQ(error_of(c), "");
  c.args.on_anomaly = OnAnomaly::kOff;
  EXPECT_PROBLEM(c, "anomaly_zscore=6: needs on_anomaly skip, rollback or stop (it is off)");
  c.args.anomaly_zscore = 0;
  c.args.on_anomaly = OnAnomaly::kRollback;
  c.args.save_strategy = SaveStrategy::kNo;
  EXPECT_PROBLEM(c, "on_anomaly=rollback: rollback goes back to the last checkpoint: it needs save_strategy other than no");
}

TEST(Validate, ProfileStepsIsAShortWindow) {
  Config c = valid();
  for (const char* ok : {"", "10-12", " 1-1 ", "5-104"}) {
    c.args.profile_steps = ok;
    EXPECT_EQ(error_of(c), "") << ok;
  }
  c.args.profile_steps = "5-105";
  EXPECT_PROBLEM(c, "profile_steps=5-105: expected at most 100 steps");
  for (const char* bad : {"12", "12-10", "0-3", "a-b", "-3", "3-", "1-2-3"}) {
    c.args.profile_steps = bad;
    SCOPED_TRACE(bad);
    EXPECT_PROBLEM(c, "expected A-B, the first and last step to trace");
  }
  c.args.profile_steps = "10-12";
  ASSERT_TRUE(profile_window(c.args));
  EXPECT_EQ(*profile_window(c.args), std::make_pair(std::int64_t{10}, std::int64_t{12}));
}

TEST(Validate, MustProvideAModel) {
  Config c = valid();
  c.model.name.clear();
  EXPECT_PROBLEM(c, "Must provide a model");
  c.command = "env";  // env needs no model
  EXPECT_EQ(error_of(c), "");
}

TEST(Validate, EvalStrategyNeedsAnEvalDataset) {
  Config c = valid();
  c.args.eval_strategy = EvalStrategy::kSteps;
  EXPECT_PROBLEM(c, "eval_strategy=steps: evaluation needs an eval dataset");
  c.data.eval = "/data/eval";
  EXPECT_EQ(error_of(c), "");
}

TEST(Validate, SaveStrategyBestNeedsAMetric) {
  Config c = valid();
  c.data.eval = "/data/eval";
  c.args.eval_strategy = EvalStrategy::kSteps;
  c.args.save_strategy = SaveStrategy::kBest;
  EXPECT_PROBLEM(c, "save_strategy=best: needs metric_for_best_model");
  c.args.metric_for_best_model = "accuracy";
  EXPECT_EQ(error_of(c), "");
}

TEST(Validate, CommandsNeedTheirData) {
  Config c = valid();
  c.data.train.clear();
  EXPECT_PROBLEM(c, "train needs a training dataset");
  c.command = "evaluate";
  EXPECT_PROBLEM(c, "evaluate needs an eval dataset");
  c.command = "predict";
  EXPECT_PROBLEM(c, "predict needs a test dataset");
}

TEST(Validate, SizesMustBePositive) {
  Config c = valid();
  c.args.per_device_train_batch_size = 0;
  EXPECT_PROBLEM(c, "per_device_train_batch_size=0: expected an integer in [1, 1048576]");
  c = valid();
  c.args.per_device_eval_batch_size = -4;
  EXPECT_PROBLEM(c, "per_device_eval_batch_size=-4: expected an integer in [1, 1048576]");
  c = valid();
  c.args.gradient_accumulation_steps = 0;
  EXPECT_PROBLEM(c, "gradient_accumulation_steps=0: expected an integer in [1, 65536]");
  c = valid();
  c.args.max_steps = 0;
  EXPECT_PROBLEM(c, "max_steps=0: expected a positive number of steps, or -1");
  c = valid();
  c.args.num_train_epochs = 0;
  EXPECT_PROBLEM(c, "num_train_epochs=0: expected > 0");
  c.args.max_steps = 10;  // max_steps overrides epochs
  EXPECT_EQ(error_of(c), "");
  c = valid();
  c.args.logging_steps = 0;
  EXPECT_PROBLEM(c, "logging_steps=0: expected an integer >= 1");
  c = valid();
  c.args.save_steps = -3;
  EXPECT_PROBLEM(c, "save_steps=-3: expected auto or an integer >= 1");
  c = valid();
  c.args.mtbf_hours = 0;
  EXPECT_PROBLEM(c, "mtbf_hours=0: expected hours in [0.01, 87600]");
  c.args.mtbf_hours = 1e9;
  EXPECT_PROBLEM(c, "mtbf_hours=1e+09: expected hours in [0.01, 87600]");
  c = valid();
  c.args.save_total_limit = -1;
  EXPECT_PROBLEM(c, "save_total_limit=-1");
  c = valid();
  c.args.seed = -3;
  EXPECT_PROBLEM(c, "seed=-3: expected an integer >= 0");
}

TEST(Validate, OptimizerRanges) {
  Config c = valid();
  c.args.learning_rate = -0.1;
  EXPECT_PROBLEM(c, "learning_rate=-0.1: expected a number >= 0");
  c = valid();
  c.args.adam_beta1 = 1.0;
  EXPECT_PROBLEM(c, "adam_beta1=1: expected a number in [0, 1)");
  c = valid();
  c.args.adam_epsilon = 0;
  EXPECT_PROBLEM(c, "adam_epsilon=0: expected a number > 0");
  c = valid();
  c.args.weight_decay = -1;
  EXPECT_PROBLEM(c, "weight_decay=-1");
  c = valid();
  c.args.max_grad_norm = -1;
  EXPECT_PROBLEM(c, "max_grad_norm=-1");
  c = valid();
  c.args.sgd_momentum = 0.9;
  EXPECT_PROBLEM(c, "sgd_momentum=0.9: only used with optim=sgd");
  c.args.optim = Optimizer::kSgd;
  EXPECT_EQ(error_of(c), "");
}

TEST(Validate, WarmupContradictions) {
  Config c = valid();
  c.args.warmup_steps = 10;
  c.args.warmup_ratio = 0.1;
  EXPECT_PROBLEM(c, "set either warmup_steps (10) or warmup_ratio, not both");
  c = valid();
  c.args.warmup_ratio = 1.5;
  EXPECT_PROBLEM(c, "warmup_ratio=1.5: expected a number in [0, 1)");
  c = valid();
  c.args.lr_scheduler_type = SchedulerType::kConstant;
  c.args.warmup_steps = 100;
  EXPECT_PROBLEM(c, "lr_scheduler_type=constant: has no warmup");
}

TEST(Validate, LoadBestModelAtEndNeedsMatchingStrategies) {
  Config c = valid();
  c.data.eval = "/data/eval";
  c.args.load_best_model_at_end = true;
  EXPECT_PROBLEM(c, "load_best_model_at_end=true: needs evaluation");
  c.args.eval_strategy = EvalStrategy::kEpoch;
  c.args.save_strategy = SaveStrategy::kSteps;
  EXPECT_PROBLEM(c, "needs save_strategy to match eval_strategy (or be best), got save_strategy=steps and eval_strategy=epoch");
  c.args.eval_strategy = EvalStrategy::kSteps;
  c.args.eval_steps = 300;
  c.args.save_steps = 500;
  EXPECT_PROBLEM(c, "save_steps=500: load_best_model_at_end needs save_steps to be a multiple of eval_steps (300)");
  c.args.save_steps = 600;
  EXPECT_EQ(error_of(c), "");
  c.args.save_steps = 0;  // auto saves at steps of its own choosing, not at evaluations
  EXPECT_PROBLEM(c, "save_steps=auto: load_best_model_at_end needs saves at evaluation steps");
}

TEST(Validate, EarlyStoppingNeedsEvaluationAndAMetric) {
  Config c = valid();
  c.args.early_stopping_patience = 3;
  EXPECT_PROBLEM(c, "early_stopping_patience=3: needs evaluation");
  EXPECT_PROBLEM(c, "early_stopping_patience=3: needs metric_for_best_model");
}

TEST(Validate, MetricWithoutEvaluation) {
  Config c = valid();
  c.args.metric_for_best_model = "accuracy";
  EXPECT_PROBLEM(c, "metric_for_best_model=accuracy: is measured by evaluation");
}

TEST(Validate, ResumeFromAMissingCheckpoint) {
  Config c = valid();
  c.args.resume_from_checkpoint = "/no/such/checkpoint-100";
  EXPECT_PROBLEM(c, "resume_from_checkpoint=/no/such/checkpoint-100: no such checkpoint directory");
  c.args.resume_from_checkpoint = "auto";
  EXPECT_EQ(error_of(c), "");
}

TEST(Validate, DistributionSettings) {
  Config c = valid();
  c.args.ddp_timeout = 0;
  EXPECT_PROBLEM(c, "ddp_timeout=0: expected seconds in [1, 604800]");
  c = valid();
  c.args.torch_threads = -1;
  EXPECT_PROBLEM(c, "torch_threads=-1");
  for (const char* bad : {"0.5", "-1", "25MB", "1e9", "nan"}) {
    c = valid();
    c.args.ddp_bucket_cap_mb = bad;
    EXPECT_PROBLEM(c, std::string("ddp_bucket_cap_mb=") + bad + ": expected auto, 0 (one allreduce after the backward pass) or MiB in [1, 65536]");
  }
  for (const char* good : {"auto", "0", "1", "25", "65536"}) {
    c = valid();
    c.args.ddp_bucket_cap_mb = good;
    EXPECT_EQ(error_of(c), "") << good;
  }
  c = valid();
  c.args.optimizer_sharding = OptimizerSharding::kZero1;
  EXPECT_EQ(error_of(c), "");
  c.args.ddp_bucket_cap_mb = "25";
  EXPECT_PROBLEM(c, "ddp_bucket_cap_mb=25: optimizer_sharding=zero1 reduce-scatters the gradients in one collective");
}

TEST(Validate, ReportsEveryProblemAtOnce) {
  Config c = valid();
  c.model.name.clear();
  c.args.learning_rate = -1;
  c.args.logging_steps = 0;
  const std::string e = error_of(c);
  EXPECT_NE(e.find("(3 problems)"), std::string::npos) << e;
  EXPECT_NE(e.find("Must provide a model"), std::string::npos) << e;
  EXPECT_NE(e.find("learning_rate=-1"), std::string::npos) << e;
  EXPECT_NE(e.find("logging_steps=0"), std::string::npos) << e;
}

TEST(Finalize, FillsWhatOtherValuesImply) {
  Config c = valid();
  c.args.output_dir = "/scratch/runs/lr-sweep-3/";
  c.args.logging_steps = 25;
  c.args.load_best_model_at_end = true;
  finalize(c);
  EXPECT_EQ(c.args.eval_steps, 25);
  EXPECT_EQ(c.args.metric_for_best_model, "loss");
  EXPECT_STREQ(to_name(c.args.greater_is_better), "false");
  EXPECT_EQ(c.args.run_name, "lr-sweep-3");
  EXPECT_EQ(c.args.data_seed, 42);

  Config d = valid();
  d.args.metric_for_best_model = "eval_accuracy";
  finalize(d);
  EXPECT_STREQ(to_name(d.args.greater_is_better), "true");
}

}  // namespace
}  // namespace hpctrain::config
