/* hpctrain: the command users run. A static program with no shared libraries, so that it runs
 * its first instruction within microseconds of exec: it blocks the preemption signals and execs
 * hpctrain-main beside it (the trainer, which links libtorch, MPI and HDF5: its dynamic loader
 * alone takes ~25 ms before any code of ours can run, a window in which a USR1 or TERM would
 * kill it). The signal mask and pending signals survive exec; hpctrain-main installs its handlers
 * from its preinit array and unblocks the signals listed in HPCT_UNBLOCK_SIGNALS, so a signal
 * that came meanwhile is handled, not fatal. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The signals a preemption may use: the same list as src/core/signals.cpp. */
static const int kPreemption[] = {SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGHUP, SIGXCPU};
enum { kCount = sizeof(kPreemption) / sizeof(kPreemption[0]) };

int main(int argc, char** argv) {
  (void)argc;
  sigset_t set, before;
  sigemptyset(&set);
  for (int i = 0; i < kCount; ++i) sigaddset(&set, kPreemption[i]);
  sigprocmask(SIG_BLOCK, &set, &before);
  /* Only what this launcher blocked is unblocked later: a mask set by whoever started us stays. */
  char list[64] = "";
  for (int i = 0; i < kCount; ++i) {
    if (sigismember(&before, kPreemption[i])) continue;
    char one[8];
    snprintf(one, sizeof(one), "%s%d", list[0] ? "," : "", kPreemption[i]);
    strncat(list, one, sizeof(list) - strlen(list) - 1);
  }
  setenv("HPCT_UNBLOCK_SIGNALS", list, 1);

  char target[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", target, sizeof(target) - 1);
  if (n <= 0) {
    fprintf(stderr, "hpctrain: error: cannot find this executable (/proc/self/exe): %s\n", strerror(errno));
    return 1;
  }
  target[n] = '\0';
  char* slash = strrchr(target, '/');
  const char kMain[] = "hpctrain-main";
  if (!slash || (size_t)(slash - target) + sizeof(kMain) + 1 > sizeof(target)) {
    fprintf(stderr, "hpctrain: error: cannot place hpctrain-main beside %s\n", target);
    return 1;
  }
  memcpy(slash + 1, kMain, sizeof(kMain));
  execv(target, argv);
  fprintf(stderr, "hpctrain: error: cannot run %s: %s (it is built beside hpctrain)\n", target, strerror(errno));
  return 1;
}
