// Internal: constructors of the communicator backends, used by make_communicator.
#pragma once

#include <memory>
#include <string>

#include <mpi.h>

#include "hpctrain/dist/communicator.h"
#include "hpctrain/dist/flight_recorder.h"
#include "hpctrain/dist/watchdog.h"

namespace hpctrain::dist {

/// "allreduce #12: 1000 float32 (sum)": names a collective in stall and error messages.
std::string describe_collective(const char* name, std::uint64_t seq, std::size_t count, DType type,
                                const char* op);

/// What every backend wraps its collectives in: the flight recorder's entry, the watchdog (on
/// expiry: every live rank writes its flight record, the lowest one reads them all and names the
/// ranks that never arrived, the job aborts with exit_code::kTimeout), and, with
/// check_collectives, an agreement on the collective first (over `check_comm`, the communicator
/// the collective runs on) that names the ranks calling something else.
class CollectiveMonitor {
 public:
  CollectiveMonitor(const Environment& env, const CommOptions& options, MPI_Comm check_comm);
  ~CollectiveMonitor();
  CollectiveMonitor(const CollectiveMonitor&) = delete;
  CollectiveMonitor& operator=(const CollectiveMonitor&) = delete;

  class Scope {
   public:
    Scope(CollectiveMonitor& m, std::uint64_t seq, std::string what) : m_(m), seq_(seq), what_(std::move(what)) {}
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    const std::string& what() const { return what_; }

   private:
    CollectiveMonitor& m_;
    std::uint64_t seq_;
    std::string what_;
  };
  /// Before a collective (`root` -1 when it has none).
  [[nodiscard]] std::unique_ptr<Scope> enter(const char* op, std::size_t count, DType type, const char* reduce, int root);

 private:
  void on_stall(const std::string& what, double age);
  void check(std::uint64_t seq, const char* op, std::size_t count, DType type, const char* reduce, int root);
  const Environment& env_;
  CommOptions options_;
  MPI_Comm check_comm_;
  std::unique_ptr<FlightRecorder> recorder_;
  std::unique_ptr<Watchdog> watchdog_;
};

std::unique_ptr<Communicator> make_mpi_communicator(const Environment& env, const CommOptions& options);
#ifdef HPCTRAIN_HAVE_NCCL
std::unique_ptr<Communicator> make_nccl_communicator(const Environment& env, const CommOptions& options);
#endif

}  // namespace hpctrain::dist
