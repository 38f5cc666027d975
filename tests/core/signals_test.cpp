// The preemption signals module, each case in a child process of its own (signal dispositions,
// masks and the received flag are process-wide, and install_early runs once per process).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <thread>

#include "hpctrain/core/signals.h"

namespace hpctrain {
namespace {

// Runs `body` in a child; returns its wait status.
int in_child(const std::function<int()>& body) {
  const pid_t pid = fork();
  if (pid == 0) _exit(body());
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(SignalFlags, ASignalThatIsNoPreemptionSignalGetsBackWhatItDidBefore) {
  // Ignored before (nohup): still ignored after configure, also when it came in between.
  int st = in_child([] {
    std::signal(SIGHUP, SIG_IGN);
    signals::install_early();
    raise(SIGHUP);  // recorded by the early handler
    signals::configure("USR1,TERM");
    raise(SIGHUP);  // ignored again
    return signals::received() == 0 ? 0 : 1;
  });
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  // Default before: what it would have done, it does at configure (the process ends by it).
  st = in_child([] {
    std::signal(SIGHUP, SIG_DFL);
    signals::install_early();
    raise(SIGHUP);
    signals::configure("USR1,TERM");
    return 0;
  });
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGHUP) << st;
  // A preemption signal is only recorded.
  st = in_child([] {
    signals::install_early();
    signals::configure("USR1,TERM");
    raise(SIGUSR1);
    return signals::received() == SIGUSR1 ? 0 : 1;
  });
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
}

TEST(SignalFlags, ASecondTermExitsAtOnceUnlessTheJobIsBeingRequeued) {
  const auto twice = [](bool hold) {
    return in_child([hold] {
      signals::install_early();
      signals::configure("USR1,TERM");
      raise(SIGTERM);
      std::this_thread::sleep_for(std::chrono::duration<double>(signals::kRepeatSeconds + 0.2));
      if (hold) signals::hold_repeats();
      raise(SIGTERM);
      return 0;
    });
  };
  int st = twice(false);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGTERM) << st;
  st = twice(true);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
}

TEST(SignalFlags, ASignalTheLauncherHeldIsHandledOnceTheHandlersAreIn) {
  // As after the static launcher's exec: USR1 blocked and pending, its number in the environment.
  const int st = in_child([] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    raise(SIGUSR1);
    char var[] = "HPCT_UNBLOCK_SIGNALS=10,15";
    char* envp[] = {var, nullptr};
    signals::install_early(envp);
    sigset_t now;
    sigprocmask(SIG_BLOCK, nullptr, &now);
    return signals::received() == SIGUSR1 && !sigismember(&now, SIGUSR1) ? 0 : 1;
  });
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
}

TEST(SignalFlags, TheGuardAndTheRunNeverBothTakeTheStop) {
  const int st = in_child([] {
    signals::reset();
    if (!signals::claim_for_guard()) return 1;
    if (signals::claim_for_guard()) return 2;  // once
    if (signals::acknowledged()) return 3;
    signals::reset();
    signals::acknowledge();
    return signals::claim_for_guard() ? 4 : 0;  // the run has it: the guard stands down
  });
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
}

}  // namespace
}  // namespace hpctrain
