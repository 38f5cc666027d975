// Multi-rank tests of the MPI communicator: every collective, dtype and op, checked against
// closed forms that depend on the world size.
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <vector>

#include "common/mpi_env.h"
#include "hpctrain/core/error.h"
#include "common/subprocess.h"
#include "hpctrain/dist/communicator.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/dist/flight_recorder.h"

namespace hpctrain::dist {
namespace {

using testing::env;

std::unique_ptr<Communicator> mpi() { return make_communicator(env(), {"mpi", 60, "", false}); }

TEST(MpiCommunicator, ReportsItsPlace) {
  auto c = mpi();
  EXPECT_STREQ(c->backend(), "mpi");
  EXPECT_EQ(c->rank(), env().rank());
  EXPECT_EQ(c->size(), env().size());
  EXPECT_FALSE(c->device_buffers());
}

TEST(MpiCommunicator, AllreduceSumOfFloatsDoublesAndInts) {
  auto c = mpi();
  const int n = env().size(), r = env().rank();
  std::vector<float> f(1000);
  for (int i = 0; i < 1000; ++i) f[i] = static_cast<float>(r + i);
  c->allreduce(f.data(), f.size(), ReduceOp::kSum);
  const float rank_sum = static_cast<float>(n * (n - 1) / 2);
  for (int i = 0; i < 1000; ++i) ASSERT_FLOAT_EQ(f[i], rank_sum + static_cast<float>(n * i)) << i;

  std::vector<double> d = {1.5 * r, -2.0};
  c->allreduce(d.data(), d.size(), ReduceOp::kSum);
  EXPECT_DOUBLE_EQ(d[0], 1.5 * n * (n - 1) / 2);
  EXPECT_DOUBLE_EQ(d[1], -2.0 * n);

  std::vector<std::int64_t> big = {std::int64_t{1} << 40, r};
  c->allreduce(big.data(), big.size(), ReduceOp::kSum);
  EXPECT_EQ(big[0], (std::int64_t{1} << 40) * n);
  EXPECT_EQ(big[1], n * (n - 1) / 2);

  std::int32_t one = 1;
  c->allreduce(&one, 1, ReduceOp::kSum);
  EXPECT_EQ(one, n);
}

TEST(MpiCommunicator, AllreduceAvgMaxMin) {
  auto c = mpi();
  const int n = env().size(), r = env().rank();
  std::vector<float> avg = {static_cast<float>(r), 2.0f};
  c->allreduce(avg.data(), avg.size(), ReduceOp::kAvg);
  EXPECT_FLOAT_EQ(avg[0], (n - 1) / 2.0f);
  EXPECT_FLOAT_EQ(avg[1], 2.0f);

  std::int32_t mx = r * 10, mn = r * 10;
  c->allreduce(&mx, 1, ReduceOp::kMax);
  c->allreduce(&mn, 1, ReduceOp::kMin);
  EXPECT_EQ(mx, (n - 1) * 10);
  EXPECT_EQ(mn, 0);
}

TEST(MpiCommunicator, AvgOfIntegersIsRefused) {
  auto c = mpi();
  std::int32_t x = 1;
  EXPECT_THROW(c->allreduce(&x, 1, ReduceOp::kAvg), Error);  // refused on every rank, before MPI
}

TEST(MpiCommunicator, BroadcastFromEveryRoot) {
  auto c = mpi();
  for (int root = 0; root < env().size(); ++root) {
    std::vector<double> v(257, env().rank() == root ? 3.25 + root : -1.0);
    c->broadcast(v.data(), v.size(), root);
    for (double x : v) ASSERT_DOUBLE_EQ(x, 3.25 + root);
  }
}

TEST(MpiCommunicator, ReduceToRootLeavesOthersUntouched) {
  auto c = mpi();
  const int n = env().size(), r = env().rank();
  const int root = n - 1;
  std::vector<float> v = {1.0f, static_cast<float>(r)};
  c->reduce(v.data(), v.size(), ReduceOp::kSum, root);
  if (r == root) {
    EXPECT_FLOAT_EQ(v[0], static_cast<float>(n));
    EXPECT_FLOAT_EQ(v[1], static_cast<float>(n * (n - 1) / 2));
  } else {
    EXPECT_FLOAT_EQ(v[0], 1.0f);
    EXPECT_FLOAT_EQ(v[1], static_cast<float>(r));
  }
  std::vector<double> a = {2.0 * r};
  c->reduce(a.data(), a.size(), ReduceOp::kAvg, 0);
  if (r == 0) EXPECT_DOUBLE_EQ(a[0], static_cast<double>(n - 1));
}

TEST(MpiCommunicator, LargeBufferAndEmptyBuffer) {
  auto c = mpi();
  std::vector<float> v(3'000'000, 0.5f);
  c->allreduce(v.data(), v.size(), ReduceOp::kSum);
  EXPECT_FLOAT_EQ(v.front(), 0.5f * env().size());
  EXPECT_FLOAT_EQ(v.back(), 0.5f * env().size());
  c->allreduce(static_cast<float*>(nullptr), 0, ReduceOp::kSum);  // a no-op, not an error
  c->barrier();
}

TEST(MpiCommunicator, ReduceScatterGivesEachRankItsBlockOfTheSum) {
  auto c = mpi();
  const int n = env().size(), r = env().rank();
  const std::size_t count = 1000;
  // Rank k sends k + 1 + i / 1000 at element i: block b of the sum is known in closed form.
  std::vector<float> send(count * static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < send.size(); ++i) send[i] = static_cast<float>(r + 1) + static_cast<float>(i) / 1000.0f;
  std::vector<float> recv(count, -1.0f);
  c->reduce_scatter(send.data(), recv.data(), count, ReduceOp::kSum);
  const float ranks = static_cast<float>(n * (n + 1) / 2);
  for (std::size_t j = 0; j < count; j += 97) {
    const std::size_t i = static_cast<std::size_t>(r) * count + j;
    EXPECT_FLOAT_EQ(recv[j], ranks + static_cast<float>(n) * (static_cast<float>(i) / 1000.0f)) << j;
  }
  std::vector<double> d(static_cast<std::size_t>(n) * 3, 1.0 + r), mine(3);
  c->reduce_scatter(d.data(), mine.data(), 3, ReduceOp::kAvg);
  EXPECT_DOUBLE_EQ(mine[2], (n + 1) / 2.0);
}

TEST(MpiCommunicator, AllgatherInPlaceFillsEveryRanksBlock) {
  auto c = mpi();
  const int n = env().size(), r = env().rank();
  const std::size_t count = 4097;
  std::vector<float> v(count * static_cast<std::size_t>(n), -1.0f);
  for (std::size_t j = 0; j < count; ++j) v[static_cast<std::size_t>(r) * count + j] = static_cast<float>(r * 10000 + j);
  c->allgather(v.data(), count);
  for (int k = 0; k < n; ++k)
    for (std::size_t j = 0; j < count; j += 512)
      EXPECT_EQ(v[static_cast<std::size_t>(k) * count + j], static_cast<float>(k * 10000 + j)) << k << " " << j;
  c->allgather(static_cast<float*>(nullptr), 0);  // nothing to gather: no error
}

TEST(MpiCommunicator, BadRootIsAnError) {
  auto c = mpi();
  float x = 0;
  EXPECT_THROW(c->broadcast(&x, 1, env().size()), Error);
}

TEST(MpiCommunicator, CheckCollectivesNamesTheRankThatCallsSomethingElse) {
  if (env().size() < 2) GTEST_SKIP() << "needs two ranks";
  CommOptions o;
  o.backend = "mpi";
  o.timeout_s = 60;
  o.check_collectives = true;
  auto c = make_communicator(env(), o);
  std::vector<float> x(4, 1.f);
  c->allreduce(x.data(), x.size(), ReduceOp::kSum);  // the same everywhere: passes
  EXPECT_FLOAT_EQ(x[0], static_cast<float>(env().size()));
  try {
    if (env().rank() == 1) {
      std::vector<float> y(12, 0.f);
      c->broadcast(y.data(), y.size(), 0);
    } else {
      c->allreduce(x.data(), x.size(), ReduceOp::kMax);
    }
    ADD_FAILURE() << "the mismatch went unnoticed";
  } catch (const CollectiveError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("collective #2 differs between ranks"), std::string::npos) << m;
    EXPECT_NE(m.find("rank 1 (" + env().hosts()[1] + ") calls broadcast of 12 float32 (root 0)"), std::string::npos) << m;
    if (env().size() > 2) EXPECT_NE(m.find("call allreduce of 4 float32 (max)"), std::string::npos) << m;
  }
}

TEST(FlightRecorder, RecordsTheRingAndNamesTheRanksWithoutARecord) {
  // Every rank writes a record as if its collective #3 stalled; the last rank writes none.
  std::string dir = env().rank() == 0 ? hpctrain::testing::temp_dir("hpct-flight") : "";
  dir = env().broadcast_string(dir, 0);
  {
    FlightRecorder rec(env(), dir, /*capacity=*/2);
    rec.end(rec.begin("allreduce", 4, DType::kFloat64, "sum", -1));
    rec.end(rec.begin("broadcast", 7, DType::kInt64, "", 0));
    rec.begin("allreduce", 2, DType::kFloat64, "max", -1);
    const Json r = rec.record("test");
    EXPECT_EQ(r.at("collectives").size(), 2u);  // the ring keeps the last two
    EXPECT_EQ(r.at("in_progress").at("seq").get<std::int64_t>(), 3);
    if (env().rank() != env().size() - 1 || env().size() == 1) EXPECT_TRUE(rec.dump("test"));
  }
  MPI_Barrier(env().comm());
  if (env().rank() != 0) return;
  const std::string summary = analyse_flight_dir(dir, env().size(), env().hosts());
  EXPECT_NE(summary.find("collective #3 (allreduce of 2 float64 (max)) waited in by rank"), std::string::npos) << summary;
  if (env().size() > 1) {
    const int last = env().size() - 1;
    EXPECT_NE(summary.find("never reached by rank " + std::to_string(last) + " on " + env().hosts()[last] +
                           " (no record: stopped, dead, or stuck outside a collective)"),
              std::string::npos)
        << summary;
    const std::string view = aligned_flight_view(dir);
    EXPECT_NE(view.find("#3 allreduce of 2 float64 (max)"), std::string::npos) << view;
    EXPECT_NE(view.find("(no record)"), std::string::npos) << view;
  }
}

TEST(Communicator, AutoPicksMpiWithoutAGpu) {
  if (env().device().cuda) GTEST_SKIP() << "this rank has a GPU";
  auto c = make_communicator(env(), {"auto", 60});
  EXPECT_STREQ(c->backend(), "mpi");
}

TEST(Communicator, UnknownOrUnusableBackendIsAConfigError) {
  try {
    make_communicator(env(), {"gloo", 60});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("ddp_backend='gloo' is not a backend"), std::string::npos) << e.what();
  }
  if (!env().device().cuda) {
    try {
      make_communicator(env(), {"nccl", 60});
      FAIL();
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("ddp_backend=nccl"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace hpctrain::dist
