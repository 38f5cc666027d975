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
  EXPECT_EQ(parse_duration("0-05:30"), 5.5 * 3600.0);             // zero days: still hours:minutes
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

// A run directory with run_status.json `status_json` and, unless empty, a lock held by `pid` here.
std::string run_dir(const std::string& root, const std::string& name, const std::string& status_json, pid_t pid = 0) {
  const std::string dir = root + "/" + name;
  std::filesystem::create_directories(dir);
  write(dir + "/run_status.json", status_json);
  if (pid > 0) write(dir + "/.lock", "host=" + host() + "\npid=" + std::to_string(pid) + "\nslurm_job=\n");
  return dir;
}

TEST(RunDirStatus, FromTheLockAndTheRecordedStatus) {
  const std::string root = testing::temp_dir("hpct-rundir");
  EXPECT_EQ(inspect_run_dir(root + "/never").status, "pending");
  EXPECT_EQ(inspect_run_dir(run_dir(root, "done", R"({"status": "finished", "holder": "job 7"})")).status, "finished");

  const auto pre = inspect_run_dir(run_dir(root, "pre", R"({"status": "preempted", "detail": "signal 10"})"));
  EXPECT_EQ(pre.status, "preempted");
  EXPECT_EQ(pre.detail, "signal 10");

  const auto bad = inspect_run_dir(run_dir(root, "bad", R"({"status": "failed", "detail": "data error: x.h5"})"));
  EXPECT_EQ(bad.status, "failed");
  EXPECT_EQ(bad.detail, "data error: x.h5");

  // Running: the lock's process is alive on this host.
  const auto live = inspect_run_dir(run_dir(root, "live", R"({"status": "running"})", getpid()));
  EXPECT_EQ(live.status, "running");
  EXPECT_NE(live.detail.find("pid " + std::to_string(getpid())), std::string::npos) << live.detail;

  // Failed: the lock's process is gone (killed without recording an end).
  const pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  const auto dead = inspect_run_dir(run_dir(root, "dead", R"({"status": "running"})", child));
  EXPECT_EQ(dead.status, "failed");
  EXPECT_NE(dead.detail.find("ended without recording an end"), std::string::npos) << dead.detail;

  // Failed: recorded as running, no lock (the lock goes only with a recorded end).
  EXPECT_EQ(inspect_run_dir(run_dir(root, "gone", R"({"status": "running", "holder": "job 9"})")).status, "failed");
  // A damaged status file is reported, not trusted.
  EXPECT_EQ(inspect_run_dir(run_dir(root, "junk", "{\"status\": ")).status, "failed");
}

// A preempted run whose SLURM job is gone (it died, or was not requeued) will never resume: failed.
// A fake squeue on PATH answers for job 41 (requeued: PENDING) and not for job 42 (forgotten).
TEST(RunDirStatus, APreemptedRunWhoseJobIsGoneIsFailed) {
  const std::string root = testing::temp_dir("hpct-rundir-gone");
  const std::string bin = root + "/bin";
  std::filesystem::create_directories(bin);
  write(bin + "/squeue",
        "#!/bin/sh\ncase \"$*\" in *' 41 '*) echo PENDING ;; "
        "*) echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1 ;; esac\n");
  std::filesystem::permissions(bin + "/squeue", std::filesystem::perms::owner_all);
  const std::string old_path = std::getenv("PATH");
  setenv("PATH", (bin + ":" + old_path).c_str(), 1);
  const auto waiting = inspect_run_dir(run_dir(root, "a", R"({"status": "preempted", "slurm_job": "41", "detail": "signal 10"})"));
  const auto gone = inspect_run_dir(run_dir(root, "b", R"({"status": "preempted", "slurm_job": "42", "detail": "signal 10"})"));
  // Not a job id: never put into a command, and the recorded status stands.
  const auto odd = inspect_run_dir(run_dir(root, "c", R"({"status": "preempted", "slurm_job": "42;rm", "detail": "x"})"));
  setenv("PATH", old_path.c_str(), 1);
  EXPECT_EQ(waiting.status, "preempted");
  EXPECT_EQ(gone.status, "failed");
  EXPECT_NE(gone.detail.find("job 42 stopped (signal 10) and is gone from SLURM"), std::string::npos) << gone.detail;
  EXPECT_EQ(odd.status, "preempted");
}

}  // namespace
}  // namespace hpctrain::slurm
