// The NCCL backend: one communicator per job, its unique id made on rank 0 and broadcast over
// MPI; every collective runs on a private stream and is waited for by polling the stream, the
// communicator's asynchronous error and a deadline, never by a bare synchronize.
#include <chrono>
#include <sstream>
#include <thread>

#include "backends.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/dist/mpi_check.h"
#include "hpctrain/dist/nccl_check.h"

namespace hpctrain::dist {

namespace detail {
void throw_cuda_error(const char* call, cudaError_t code, const char* file, int line) {
  std::ostringstream os;
  os << "CUDA call " << call << " failed: " << cudaGetErrorName(code) << ": " << cudaGetErrorString(code)
     << " (on " << hpctrain::detail::host_name() << ")";
  throw Error(hpctrain::detail::located(os.str(), file, line));
}

void throw_nccl_error(const char* call, ncclResult_t code, ncclComm_t comm, const char* file, int line) {
  std::ostringstream os;
  os << "NCCL call " << call << " failed: " << ncclGetErrorString(code);
  const char* last = ncclGetLastError(comm);
  if (last && *last) os << ": " << last;
  os << " (on " << hpctrain::detail::host_name() << ")";
  throw Error(hpctrain::detail::located(os.str(), file, line));
}
}  // namespace detail

namespace {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::kFloat32: return ncclFloat32;
    case DType::kFloat64: return ncclFloat64;
    case DType::kInt8: return ncclInt8;
    case DType::kInt32: return ncclInt32;
    case DType::kInt64: return ncclInt64;
    case DType::kUInt8: return ncclUint8;
    case DType::kUInt32: return ncclUint32;
    case DType::kUInt64: return ncclUint64;
    case DType::kInt16:
    case DType::kUInt16: break;  // NCCL has no 16-bit integers
  }
  throw Error(std::string("NCCL has no ") + dtype_name(t) + " type");
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kAvg: return ncclAvg;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  throw Error("unsupported reduce op for NCCL");
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const Environment& env, const CommOptions& options)
      : env_(env), rank_(env.rank()), size_(env.size()), device_(env.device().index), timeout_s_(options.timeout_s) {
    HPCT_CUDA_CHECK(cudaSetDevice(device_));
    ncclUniqueId id;
    if (rank_ == 0) HPCT_NCCL_CHECK(ncclGetUniqueId(&id), nullptr);
    HPCT_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, env.comm()));
    HPCT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    HPCT_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    // Non-blocking init so that a peer that never arrives cannot hang us: poll with a deadline.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    HPCT_NCCL_CHECK(ncclCommInitRankConfig(&comm_, size_, id, rank_, &config), comm_);
    wait_for_comm("ncclCommInitRankConfig");
    monitor_ = std::make_unique<CollectiveMonitor>(env, options, env.comm());
  }

  ~NcclCommunicator() override {
    monitor_.reset();
    if (comm_) {
      if (healthy_) {
        ncclCommFinalize(comm_);
        ncclResult_t state = ncclInProgress;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (state == ncclInProgress && std::chrono::steady_clock::now() < deadline) {
          ncclCommGetAsyncError(comm_, &state);
          std::this_thread::yield();
        }
        if (state == ncclSuccess) ncclCommDestroy(comm_);
        else ncclCommAbort(comm_);
      } else {
        ncclCommAbort(comm_);
      }
    }
    if (ready_) cudaEventDestroy(ready_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  const char* backend() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool device_buffers() const override { return true; }

  void allreduce(void* data, std::size_t count, DType type, ReduceOp op) override {
    auto scope = monitor_->enter("allreduce", count, type, reduce_op_name(op), -1);
    enqueue([&] { return ncclAllReduce(data, data, count, nccl_type(type), nccl_op(op), comm_, stream_); }, scope->what());
  }

  void broadcast(void* data, std::size_t count, DType type, int root) override {
    auto scope = monitor_->enter("broadcast", count, type, "", root);
    enqueue([&] { return ncclBroadcast(data, data, count, nccl_type(type), root, comm_, stream_); }, scope->what());
  }

  void reduce(void* data, std::size_t count, DType type, ReduceOp op, int root) override {
    auto scope = monitor_->enter("reduce", count, type, reduce_op_name(op), root);
    enqueue([&] { return ncclReduce(data, data, count, nccl_type(type), nccl_op(op), root, comm_, stream_); }, scope->what());
  }

  void reduce_scatter(const void* send, void* recv, std::size_t count, DType type, ReduceOp op) override {
    auto scope = monitor_->enter("reduce_scatter", count, type, reduce_op_name(op), -1);
    enqueue([&] { return ncclReduceScatter(send, recv, count, nccl_type(type), nccl_op(op), comm_, stream_); }, scope->what());
  }

  void allgather(void* data, std::size_t count, DType type) override {
    auto scope = monitor_->enter("allgather", count, type, "", -1);
    // In place, as NCCL defines it: this rank's block of the receive buffer is the send buffer.
    const void* mine = static_cast<const char*>(data) + static_cast<std::size_t>(rank_) * count * dtype_size(type);
    enqueue([&] { return ncclAllGather(mine, data, count, nccl_type(type), comm_, stream_); }, scope->what());
  }

  void barrier() override {
    auto scope = monitor_->enter("barrier", 0, DType::kUInt8, "", -1);
    HPCT_MPI_CHECK(MPI_Barrier(env_.comm()));
  }

 private:
  template <class F>
  void enqueue(F&& launch, const std::string& what) {
    // The current device is a thread's own: gradient buckets are reduced on a thread of their own.
    HPCT_CUDA_CHECK(cudaSetDevice(device_));
    // The buffers are written by work the caller queued on the device's default stream (libtorch's
    // unless told otherwise; it is the legacy stream, shared by the host threads): this stream
    // waits for all of it, or a collective could read gradients that the backward pass has not
    // written yet. (A bucket launched from another thread waits for a little more than its own
    // gradients, never for less.)
    HPCT_CUDA_CHECK(cudaEventRecord(ready_, cudaStreamLegacy));
    HPCT_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    ncclResult_t rc = launch();
    if (rc != ncclSuccess && rc != ncclInProgress) fail(what + ": " + ncclGetErrorString(rc));
    wait_for_stream(what);
  }

  // Polls the stream, NCCL's asynchronous error and a deadline: a dead peer shows up as an
  // async error or a missed deadline, and the communicator is aborted so no kernel spins forever.
  void wait_for_stream(const std::string& what) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
    for (;;) {
      cudaError_t s = cudaStreamQuery(stream_);
      if (s == cudaSuccess) return;
      if (s != cudaErrorNotReady) fail(what + ": CUDA stream error " + cudaGetErrorString(s));
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress)
        fail(what + ": NCCL asynchronous error " + ncclGetErrorString(async));
      if (std::chrono::steady_clock::now() > deadline) fail(what + ": timed out (ddp_timeout)");
      std::this_thread::yield();
    }
  }

  void wait_for_comm(const char* what) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
    ncclResult_t state = ncclInProgress;
    while (state == ncclInProgress) {
      ncclCommGetAsyncError(comm_, &state);
      if (std::chrono::steady_clock::now() > deadline) fail(std::string(what) + ": timed out");
      std::this_thread::yield();
    }
    if (state != ncclSuccess) fail(std::string(what) + ": " + ncclGetErrorString(state));
  }

  [[noreturn]] void fail(const std::string& message) {
    healthy_ = false;
    const char* last = comm_ ? ncclGetLastError(comm_) : nullptr;
    std::string detail = (last && *last) ? std::string(" (") + last + ")" : "";
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    throw Error("NCCL " + message + detail + " on rank " + std::to_string(rank_) + " (" + env_.host() + ")");
  }

  const Environment& env_;
  int rank_, size_;
  int device_;  // this rank's GPU
  double timeout_s_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;  // the default stream's work so far, which a collective waits for
  bool healthy_ = true;
  std::unique_ptr<CollectiveMonitor> monitor_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const Environment& env, const CommOptions& options) {
  return std::make_unique<NcclCommunicator>(env, options);
}

}  // namespace hpctrain::dist
