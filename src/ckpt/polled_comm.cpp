// Non-blocking gather and broadcast, completed by polling with a growing sleep.
#include "polled_comm.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>

#include "hpctrain/core/error.h"
#include "hpctrain/dist/mpi_check.h"

namespace hpctrain::ckpt {

PolledComm::PolledComm(MPI_Comm comm, double timeout_s) : timeout_s_(timeout_s) {
  HPCT_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
  HPCT_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

PolledComm::~PolledComm() {
  if (broken_) {
    // A collective was abandoned: its buffers and the communicator stay as they are (the job is
    // being aborted anyway), never freed under MPI's feet.
    new std::vector<std::shared_ptr<void>>(std::move(abandoned_));
    return;
  }
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void PolledComm::wait(MPI_Request* request, const char* what, std::shared_ptr<void> keep) const {
  const auto start = std::chrono::steady_clock::now();
  auto nap = std::chrono::microseconds(20);
  for (;;) {
    int done = 0;
    HPCT_MPI_CHECK(MPI_Test(request, &done, MPI_STATUS_IGNORE));
    if (done) return;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s_) {
      broken_ = true;
      abandoned_.push_back(std::move(keep));
      throw Error(std::string("checkpoint: not every rank reached the ") + what + " within ddp_timeout (" +
                  std::to_string(static_cast<long long>(timeout_s_)) + " s): a rank is stuck or gone");
    }
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(2000));
  }
}

std::vector<std::string> PolledComm::gather(const std::string& mine) const {
  HPCT_CHECK(!broken_, "checkpoint: the writer's communicator is unusable after a time-out");
  // Heap buffers: on a time-out they outlive this call (MPI may still write into them).
  struct Buffers {
    std::int64_t len = 0;
    std::string mine, all;
    std::vector<std::int64_t> lens;
    std::vector<int> counts, displs;
  };
  auto b = std::make_shared<Buffers>();
  b->mine = mine;
  b->len = static_cast<std::int64_t>(mine.size());
  HPCT_CHECK(b->len < (std::int64_t{1} << 31), "checkpoint: " << b->len << " bytes to gather exceed MPI's count");
  b->lens.resize(rank_ == 0 ? size_ : 0);
  MPI_Request req;
  HPCT_MPI_CHECK(MPI_Igather(&b->len, 1, MPI_INT64_T, b->lens.data(), 1, MPI_INT64_T, 0, comm_, &req));
  wait(&req, "checkpoint gather", b);
  b->counts.assign(b->lens.begin(), b->lens.end());
  b->displs.resize(b->lens.size());
  if (rank_ == 0) {
    std::int64_t total = 0;
    for (int r = 0; r < size_; ++r) {
      b->displs[r] = static_cast<int>(total);
      total += b->lens[r];
    }
    HPCT_CHECK(total < (std::int64_t{1} << 31), "checkpoint: " << total << " bytes to gather exceed MPI's count");
    b->all.resize(static_cast<std::size_t>(total));
  }
  HPCT_MPI_CHECK(MPI_Igatherv(b->mine.data(), static_cast<int>(b->len), MPI_CHAR, b->all.data(), b->counts.data(),
                              b->displs.data(), MPI_CHAR, 0, comm_, &req));
  wait(&req, "checkpoint gather", b);
  std::vector<std::string> out;
  for (int r = 0; r < static_cast<int>(b->counts.size()); ++r) out.push_back(b->all.substr(b->displs[r], b->counts[r]));
  return out;
}

std::string PolledComm::broadcast(const std::string& from_root) const {
  HPCT_CHECK(!broken_, "checkpoint: the writer's communicator is unusable after a time-out");
  struct Buffers {
    std::int64_t n = 0;
    std::string data;
  };
  auto b = std::make_shared<Buffers>();
  b->n = static_cast<std::int64_t>(from_root.size());
  MPI_Request req;
  HPCT_MPI_CHECK(MPI_Ibcast(&b->n, 1, MPI_INT64_T, 0, comm_, &req));
  wait(&req, "checkpoint broadcast", b);
  HPCT_CHECK(b->n >= 0 && b->n < (std::int64_t{1} << 31), "checkpoint: broadcast of " << b->n << " bytes");
  b->data = rank_ == 0 ? from_root : std::string(static_cast<std::size_t>(b->n), '\0');
  HPCT_MPI_CHECK(MPI_Ibcast(b->data.data(), static_cast<int>(b->n), MPI_CHAR, 0, comm_, &req));
  wait(&req, "checkpoint broadcast", b);
  return b->data;
}

}  // namespace hpctrain::ckpt
