// Environment: MPI start-up, node-local topology, SLURM facts and device binding.
#include "hpctrain/dist/environment.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <thread>

#include "hpctrain/core/error.h"
#include "hpctrain/dist/mpi_check.h"

#ifdef HPCTRAIN_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace hpctrain::dist {

namespace {
std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}
}  // namespace

namespace detail {
void throw_mpi_error(const char* call, int code, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) std::snprintf(text, sizeof(text), "code %d", code);
  int rank = -1, initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::ostringstream os;
  os << "MPI call " << call << " failed: " << text << " (rank " << rank << " on "
     << hpctrain::detail::host_name() << ")";
  throw Error(hpctrain::detail::located(os.str(), file, line));
}
}  // namespace detail

SlurmInfo SlurmInfo::from_environment() {
  SlurmInfo s;
  s.job_id = env_or_empty("SLURM_JOB_ID");
  s.present = !s.job_id.empty();
  s.job_name = env_or_empty("SLURM_JOB_NAME");
  s.array_job_id = env_or_empty("SLURM_ARRAY_JOB_ID");
  s.array_task_id = env_or_empty("SLURM_ARRAY_TASK_ID");
  s.step_id = env_or_empty("SLURM_STEP_ID");
  s.procid = env_or_empty("SLURM_PROCID");
  s.localid = env_or_empty("SLURM_LOCALID");
  s.ntasks = env_or_empty("SLURM_NTASKS");
  s.nodelist = env_or_empty("SLURM_JOB_NODELIST");
  s.cluster = env_or_empty("SLURM_CLUSTER_NAME");
  std::string rc = env_or_empty("SLURM_RESTART_COUNT");
  s.restart_count = rc.empty() ? 0 : std::atoi(rc.c_str());
  return s;
}

std::string SlurmInfo::requeue_id() const {
  if (!array_job_id.empty() && !array_task_id.empty()) return array_job_id + "_" + array_task_id;
  return job_id;
}

std::string SlurmInfo::describe() const {
  if (!present) return "not under SLURM";
  std::ostringstream os;
  os << "job " << job_id;
  if (!job_name.empty()) os << " (" << job_name << ")";
  if (!array_job_id.empty()) os << ", array task " << array_job_id << "_" << array_task_id;
  os << ", step " << (step_id.empty() ? "-" : step_id) << ", procid " << (procid.empty() ? "-" : procid)
     << ", localid " << (localid.empty() ? "-" : localid) << ", ntasks " << (ntasks.empty() ? "-" : ntasks)
     << ", restart count " << restart_count << ", nodes " << (nodelist.empty() ? "-" : nodelist);
  if (!cluster.empty()) os << ", cluster " << cluster;
  return os.str();
}

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "single";
    case MPI_THREAD_FUNNELED: return "funneled";
    case MPI_THREAD_SERIALIZED: return "serialized";
    case MPI_THREAD_MULTIPLE: return "multiple";
  }
  return "unknown";
}

Environment::Environment(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    // MULTIPLE: the watchdog thread may call MPI_Abort while the main thread sits in a
    // collective, and the loader thread runs beside MPI calls.
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &thread_level_);
    if (rc != MPI_SUCCESS) throw Error("MPI_Init_thread failed (code " + std::to_string(rc) + ")");
    owns_mpi_ = true;
  } else {
    MPI_Query_thread(&thread_level_);
  }
  HPCT_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
  HPCT_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  HPCT_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  HPCT_MPI_CHECK(MPI_Comm_size(comm_, &size_));

  // Node-local rank from the ranks that share memory with us: the launcher's variables disagree
  // (SLURM_LOCALID is 0 on every rank under mpirun in a batch script).
  MPI_Comm node = MPI_COMM_NULL;
  HPCT_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
  MPI_Comm_rank(node, &local_rank_);
  MPI_Comm_size(node, &local_size_);
  MPI_Comm_free(&node);
  int leader = local_rank_ == 0 ? 1 : 0;
  HPCT_MPI_CHECK(MPI_Allreduce(&leader, &node_count_, 1, MPI_INT, MPI_SUM, comm_));

  host_ = hpctrain::detail::host_name();
  // Every rank's host, for messages that name a rank that cannot speak for itself (a stalled one).
  {
    constexpr int kLen = 256;
    char mine[kLen] = {0};
    host_.copy(mine, kLen - 1);
    std::vector<char> all(static_cast<std::size_t>(size_) * kLen);
    HPCT_MPI_CHECK(MPI_Allgather(mine, kLen, MPI_CHAR, all.data(), kLen, MPI_CHAR, comm_));
    for (int r = 0; r < size_; ++r) hosts_.emplace_back(all.data() + static_cast<std::size_t>(r) * kLen);
  }
  slurm_ = SlurmInfo::from_environment();

