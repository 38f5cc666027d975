// Tests of the HDF5 plumbing: errors carry the HDF5 error stack, handles close.
#include <gtest/gtest.h>

#include <thread>

#include "common/subprocess.h"
#include "hpctrain/core/h5.h"

namespace hpctrain::h5 {
namespace {

TEST(H5, FailedCallThrowsWithContextAndHdf5Stack) {
  Lock lock;
  try {
    HPCT_H5_CHECK(H5Fopen("/nonexistent/dir/shard-0.h5", H5F_ACC_RDONLY, H5P_DEFAULT),
                  "opening /nonexistent/dir/shard-0.h5");
    FAIL() << "no throw";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("opening /nonexistent/dir/shard-0.h5"), std::string::npos) << what;
    EXPECT_NE(what.find("H5Fopen"), std::string::npos) << what;
    EXPECT_NE(what.find("unable to open file"), std::string::npos) << what;  // from HDF5's own stack
  }
  EXPECT_EQ(take_error_stack(), "");  // the stack was consumed
}

TEST(H5, HandleClosesItsFileAndIsMoveOnly) {
  const std::string path = testing::temp_dir("hpct-h5") + "/f.h5";
  hid_t raw;
  {
    Lock lock;
    Handle file(HPCT_H5_CHECK(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "create"), H5Fclose);
    raw = file.get();
    EXPECT_GT(H5Iis_valid(raw), 0);
    Handle moved(std::move(file));
    EXPECT_FALSE(file);
    EXPECT_EQ(moved.get(), raw);
  }
  Lock lock;
  EXPECT_LE(H5Iis_valid(raw), 0);
}

bool other_thread_can_lock() {
  bool got = false;
  std::thread t([&] {
    got = mutex().try_lock();
    if (got) mutex().unlock();
  });
  t.join();
  return got;
}

TEST(H5, LockIsReentrantAndExcludesOtherThreads) {
  {
    Lock outer;
    Lock inner;  // a plain mutex would deadlock here
    EXPECT_FALSE(other_thread_can_lock());
  }
  EXPECT_TRUE(other_thread_can_lock());
}

}  // namespace
}  // namespace hpctrain::h5
