// The preemption flag, its async-signal-safe handler, and the readiness mark for launchers.
#include "hpctrain/core/signals.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "hpctrain/core/error.h"

namespace hpctrain::signals {
namespace {

constexpr int kCandidates[] = {SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGHUP, SIGXCPU};

static_assert(std::atomic<int>::is_always_lock_free && std::atomic<long long>::is_always_lock_free,
              "the handler's atomics must be lock-free to be async-signal-safe");
std::atomic<int> g_received{0};
// Monotonic nanoseconds of the first signal, and of the first TERM/INT.
std::atomic<long long> g_received_at{0};
std::atomic<long long> g_first_kill_at{0};
// Who took the stop in hand: nobody yet, the run itself (acknowledge) or the stop guard.
enum Owner : int { kNobody = 0, kRun = 1, kGuard = 2 };
std::atomic<int> g_owner{kNobody};
std::atomic<bool> g_hold_repeats{false};
std::atomic<bool> g_installed{false};
// What each candidate signal did before install_early (a parent may have ignored it: nohup).
struct sigaction g_original[NSIG];
bool g_saved[NSIG] = {false};

long long now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
  return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

extern "C" void on_signal(int sig) {
  const long long now = now_ns();
  if (sig == SIGTERM || sig == SIGINT) {
    long long first = 0;
    if (!g_first_kill_at.compare_exchange_strong(first, now) && !g_hold_repeats.load() &&
        now - first >= static_cast<long long>(kRepeatSeconds * 1e9)) {
      // A second TERM (or Ctrl-C) well after the first: the user or the scheduler insists.
      const char msg[] = "hpctrain: second termination signal: exiting now, without a checkpoint\n";
      (void)!::write(STDERR_FILENO, msg, sizeof(msg) - 1);
      ::_exit(128 + sig);
    }
  }
  int none = 0;
  if (g_received.compare_exchange_strong(none, sig)) g_received_at.store(now);
}

void install_handler(int sig) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int c : kCandidates) sigaddset(&sa.sa_mask, c);  // one handler at a time
  sa.sa_flags = SA_RESTART;
  sigaction(sig, &sa, nullptr);
}

}  // namespace

int number(const std::string& raw) {
  std::string n = raw;
  if (n.rfind("SIG", 0) == 0) n = n.substr(3);
  if (n == "USR1") return SIGUSR1;
  if (n == "USR2") return SIGUSR2;
  if (n == "TERM") return SIGTERM;
  if (n == "INT") return SIGINT;
  if (n == "HUP") return SIGHUP;
  if (n == "XCPU") return SIGXCPU;
  return -1;
}

void install_early(char** envp) {
  if (g_installed.exchange(true)) return;
  for (int sig : kCandidates) {
    g_saved[sig] = ::sigaction(sig, nullptr, &g_original[sig]) == 0;
    install_handler(sig);
  }
  // Started by the hpctrain launcher: it blocked these signals before this executable's dynamic
  // loader ran; one that came meanwhile is pending and reaches the handler now. (From the preinit
  // array libc is not initialised yet: the environment is read from envp, not getenv.)
  const char kKey[] = "HPCT_UNBLOCK_SIGNALS=";
  const char* blocked = nullptr;
  for (char** e = envp ? envp : environ; e && *e && !blocked; ++e)
    if (std::strncmp(*e, kKey, sizeof(kKey) - 1) == 0) blocked = *e + sizeof(kKey) - 1;
  if (!blocked) return;
  sigset_t set;
  sigemptyset(&set);
  for (const char* p = blocked; *p >= '0' && *p <= '9';) {
    int sig = 0;
    for (; *p >= '0' && *p <= '9' && sig < 1000; ++p) sig = sig * 10 + (*p - '0');
    for (int c : kCandidates)
      if (c == sig) sigaddset(&set, c);  // never more than the candidates
    if (*p == ',') ++p;
  }
  ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
}

void configure(const std::string& names) {
  bool wanted[64] = {false};
  std::stringstream ss(names);
  for (std::string n; std::getline(ss, n, ',');) {
    if (n.empty()) continue;
    const int sig = number(n);
    if (sig < 0) throw ConfigError("preemption_signals: unknown signal '" + n + "'; expected USR1, USR2, TERM, INT, HUP or XCPU");
    wanted[sig] = true;
  }
  for (int sig : kCandidates) {
    if (wanted[sig]) {
      install_handler(sig);
      continue;
    }
    // Not a preemption signal: it does again what it did before hpctrain started (SIG_IGN under
    // nohup stays ignored).
    if (g_saved[sig]) {
      ::sigaction(sig, &g_original[sig], nullptr);
    } else {
      std::signal(sig, SIG_DFL);
    }
    int received = sig;
    if (g_received.compare_exchange_strong(received, 0)) {
      // Received before the configuration said it is no preemption signal: what it would have
      // done, it does now (nothing, when it was ignored).
      g_received_at.store(0);
      std::raise(sig);
    }
  }
}

void install(const std::string& names) {
  install_early();
  configure(names);
}

int received() { return g_received; }

double seconds_since_received() {
  const long long at = g_received_at.load();
  return g_received == 0 || at == 0 ? 0.0 : static_cast<double>(now_ns() - at) / 1e9;
}

void reset() {
  g_received.store(0);
  g_received_at.store(0);
  g_first_kill_at.store(0);
  g_owner.store(kNobody);
  g_hold_repeats.store(false);
}

void acknowledge() {
  int owner = kNobody;
  if (g_owner.compare_exchange_strong(owner, kRun) || owner == kRun) return;
  // The stop guard took the stop in hand first and is ending the process: leave it that to do.
  for (;;) ::pause();
}
bool acknowledged() { return g_owner.load() == kRun; }
bool claim_for_guard() {
  int owner = kNobody;
  return g_owner.compare_exchange_strong(owner, kGuard);
}

void hold_repeats() { g_hold_repeats.store(true); }

void mark_ready() {
  const char* dir = std::getenv("HPCT_READY_DIR");
  if (!dir || !*dir) return;
  const char* rank = nullptr;
  // The MPI launcher's rank first: under mpirun in a batch job every rank inherits SLURM_PROCID=0.
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"})
    if ((rank = std::getenv(var))) break;
  const std::string path = std::string(dir) + "/rank-" + (rank ? rank : "0");
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) ::close(fd);  // best effort: without it the launcher forwards after its own timeout
}

}  // namespace hpctrain::signals

