// Running SLURM's commands (squeue, scontrol) and reading what they say.
#pragma once

#include <string>

namespace hpctrain::slurm {

struct CommandResult {
  int status = -1;     ///< the exit status (0: success); -1 when the command could not be started
  std::string output;  ///< stdout and stderr together, without trailing newlines
};

/// Runs `command` through /bin/sh with stderr joined to stdout.
CommandResult run_command(const std::string& command);

}  // namespace hpctrain::slurm
