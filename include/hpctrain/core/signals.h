// Preemption signals: SIGUSR1/SIGTERM (or others) set a flag that the training loop reads at
// step boundaries. Signal handlers are process-wide, so is the flag.
#pragma once

#include <string>
#include <vector>

namespace hpctrain::signals {

/// Installs the flag-setting handler for each signal name in `names` ("USR1,TERM,INT"; with or
/// without the SIG prefix). Throws ConfigError naming an unknown signal.
void install(const std::string& names);
/// The signal number of a name, or -1.
int number(const std::string& name);
/// The first signal received since install (0 when none).
int received();
/// For tests: forget a received signal.
void reset();

}  // namespace hpctrain::signals
