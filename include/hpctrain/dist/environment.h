// The process's place in the job: MPI world, node-local rank, SLURM facts, device binding and
// the torch thread count it should use. Created once in main and passed down.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace hpctrain::dist {

/// What SLURM tells a job step through its environment (all empty outside SLURM).
struct SlurmInfo {
  bool present = false;        ///< SLURM_JOB_ID is set
  std::string job_id;          ///< SLURM_JOB_ID
  std::string job_name;        ///< SLURM_JOB_NAME
  std::string array_job_id;    ///< SLURM_ARRAY_JOB_ID
  std::string array_task_id;   ///< SLURM_ARRAY_TASK_ID
  std::string step_id;         ///< SLURM_STEP_ID (unset under mpirun inside a batch script)
  std::string procid;          ///< SLURM_PROCID (0 on every rank under mpirun: not a rank source)
  std::string localid;         ///< SLURM_LOCALID
  std::string ntasks;          ///< SLURM_NTASKS
  std::string nodelist;        ///< SLURM_JOB_NODELIST
  std::string cluster;         ///< SLURM_CLUSTER_NAME
  int restart_count = 0;       ///< SLURM_RESTART_COUNT (unset means 0: never requeued)

  /// Reads the variables of the current process environment.
  static SlurmInfo from_environment();
  /// The id `scontrol requeue` must be given: "<array job>_<task>" for an array task (the plain
  /// job id would requeue the whole array), else the job id.
  std::string requeue_id() const;
  /// One line for logs and `hpctrain env`.
  std::string describe() const;
};

/// The device a rank computes on.
struct Device {
  bool cuda = false;
  int index = -1;  ///< CUDA ordinal when cuda
  std::string str() const { return cuda ? "cuda:" + std::to_string(index) : "cpu"; }
};

/// The CUDA device a rank binds, from its place on its node and the devices visible to it (-1 when
/// none is). One rank per device when the node has devices enough: local rank i takes device i
/// (devices past the node's rank count stay idle; under SLURM's per-task GPU binding each rank
/// sees one device, its own, and takes it). With more ranks than devices, consecutive local ranks
/// (which launchers place on neighbouring cores) share a device in contiguous blocks:
/// local_rank * devices / local_size. NCCL refuses two ranks of one communicator on one device;
/// such a job needs ddp_backend=mpi.
int device_for_rank(int local_rank, int local_size, int device_count);

/// Owns MPI for the process (MPI_Init_thread in the constructor, MPI_Finalize in the destructor)
/// and a private duplicate of MPI_COMM_WORLD that returns errors instead of aborting.
class Environment {
 public:
  Environment(int* argc, char*** argv);
  ~Environment();
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  int node_count() const { return node_count_; }
  const std::string& host() const { return host_; }
  /// Every rank's host, in rank order.
  const std::vector<std::string>& hosts() const { return hosts_; }
  MPI_Comm comm() const { return comm_; }
  int thread_level() const { return thread_level_; }
  const SlurmInfo& slurm() const { return slurm_; }

  /// cuda:<device_for_rank(...)> when CUDA is compiled in and a device is visible, else cpu.
  const Device& device() const { return device_; }
  int cuda_device_count() const { return cuda_device_count_; }
  /// Why CUDA is not used ("" when it is).
  const std::string& cuda_status() const { return cuda_status_; }

  /// Torch intra-op threads for this rank: OMP_NUM_THREADS when set; else the cores this
  /// process is bound to when the launcher bound it; else cores on the node / local ranks; >= 1.
  int default_threads() const;

  /// "Open MPI v4.1.4, ..." (first line of MPI_Get_library_version).
  std::string mpi_library() const;

  /// Collective: the lowest rank that passes failed=true, or -1 when no rank did. Lets every
  /// rank stop together, cleanly, after a step that may fail on some ranks only.
  int first_failing_rank(bool failed) const;

  /// Collective: the largest `value` of any rank.
  std::int64_t max_over_ranks(std::int64_t value) const;

  /// Collective: rank 0 gets every rank's string in rank order; other ranks get {}.
  std::vector<std::string> gather_to_root(const std::string& mine) const;

  /// Collective: `root`'s string on every rank.
  std::string broadcast_string(const std::string& s, int root = 0) const;

  /// Ends the whole job now (MPI_Abort on MPI_COMM_WORLD): no rank is left waiting.
  [[noreturn]] void abort(int exit_code) const noexcept;

 private:
  bool owns_mpi_ = false;
  int thread_level_ = MPI_THREAD_SINGLE;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1, node_count_ = 1;
  std::string host_;
  std::vector<std::string> hosts_;
  SlurmInfo slurm_;
  Device device_;
  int cuda_device_count_ = 0;
  std::string cuda_status_;
};

/// Names of the thread levels, for messages.
const char* thread_level_name(int level);

}  // namespace hpctrain::dist
