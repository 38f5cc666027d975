// Collectives on raw buffers behind one interface, with an MPI backend (CPU) and an NCCL backend
// (GPU, bootstrapped through MPI). No framework headers: tensors reach it as pointers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "hpctrain/core/dtype.h"

namespace hpctrain::dist {

class Environment;

// The element types are core's (one vocabulary with the checkpoint format).
using hpctrain::DType;
using hpctrain::dtype_name;
using hpctrain::dtype_of;
using hpctrain::dtype_size;

enum class ReduceOp { kSum, kAvg, kMax, kMin };
const char* reduce_op_name(ReduceOp op);

/// How collectives are carried out.
struct CommOptions {
  std::string backend = "auto";  ///< ddp_backend: auto (nccl on GPU ranks, else mpi), mpi, nccl
  double timeout_s = 1800;       ///< ddp_timeout: a collective taking longer aborts the whole job
  std::string flight_dir;        ///< where the flight recorder writes on a stall or abort ("": nowhere)
  bool check_collectives = false;  ///< ddp_check_collectives: agree on every collective first (debug)
};

/// Collectives among all ranks of the job. Every call is blocking and in place; every rank must
/// call the same collectives in the same order. Buffers live where the backend expects them
/// (host memory for mpi, device memory of this rank's GPU for nccl).
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual const char* backend() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// True when buffers must be device (GPU) memory.
  virtual bool device_buffers() const = 0;

  virtual void allreduce(void* data, std::size_t count, DType type, ReduceOp op) = 0;
  virtual void broadcast(void* data, std::size_t count, DType type, int root) = 0;
  /// Reduces into `data` on `root`; other ranks' buffers are left as they were.
  virtual void reduce(void* data, std::size_t count, DType type, ReduceOp op, int root) = 0;
  /// Reduces `send` (size() blocks of `count` elements) over the ranks and gives rank r block r of
  /// the result in `recv` (`count` elements, not overlapping `send`): ZeRO's gradient reduction,
  /// half the traffic of an allreduce.
  virtual void reduce_scatter(const void* send, void* recv, std::size_t count, DType type, ReduceOp op) = 0;
  /// In place: rank r's `count` elements at data + r * count reach every rank's buffer (size()
  /// blocks of `count`), the other half of an allreduce (ZeRO's parameter gather).
  virtual void allgather(void* data, std::size_t count, DType type) = 0;
  virtual void barrier() = 0;

  // Typed wrappers: the element type fixes the datatype and count is in elements, never bytes.
  template <class T> void allreduce(T* data, std::size_t count, ReduceOp op) {
    allreduce(static_cast<void*>(data), count, dtype_of<T>(), op);
  }
  template <class T> void broadcast(T* data, std::size_t count, int root) {
    broadcast(static_cast<void*>(data), count, dtype_of<T>(), root);
  }
  template <class T> void reduce(T* data, std::size_t count, ReduceOp op, int root) {
    reduce(static_cast<void*>(data), count, dtype_of<T>(), op, root);
  }
  template <class T> void reduce_scatter(const T* send, T* recv, std::size_t count, ReduceOp op) {
    reduce_scatter(static_cast<const void*>(send), static_cast<void*>(recv), count, dtype_of<T>(), op);
  }
  template <class T> void allgather(T* data, std::size_t count) {
    allgather(static_cast<void*>(data), count, dtype_of<T>());
  }
};

/// Backends compiled into this build ("mpi", "mpi nccl").
std::string compiled_backends();

/// Makes the communicator `options.backend` asks for. Collective over all ranks. Throws
/// ConfigError when the backend is unknown, not compiled in, or unusable on this rank.
std::unique_ptr<Communicator> make_communicator(const Environment& env, const CommOptions& options);

}  // namespace hpctrain::dist
