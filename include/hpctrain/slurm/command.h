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

/// Whether `id` is a SLURM job id ("123") or array task ("123_4"): safe to put in a command.
bool valid_job_id(const std::string& id);

/// What `scontrol show job` says of a job: its state (RUNNING, PENDING, COMPLETING, ...; "" when
/// SLURM cannot be asked) and how often it was requeued (-1: unknown).
struct JobInfo {
  std::string state;
  int restarts = -1;
};
JobInfo job_info(const std::string& id);

}  // namespace hpctrain::slurm
