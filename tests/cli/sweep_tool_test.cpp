// End-to-end tests of sweeps outside SLURM: hpctrain trains points of a sweep space, and
// hpctrain-sweep plans a space (checking every point) and reports a sweep directory with
// finished, failed and pending points, ranked by the sweep's metric.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "common/subprocess.h"

namespace hpctrain {
namespace {

using testing::run;
namespace fs = std::filesystem;

testing::RunResult sweep_tool(std::vector<std::string> args) {
  args.insert(args.begin(), HPCTRAIN_SWEEP_BINARY);
  return run(args, 120);
}

std::vector<std::vector<std::string>> csv_rows(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(testing::read_file(path));
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::string cell;
    bool quoted = false;
    for (char c : line) {
      if (c == '"') quoted = !quoted;
      else if (c == ',' && !quoted) {
        cells.push_back(cell);
        cell.clear();
      } else cell += c;
    }
    cells.push_back(cell);
    rows.push_back(cells);
  }
  return rows;
}

TEST(SweepTool, PlanListsCheckedPointsAndTheArrayLine) {
  auto r = sweep_tool({"plan", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/sweeps/mlp-digits.ini"});
  ASSERT_EQ(r.exit_code, 0) << r.all();
  EXPECT_NE(r.out.find("sweep mlp-digits: 6 points (2 grid x 3 random draws)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("point  model.hidden_sizes  learning_rate"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("metric: eval_accuracy"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sbatch --array=0-5%3 slurm/sweep.sbatch"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("hpctrain-sweep report runs/mlp-digits"), std::string::npos) << r.out;
  auto k = sweep_tool({"plan", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/sweeps/mlp-digits.ini", "--parallel", "2"});
  EXPECT_NE(k.out.find("--array=0-5%2"), std::string::npos) << k.out;
}

TEST(SweepTool, PlanRejectsASpaceWithAnInvalidPoint) {
  const std::string dir = testing::temp_dir("hpct-plan");
  testing::write_file(dir + "/base.ini", "warmup_ratio = 0.1\neval_strategy = steps\n[model]\nname = mlp\n[data]\ntrain = t\neval = e\n");
  testing::write_file(dir + "/space.ini", "[sweep]\nconfig = base.ini\nmetric = loss\n[grid]\nwarmup_steps = 0 10\n");
  auto r = sweep_tool({"plan", dir + "/space.ini"});
  EXPECT_EQ(r.exit_code, 2) << r.all();
  EXPECT_NE(r.err.find("point 1:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("warmup"), std::string::npos) << r.err;

  auto bad = sweep_tool({"plan", dir + "/space.ini", "--parallel", "0"});
  EXPECT_EQ(bad.exit_code, 2) << bad.all();
  auto unknown = sweep_tool({"plan", dir + "/space.ini", "--colour", "red"});
  EXPECT_EQ(unknown.exit_code, 2) << unknown.all();
  EXPECT_NE(unknown.err.find("unexpected argument '--colour'"), std::string::npos) << unknown.err;
  auto missing = sweep_tool({"plan", dir + "/nope.ini"});
  EXPECT_EQ(missing.exit_code, 2) << missing.all();
  EXPECT_NE(missing.err.find("nope.ini' cannot be opened"), std::string::npos) << missing.err;
}

TEST(SweepTool, ReportRanksFinishedFailedAndPendingPoints) {
  const std::string dir = testing::temp_dir("hpct-sweep-e2e");
  ASSERT_EQ(run({HPCTRAIN_DATA_BINARY, "synth", "--out", dir + "/data", "--samples", "1200", "--shape", "8", "--classes", "3",
                 "--eval_fraction", "0.25"}, 120).exit_code, 0);
  testing::write_file(dir + "/base.ini",
                      "output_dir = " + dir + "/runs\nmax_steps = 60\nper_device_train_batch_size = 16\nlogging_steps = 20\n"
                      "eval_strategy = steps\neval_steps = 20\nsave_strategy = no\nseed = 3\n"
                      "[model]\nname = mlp\nhidden_sizes = 16\n[data]\ntrain = " + dir + "/data/train\neval = " + dir +
                      "/data/eval\n");
  testing::write_file(dir + "/space.ini", "[sweep]\nname = lr\nconfig = base.ini\nmetric = eval_loss\n"
                                          "[grid]\nlearning_rate = 0.0001 0.03 0.01 0.003\n");
  auto point = [&](int i, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {HPCTRAIN_BINARY, "train", "--sweep", dir + "/space.ini", "--sweep_index", std::to_string(i)};
    args.insert(args.end(), extra.begin(), extra.end());
    return run(testing::mpiexec(2, args), 180);
  };
  for (int i : {0, 1, 2}) {
    auto r = point(i);
    ASSERT_EQ(r.exit_code, 0) << r.all();
  }
  auto failed = point(3, {"--data.eval", dir + "/no-such-data"});  // fails on its data
  EXPECT_EQ(failed.exit_code, 2) << failed.all();

  const std::string root = dir + "/runs/lr";
  EXPECT_TRUE(fs::exists(root + "/sweep.ini"));
  const std::string state = testing::read_file(root + "/point-001/trainer_state.json");
  EXPECT_NE(state.find("\"trial_name\": \"lr-001\""), std::string::npos) << state;
  EXPECT_NE(state.find("\"learning_rate\": 0.03"), std::string::npos) << state;
  // Its TensorBoard events carry the point's parameters for the HParams dashboard, with its scalars.
  auto tb = run({"/usr/bin/python3", std::string(HPCTRAIN_SOURCE_DIR) + "/tests/common/read_tfevents.py", root + "/point-001",
                 "--hparams"}, 120);
  EXPECT_EQ(tb.exit_code, 0) << tb.all();
  EXPECT_NE(tb.out.find("hparams {\"learning_rate\": 0.03}"), std::string::npos) << tb.all();

  // A fifth point aimed at the same directory with another space is refused.
  testing::write_file(dir + "/other.ini", "[sweep]\nname = lr\nconfig = base.ini\nmetric = eval_loss\n"
                                          "[grid]\nlearning_rate = 0.5 0.6\n");
  auto clash = run(testing::mpiexec(2, {HPCTRAIN_BINARY, "train", "--sweep", dir + "/other.ini", "--sweep_index", "0"}), 120);
  EXPECT_EQ(clash.exit_code, 2) << clash.all();
  EXPECT_NE(clash.all().find("holds another sweep"), std::string::npos) << clash.all();

  auto r = sweep_tool({"report", root});
  ASSERT_EQ(r.exit_code, 0) << r.all();
  EXPECT_NE(r.out.find("4 points, ranked by eval_loss (lower is better): 1 failed; 3 finished."), std::string::npos) << r.out;
  const auto rows = csv_rows(root + "/report.csv");
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0][0], "rank");
  EXPECT_EQ(rows[0][3], "eval_loss");
  EXPECT_EQ(rows[0][7], "learning_rate");
  double previous = -1;
  for (int i = 1; i <= 3; ++i) {
    EXPECT_EQ(rows[static_cast<std::size_t>(i)][0], std::to_string(i));
    EXPECT_EQ(rows[static_cast<std::size_t>(i)][2], "finished");
    const double loss = std::stod(rows[static_cast<std::size_t>(i)][3]);
    EXPECT_GE(loss, previous);  // lower is better: ascending
    previous = loss;
    EXPECT_EQ(rows[static_cast<std::size_t>(i)][5], "60");  // steps done
  }
  EXPECT_EQ(rows[4][1], "3");
  EXPECT_EQ(rows[4][2], "failed");
  EXPECT_NE(rows[4].back().find("no-such-data"), std::string::npos) << rows[4].back();
  // The best point is not the smallest learning rate (0.0001 learns little in 60 steps).
  EXPECT_NE(rows[1][7], "0.0001");
  EXPECT_TRUE(fs::exists(root + "/report.md"));
  EXPECT_GT(fs::file_size(root + "/report.png"), 1000u);

  auto not_a_sweep = sweep_tool({"report", dir});
  EXPECT_EQ(not_a_sweep.exit_code, 2) << not_a_sweep.all();
  EXPECT_NE(not_a_sweep.err.find("is not a sweep directory"), std::string::npos) << not_a_sweep.err;
}

}  // namespace
}  // namespace hpctrain
