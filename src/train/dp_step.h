// The data-parallel step: every parameter's gradient is a view into one flat buffer, summed over
// the ranks after the backward passes of a step, clipped by the global norm, then applied by the
// optimizer (two groups: weight decay on weights, not on biases and norms). Three ways to sum:
//  - one allreduce of the whole buffer after the backward pass (small models: fewest collectives);
//  - buckets (ddp_bucket_cap_mb): views of the buffer in reverse parameter order, each allreduced
//    on a communication thread as soon as autograd has finished its gradients, so that the
//    reduction overlaps the rest of the backward pass (PyTorch DDP's reducer);
//  - zero1 (optimizer_sharding): the buffer is reduce-scattered, each rank updates its 1/N slice
//    of the parameters (which live in one flat buffer too) with its 1/N of the optimizer state,
//    and the slices are all-gathered.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "hpctrain/config/training_arguments.h"
#include "hpctrain/dist/comm_thread.h"
#include "tensor_comm.h"

namespace hpctrain::train {

class DataParallelStep {
 public:
  /// Makes the flat gradient buffer on `device`, points every parameter's .grad into it, and builds
  /// the optimizer that `args` names. `threads_ok`: MPI allows collectives from a second thread
  /// (buckets need it; without it they fall back to one allreduce, with a warning).
  DataParallelStep(TensorComm& comm, std::vector<torch::Tensor> params, const config::TrainingArguments& args,
                   torch::Device device, bool threads_ok);
  ~DataParallelStep();
  DataParallelStep(const DataParallelStep&) = delete;
  DataParallelStep& operator=(const DataParallelStep&) = delete;

  /// The parameters, each once (a tensor listed twice, tied weights, is kept at its first place).
  const std::vector<torch::Tensor>& params() const { return params_; }
  /// Where `p` is in params(); nullopt for a tensor that is not one of them.
  std::optional<std::size_t> index_of(const torch::Tensor& p) const;
  std::int64_t numel() const { return numel_; }
  /// One line for the start-up log: how gradients are reduced and where the optimizer state lives.
  std::string describe() const;

  /// The optimizer over whole parameters (the replicated path).
  torch::optim::Optimizer& optimizer();

  // ---- zero1: what each rank holds ----
  bool sharded() const { return sharded_; }
  /// Elements [lo, hi) of parameter i that this rank updates; `tensor` is the optimizer's
  /// parameter for them (a view into the flat parameters), undefined when this rank has none.
  struct Part {
    torch::Tensor tensor;
    std::int64_t lo = 0, hi = 0;
  };
  const Part& part(std::size_t i) const { return parts_.at(i); }
  /// Element bounds of parameter i over the ranks: rank r updates [b[r], b[r + 1]).
  std::vector<std::int64_t> part_bounds(std::size_t i) const;
  /// The optimizer over this rank's parts (null when the rank has none: a model smaller than the ranks).
  torch::optim::Optimizer* shard_optimizer() { return optimizer_.get(); }
  /// Whether the optimizer holds state (every rank alike: it has stepped, or state was loaded).
  bool has_state() const { return has_state_; }
  void set_has_state(bool v) { has_state_ = v; }

  /// Bytes of optimizer state this rank holds.
  std::size_t optimizer_state_bytes() const;

  /// Before the last micro-batch's backward pass of a step: buckets are reduced as their
  /// gradients complete (a no-op on the other paths).
  void before_last_backward();

  /// What the step's reduction gives every rank alike.
  struct Reduced {
    double loss_sum = 0, loss_count = 0;  ///< the step's summed loss and its count, over the ranks
    double nonfinite_ranks = 0;           ///< ranks whose own loss was not finite
    std::optional<double> norm;           ///< the global gradient norm, when taken
  };
  /// After the step's backward passes: sums the gradients over the ranks, and with them this
  /// rank's loss sum and count and whether its loss was finite (three more elements of the flat
  /// buffer, so that the anomaly guard needs no collective of its own; zero1 sends them with the
  /// squared norm of its slice in one small allreduce). Takes the global gradient norm for
  /// clipping or when `want_norm` (a log line shows it).
  Reduced reduce(double loss_sum, double loss_count, bool loss_finite, bool want_norm);
  /// Then either: clips the gradients to max_grad_norm, steps the optimizer at learning rate `lr`
  /// (zero1: and gathers the parameters) and zeroes the gradients;
  void update(double lr, const Reduced& reduced);
  /// or drops them (a skipped step: parameters and optimizer state stay as they are).
  void discard();

 private:
  struct Bucket {
    std::int64_t begin = 0, end = 0;  // elements of the flat buffer
    int params = 0, ready = 0;
  };
  std::int64_t shard_size() const;
  // The global norm from the ranks' blocks (shard_ elements each, zero-padded): the squares of
  // their norms, added in rank order.
  static double square_of_norm(const torch::Tensor& block);
  static double norm_of_squares(const std::vector<double>& squares);
  void build_replicated(torch::Device device, bool threads_ok);
  void build_sharded(torch::Device device);
  void plan_buckets(double cap_mb, bool threads_ok);
  void on_gradient(std::size_t bucket);
  void post(std::size_t bucket);

  TensorComm& comm_;
  std::vector<torch::Tensor> params_;
  const config::TrainingArguments& args_;
  bool sharded_ = false;
  std::int64_t numel_ = 0;   // parameters' elements
  std::int64_t base_ = 0;    // where the parameters start in the flat gradient buffer (replicated: after the header)
  torch::Tensor grads_;      // every parameter's .grad is a view into this flat buffer
  std::unique_ptr<torch::optim::Optimizer> optimizer_;

  std::int64_t shard_ = 0;       // elements per rank (the buffers are padded to shard_ x ranks)

  // zero1
  torch::Tensor flat_params_;    // every parameter's data is a view into this flat buffer
  torch::Tensor grad_shard_;     // this rank's block of the summed gradients
  std::vector<Part> parts_;
  std::vector<std::int64_t> offsets_;  // parameter i starts at offsets_[i] of the flat buffers
  bool has_state_ = false;

  // buckets
  double bucket_mb_ = 0;         // their size cap
  std::vector<Bucket> buckets_;  // in launch order: bucket 0 holds the last parameters
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // kept, so their hooks stay
  std::unique_ptr<dist::CommThread> thread_;
  std::mutex mu_;            // hooks may run on autograd's device threads
  bool armed_ = false;
  std::size_t launched_ = 0;
};

}  // namespace hpctrain::train
