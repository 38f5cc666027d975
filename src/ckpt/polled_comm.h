// The checkpoint writer's own communicator: a duplicate of the job's, used only by the thread that
// writes checkpoints, so its collectives never interleave with training's. Waits poll with a sleep
// rather than spin (a spinning wait would take a core from training) and give up after a timeout.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

namespace hpctrain::ckpt {

class PolledComm {
 public:
  /// Collective over `comm` (MPI_Comm_dup). `timeout_s` bounds every wait.
  PolledComm(MPI_Comm comm, double timeout_s);
  ~PolledComm();
  PolledComm(const PolledComm&) = delete;
  PolledComm& operator=(const PolledComm&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  /// Rank 0 gets every rank's bytes in rank order; the others get {}.
  std::vector<std::string> gather(const std::string& mine) const;
  /// Rank 0's bytes on every rank.
  std::string broadcast(const std::string& from_root) const;

 private:
  /// Completes `request`; on a time-out throws, and `keep` (the buffers the operation still
  /// uses) is kept alive for good, as is the communicator: MPI may write into them later.
  void wait(MPI_Request* request, const char* what, std::shared_ptr<void> keep) const;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  double timeout_s_;
  mutable std::vector<std::shared_ptr<void>> abandoned_;
  mutable bool broken_ = false;
};

}  // namespace hpctrain::ckpt
