// End-to-end checkpoint tests with the real binary: a run killed with SIGKILL after a checkpoint
// and resumed with auto ends bitwise equal to an uninterrupted run (1, 2 and 4 ranks); elastic
// resume on another number of ranks; partial, corrupted and foreign checkpoints.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <signal.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <fstream>

#include "common/subprocess.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/json.h"

namespace hpctrain {
namespace {

namespace fs = std::filesystem;
using testing::mpiexec;
using testing::run;

const std::string& data() {
  static const std::string dir = [] {
    const std::string d = testing::temp_dir("hpct-ckpt-data");
    auto r = run({HPCTRAIN_DATA_BINARY, "synth", "--samples", "6000", "--shape", "64", "--classes", "10", "--noise", "2",
                  "--out", d, "--eval_fraction", "0.1"},
                 120);
    EXPECT_EQ(r.exit_code, 0) << r.all();
    return d;
  }();
  return dir;
}

// A job long enough to be killed in the middle: 240 steps of an MLP with dropout (so RNG state
// matters), a checkpoint every 40 steps.
std::vector<std::string> job(const std::string& out, std::int64_t per_device, std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {HPCTRAIN_BINARY, "train", "--config", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/quickstart.ini",
                                "--output_dir", out, "--data.train", data() + "/train", "--data.eval", data() + "/eval",
                                "--max_steps", "240", "--save_strategy", "steps", "--save_steps", "40", "--logging_steps", "20",
                                "--eval_strategy", "steps", "--eval_steps", "80", "--model.hidden_sizes", "512,512",
                                "--model.dropout", "0.1", "--per_device_train_batch_size", std::to_string(per_device),
                                "--resume_from_checkpoint", "auto"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// Every /model dataset of a checkpoint, as raw bytes.
std::map<std::string, std::string> model_bytes(const std::string& state_h5) {
  std::map<std::string, std::string> out;
  hid_t f = H5Fopen(state_h5.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  EXPECT_GE(f, 0) << state_h5;
  hid_t g = H5Gopen2(f, "/model", H5P_DEFAULT);
  hsize_t n = 0;
  H5Gget_num_objs(g, &n);
  for (hsize_t i = 0; i < n; ++i) {
    char name[256];
    H5Gget_objname_by_idx(g, i, name, sizeof(name));
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    std::string bytes(static_cast<std::size_t>(H5Sget_simple_extent_npoints(sp)) * 4, '\0');
    H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data());
    out[name] = bytes;
    H5Sclose(sp);
    H5Dclose(d);
  }
  H5Gclose(g);
  H5Fclose(f);
  return out;
}

std::vector<Json> metrics(const std::string& out) { return testing::read_metrics(out); }

class KillAndResume : public ::testing::TestWithParam<int> {};

TEST_P(KillAndResume, EndsBitwiseEqualToAnUninterruptedRun) {
  const int np = GetParam();
  const std::int64_t per = 64 / np;
  const std::string ref = testing::temp_dir("hpct-ref"), cut = testing::temp_dir("hpct-cut");
  auto full = run(mpiexec(np, job(ref, per)), 600);
  ASSERT_EQ(full.exit_code, 0) << full.all();

  // Kill with SIGKILL once the second checkpoint exists (in the middle of the run).
  const int pid = testing::spawn(mpiexec(np, job(cut, per)), cut + "/first.log");
  ASSERT_TRUE(testing::wait_for_path(cut + "/checkpoint-80", 300)) << testing::read_file(cut + "/first.log");
  testing::kill_group(pid, SIGKILL);
  ASSERT_FALSE(fs::exists(cut + "/checkpoint-240")) << "the run finished before it was killed";
  // A save that was cut short leaves a .partial directory, which resume must ignore.
  fs::create_directories(cut + "/checkpoint-999.partial");
  testing::write_file(cut + "/checkpoint-999.partial/state.h5", "half written");

  auto resumed = run(mpiexec(np, job(cut, per)), 600);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.all();
  EXPECT_NE(resumed.err.find("resumed from " + cut + "/checkpoint-"), std::string::npos) << resumed.err;
  auto a = model_bytes(ref + "/checkpoint-240/state.h5"), b = model_bytes(cut + "/checkpoint-240/state.h5");
  ASSERT_FALSE(a.empty());
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, bytes] : a) EXPECT_TRUE(bytes == b[name]) << name << " differs after kill and resume";
  // The metrics file has each step once.
  std::set<std::int64_t> steps;
  for (const auto& e : metrics(cut))
    if (e.find("loss") && e.find("grad_norm"))
      EXPECT_TRUE(steps.insert(static_cast<std::int64_t>(e.find("step")->number())).second) << e.dump();
  EXPECT_EQ(steps.size(), 12u);
}

INSTANTIATE_TEST_SUITE_P(Ranks, KillAndResume, ::testing::Values(1, 2, 4));

TEST(Checkpoint, ElasticResumeOnFewerRanksKeepsTheGlobalBatch) {
  // Without dropout: its masks follow the ranks, so only reduction order may differ.
  const std::string ref = testing::temp_dir("hpct-ref"), el = testing::temp_dir("hpct-elastic");
  ASSERT_EQ(run(mpiexec(4, job(ref, 16, {"--model.dropout", "0"})), 600).exit_code, 0);
  // 4 ranks up to step 120, then 2 ranks (per device 16: accumulation 2 keeps the batch of 64).
  auto first = run(mpiexec(4, job(el, 16, {"--model.dropout", "0"})), 600);
  ASSERT_EQ(first.exit_code, 0);
  fs::remove_all(el + "/checkpoint-240");
  fs::remove_all(el + "/checkpoint-200");
  fs::remove_all(el + "/checkpoint-160");
  std::ofstream(el + "/latest") << "checkpoint-120\n";
  auto second = run(mpiexec(2, job(el, 16, {"--model.dropout", "0"})), 600);
  ASSERT_EQ(second.exit_code, 0) << second.all();
  EXPECT_NE(second.err.find("elastic resume: 4 -> 2 ranks; gradient_accumulation_steps set to 2"), std::string::npos)
      << second.err;
  auto last_eval = [](const std::string& out) {
    double v = -1;
    for (const auto& e : metrics(out))
      if (const Json* l = e.find("eval_loss")) v = l->number();
    return v;
  };
  EXPECT_NEAR(last_eval(el), last_eval(ref), 1e-3 * last_eval(ref));
  // A batch the new world cannot split is refused with the values that would work.
  auto bad = run(mpiexec(2, job(el, 24, {"--model.dropout", "0"})), 300);
  EXPECT_EQ(bad.exit_code, exit_code::kConfig);
  EXPECT_NE(bad.err.find("per_device_train_batch_size must divide it evenly: one of 1, 2, 4, 8, 16, 32"), std::string::npos)
      << bad.err;
}

TEST(Checkpoint, CorruptedLatestFallsBackToThePreviousValidOne) {
  const std::string out = testing::temp_dir("hpct-corrupt");
  ASSERT_EQ(run(mpiexec(2, job(out, 32, {"--max_steps", "80"})), 600).exit_code, 0);
  // Flip bytes inside a tensor of the newest checkpoint (its CRC no longer matches).
  const std::string victim = out + "/checkpoint-80/state.h5";
  hid_t f = H5Fopen(victim.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, "/model/head.weight", H5P_DEFAULT);
  const haddr_t off = H5Dget_offset(d);
  H5Dclose(d);
  H5Fclose(f);
  {
    std::fstream s(victim, std::ios::in | std::ios::out | std::ios::binary);
    s.seekp(static_cast<std::streamoff>(off) + 16);
    s.write("\x7f\x7f\x7f\x7f", 4);
  }
  auto r = run(mpiexec(2, job(out, 32, {"--max_steps", "120"})), 600);
  ASSERT_EQ(r.exit_code, 0) << r.all();
  EXPECT_NE(r.err.find("skipping checkpoint '" + out + "/checkpoint-80': checkpoint '" + victim +
                       "': /model/head.weight fails its checksum (corrupted)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("resumed from " + out + "/checkpoint-40"), std::string::npos) << r.err;

  // latest naming a deleted directory, and no latest at all: the newest valid one is found.
  fs::remove_all(out + "/checkpoint-120");
  r = run(mpiexec(2, job(out, 32, {"--max_steps", "120"})), 600);
  EXPECT_NE(r.err.find("skipping checkpoint '" + out + "/checkpoint-120'"), std::string::npos) << r.err;
  fs::remove(out + "/latest");
  r = run(mpiexec(2, job(out, 32, {"--max_steps", "160"})), 600);
  ASSERT_EQ(r.exit_code, 0) << r.all();
  EXPECT_NE(r.err.find("latest is missing or empty"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("resumed from " + out + "/checkpoint-120"), std::string::npos) << r.err;
}

TEST(Checkpoint, AnExplicitCheckpointOfAnotherModelIsRefused) {
  const std::string out = testing::temp_dir("hpct-other");
  ASSERT_EQ(run(mpiexec(2, job(out, 32, {"--max_steps", "40"})), 600).exit_code, 0);
  auto r = run(mpiexec(2, job(testing::temp_dir("hpct-new"), 32,
                              {"--model.hidden_sizes", "64", "--resume_from_checkpoint", out + "/checkpoint-40"})),
               300);
  EXPECT_EQ(r.exit_code, exit_code::kConfig) << r.all();
  EXPECT_NE(r.err.find("holds another model"), std::string::npos) << r.err;
  auto bad = run(mpiexec(2, job(testing::temp_dir("hpct-new"), 32, {"--resume_from_checkpoint", data()})), 300);
  EXPECT_EQ(bad.exit_code, exit_code::kConfig) << bad.all();
  EXPECT_NE(bad.err.find("not a valid checkpoint"), std::string::npos) << bad.err;
}

TEST(Preemption, ASignalToOneRankCheckpointsEveryRankAtTheSameStepAndResumesExactly) {
  const std::string ref = testing::temp_dir("hpct-ref"), pre = testing::temp_dir("hpct-preempt");
  ASSERT_EQ(run(mpiexec(2, job(ref, 32, {"--save_steps", "1000"})), 600).exit_code, 0);
  const int pid = testing::spawn(mpiexec(2, job(pre, 32, {"--save_steps", "1000", "--logging_steps", "5"})), pre + "/first.log");
  // Once training runs, SIGUSR1 to one rank only: the step-boundary agreement makes both save.
  ASSERT_TRUE(testing::wait_for_path(pre + "/metrics.jsonl", 300));
  std::vector<int> ranks;
  for (int i = 0; i < 200 && ranks.size() < 2; ++i) {
    ranks = testing::children_named(pid, "hpctrain");
    usleep(20000);
  }
  ASSERT_EQ(ranks.size(), 2u);
  for (int i = 0; i < 6000 && testing::read_file(pre + "/metrics.jsonl").find("\"step\": 10,") == std::string::npos; ++i)
    usleep(10000);
  kill(ranks[1], SIGUSR1);
  int status = 0;
  waitpid(pid, &status, 0);
  const std::string log = testing::read_file(pre + "/first.log");
  ASSERT_TRUE(WIFEXITED(status)) << log;
  EXPECT_EQ(WEXITSTATUS(status), exit_code::kPreempted) << log;
  EXPECT_NE(log.find("checkpointing step"), std::string::npos) << log;
  std::string latest;
  std::ifstream(pre + "/latest") >> latest;
  ASSERT_FALSE(latest.empty()) << log;
  EXPECT_FALSE(fs::exists(pre + "/checkpoint-240"));
  // The resumed run ends where the uninterrupted one does, bitwise.
  auto resumed = run(mpiexec(2, job(pre, 32, {"--save_steps", "1000"})), 600);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.all();
  auto a = model_bytes(ref + "/checkpoint-240/state.h5"), b = model_bytes(pre + "/checkpoint-240/state.h5");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, bytes] : a) EXPECT_TRUE(bytes == b[name]) << name;
}

TEST(RunLock, ASecondJobIntoTheSameDirectoryIsRefusedAndAStaleLockTakenOver) {
  const std::string out = testing::temp_dir("hpct-lock");
  const int pid = testing::spawn(mpiexec(2, job(out, 32, {"--max_steps", "100000"})), out + "/first.log");
  ASSERT_TRUE(testing::wait_for_path(out + "/metrics.jsonl", 300)) << testing::read_file(out + "/first.log");
  auto second = run(mpiexec(2, job(out, 32, {"--max_steps", "10"})), 300);
  EXPECT_EQ(second.exit_code, exit_code::kConfig) << second.all();
  EXPECT_NE(second.err.find("output_dir " + out + " is in use by job - (pid "), std::string::npos) << second.err;
  testing::kill_group(pid, SIGKILL);  // the holder dies; its lock stays behind
  ASSERT_TRUE(fs::exists(out + "/.lock"));
  auto third = run(mpiexec(2, job(out, 32, {"--max_steps", "10", "--resume_from_checkpoint", "none"})), 300);
  EXPECT_EQ(third.exit_code, 0) << third.all();
  EXPECT_NE(third.err.find("taking over the stale lock"), std::string::npos) << third.err;
  EXPECT_FALSE(fs::exists(out + "/.lock"));  // released at the end
}

TEST(Checkpoint, BestModelRotationEvaluateAndTheCkptTool) {
  const std::string out = testing::temp_dir("hpct-best");
  const std::vector<std::string> base = {"--max_steps", "200", "--save_strategy", "steps", "--eval_strategy", "steps",
                                         "--eval_steps", "40", "--save_total_limit", "2", "--load_best_model_at_end",
                                         "--metric_for_best_model", "accuracy", "--learning_rate", "0.01"};
  auto r = run(mpiexec(2, job(out, 32, base)), 600);
  ASSERT_EQ(r.exit_code, 0) << r.all();
  Json state = Json::parse(testing::read_file(out + "/trainer_state.json"), "trainer_state.json");
  const std::string best = state.find("best_model_checkpoint")->str();
  const double best_metric = state.find("best_metric")->number();
  // Rotation keeps two checkpoints and never the best's deletion.
  int kept = 0;
  for (const auto& e : fs::directory_iterator(out)) kept += e.path().filename().string().rfind("checkpoint-", 0) == 0;
  EXPECT_LE(kept, 3);
  EXPECT_TRUE(fs::exists(best + "/state.h5")) << best;
  EXPECT_TRUE(fs::exists(out + "/checkpoint-200/state.h5"));
  EXPECT_NE(r.err.find("loaded the best model (accuracy"), std::string::npos) << r.err;

  // evaluate on the best checkpoint reproduces its metric.
  auto ev = run(mpiexec(2, {HPCTRAIN_BINARY, "evaluate", "--config", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/quickstart.ini",
                            "--output_dir", out, "--data.train", data() + "/train", "--data.eval", data() + "/eval",
                            "--model.hidden_sizes", "512,512",
                            "--resume_from_checkpoint", best, "--save_strategy", "no"}),
                300);
  ASSERT_EQ(ev.exit_code, 0) << ev.all();
  double acc = -1;
  for (const auto& e : metrics(out))
    if (const Json* a = e.find("eval_accuracy")) acc = a->number();
  EXPECT_DOUBLE_EQ(acc, best_metric);

  // hpctrain-ckpt: inspect, verify, export; verify fails on a damaged file.
  auto in = run({HPCTRAIN_CKPT_BINARY, "inspect", best}, 60);
  EXPECT_EQ(in.exit_code, 0) << in.all();
  EXPECT_NE(in.out.find("world_size: 2"), std::string::npos) << in.out;
  EXPECT_NE(in.out.find("/optimizer/head.weight/exp_avg float32 (10, 512)"), std::string::npos) << in.out;
  EXPECT_EQ(run({HPCTRAIN_CKPT_BINARY, "verify", out}, 60).exit_code, 0);
  auto ex = run({HPCTRAIN_CKPT_BINARY, "export", best, "--out", out + "/weights.h5"}, 60);
  EXPECT_EQ(ex.exit_code, 0) << ex.all();
  EXPECT_NE(ex.out.find("exported 6 model tensors"), std::string::npos) << ex.out;
  fs::resize_file(out + "/checkpoint-200/state.h5", fs::file_size(out + "/checkpoint-200/state.h5") / 2);
  auto bad = run({HPCTRAIN_CKPT_BINARY, "verify", out + "/checkpoint-200"}, 60);
  EXPECT_EQ(bad.exit_code, 1) << bad.all();
  EXPECT_NE(bad.out.find("INVALID"), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace hpctrain
