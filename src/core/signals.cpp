// The preemption flag and its async-signal-safe handler.
#include "hpctrain/core/signals.h"

#include <csignal>
#include <sstream>

#include "hpctrain/core/error.h"

namespace hpctrain::signals {
namespace {
volatile std::sig_atomic_t g_received = 0;

extern "C" void on_signal(int sig) {
  if (g_received == 0) g_received = sig;
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

void install(const std::string& names) {
  std::stringstream ss(names);
  for (std::string n; std::getline(ss, n, ',');) {
    if (n.empty()) continue;
    const int sig = number(n);
    if (sig < 0) throw ConfigError("preemption_signals: unknown signal '" + n + "'; expected USR1, USR2, TERM, INT, HUP or XCPU");
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(sig, &sa, nullptr);
  }
}

int received() { return g_received; }
void reset() { g_received = 0; }

}  // namespace hpctrain::signals
