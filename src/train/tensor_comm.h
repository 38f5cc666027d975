// Tensors through the Communicator: collectives on torch tensors, staged through host memory when
// the backend wants host buffers and the tensor lives on a GPU (or the reverse). Shared by the
// Trainer's step, its evaluator and its start-up.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "hpctrain/dist/communicator.h"

namespace hpctrain::train {

class TensorComm {
 public:
  TensorComm(std::shared_ptr<dist::Communicator> comm, torch::Device device) : comm_(std::move(comm)), device_(device) {}

  dist::Communicator& comm() { return *comm_; }
  int rank() const { return comm_->rank(); }
  int size() const { return comm_->size(); }

  /// Sums a float32 or float64 tensor over all ranks, in place.
  void allreduce_sum(torch::Tensor& t);
  /// A few doubles reduced over all ranks (the per-step agreement, log sums, pass sums).
  std::vector<double> allreduce(std::vector<double> v, dist::ReduceOp op);
  /// Sums float32 `send` (size() blocks of recv.numel()) over the ranks: block rank() into `recv`.
  void reduce_scatter_sum(const torch::Tensor& send, torch::Tensor& recv);
  /// In place on float32 `t` (size() blocks): every rank's block to every rank.
  void allgather(torch::Tensor& t);
  /// Rank 0's values of a float32 or int64 tensor on every rank.
  void broadcast0(torch::Tensor t);

 private:
  /// `t` itself where the backend wants it (host or device memory, contiguous), else a copy there.
  torch::Tensor staged(const torch::Tensor& t) const;
  template <class Op>
  void through_comm(torch::Tensor& t, Op&& op);

  std::shared_ptr<dist::Communicator> comm_;
  torch::Device device_;
};

}  // namespace hpctrain::train
