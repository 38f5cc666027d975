// Unit tests of the slurm component that need no cluster: SLURM durations, and what a run
// directory tells of its run (the status hpctrain-sweep report shows).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "common/subprocess.h"
#include "hpctrain/slurm/run_lock.h"
#include "hpctrain/slurm/time_limit.h"

namespace hpctrain::slurm {
namespace {

TEST(SlurmDuration, ReadsEveryFormOfSqueueAndSbatch) {
  EXPECT_EQ(parse_duration("5"), 300.0);                // minutes
  EXPECT_EQ(parse_duration("1:00"), 60.0);              // minutes:seconds
  EXPECT_EQ(parse_duration("0:45\n"), 45.0);            // squeue %L output
  EXPECT_EQ(parse_duration("2:03:04"), 7384.0);         // hours:minutes:seconds
  EXPECT_EQ(parse_duration("1-02:03:04"), 93784.0);     // days-hours:minutes:seconds
  EXPECT_EQ(parse_duration("3-12"), 3 * 86400.0 + 12 * 3600.0);  // days-hours
  EXPECT_FALSE(parse_duration("UNLIMITED"));
  EXPECT_FALSE(parse_duration("NOT_SET"));
  EXPECT_FALSE(parse_duration("INVALID"));
  EXPECT_FALSE(parse_duration(""));
  EXPECT_FALSE(parse_duration("1:2:3:4"));
  EXPECT_FALSE(parse_duration("-5"));
}

void write(const std::string& path, const std::string& text) { testing::write_file(path, text); }

std::string host() {
  char h[256] = {0};
  gethostname(h, sizeof(h) - 1);
  return h;
}

TEST(RunDirStatus, FromTheLockAndTheRecordedStatus) {
  const std::string root = testing::temp_dir("hpct-rundir");
  EXPECT_EQ(inspect_run_dir(root + "/never").status, "pending");

  const std::string done = root + "/done";
  std::filesystem::create_directories(done);
  write(done + "/run_status.json", R"({"status": "finished", "holder": "job 7"})");
  EXPECT_EQ(inspect_run_dir(done).status, "finished");

  const std::string pre = root + "/pre";
  std::filesystem::create_directories(pre);
  write(pre + "/run_status.json", R"({"status": "preempted", "detail": "signal 10"})");
  EXPECT_EQ(inspect_run_dir(pre).status, "preempted");
  EXPECT_EQ(inspect_run_dir(pre).detail, "signal 10");

  const std::string bad = root + "/bad";
  std::filesystem::create_directories(bad);
  write(bad + "/run_status.json", R"({"status": "failed", "detail": "data error: x.h5"})");
  EXPECT_EQ(inspect_run_dir(bad).status, "failed");
  EXPECT_EQ(inspect_run_dir(bad).detail, "data error: x.h5");

  // Running: the lock's process is alive on this host.
  const std::string live = root + "/live";
  std::filesystem::create_directories(live);
  write(live + "/run_status.json", R"({"status": "running"})");
  write(live + "/.lock", "host=" + host() + "\npid=" + std::to_string(getpid()) + "\nslurm_job=\n");
  EXPECT_EQ(inspect_run_dir(live).status, "running");
  EXPECT_NE(inspect_run_dir(live).detail.find("pid " + std::to_string(getpid())), std::string::npos);

  // Failed: the lock's process is gone (killed without recording an end).
  const pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  const std::string dead = root + "/dead";
  std::filesystem::create_directories(dead);
  write(dead + "/run_status.json", R"({"status": "running"})");
  write(dead + "/.lock", "host=" + host() + "\npid=" + std::to_string(child) + "\nslurm_job=\n");
  EXPECT_EQ(inspect_run_dir(dead).status, "failed");
  EXPECT_NE(inspect_run_dir(dead).detail.find("ended without recording an end"), std::string::npos);

  // Failed: recorded as running, no lock (the lock goes only with a recorded end).
  const std::string gone = root + "/gone";
  std::filesystem::create_directories(gone);
  write(gone + "/run_status.json", R"({"status": "running", "holder": "job 9"})");
  EXPECT_EQ(inspect_run_dir(gone).status, "failed");

  // A damaged status file is reported, not trusted.
  const std::string junk = root + "/junk";
  std::filesystem::create_directories(junk);
  write(junk + "/run_status.json", "{\"status\": ");
  EXPECT_EQ(inspect_run_dir(junk).status, "failed");
}

}  // namespace
}  // namespace hpctrain::slurm
