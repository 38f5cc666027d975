// Test helper: run a command with a time limit and capture its exit status and output.
#pragma once

#include <string>
#include <vector>

#include "hpctrain/core/json.h"

namespace hpctrain::testing {

struct RunResult {
  int exit_code = -1;     ///< exit status, or 128+signal when killed
  bool timed_out = false;  ///< killed because it ran past the limit
  double seconds = 0;
  std::string out;  ///< stdout
  std::string err;  ///< stderr
  std::string all() const { return out + err; }
};

/// The factor every time limit of the tests is multiplied by, for a loaded or slow machine:
/// HPCTRAIN_TEST_TIME_SCALE, from 1 to 100 (1 when unset or out of range). run(), spawn's waits
/// (wait_for_path, wait_for_children) scale their limits themselves; tests scale the bounds of
/// their own timing assertions with scaled().
double time_scale();
/// `seconds` x time_scale().
double scaled(double seconds);

/// Runs argv (argv[0] looked up in PATH) in its own process group; kills the group after
/// `timeout_s`. Its standard input is /dev/null.
RunResult run(const std::vector<std::string>& argv, double timeout_s = 60, const std::string& cwd = "");

/// Starts argv in its own process group with output to `log_path`; returns its pid.
int spawn(const std::vector<std::string>& argv, const std::string& log_path);
/// Children of `parent` whose command name is `comm` (e.g. the ranks mpiexec started).
std::vector<int> children_named(int parent, const std::string& comm);
/// Waits (up to timeout_s) until `parent` has `count` such children; returns them (fewer on time-out).
std::vector<int> wait_for_children(int parent, const std::string& comm, std::size_t count, double timeout_s);
/// Kills the whole process group of `pid` with `signal` and reaps it; returns the exit status.
int kill_group(int pid, int signal);
/// Waits (up to timeout_s) until `path` exists; false on time-out.
bool wait_for_path(const std::string& path, double timeout_s);

/// mpiexec -np N (with the build's extra flags) followed by argv.
std::vector<std::string> mpiexec(int np, const std::vector<std::string>& argv);

/// A fresh empty directory under $TMPDIR (or /tmp); left in place so a failure can be inspected.
std::string temp_dir(const std::string& prefix);

/// Writes text to a file (throws on failure).
void write_file(const std::string& path, const std::string& text);
std::string read_file(const std::string& path);
/// XORs the byte at `offset` of `path` with `mask` (a corruption for checksum tests; throws on failure).
void flip_byte(const std::string& path, long long offset, unsigned char mask = 0x01);
/// Every event of output_dir/metrics.jsonl.
std::vector<Json> read_metrics(const std::string& output_dir);

}  // namespace hpctrain::testing
