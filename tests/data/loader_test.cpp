// Tests of the prefetching Loader and the Reader under it: same batches as reading in the loop,
// batches read into given-back buffers, many shards, aligned maps, I/O errors surface, pause stops
// reading ahead.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <cmath>
#include <memory>
#include <set>
#include <thread>

#include "common/subprocess.h"
#include "data/h5_fixture.h"
#include "hpctrain/core/error.h"
#include "hpctrain/data/loader.h"
#include "hpctrain/data/reader.h"

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

TEST(Loader, ABatchGivenBackIsReadIntoAgainAndEveryValueIsRight) {
  // As the Trainer uses it: one Batch passed to next() again and again. Its old buffers go back to
  // the I/O thread, which reads a later batch into them (no allocation, no zero fill): every value
  // must still be the file's, also across short last batches of an epoch (203 = 12 x 16 + 11).
  auto set = make_set(testing::temp_dir("hpct-loader-reuse"), 203);
  Loader loader(set, {}, train_source(TrainPlan(Sampler(set->size(), 9, true), 0, 1, 16, 1, false)), 3);
  Batch b;
  std::set<const float*> seen;
  bool reused = false;
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(loader.next(&b));
    ASSERT_EQ(b.inputs.size(), b.indices.size() * 4);
    ASSERT_EQ(b.class_targets.size(), b.indices.size());
    for (std::size_t k = 0; k < b.indices.size(); ++k) {
      for (int e = 0; e < 4; ++e) ASSERT_FLOAT_EQ(b.inputs[k * 4 + e], b.indices[k] * 4.0f + e) << "batch " << i;
      ASSERT_EQ(b.class_targets[k], b.indices[k] % 3) << "batch " << i;
    }
    reused = reused || !seen.insert(b.inputs.data()).second;
  }
  EXPECT_TRUE(reused) << "no buffer was ever read into again";
}

TEST(Reader, ShuffledBatchesAcrossMoreShardsThanStayOpenAreRight) {
  // 70 shards of 5 samples: a batch spans many files (its cursor and read-ahead move across them),
  // and more files than the reader keeps open (64) are opened, closed between batches, reopened.
  const std::string dir = testing::temp_dir("hpct-reader-many");
  std::vector<std::string> files;
  int value = 0;
  for (int f = 0; f < 70; ++f) {
    std::vector<float> x(20);
    std::vector<std::int64_t> y(5);
    for (int i = 0; i < 5; ++i, ++value) {
      for (int e = 0; e < 4; ++e) x[static_cast<std::size_t>(i * 4 + e)] = static_cast<float>(value * 4 + e);
      y[static_cast<std::size_t>(i)] = value % 7;
    }
    files.push_back(dir + "/s" + std::to_string(100 + f) + ".h5");
    testing::write_h5(files.back(), {{"inputs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {5, 4}, x.data()},
                                     {"targets", H5T_STD_I64LE, H5T_NATIVE_INT64, {5}, y.data()}});
  }
  auto set = std::make_shared<ShardSet>(ShardSet::scan(files, {}, "[data] train"));
  ASSERT_EQ(set->size(), 350);
  Reader reader(set, {});
  Sampler order(set->size(), 4, true);
  Batch b;
  for (std::int64_t start = 0; start + 64 <= 350 * 3; start += 64) {
    std::vector<std::int64_t> idx;
    for (std::int64_t p = start; p < start + 64; ++p) idx.push_back(order.at(p / 350, p % 350));
    idx.push_back(idx.front());  // a sample twice in one batch
    reader.read(idx, &b);
    ASSERT_EQ(b.indices, idx);
    for (std::size_t k = 0; k < idx.size(); ++k) {
      for (int e = 0; e < 4; ++e) ASSERT_FLOAT_EQ(b.inputs[k * 4 + e], idx[k] * 4.0f + e) << "sample " << idx[k];
      ASSERT_EQ(b.class_targets[k], idx[k] % 7);
    }
  }
}

TEST(Reader, FilesAreMappedAtTwoMebibyteBoundariesWithTheirBytes) {
  const std::string dir = testing::temp_dir("hpct-map");
  for (std::size_t len : {std::size_t{1}, std::size_t{4097}, (std::size_t{5} << 20) + 123}) {
    const std::string path = dir + "/f" + std::to_string(len);
    std::string bytes(len, '\0');
    for (std::size_t i = 0; i < len; ++i) bytes[i] = static_cast<char>(i * 131 + 7);
    {
      std::ofstream out(path, std::ios::binary);
      out.write(bytes.data(), static_cast<std::streamsize>(len));
      ASSERT_TRUE(out.good());
    }
    const int fd = ::open(path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    void* p = map_file_huge_aligned(fd, len);
    ::close(fd);
    ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % (std::uintptr_t{2} << 20), 0u) << len << " bytes";
    EXPECT_EQ(std::memcmp(p, bytes.data(), len), 0) << len << " bytes";
    EXPECT_EQ(munmap(p, len), 0);
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
