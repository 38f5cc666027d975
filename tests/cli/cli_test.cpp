// End-to-end tests of the hpctrain executable: `env` under mpiexec, configuration errors from the
// real binary (message, exit code, no hang), --help and --print_config.
#include <gtest/gtest.h>

#include "common/subprocess.h"
#include "hpctrain/core/error.h"

namespace hpctrain {
namespace {

using testing::mpiexec;
using testing::run;

std::size_t count(const std::string& hay, const std::string& needle) {
  std::size_t n = 0;
  for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

std::string ini(const std::string& text) {
  const std::string path = testing::temp_dir("hpct-cli") + "/job.ini";
  testing::write_file(path, text);
  return path;
}

TEST(Cli, EnvPrintsEveryRankInRankOrder) {
  auto r = run(mpiexec(2, {HPCTRAIN_BINARY, "env"}), 60);
  ASSERT_EQ(r.exit_code, 0) << r.all();
  auto p0 = r.out.find("rank 0/2  local rank 0/2");
  auto p1 = r.out.find("rank 1/2  local rank 1/2");
  ASSERT_NE(p0, std::string::npos) << r.out;
  ASSERT_NE(p1, std::string::npos) << r.out;
  EXPECT_LT(p0, p1);
  EXPECT_EQ(count(r.out, "  device: "), 2u) << r.out;
  EXPECT_EQ(count(r.out, "backends: compiled [mpi"), 2u) << r.out;
  EXPECT_EQ(count(r.out, "torch: "), 2u) << r.out;
  EXPECT_EQ(count(r.out, "intra-op threads "), 2u) << r.out;
}

TEST(Cli, EnvReportsSlurmFacts) {
  // What SLURM would export for an array task; ranks and local ranks still come from MPI.
  std::vector<std::string> cmd = {"env", "SLURM_JOB_ID=77", "SLURM_ARRAY_JOB_ID=70", "SLURM_ARRAY_TASK_ID=7",
                                  "SLURM_RESTART_COUNT=1", "SLURM_PROCID=0", HPCTRAIN_BINARY, "env"};
  auto r = run(cmd, 60);
  ASSERT_EQ(r.exit_code, 0) << r.all();
  EXPECT_NE(r.out.find("slurm: job 77"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("array task 70_7"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("restart count 1"), std::string::npos) << r.out;
}

struct BadConfig {
  std::string ini_text;
  std::vector<std::string> extra;
  std::string expected;
};

TEST(Cli, EachSeedRuleStopsAllRanksWithItsMessage) {
  const std::string data = "[data]\ntrain = /data/train\n";
  const std::vector<BadConfig> cases = {
      {"max_steps = 10\n" + data, {}, "Must provide a model"},
      {"eval_strategy = steps\n[model]\nname = mlp\n" + data, {}, "eval_strategy=steps: evaluation needs an eval dataset"},
      {"save_strategy = best\neval_strategy = epoch\n[model]\nname = mlp\n[data]\ntrain = /d\neval = /e\n", {},
       "save_strategy=best: needs metric_for_best_model"},
      {"[model]\nname = mlp\n" + data, {"--per_device_train_batch_size", "0"},
       "per_device_train_batch_size=0: expected an integer in [1, 1048576]"},
      {"[model]\nname = mlp\n" + data, {"--output_dir", "/dev/null"}, "output_dir=/dev/null: exists and is not a directory"},
      {"[model]\nname = mlp\n" + data, {"--gradient_accumulation_steps", "2000000000"},
       "gradient_accumulation_steps=2000000000: expected an integer in [1, 65536]"},
      {"learning_rat = 1\n", {}, "unknown key 'learning_rat'"},
      {"[model]\nname = mlp\n" + data, {"--eval_strategy", "always"}, "expected one of: no, steps, epoch"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv = {HPCTRAIN_BINARY, "train", "--config", ini(c.ini_text)};
    argv.insert(argv.end(), c.extra.begin(), c.extra.end());
    auto r = run(mpiexec(2, argv), 60);
    EXPECT_FALSE(r.timed_out) << c.expected;
    EXPECT_EQ(r.exit_code, exit_code::kConfig) << c.expected << "\n" << r.all();
    EXPECT_LT(r.seconds, testing::scaled(20.0)) << c.expected;
    EXPECT_NE(r.err.find(c.expected), std::string::npos) << r.all();
    EXPECT_EQ(count(r.err, "hpctrain: error:"), 1u) << "reported once, not per rank:\n" << r.all();
  }
}

TEST(Cli, HelpIsPrintedOnceAndExitsZero) {
  auto r = run(mpiexec(2, {HPCTRAIN_BINARY, "--help"}), 60);
  EXPECT_EQ(r.exit_code, 0) << r.all();
  EXPECT_EQ(count(r.out, "Usage: hpctrain <command>"), 1u) << r.out;
  EXPECT_NE(r.out.find("--metric_for_best_model"), std::string::npos);
}

TEST(Cli, PrintConfigCanBeFedBack) {
  auto first = run({HPCTRAIN_BINARY, "train", "--print_config", "--model.name", "mlp", "--learning_rate", "3e-4",
                    "--eval_strategy", "epoch"},
                   60);
  ASSERT_EQ(first.exit_code, 0) << first.all();
  auto second = run({HPCTRAIN_BINARY, "train", "--config", ini(first.out), "--print_config"}, 60);
  ASSERT_EQ(second.exit_code, 0) << second.all();
  EXPECT_EQ(first.out, second.out);
  EXPECT_NE(first.out.find("learning_rate = 0.0003"), std::string::npos) << first.out;
}

TEST(Cli, VersionAndMissingCommand) {
  auto v = run({HPCTRAIN_BINARY, "--version"}, 60);
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_EQ(v.out.rfind("hpctrain ", 0), 0u) << v.out;
  auto m = run({HPCTRAIN_BINARY}, 60);
  EXPECT_EQ(m.exit_code, exit_code::kConfig);
  EXPECT_NE(m.err.find("missing command"), std::string::npos) << m.err;
}

}  // namespace
}  // namespace hpctrain