#ifdef HPCTRAIN_HAVE_CUDA
  cudaError_t err = cudaGetDeviceCount(&cuda_device_count_);
  if (err != cudaSuccess) {
    cuda_status_ = std::string("no usable CUDA device: ") + cudaGetErrorString(err);
    cuda_device_count_ = 0;
    cudaGetLastError();  // clear the sticky-free error so later CUDA calls start clean
  } else if (cuda_device_count_ == 0) {
    cuda_status_ = "no CUDA device visible";
  } else {
    device_.cuda = true;
    device_.index = device_for_rank(local_rank_, local_size_, cuda_device_count_);
    err = cudaSetDevice(device_.index);
    if (err != cudaSuccess)
      throw Error("cudaSetDevice(" + std::to_string(device_.index) + ") failed on " + host_ + ": " +
                  cudaGetErrorString(err));
  }
#else
  cuda_status_ = "built without CUDA";
#endif
}

int device_for_rank(int local_rank, int local_size, int device_count) {
  if (device_count <= 0 || local_size <= 0 || local_rank < 0 || local_rank >= local_size) return -1;
  if (local_size <= device_count) return local_rank;
  return static_cast<int>(static_cast<long long>(local_rank) * device_count / local_size);
}

Environment::~Environment() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  if (owns_mpi_) MPI_Finalize();
}

int Environment::default_threads() const {
  std::string omp = env_or_empty("OMP_NUM_THREADS");
  if (!omp.empty()) {
    int n = std::atoi(omp.c_str());
    if (n >= 1) return n;
  }
  int hw = static_cast<int>(std::thread::hardware_concurrency());
  if (hw < 1) hw = 1;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int bound = CPU_COUNT(&set);
    if (bound >= 1 && bound < hw) return bound;  // the launcher gave this rank its own cores
  }
  return std::max(1, hw / std::max(1, local_size_));
}

std::string Environment::mpi_library() const {
  char version[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  MPI_Get_library_version(version, &len);
  std::string v(version, static_cast<size_t>(len));
  auto cut = v.find_first_of(",\n");
  return cut == std::string::npos ? v : v.substr(0, cut);
}

int Environment::first_failing_rank(bool failed) const {
  int mine = failed ? rank_ : size_;
  int lowest = size_;
  HPCT_MPI_CHECK(MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, comm_));
  return lowest == size_ ? -1 : lowest;
}

std::int64_t Environment::max_over_ranks(std::int64_t value) const {
  HPCT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT64_T, MPI_MAX, comm_));
  return value;
}

std::vector<std::string> Environment::gather_to_root(const std::string& mine) const {
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(rank_ == 0 ? size_ : 0);
  HPCT_MPI_CHECK(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, comm_));
  std::vector<int> displs(lens.size());
  std::string all;
  if (rank_ == 0) {
    int total = 0;
    for (int r = 0; r < size_; ++r) {
      displs[r] = total;
      total += lens[r];
    }
    all.resize(static_cast<size_t>(total));
  }
  HPCT_MPI_CHECK(MPI_Gatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(),
                             MPI_CHAR, 0, comm_));
  std::vector<std::string> out;
  for (int r = 0; r < static_cast<int>(lens.size()); ++r) out.push_back(all.substr(displs[r], lens[r]));
  return out;
}

std::string Environment::broadcast_string(const std::string& s, int root) const {
  std::uint64_t n = s.size();
  HPCT_MPI_CHECK(MPI_Bcast(&n, 1, MPI_UINT64_T, root, comm_));
  std::string out = rank_ == root ? s : std::string(n, '\0');
  // MPI counts are int: send in pieces of at most 1 GiB.
  for (std::uint64_t off = 0; off < n; off += (1u << 30)) {
    const int len = static_cast<int>(std::min<std::uint64_t>(1u << 30, n - off));
    HPCT_MPI_CHECK(MPI_Bcast(out.data() + off, len, MPI_CHAR, root, comm_));
  }
  return out;
}

void Environment::abort(int exit_code) const noexcept {
  std::cerr.flush();
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);  // MPI_Abort does not return; this is for a broken MPI only
}

}  // namespace hpctrain::dist
