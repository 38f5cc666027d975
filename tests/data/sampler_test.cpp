// Tests of the sample order and the plans: bijection, determinism, the same global batches on any
// world size, exact resume, exact evaluation coverage.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "hpctrain/core/error.h"
#include "hpctrain/data/sampler.h"

namespace hpctrain::data {
namespace {

TEST(Permutation, IsABijectionForManySizes) {
  for (std::uint64_t n : {1u, 2u, 3u, 7u, 64u, 1000u, 4097u}) {
    Permutation p(n, 12345);
    std::set<std::uint64_t> seen;
    for (std::uint64_t i = 0; i < n; ++i) seen.insert(p(i));
    EXPECT_EQ(seen.size(), n);
    EXPECT_EQ(*seen.rbegin(), n - 1);
  }
}

TEST(Sampler, SameSeedSameOrderOtherEpochOtherOrder) {
  Sampler a(1000, 7, true), b(1000, 7, true), c(1000, 8, true);
  int same_epoch = 0, diff_epoch = 0, diff_seed = 0;
  for (int i = 0; i < 1000; ++i) {
    same_epoch += a.at(0, i) == b.at(0, i);
    diff_epoch += a.at(0, i) == a.at(1, i);
    diff_seed += a.at(0, i) == c.at(0, i);
  }
  EXPECT_EQ(same_epoch, 1000);
  EXPECT_LT(diff_epoch, 20);
  EXPECT_LT(diff_seed, 20);
}

TEST(Sampler, NoShuffleKeepsFileOrder) {
  Sampler s(10, 1, false);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(s.at(3, i), i);
}

TEST(Sampler, BlockShuffleKeepsBlocksTogether) {
  const std::int64_t n = 1003, block = 100;
  Sampler s(n, 3, true, block);
  std::set<std::int64_t> all;
  for (std::int64_t b = 0; b * block < n; ++b) {
    std::set<std::int64_t> blocks;
    for (std::int64_t p = b * block; p < std::min(n, (b + 1) * block); ++p) {
      const std::int64_t x = s.at(0, p);
      all.insert(x);
      blocks.insert(x / block);
    }
    EXPECT_EQ(blocks.size(), 1u) << "positions of block " << b << " come from one stored block";
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(n));
  EXPECT_EQ(s.at(0, 1000) / block, 10);  // the partial tail block stays last
  int in_place = 0;
  for (std::int64_t p = 0; p < 1000; ++p) in_place += s.at(0, p) == p;
  EXPECT_LT(in_place, 50);
}

// Every (rank, micro-batch) of `world` ranks for `steps` steps: the samples of each step.
std::vector<std::multiset<std::int64_t>> steps_of(std::int64_t n, int world, std::int64_t per_device, std::int64_t accum,
                                                  int steps, bool drop_last = false, SamplerState from = {}) {
  std::vector<TrainPlan> plans;
  for (int r = 0; r < world; ++r) {
    plans.emplace_back(Sampler(n, 11, true), r, world, per_device, accum, drop_last);
    plans.back().restore(from);
  }
  std::vector<std::multiset<std::int64_t>> out;
  for (int s = 0; s < steps; ++s) {
    std::multiset<std::int64_t> step;
    for (auto& p : plans) {
      for (std::int64_t m = 0; m < accum; ++m) {
        MicroBatch b = p.next();
        EXPECT_EQ(b.micro, m);
        EXPECT_EQ(b.last_in_step, m + 1 == accum);
        step.insert(b.indices.begin(), b.indices.end());
      }
    }
    out.push_back(step);
  }
  return out;
}

TEST(TrainPlan, SameGlobalBatchesOnOneTwoThreeAndFourRanks) {
  // Global batch 24: 1 x 24 x 1, 2 x 12 x 1, 3 x 4 x 2, 4 x 3 x 2.
  const auto ref = steps_of(100, 1, 24, 1, 9);
  EXPECT_EQ(steps_of(100, 2, 12, 1, 9), ref);
  EXPECT_EQ(steps_of(100, 3, 4, 2, 9), ref);
  EXPECT_EQ(steps_of(100, 4, 3, 2, 9), ref);
}

TEST(TrainPlan, EverySampleOncePerEpochAndAShortLastStep) {
  const auto steps = steps_of(50, 3, 4, 1, 5);  // 12 per step: 12, 12, 12, 12, 2
  std::multiset<std::int64_t> epoch;
  for (int s = 0; s < 5; ++s) epoch.insert(steps[s].begin(), steps[s].end());
  EXPECT_EQ(epoch.size(), 50u);
  EXPECT_EQ(std::set<std::int64_t>(epoch.begin(), epoch.end()).size(), 50u);
  EXPECT_EQ(steps[4].size(), 2u);
  TrainPlan p(Sampler(50, 1, true), 0, 3, 4, 1, false);
  EXPECT_EQ(p.steps_per_epoch(), 5);
  for (int s = 0; s < 4; ++s) EXPECT_FALSE(p.next().last_in_epoch);
  MicroBatch last = p.next();
  EXPECT_TRUE(last.last_in_epoch);
  EXPECT_EQ(last.step_samples, 2);
  EXPECT_EQ(last.indices.size(), 0u);  // 2 samples over 3 ranks: rank 0 gets none
  EXPECT_EQ(p.next().epoch, 1);
}

TEST(TrainPlan, DropLastSkipsTheRemainder) {
  TrainPlan p(Sampler(50, 1, true), 0, 1, 12, 1, true);
  EXPECT_EQ(p.steps_per_epoch(), 4);
  for (int s = 0; s < 3; ++s) EXPECT_FALSE(p.next().last_in_epoch);
  EXPECT_TRUE(p.next().last_in_epoch);
  MicroBatch b = p.next();
  EXPECT_EQ(b.epoch, 1);
  EXPECT_EQ(b.indices.size(), 12u);
  EXPECT_THROW(TrainPlan(Sampler(5, 1, true), 0, 1, 12, 1, true), DataError);
}

TEST(TrainPlan, ResumesMidEpochAtTheSameSampleOnAnyWorldSize) {
  const auto ref = steps_of(100, 2, 6, 1, 15);  // 12 per step, crosses into epoch 1
  TrainPlan p(Sampler(100, 11, true), 0, 2, 6, 1, false);
  for (int s = 0; s < 4; ++s) p.next();
  const SamplerState saved = p.state();
  EXPECT_EQ(saved, (SamplerState{0, 48}));
  for (int world : {1, 2, 3, 4}) {
    std::int64_t per = 12 / world, accum = 1;
    if (world == 3) per = 2, accum = 2;
    const auto resumed = steps_of(100, world, per, accum, 11, false, saved);
    for (int s = 0; s < 11; ++s) EXPECT_EQ(resumed[s], ref[4 + s]) << "world " << world << " step " << s;
  }
}

TEST(EvalRange, CoversEverySampleExactlyOnce) {
  for (std::int64_t n : {1, 7, 10, 101}) {
    for (int world = 1; world <= 5; ++world) {
      std::vector<int> hits(static_cast<std::size_t>(n), 0);
      std::int64_t lo = n, hi = 0;
      for (int r = 0; r < world; ++r) {
        auto [b, e] = eval_range(n, r, world);
        for (std::int64_t i = b; i < e; ++i) ++hits[i];
        lo = std::min(lo, e - b);
        hi = std::max(hi, e - b);
      }
      EXPECT_TRUE(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; })) << n << " " << world;
      EXPECT_LE(hi - lo, 1);
    }
  }
}

}  // namespace
}  // namespace hpctrain::data
