// Tests of sweep spaces: grid order, deterministic random draws in their ranges, the point's
// configuration (output_dir, run_name, metric), the sweep directory claim, and every error.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "common/subprocess.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/files.h"
#include "hpctrain/config/config.h"
#include "hpctrain/config/sweep.h"
#include "hpctrain/slurm/run_lock.h"

namespace hpctrain::config {
namespace {
namespace fs = std::filesystem;

std::string space_file(const std::string& text, const std::string& name = "space.ini") {
  const std::string path = testing::temp_dir("hpct-sweep") + "/" + name;
  testing::write_file(path, text);
  return path;
}

std::string read_error(const std::string& text) {
  try {
    SweepSpace::read(space_file(text));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

ParseResult parse(std::vector<std::string> args) {
  args.insert(args.begin(), "hpctrain");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

std::map<std::string, std::string> as_map(const SweepParams& p) { return {p.begin(), p.end()}; }

TEST(Sweep, GridIsTheProductWithTheLastKeyFastest) {
  auto s = SweepSpace::read(space_file("[grid]\nmodel.hidden_sizes = 64,64 128,128 \"256,256\"\nlearning_rate = 0.1, 0.01\n"));
  ASSERT_EQ(s.size(), 6);
  EXPECT_EQ(s.name, "space");
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"64,64", "0.1"}, {"64,64", "0.01"}, {"128,128", "0.1"}, {"128,128", "0.01"}, {"256,256", "0.1"}, {"256,256", "0.01"}};
  for (std::int64_t i = 0; i < 6; ++i) {
    auto p = s.point(i);
    ASSERT_EQ(p.size(), 2u);
    EXPECT_EQ(p[0].first, "model.hidden_sizes");
    EXPECT_EQ(p[0].second, expected[static_cast<std::size_t>(i)].first) << i;
    EXPECT_EQ(p[1].second, expected[static_cast<std::size_t>(i)].second) << i;
  }
}

TEST(Sweep, RandomDrawsAreDeterministicInRangeAndDependOnTheSeed) {
  const std::string body =
      "count = 200\n[random]\nlearning_rate = loguniform 1e-4 1e-2\nweight_decay = uniform 0 0.1\n"
      "warmup_steps = randint 2 5\nmodel.activation = choice relu gelu tanh\n";
  auto a = SweepSpace::read(space_file("[sweep]\nseed = 3\n" + body));
  auto b = SweepSpace::read(space_file("[sweep]\nseed = 3\n" + body));
  auto c = SweepSpace::read(space_file("[sweep]\nseed = 4\n" + body));
  ASSERT_EQ(a.size(), 200);
  std::set<std::string> ints, acts;
  double lr_lo = 1, lr_hi = 0, below_1e3 = 0;
  int differ = 0;
  for (std::int64_t i = 0; i < a.size(); ++i) {
    auto p = as_map(a.point(i));
    EXPECT_EQ(p, as_map(b.point(i)));  // same space, same point
    if (p != as_map(c.point(i))) ++differ;
    const double lr = std::stod(p["learning_rate"]);
    lr_lo = std::min(lr_lo, lr);
    lr_hi = std::max(lr_hi, lr);
    if (lr < 1e-3) ++below_1e3;
    const double wd = std::stod(p["weight_decay"]);
    EXPECT_GE(wd, 0);
    EXPECT_LT(wd, 0.1);
    ints.insert(p["warmup_steps"]);
    acts.insert(p["model.activation"]);
  }
  EXPECT_GT(differ, 190);
  EXPECT_GE(lr_lo, 1e-4);
  EXPECT_LT(lr_hi, 1e-2);
  // log-uniform: about half of the draws below the geometric middle 1e-3
  EXPECT_GT(below_1e3, 70);
  EXPECT_LT(below_1e3, 130);
  EXPECT_EQ(ints, (std::set<std::string>{"2", "3", "4", "5"}));
  EXPECT_EQ(acts, (std::set<std::string>{"relu", "gelu", "tanh"}));
}

TEST(Sweep, IntegerRangesAndBigSeedsKeepTheirExactValues) {
  auto s = SweepSpace::read(space_file("[sweep]\nseed = 18446744073709551615\ncount = 50\n[random]\n"
                                       "warmup_steps = randint 0 100\nmax_steps = randint 1000 1000\n"));
  EXPECT_EQ(s.seed, 18446744073709551615ULL);
  EXPECT_NE(s.to_ini().find("warmup_steps = randint 0 100\n"), std::string::npos) << s.to_ini();
  for (std::int64_t i = 0; i < s.size(); ++i) {
    auto p = as_map(s.point(i));
    const long v = std::stol(p["warmup_steps"]);
    EXPECT_GE(v, 0);
    EXPECT_LE(v, 100);
    EXPECT_EQ(p["max_steps"], "1000");
  }
  auto again = SweepSpace::read(space_file(s.to_ini(), "again.ini"));
  EXPECT_EQ(again.point(7), s.point(7));
  // Seeds next to each other give other draws (no rounding through a double).
  auto t = SweepSpace::read(space_file("[sweep]\nseed = 18446744073709551614\ncount = 50\n[random]\n"
                                       "warmup_steps = randint 0 100\nmax_steps = randint 1000 1000\n", "t.ini"));
  int same = 0;
  for (std::int64_t i = 0; i < s.size(); ++i) same += s.point(i) == t.point(i);
  EXPECT_LT(same, 10);
}

TEST(Sweep, GridTimesCountDrawsEachPointIndependently) {
  auto s = SweepSpace::read(space_file("[sweep]\ncount = 3\n[grid]\nmodel.dropout = 0 0.1\n[random]\nlearning_rate = uniform 0.1 0.2\n"));
  ASSERT_EQ(s.size(), 6);
  std::set<std::string> lrs;
  for (std::int64_t i = 0; i < 6; ++i) {
    auto p = s.point(i);
    EXPECT_EQ(p[0].second, i < 3 ? "0" : "0.1");
    lrs.insert(p[1].second);
  }
  EXPECT_EQ(lrs.size(), 6u);
}

TEST(Sweep, ToIniReadsBackToTheSamePoints) {
  auto s = SweepSpace::read(space_file("[sweep]\nname = x\nseed = 9\ncount = 4\nmetric = eval_loss\n[grid]\n"
                                       "model.hidden_sizes = 8,8 16\n[random]\nlearning_rate = loguniform 3e-4 1e-2\n"
                                       "model.activation = choice relu gelu\n"));
  auto again = SweepSpace::read(space_file(s.to_ini(), "again.ini"));
  EXPECT_EQ(again.to_ini(), s.to_ini());
  EXPECT_EQ(again.name, "x");
  ASSERT_EQ(again.size(), s.size());
  for (std::int64_t i = 0; i < s.size(); ++i) EXPECT_EQ(again.point(i), s.point(i));
  EXPECT_NE(s.to_ini().find("loguniform 0.0003 0.01"), std::string::npos) << s.to_ini();
}

TEST(Sweep, ErrorsNameFileLineAndKey) {
  struct Case {
    std::string text, expect;
  };
  const std::vector<Case> cases = {
      {"[grid]\nlearning_rat = 1 2\n", "line 2: 'learning_rat' is not a configuration key"},
      {"[grid]\nlearning_rate = 0.1 fast\n", "learning_rate value 'fast': expected a finite number"},
      {"[grid]\noutput_dir = a b\n", "'output_dir' cannot be swept"},
      {"[grid]\nseed = 1 2\n[random]\nseed = randint 1 5\n", "'seed' is swept twice"},
      {"[random]\nlearning_rate = normal 0 1\n", "unknown distribution 'normal'"},
      {"[random]\nlearning_rate = loguniform 0 1\n", "loguniform needs LOW > 0"},
      {"[random]\nlearning_rate = uniform 1 0.5\n", "LOW 1 is above HIGH 0.5"},
      {"[random]\nmax_steps = uniform 1 5\n", "integer key; use randint"},
      {"[random]\nmodel.hidden_sizes = uniform 1 5\n", "not numeric; use choice"},
      {"[random]\nmodel.activation = choice relu swish\n", "model.activation value 'swish'"},
      {"[sweep]\ncount = 0\n[grid]\nseed = 1\n", "count 0 must be an integer >= 1"},
      {"[sweep]\ncount = 2\n[grid]\nseed = 1 2\n", "count = 2 needs [random] keys"},
      {"[sweep]\nname = a/b\n[grid]\nseed = 1\n", "name 'a/b'"},
      {"[sweep]\ncolour = red\n", "unknown key 'colour' in [sweep]"},
      {"[params]\nseed = 1\n", "unknown section [params]"},
      {"seed = 1\n", "outside a section"},
      {"[sweep]\nseed = 1\n", "sweeps no key"},
      {"[grid]\nmodel.hidden_sizes = \"8,8\n", "unbalanced quote"},
      {"[sweep]\nname = ..\n[grid]\nseed = 1\n", "name '..'"},
      {"[sweep]\nseed = -1\n[grid]\nseed = 1\n", "seed '-1'"},
  };
  for (const auto& c : cases) {
    const std::string e = read_error(c.text);
    EXPECT_NE(e.find(c.expect), std::string::npos) << "space:\n" << c.text << "error: " << e;
    EXPECT_NE(e.find("space.ini"), std::string::npos) << e;
  }
  EXPECT_NE(read_error("").find("sweeps no key"), std::string::npos);
  // The name defaults to the file's name, which must then be a directory name too.
  try {
    SweepSpace::read(space_file("[grid]\nseed = 1\n", "lr sweep.ini"));
    ADD_FAILURE() << "a name with a space was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("set [sweep] name"), std::string::npos) << e.what();
  }
  try {
    SweepSpace::read("/nonexistent/space.ini");
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/space.ini' cannot be opened"), std::string::npos) << e.what();
  }
}

TEST(Sweep, PointConfigurationHasItsValuesDirectoryNameAndMetric) {
  const std::string dir = testing::temp_dir("hpct-sweep-cfg");
  testing::write_file(dir + "/base.ini", "output_dir = runs\nlearning_rate = 0.5\nmetric_for_best_model = accuracy\n"
                                         "eval_strategy = steps\n[model]\nname = mlp\n[data]\ntrain = t\neval = e\n");
  const std::string space = dir + "/sweeps/lr.ini";
  fs::create_directories(dir + "/sweeps");
  testing::write_file(space, "[sweep]\nconfig = ../base.ini\n[grid]\nlearning_rate = 0.1 0.2 0.3\nseed = 7 8\n"
                             "[random]\nweight_decay = uniform 0 1\n");
  auto r = parse({"train", "--sweep", space, "--sweep_index", "3"});
  const Config& c = r.config;
  EXPECT_EQ(c.config_file, fs::path(dir + "/sweeps/../base.ini").lexically_normal().string());  // [sweep] config
  EXPECT_DOUBLE_EQ(c.args.learning_rate, 0.2);
  EXPECT_EQ(c.args.seed, 8);
  EXPECT_EQ(c.args.output_dir, "runs/lr/point-003");
  EXPECT_EQ(c.args.run_name, "lr-003");
  EXPECT_EQ(c.args.metric_for_best_model, "accuracy");
  EXPECT_EQ(c.model.name, "mlp");
  EXPECT_EQ(c.sweep.index, 3);
  EXPECT_EQ(c.sweep.points, 6);
  EXPECT_EQ(c.sweep.root, "runs/lr");
  ASSERT_EQ(c.sweep.params.size(), 3u);
  EXPECT_EQ(c.sweep.params[0], (std::pair<std::string, std::string>{"learning_rate", "0.2"}));
  EXPECT_NE(c.sweep.space_ini.find("greater_is_better = true"), std::string::npos) << c.sweep.space_ini;

  // Keys not swept still come from the command line; --output_dir moves the sweep directory.
  auto r2 = parse({"train", "--sweep", space, "--sweep_index", "0", "--max_steps", "9", "--output_dir", "/scratch/x/"});
  EXPECT_EQ(r2.config.args.max_steps, 9);
  EXPECT_EQ(r2.config.args.output_dir, "/scratch/x/lr/point-000");

  auto error_of = [&](std::vector<std::string> args) -> std::string {
    try {
      parse(std::move(args));
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_NE(error_of({"train", "--sweep", space, "--sweep_index", "6"}).find("sweep_index 6 is out of range"), std::string::npos);
  EXPECT_NE(error_of({"train", "--sweep", space, "--sweep_index", "6"}).find("has 6 points (0-5)"), std::string::npos);
  EXPECT_NE(error_of({"train", "--sweep", space, "--sweep_index", "x"}).find("--sweep_index 'x'"), std::string::npos);
  EXPECT_NE(error_of({"train", "--sweep", space}).find("--sweep needs --sweep_index"), std::string::npos);
  EXPECT_NE(error_of({"train", "--sweep_index", "1"}).find("--sweep_index needs --sweep"), std::string::npos);
  EXPECT_NE(error_of({"train", "--sweep", space, "--sweep_index", "1", "--seed", "3"}).find("'seed' is swept by"),
            std::string::npos);
  // Without a metric anywhere and without eval data, a sweep cannot rank its points.
  const std::string bare = dir + "/bare.ini";
  testing::write_file(bare, "[grid]\nseed = 1 2\n");
  EXPECT_NE(error_of({"train", "--sweep", bare, "--sweep_index", "0"}).find("ranks its points by an evaluation metric"),
            std::string::npos);
}

// The claim lives with the run-directory code (slurm/run_lock.h); main calls it as this does.
void claim_sweep_dir(const SweepPoint& p) { slurm::claim_sweep_dir(p.root, p.space_ini, p.space_file, p.metric()); }

TEST(Sweep, TheSweepDirectoryHoldsOneSpace) {
  const std::string dir = testing::temp_dir("hpct-sweep-claim");
  const std::string a = dir + "/a.ini", b = dir + "/b.ini";
  testing::write_file(a, "[sweep]\nname = s\nmetric = loss\n[grid]\nseed = 1 2\n");
  testing::write_file(b, "[sweep]\nname = s\nmetric = loss\n[grid]\nseed = 1 3\n");
  auto p0 = parse({"train", "--sweep", a, "--sweep_index", "0", "--output_dir", dir + "/runs"}).config.sweep;
  auto p1 = parse({"train", "--sweep", a, "--sweep_index", "1", "--output_dir", dir + "/runs"}).config.sweep;
  claim_sweep_dir(p0);
  claim_sweep_dir(p1);  // the same space: fine
  claim_sweep_dir(p0);  // again (a requeued task)
  EXPECT_TRUE(fs::exists(dir + "/runs/s/sweep.ini"));
  const auto written = SweepSpace::read(dir + "/runs/s/sweep.ini");
  EXPECT_EQ(written.metric, "loss");
  EXPECT_STREQ(to_name(written.greater_is_better), "false");  // resolved, for the report
  EXPECT_EQ(written.point(1), SweepSpace::read(a).point(1));
  auto other = parse({"train", "--sweep", b, "--sweep_index", "0", "--output_dir", dir + "/runs"}).config.sweep;
  try {
    claim_sweep_dir(other);
    ADD_FAILURE() << "another space was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("holds another sweep"), std::string::npos) << e.what();
  }
}

TEST(Sweep, PointDirectoryNamesSortInIndexOrder) {
  EXPECT_EQ(sweep_point_dirname(7, 8), "point-007");
  EXPECT_EQ(sweep_point_dirname(42, 1000), "point-042");
  EXPECT_EQ(sweep_point_dirname(42, 1001), "point-0042");
}

}  // namespace
}  // namespace hpctrain::config
