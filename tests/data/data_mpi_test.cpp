// Multi-rank tests of the data component: collective open, collective errors, and ranks that
// together read exactly the global batches of a one-rank run.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <set>

#include "common/mpi_env.h"
#include "common/subprocess.h"
#include "data/h5_fixture.h"
#include "hpctrain/core/error.h"
#include "hpctrain/data/loader.h"

namespace hpctrain::data {
namespace {

using testing::env;

// A directory made by rank 0 and known to all ranks.
std::string shared_dir() {
  std::string d = env().rank() == 0 ? testing::temp_dir("hpct-mpi-data") : "";
  return env().broadcast_string(d, 0);
}

std::string make_data(int shards, int per_shard) {
  const std::string dir = shared_dir();
  if (env().rank() == 0) {
    for (int s = 0; s < shards; ++s) {
      std::vector<float> x(static_cast<std::size_t>(per_shard * 2));
      std::vector<std::int64_t> y(static_cast<std::size_t>(per_shard));
      for (int i = 0; i < per_shard; ++i) {
        x[i * 2] = static_cast<float>(s * per_shard + i);
        y[i] = s;
      }
      testing::write_h5(dir + "/p" + std::to_string(s) + ".h5",
                        {{"inputs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {hsize_t(per_shard), 2}, x.data()},
                         {"targets", H5T_STD_I64LE, H5T_NATIVE_INT64, {hsize_t(per_shard)}, y.data()}});
    }
  }
  MPI_Barrier(env().comm());
  return dir;
}

TEST(DataMpi, OpenGivesEveryRankTheSameTable) {
  const std::string dir = make_data(3, 17);
  auto set = ShardSet::open(env(), dir, {}, "[data] train");
  EXPECT_EQ(set.size(), 51);
  EXPECT_EQ(set.shards().size(), 3u);
  auto all = env().gather_to_root(set.serialize());
  if (env().rank() == 0)
    for (const auto& s : all) EXPECT_EQ(s, all[0]);
}

TEST(DataMpi, ABadFileIsTheSameCollectiveErrorOnEveryRank) {
  const std::string dir = shared_dir();
  if (env().rank() == 0) testing::write_file(dir + "/bad.h5", "not hdf5");
  MPI_Barrier(env().comm());
  std::string msg;
  try {
    ShardSet::open(env(), dir, {}, "[data] eval");
  } catch (const CollectiveError& e) {
    msg = e.what();
    EXPECT_EQ(e.exit_code(), exit_code::kConfig);
  }
  EXPECT_NE(msg.find("bad.h5': is not an HDF5 file"), std::string::npos) << msg;
  auto all = env().gather_to_root(msg);
  if (env().rank() == 0)
    for (const auto& s : all) EXPECT_EQ(s, all[0]);
}

TEST(DataMpi, RanksTogetherReadTheGlobalBatchesOfOneRank) {
  const std::string dir = make_data(4, 25);
  auto set = std::make_shared<ShardSet>(ShardSet::open(env(), dir, {}, "[data] train"));
  const int world = env().size();
  const std::int64_t global = 12;
  // per-device x world x accumulation = 12 where possible; else per-device 3, accumulation 1 (3 ranks only)
  const std::int64_t accum = global % world == 0 ? 1 : 1;
  if (global % world != 0) GTEST_SKIP() << "12 samples do not split over " << world << " ranks";
  Loader loader(set, {}, train_source(TrainPlan(Sampler(set->size(), 3, true), env().rank(), world, global / world, accum, false)), 2);
  TrainPlan reference(Sampler(set->size(), 3, true), 0, 1, global, 1, false);
  for (int step = 0; step < 12; ++step) {
    Batch b;
    ASSERT_TRUE(loader.next(&b));
    // The values read are the samples named (inputs[i][0] = global index).
    for (std::size_t k = 0; k < b.indices.size(); ++k) ASSERT_FLOAT_EQ(b.inputs[k * 2], static_cast<float>(b.indices[k]));
    std::string mine(reinterpret_cast<const char*>(b.indices.data()), b.indices.size() * sizeof(std::int64_t));
    auto all = env().gather_to_root(mine);
    const auto ref = reference.next();
    if (env().rank() == 0) {
      std::multiset<std::int64_t> got;
      for (const auto& s : all) {
        const auto* p = reinterpret_cast<const std::int64_t*>(s.data());
        got.insert(p, p + s.size() / sizeof(std::int64_t));
      }
      EXPECT_EQ(got, std::multiset<std::int64_t>(ref.indices.begin(), ref.indices.end())) << "step " << step;
    }
  }
}

}  // namespace
}  // namespace hpctrain::data
