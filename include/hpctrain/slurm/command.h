// Running SLURM's commands (squeue, scontrol) and reading what they say.
#pragma once

#include <atomic>
#include <string>

namespace hpctrain::slurm {

struct CommandResult {
  int status = -1;         ///< the exit status (0: success); -1 when it could not start or timed out
  bool timed_out = false;  ///< killed (with its process group) at the deadline
  std::string output;      ///< stdout and stderr together (the first MiB), without trailing newlines
};

/// Runs `command` through /bin/sh with stderr joined to stdout, for at most `timeout_s` seconds: a
/// slow or unreachable slurmctld cannot hold the caller longer. `cancel`, when given and set,
/// ends it early too (the caller is shutting down).
CommandResult run_command(const std::string& command, double timeout_s = 60, const std::atomic<bool>* cancel = nullptr);

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
