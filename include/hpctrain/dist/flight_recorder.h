// The collective flight recorder (after PyTorch's NCCL flight recorder): every rank keeps a ring
// of its last collectives (sequence number, operation, count, dtype, start and end). When a
// collective stalls past ddp_timeout, or the job aborts, every live rank writes its ring to
// <flight_dir>/rank-<k>.json; reading the directory names the ranks that never reached the
// collective the others wait in (a stopped or dead rank writes nothing: it is named by its
// absence). hpctrain-flight prints the aligned view.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "hpctrain/core/json.h"
#include "hpctrain/dist/communicator.h"

namespace hpctrain::dist {

class Environment;

class FlightRecorder {
 public:
  /// `dir`: where records go ("" keeps them in memory only). `capacity`: collectives kept.
  FlightRecorder(const Environment& env, std::string dir, std::size_t capacity = 256);
  ~FlightRecorder();
  FlightRecorder(const FlightRecorder&) = delete;
  FlightRecorder& operator=(const FlightRecorder&) = delete;

  /// A collective starts (returns its sequence number) / ends.
  std::uint64_t begin(const char* op, std::size_t count, DType type, const char* reduce, int root);
  void end(std::uint64_t seq);

  /// This rank's record: rank, host, pid, why, the collective in progress and the ring.
  Json record(const std::string& why) const;
  /// Writes record(why) to <dir>/rank-<k>.json (atomically); false when there is no dir or the
  /// write failed (the failure is logged).
  bool dump(const std::string& why) const;
  /// dump(why) on a thread of its own, waited for at most `seconds`: a job about to abort must not
  /// hang on a file system that does not answer (false then; the thread is left behind, so the
  /// caller must end the process next).
  bool dump_before_abort(const std::string& why, double seconds) const;
  const std::string& dir() const { return dir_; }

  /// The recorder of the job's communicator, for the failure policy (it dumps before aborting).
  static FlightRecorder* active();

 private:
  struct Entry {
    std::uint64_t seq = 0;
    const char* op = "";
    std::size_t count = 0;
    DType type = DType::kUInt8;
    const char* reduce = "";
    int root = -1;
    double start = 0, end = -1;  // seconds since the epoch (end < 0: in progress)
  };
  const Environment& env_;
  std::string dir_;
  mutable std::mutex mu_;
  std::vector<Entry> ring_;
  std::uint64_t next_seq_ = 1;
};

/// Reads the records in `dir` of a job of `world` ranks on `hosts` and says what they show: the
/// collective the ranks wait in, and which ranks never reached it (with their hosts), those with
/// no record first. "" when the directory has no record.
std::string analyse_flight_dir(const std::string& dir, int world, const std::vector<std::string>& hosts);

/// The records side by side: one line per collective (the last `last` sequence numbers), one
/// column per rank (done, waiting since, or not reached), then analyse_flight_dir's summary.
std::string aligned_flight_view(const std::string& dir, std::size_t last = 12);

}  // namespace hpctrain::dist
