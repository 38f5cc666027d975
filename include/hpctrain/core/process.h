// Running another program: fork/exec in its own process group; run() with output through pipes, a
// deadline after which the whole group is killed, and a cancel flag; start() in the background. The one runner of the product (SLURM's
// commands) and of the tests.
#pragma once

#include <atomic>
#include <cstddef>
#include <string>
#include <sys/types.h>
#include <vector>

namespace hpctrain::process {

struct Options {
  double timeout_s = 60;                       ///< the whole group is killed (SIGKILL) after this
  const std::atomic<bool>* cancel = nullptr;   ///< when set (the caller is shutting down): killed at once
  std::string cwd;                             ///< "" : the caller's
  bool join_stderr = false;                    ///< stderr into `out` (else into `err`)
  std::size_t max_output = 0;                  ///< bytes kept of each stream (0: all); the rest is read and dropped
  bool die_with_parent = false;                ///< SIGKILL when the caller dies (a test killed by its time limit)
};

struct Result {
  bool started = false;    ///< fork and pipes worked (exec failing shows as status 127)
  bool timed_out = false;  ///< killed at the deadline or on cancel
  int status = -1;         ///< exit status, or 128 + the signal that ended it; -1 when not started or not reaped
  double seconds = 0;
  std::string out, err;
};

/// Runs argv (argv[0] looked up in PATH) with standard input from /dev/null, default signal
/// actions and no blocked signals (the caller's preemption handling is not the child's). Returns
/// when it ended, or at the deadline after killing its process group; leftovers of the group (a
/// launcher's children) are killed after it ends.
Result run(const std::vector<std::string>& argv, const Options& options);

struct StartOptions {
  std::string output_path;       ///< stdout and stderr go here (created, or truncated)
  std::string cwd;               ///< "" : the caller's
  bool die_with_parent = false;  ///< SIGKILL when the caller dies
};

/// Starts argv in the background as run() does (own process group, /dev/null as input, default
/// signals), its output into a file. Returns its pid, or -1 when the file cannot be created or
/// fork fails; the caller reaps it (waitpid) and may kill its group (kill(-pid, ...)).
pid_t start(const std::vector<std::string>& argv, const StartOptions& options);

}  // namespace hpctrain::process
