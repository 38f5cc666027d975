// Tensors through the Communicator, staged through host memory when the backend needs it.
#include "tensor_comm.h"

#include "hpctrain/core/error.h"

namespace hpctrain::train {

torch::Tensor TensorComm::staged(const torch::Tensor& t) const {
  const bool want_device = comm_->device_buffers();
  if (t.is_cuda() == want_device && t.is_contiguous()) return t;
  return t.to(want_device ? device_ : torch::Device(torch::kCPU)).contiguous();
}

template <class Op>
void TensorComm::through_comm(torch::Tensor& t, Op&& op) {
  torch::Tensor x = staged(t);
  op(x);
  if (!x.is_same(t)) t.copy_(x);
}

void TensorComm::allreduce_sum(torch::Tensor& t) {
  through_comm(t, [&](torch::Tensor& x) {
    if (x.scalar_type() == torch::kFloat) comm_->allreduce(x.data_ptr<float>(), static_cast<std::size_t>(x.numel()), dist::ReduceOp::kSum);
    else comm_->allreduce(x.data_ptr<double>(), static_cast<std::size_t>(x.numel()), dist::ReduceOp::kSum);
  });
}

std::vector<double> TensorComm::allreduce(std::vector<double> v, dist::ReduceOp op) {
  torch::Tensor t = torch::tensor(v, torch::kDouble);
  if (comm_->device_buffers()) t = t.to(device_);
  through_comm(t, [&](torch::Tensor& x) { comm_->allreduce(x.data_ptr<double>(), v.size(), op); });
  t = t.cpu();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + v.size());
}

void TensorComm::reduce_scatter_sum(const torch::Tensor& send, torch::Tensor& recv) {
  HPCT_CHECK(send.scalar_type() == torch::kFloat && recv.scalar_type() == torch::kFloat &&
                 send.numel() == recv.numel() * comm_->size(),
             "reduce_scatter of " << send.numel() << " into " << recv.numel() << " on " << comm_->size() << " ranks");
  const torch::Tensor in = staged(send);  // only read: staged one way, never copied back
  through_comm(recv, [&](torch::Tensor& y) {
    comm_->reduce_scatter(in.data_ptr<float>(), y.data_ptr<float>(), static_cast<std::size_t>(y.numel()), dist::ReduceOp::kSum);
  });
}

void TensorComm::allgather(torch::Tensor& t) {
  HPCT_CHECK(t.scalar_type() == torch::kFloat && t.numel() % comm_->size() == 0,
             "allgather of " << t.numel() << " elements on " << comm_->size() << " ranks");
  through_comm(t, [&](torch::Tensor& x) {
    comm_->allgather(x.data_ptr<float>(), static_cast<std::size_t>(x.numel() / comm_->size()));
  });
}

void TensorComm::broadcast0(torch::Tensor t) {
  through_comm(t, [&](torch::Tensor& x) {
    HPCT_CHECK(x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kLong,
               "broadcast of a " << x.scalar_type() << " tensor is not supported");
    if (x.scalar_type() == torch::kFloat) comm_->broadcast(x.data_ptr<float>(), static_cast<std::size_t>(x.numel()), 0);
    else comm_->broadcast(x.data_ptr<std::int64_t>(), static_cast<std::size_t>(x.numel()), 0);
  });
}

}  // namespace hpctrain::train
