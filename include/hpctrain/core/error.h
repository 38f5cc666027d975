// Error types and the generic CHECK macro: library code throws, only main decides to end the job.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace hpctrain {

/// Exit codes of every hpctrain process (documented in README.md, "Exit codes").
namespace exit_code {
constexpr int kOk = 0;
constexpr int kFatal = 1;    ///< a runtime failure (I/O, MPI, NCCL, a bug): the job was aborted
constexpr int kConfig = 2;   ///< bad configuration, command line or input data
constexpr int kTimeout = 3;  ///< a collective exceeded ddp_timeout: the watchdog aborted the job
constexpr int kPreempted = 4;  ///< stopped by a preemption signal after a checkpoint (requeued when under SLURM)
constexpr int kRequeueMe = 5;  ///< as kPreempted, but scontrol requeue failed or is missing: the job script should requeue
constexpr int kWriteFailed = 6;  ///< an output could not be written (disk full, quota, I/O error); committed checkpoints stay valid
constexpr int kAnomaly = 7;  ///< on_anomaly=stop: numerically anomalous steps; the last good state was checkpointed
}  // namespace exit_code

/// Any failure hpctrain reports. what() is the whole message, ready for the log.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, int exit_code = exit_code::kFatal)
      : std::runtime_error(message), exit_code_(exit_code) {}
  int exit_code() const noexcept { return exit_code_; }

 private:
  int exit_code_;
};

/// A value the user wrote (configuration, command line) is wrong. Names the key, the value and
/// what was expected.
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& message) : Error(message, exit_code::kConfig) {}
};

/// An input data file is unusable (missing, not HDF5, wrong keys, shapes or dtypes, NaN...).
/// Names the file, the key and what was expected.
class DataError : public Error {
 public:
  explicit DataError(const std::string& message) : Error(message, exit_code::kConfig) {}
};

/// A file we own could not be written completely (write, flush, fsync, close or rename failed):
/// names the file and the system's error.
class WriteError : public Error {
 public:
  explicit WriteError(const std::string& message) : Error(message, exit_code::kWriteFailed) {}
};

/// An error that every rank throws at the same point with the same message, because the ranks
/// decided it together (e.g. rank 0 validated the data set and broadcast the verdict). The failure
/// policy reports it once, on rank 0, and every rank exits cleanly with its code: no abort needed.
class CollectiveError : public Error {
 public:
  CollectiveError(const std::string& message, int exit_code) : Error(message, exit_code) {}
};

namespace detail {
/// "<what> (<file>:<line>)": the common tail of errors raised by the CHECK macros.
std::string located(const std::string& what, const char* file, int line);
/// Host name of this process, cached (used in every library error: it matters on a 100-node job).
const std::string& host_name();
}  // namespace detail

}  // namespace hpctrain

/// Throws hpctrain::Error with the streamed message when `cond` is false.
#define HPCT_CHECK(cond, msg)                                                          \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::ostringstream hpct_check_os_;                                               \
      hpct_check_os_ << msg;                                                           \
      throw ::hpctrain::Error(                                                         \
          ::hpctrain::detail::located(hpct_check_os_.str(), __FILE__, __LINE__));      \
    }                                                                                  \
  } while (0)
