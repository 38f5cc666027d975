// Multi-rank tests of Environment: ranks, node-local topology, gather, failure agreement.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <set>

#include "common/mpi_env.h"
#include "hpctrain/core/error.h"

namespace hpctrain::dist {
namespace {

using testing::env;

TEST(Environment, RanksAreDistinctAndCoverTheWorld) {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(env().size(), size);
  std::vector<int> ranks(env().size());
  int mine = env().rank();
  MPI_Allgather(&mine, 1, MPI_INT, ranks.data(), 1, MPI_INT, env().comm());
  std::set<int> unique(ranks.begin(), ranks.end());
  EXPECT_EQ(unique.size(), static_cast<size_t>(env().size()));
  EXPECT_EQ(*unique.begin(), 0);
  EXPECT_EQ(*unique.rbegin(), env().size() - 1);
}

TEST(Environment, LocalRanksMatchTheLauncherOnOneNode) {
  // All ranks of these tests run on this machine: one node, local rank == world rank.
  EXPECT_EQ(env().node_count(), 1);
  EXPECT_EQ(env().local_size(), env().size());
  EXPECT_EQ(env().local_rank(), env().rank());
  if (const char* ompi = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")) EXPECT_EQ(env().local_rank(), std::atoi(ompi));
}

TEST(Environment, ChoosesCpuWithoutAGpuAndAtLeastOneThread) {
  if (env().cuda_device_count() == 0) {
    EXPECT_FALSE(env().device().cuda);
    EXPECT_EQ(env().device().str(), "cpu");
    EXPECT_FALSE(env().cuda_status().empty());
  } else {
    EXPECT_EQ(env().device().index, env().local_rank() % env().cuda_device_count());
  }
  EXPECT_GE(env().default_threads(), 1);
  EXPECT_EQ(env().host(), hpctrain::detail::host_name());
}

TEST(Environment, ThreadsFollowOmpNumThreadsWhenSet) {
  const char* old = std::getenv("OMP_NUM_THREADS");
  std::string saved = old ? old : "";
  setenv("OMP_NUM_THREADS", "3", 1);
  EXPECT_EQ(env().default_threads(), 3);
  if (old) setenv("OMP_NUM_THREADS", saved.c_str(), 1);
  else unsetenv("OMP_NUM_THREADS");
}

TEST(Environment, GatherToRootKeepsRankOrder) {
  auto all = env().gather_to_root("rank-" + std::to_string(env().rank()) + std::string(env().rank() * 3, 'x'));
  if (env().rank() == 0) {
    ASSERT_EQ(all.size(), static_cast<size_t>(env().size()));
    for (int r = 0; r < env().size(); ++r) EXPECT_EQ(all[r], "rank-" + std::to_string(r) + std::string(r * 3, 'x'));
  } else {
    EXPECT_TRUE(all.empty());
  }
}

TEST(Environment, FirstFailingRankIsAgreedByAll) {
  EXPECT_EQ(env().first_failing_rank(false), -1);
  const int last = env().size() - 1;
  EXPECT_EQ(env().first_failing_rank(env().rank() == last), last);
  EXPECT_EQ(env().first_failing_rank(true), 0);
}

// The device each local rank binds: 1, 2, 4 and 8 GPUs per node, with one task per GPU, fewer
// tasks than GPUs, several tasks sharing a node's GPUs (evenly and not), and SLURM's per-task
// binding (each task sees one device: its own).
TEST(DeviceBinding, EachLocalRankGetsItsOwnDeviceOrAContiguousShare) {
  auto all = [](int tasks, int devices) {
    std::vector<int> v;
    for (int r = 0; r < tasks; ++r) v.push_back(dist::device_for_rank(r, tasks, devices));
    return v;
  };
  for (int g : {1, 2, 4, 8}) {
    std::vector<int> identity(static_cast<std::size_t>(g));
    for (int i = 0; i < g; ++i) identity[static_cast<std::size_t>(i)] = i;
    EXPECT_EQ(all(g, g), identity) << g << " tasks on " << g << " GPUs";
    // Two and four tasks per GPU: consecutive ranks share, every GPU takes the same number.
    for (int per : {2, 4}) {
      const auto v = all(g * per, g);
      for (int r = 0; r < g * per; ++r) EXPECT_EQ(v[static_cast<std::size_t>(r)], r / per) << g * per << " tasks on " << g << " GPUs";
    }
    // Per-task binding: every task sees one device, index 0.
    EXPECT_EQ(all(g, 1), std::vector<int>(static_cast<std::size_t>(g), 0));
  }
  EXPECT_EQ(all(2, 8), (std::vector<int>{0, 1})) << "fewer tasks than GPUs: the first ones";
  EXPECT_EQ(all(3, 2), (std::vector<int>{0, 0, 1})) << "uneven share: contiguous blocks";
  EXPECT_EQ(all(6, 4), (std::vector<int>{0, 0, 1, 2, 2, 3}));
  EXPECT_EQ(dist::device_for_rank(0, 4, 0), -1) << "no device: cpu";
  EXPECT_EQ(dist::device_for_rank(4, 4, 2), -1) << "a rank outside the node";
}

TEST(SlurmInfo, ReadsTheJobsVariables) {
  setenv("SLURM_JOB_ID", "1234", 1);
  setenv("SLURM_ARRAY_JOB_ID", "1230", 1);
  setenv("SLURM_ARRAY_TASK_ID", "4", 1);
  setenv("SLURM_RESTART_COUNT", "2", 1);
  auto s = SlurmInfo::from_environment();
  EXPECT_TRUE(s.present);
  EXPECT_EQ(s.job_id, "1234");
  EXPECT_EQ(s.restart_count, 2);
  EXPECT_EQ(s.requeue_id(), "1230_4");  // never the plain job id of an array task
  EXPECT_NE(s.describe().find("array task 1230_4"), std::string::npos) << s.describe();
  unsetenv("SLURM_ARRAY_JOB_ID");
  unsetenv("SLURM_ARRAY_TASK_ID");
  unsetenv("SLURM_RESTART_COUNT");
  s = SlurmInfo::from_environment();
  EXPECT_EQ(s.requeue_id(), "1234");
  EXPECT_EQ(s.restart_count, 0);  // unset means never requeued
  unsetenv("SLURM_JOB_ID");
  EXPECT_FALSE(SlurmInfo::from_environment().present);
}

}  // namespace
}  // namespace hpctrain::dist
