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
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void PolledComm::wait(MPI_Request* request, const char* what) const {
  const auto start = std::chrono::steady_clock::now();
  auto nap = std::chrono::microseconds(20);
  for (;;) {
    int done = 0;
    HPCT_MPI_CHECK(MPI_Test(request, &done, MPI_STATUS_IGNORE));
    if (done) return;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s_)
      throw Error(std::string("checkpoint: not every rank reached the ") + what + " within ddp_timeout (" +
                  std::to_string(static_cast<long long>(timeout_s_)) + " s): a rank is stuck or gone");
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(2000));
  }
}

std::vector<std::string> PolledComm::gather(const std::string& mine) const {
  std::int64_t len = static_cast<std::int64_t>(mine.size());
  HPCT_CHECK(len < (std::int64_t{1} << 31), "checkpoint: " << len << " bytes to gather exceed MPI's count");
  std::vector<std::int64_t> lens(rank_ == 0 ? size_ : 0);
  MPI_Request req;
  HPCT_MPI_CHECK(MPI_Igather(&len, 1, MPI_INT64_T, lens.data(), 1, MPI_INT64_T, 0, comm_, &req));
  wait(&req, "checkpoint gather");
  std::vector<int> counts(lens.begin(), lens.end()), displs(lens.size());
  std::string all;
  if (rank_ == 0) {
    std::int64_t total = 0;
    for (int r = 0; r < size_; ++r) {
      displs[r] = static_cast<int>(total);
      total += lens[r];
    }
    HPCT_CHECK(total < (std::int64_t{1} << 31), "checkpoint: " << total << " bytes to gather exceed MPI's count");
    all.resize(static_cast<std::size_t>(total));
  }
  HPCT_MPI_CHECK(MPI_Igatherv(mine.data(), static_cast<int>(len), MPI_CHAR, all.data(), counts.data(), displs.data(),
                              MPI_CHAR, 0, comm_, &req));
  wait(&req, "checkpoint gather");
  std::vector<std::string> out;
  for (int r = 0; r < static_cast<int>(counts.size()); ++r) out.push_back(all.substr(displs[r], counts[r]));
  return out;
}

std::string PolledComm::broadcast(const std::string& from_root) const {
  std::int64_t n = static_cast<std::int64_t>(from_root.size());
  MPI_Request req;
  HPCT_MPI_CHECK(MPI_Ibcast(&n, 1, MPI_INT64_T, 0, comm_, &req));
  wait(&req, "checkpoint broadcast");
  HPCT_CHECK(n >= 0 && n < (std::int64_t{1} << 31), "checkpoint: broadcast of " << n << " bytes");
  std::string out = rank_ == 0 ? from_root : std::string(static_cast<std::size_t>(n), '\0');
  HPCT_MPI_CHECK(MPI_Ibcast(out.data(), static_cast<int>(n), MPI_CHAR, 0, comm_, &req));
  wait(&req, "checkpoint broadcast");
  return out;
}

}  // namespace hpctrain::ckpt
