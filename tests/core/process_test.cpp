// The one process runner (SLURM's commands, the tests' programs): output, exit status, the
// deadline and the cancel flag killing the whole process group, a child free of the caller's
// signal handling.
#include <gtest/gtest.h>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "common/subprocess.h"
#include "hpctrain/core/process.h"
#include "hpctrain/core/text.h"

namespace hpctrain {
namespace {

process::Result sh(const std::string& script, process::Options o = {}) { return process::run({"/bin/sh", "-c", script}, o); }

// Whether `pid` still runs: a killed process that nobody has reaped yet (a zombie) does not.
bool alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z' && line[paren + 2] != 'X';
}

// Waits until `pid` no longer runs, up to `seconds` (scaled for a busy machine).
bool ended_within(pid_t pid, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(testing::scaled(seconds));
  while (alive(pid)) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

TEST(Process, OutputAndStatus) {
  auto r = sh("echo out; echo err >&2; exit 3");
  ASSERT_TRUE(r.started);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  process::Options joined;
  joined.join_stderr = true;
  r = sh("echo out; echo err >&2", joined);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, "out\nerr\n");
  EXPECT_EQ(r.err, "");
  // A signal's death reads as 128 + the signal, as a shell says it.
  EXPECT_EQ(sh("kill -KILL $$").status, 128 + SIGKILL);
  // A program that cannot be started: 127 and the reason on stderr.
  r = process::run({"/nonexistent/program"}, {});
  EXPECT_EQ(r.status, 127);
  EXPECT_NE(r.err.find("/nonexistent/program"), std::string::npos) << r.err;
}

TEST(Process, WorkingDirectoryAndOutputCap) {
  const std::string dir = testing::temp_dir("hpct-process");
  process::Options o;
  o.cwd = dir;
  EXPECT_EQ(trim(sh("pwd -P", o).out), std::filesystem::canonical(dir).string());
  // Output beyond the cap is read (the child never blocks on a full pipe) and dropped.
  o.max_output = 1000;
  auto r = sh("head -c 5000000 /dev/zero; echo done >&2", o);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out.size(), 1000u);
  EXPECT_EQ(r.err, "done\n");
}

// The deadline kills the whole group: here a grandchild that closed its output and would outlive
// the shell by minutes.
TEST(Process, TheDeadlineKillsTheWholeGroup) {
  const std::string pidfile = testing::temp_dir("hpct-process") + "/pid";
  process::Options o;
  o.timeout_s = 1;
  const auto t0 = std::chrono::steady_clock::now();
  auto r = sh("sleep 300 >/dev/null 2>&1 & echo $! > " + pidfile + "; sleep 300", o);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.status, 128 + SIGKILL);
  EXPECT_LT(took, testing::scaled(30));
  std::ifstream in(pidfile);
  pid_t grandchild = 0;
  ASSERT_TRUE(in >> grandchild);
  ASSERT_TRUE(alive(::getpid()));  // the check itself sees a running process
  EXPECT_TRUE(ended_within(grandchild, 10)) << "the background sleep outlived the deadline";
  // A command that closed its output but does not end is held to the deadline too.
  r = sh("exec >/dev/null 2>&1; sleep 300", o);
  EXPECT_TRUE(r.timed_out);
}

TEST(Process, CancelEndsItEarly) {
  std::atomic<bool> cancel{false};
  process::Options o;
  o.timeout_s = 300;
  o.cancel = &cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    cancel = true;
  });
  const auto t0 = std::chrono::steady_clock::now();
  auto r = sh("sleep 300", o);
  canceller.join();
  EXPECT_TRUE(r.timed_out);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), testing::scaled(30));
}

// The caller's signal handling (ignored or blocked preemption signals) is not the child's.
TEST(Process, TheChildHasDefaultSignals) {
  struct sigaction ignore {}, old_usr1 {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGUSR1, &ignore, &old_usr1);
  sigset_t term, old_mask;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &term, &old_mask);
  const auto usr1 = sh("kill -USR1 $$; echo survived").status;
  const auto sigterm = sh("kill -TERM $$; echo survived").status;
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  sigaction(SIGUSR1, &old_usr1, nullptr);
  EXPECT_EQ(usr1, 128 + SIGUSR1);
  EXPECT_EQ(sigterm, 128 + SIGTERM);
}

// start(): in the background, in a group of its own, both streams into the file, default signals.
TEST(Process, StartRunsInTheBackgroundWithOutputToAFile) {
  const std::string dir = testing::temp_dir("hpct-start");
  const std::string log = dir + "/out.log";
  struct sigaction ignore {}, old_usr1 {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGUSR1, &ignore, &old_usr1);
  const pid_t pid = process::start({"/bin/sh", "-c", "echo out; echo err >&2; read x; echo \"[$x]\"; kill -USR1 $$"}, {log, dir, false});
  sigaction(SIGUSR1, &old_usr1, nullptr);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(::getpgid(pid), pid);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGUSR1) << status;  // not the caller's SIG_IGN
  EXPECT_EQ(testing::read_file(log), "out\nerr\n[]\n");                     // stdin is /dev/null
  EXPECT_EQ(process::start({"/bin/true"}, {dir + "/no/such/dir/log", "", false}), -1);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace hpctrain
