// Multi-rank tests of the NCCL communicator; skipped where no GPU (or no NCCL build) is present.
#include <gtest/gtest.h>

#include <vector>

#include "common/mpi_env.h"
#include "hpctrain/dist/communicator.h"

#ifdef HPCTRAIN_HAVE_NCCL
#include <cuda_runtime_api.h>
#endif

namespace hpctrain::dist {
namespace {

using testing::env;

// Every rank must agree to skip, or the ranks with a GPU would wait for those without.
bool all_ranks_have_a_gpu() {
  int mine = env().device().cuda ? 1 : 0, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, env().comm());
  return all == 1;
}

TEST(NcclCommunicator, AllreduceBroadcastReduceOnDeviceBuffers) {
#ifndef HPCTRAIN_HAVE_NCCL
  GTEST_SKIP() << "built without NCCL";
#else
  if (!all_ranks_have_a_gpu()) GTEST_SKIP() << "no GPU on every rank (" << env().cuda_status() << ")";
  int devices = env().cuda_device_count();
  if (env().local_size() > devices) GTEST_SKIP() << "NCCL needs one GPU per rank: " << env().local_size()
                                                 << " ranks on " << devices << " GPUs";
  auto c = make_communicator(env(), {"nccl", 60});
  EXPECT_STREQ(c->backend(), "nccl");
  EXPECT_TRUE(c->device_buffers());
  const int n = env().size(), r = env().rank();
  const size_t count = 1 << 20;
  std::vector<float> host(count, static_cast<float>(r + 1));
  float* dev = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dev), count * sizeof(float)), cudaSuccess);
  cudaMemcpy(dev, host.data(), count * sizeof(float), cudaMemcpyHostToDevice);
  c->allreduce(dev, count, ReduceOp::kSum);
  cudaMemcpy(host.data(), dev, count * sizeof(float), cudaMemcpyDeviceToHost);
  EXPECT_FLOAT_EQ(host[0], n * (n + 1) / 2.0f);
  EXPECT_FLOAT_EQ(host[count - 1], n * (n + 1) / 2.0f);

  c->allreduce(dev, count, ReduceOp::kAvg);
  cudaMemcpy(host.data(), dev, sizeof(float), cudaMemcpyDeviceToHost);
  EXPECT_FLOAT_EQ(host[0], n * (n + 1) / 2.0f);

  float v = r == 0 ? 42.0f : 0.0f;
  cudaMemcpy(dev, &v, sizeof(float), cudaMemcpyHostToDevice);
  c->broadcast(dev, 1, 0);
  cudaMemcpy(&v, dev, sizeof(float), cudaMemcpyDeviceToHost);
  EXPECT_FLOAT_EQ(v, 42.0f);

  v = 1.0f;
  cudaMemcpy(dev, &v, sizeof(float), cudaMemcpyHostToDevice);
  c->reduce(dev, 1, ReduceOp::kSum, 0);
  cudaMemcpy(&v, dev, sizeof(float), cudaMemcpyDeviceToHost);
  if (r == 0) EXPECT_FLOAT_EQ(v, static_cast<float>(n));
  c->barrier();
  cudaFree(dev);
#endif
}

TEST(NcclCommunicator, ReduceScatterAndAllgatherOnDeviceBuffers) {
#ifndef HPCTRAIN_HAVE_NCCL
  GTEST_SKIP() << "built without NCCL";
#else
  if (!all_ranks_have_a_gpu()) GTEST_SKIP() << "no GPU on every rank (" << env().cuda_status() << ")";
  if (env().local_size() > env().cuda_device_count()) GTEST_SKIP() << "NCCL needs one GPU per rank";
  auto c = make_communicator(env(), {"nccl", 60});
  const int n = env().size(), r = env().rank();
  const std::size_t count = 1 << 16, all = count * static_cast<std::size_t>(n);
  std::vector<float> host(all);
  for (std::size_t i = 0; i < all; ++i) host[i] = static_cast<float>(r + 1) + static_cast<float>(i % 7);
  float *send = nullptr, *recv = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&send), all * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&recv), count * sizeof(float)), cudaSuccess);
  cudaMemcpy(send, host.data(), all * sizeof(float), cudaMemcpyHostToDevice);
  c->reduce_scatter(send, recv, count, ReduceOp::kSum);
  std::vector<float> mine(count);
  cudaMemcpy(mine.data(), recv, count * sizeof(float), cudaMemcpyDeviceToHost);
  for (std::size_t j = 0; j < count; j += 1001) {
    const std::size_t i = static_cast<std::size_t>(r) * count + j;
    EXPECT_FLOAT_EQ(mine[j], n * (n + 1) / 2.0f + static_cast<float>(n * static_cast<int>(i % 7))) << j;
  }
  // Each rank's block holds its rank; after the gather every block holds its owner's.
  for (std::size_t j = 0; j < count; ++j) host[static_cast<std::size_t>(r) * count + j] = static_cast<float>(r);
  cudaMemcpy(send, host.data(), all * sizeof(float), cudaMemcpyHostToDevice);
  c->allgather(send, count);
  cudaMemcpy(host.data(), send, all * sizeof(float), cudaMemcpyDeviceToHost);
  for (int k = 0; k < n; ++k) EXPECT_EQ(host[static_cast<std::size_t>(k) * count + count / 2], static_cast<float>(k));
  cudaFree(send);
  cudaFree(recv);
#endif
}

}  // namespace
}  // namespace hpctrain::dist
