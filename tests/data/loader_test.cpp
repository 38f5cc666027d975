// Tests of the prefetching Loader: same batches as reading in the loop, I/O errors surface,
// pause stops reading ahead.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <thread>

#include "common/subprocess.h"
#include "data/h5_fixture.h"
#include "hpctrain/core/error.h"
#include "hpctrain/data/loader.h"

namespace hpctrain::data {
namespace {

std::shared_ptr<ShardSet> make_set(const std::string& dir, int n, bool with_nan_at = false, int nan_row = -1) {
  std::vector<float> x(static_cast<std::size_t>(n * 4));
  std::vector<std::int64_t> y(static_cast<std::size_t>(n));
  for (int i = 0; i < n * 4; ++i) x[i] = static_cast<float>(i);
  for (int i = 0; i < n; ++i) y[i] = i % 3;
  if (with_nan_at) x[nan_row * 4 + 1] = NAN;
  testing::write_h5(dir + "/s.h5", {{"inputs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {hsize_t(n), 4}, x.data()},
                                    {"targets", H5T_STD_I64LE, H5T_NATIVE_INT64, {hsize_t(n)}, y.data()}});
  return std::make_shared<ShardSet>(ShardSet::scan({dir + "/s.h5"}, {}, "[data] train"));
}

TEST(Loader, PrefetchGivesTheSameBatchesAsReadingInTheLoop) {
  auto set = make_set(testing::temp_dir("hpct-loader"), 203);
  auto plan = [&] { return TrainPlan(Sampler(set->size(), 5, true), 1, 2, 8, 2, false); };
  Loader direct(set, {}, train_source(plan()), 0), ahead(set, {}, train_source(plan()), 3);
  for (int i = 0; i < 60; ++i) {  // more than two epochs
    Batch a, b;
    ASSERT_TRUE(direct.next(&a));
    ASSERT_TRUE(ahead.next(&b));
    EXPECT_EQ(a.indices, b.indices);
    EXPECT_EQ(a.inputs, b.inputs);
    EXPECT_EQ(a.class_targets, b.class_targets);
    EXPECT_EQ(a.plan.after, b.plan.after);
    for (std::size_t k = 0; k < a.indices.size(); ++k) EXPECT_FLOAT_EQ(a.inputs[k * 4], a.indices[k] * 4.0f);
  }
}

TEST(Loader, EvalSourceEndsAfterItsRange) {
  auto set = make_set(testing::temp_dir("hpct-loader"), 50);
  Loader l(set, {}, eval_source(10, 33, 8), 2);
  std::vector<std::int64_t> seen;
  Batch b;
  while (l.next(&b)) seen.insert(seen.end(), b.indices.begin(), b.indices.end());
  ASSERT_EQ(seen.size(), 23u);
  for (int i = 0; i < 23; ++i) EXPECT_EQ(seen[i], 10 + i);
  EXPECT_FALSE(l.next(&b));
}

TEST(Loader, ErrorOnTheIoThreadSurfacesInNext) {
  auto set = make_set(testing::temp_dir("hpct-loader"), 40, true, 37);
  Loader l(set, {}, eval_source(0, 40, 8), 4);
  Batch b;
  int good = 0;
  try {
    while (l.next(&b)) ++good;
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("sample 37 (global sample 37) holds NaN"), std::string::npos) << e.what();
  }
  EXPECT_EQ(good, 4);  // the batches before the bad one were delivered
}

TEST(Loader, PauseStopsReadingAheadAndNextStillWorks) {
  auto set = make_set(testing::temp_dir("hpct-loader"), 400);
  Loader l(set, {}, eval_source(0, 400, 4), 2);
  Batch b;
  ASSERT_TRUE(l.next(&b));
  l.pause();
  const auto before = l.bytes_read();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(l.bytes_read(), before);  // nothing read ahead while paused
  std::vector<std::int64_t> seen(b.indices);
  for (int i = 0; i < 5; ++i) {  // queued batches first, then read on this thread
    ASSERT_TRUE(l.next(&b));
    seen.insert(seen.end(), b.indices.begin(), b.indices.end());
  }
  l.resume();
  while (l.next(&b)) seen.insert(seen.end(), b.indices.begin(), b.indices.end());
  ASSERT_EQ(seen.size(), 400u);
  for (int i = 0; i < 400; ++i) ASSERT_EQ(seen[i], i);  // in order, none lost or repeated
}

}  // namespace
}  // namespace hpctrain::data
