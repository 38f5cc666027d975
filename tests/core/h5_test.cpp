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

// One vocabulary of element types: every name reads back, and the HDF5 type each is stored as has
// its size, class and sign; a stored number finds its DType (or none: float16).
TEST(H5, EveryDTypeNameRoundTripsAndItsFileTypeMatchesIt) {
  const std::string names = dtype_names();
  int count = 0;
  for (std::size_t at = 0; at <= names.size();) {
    const std::size_t comma = std::min(names.find(", ", at), names.size());
    const std::string name = names.substr(at, comma - at);
    at = comma + 2;
    ++count;
    const auto t = dtype_named(name);
    ASSERT_TRUE(t) << name;
    EXPECT_EQ(dtype_name(*t), name);
    const hid_t ft = file_type(*t);
    EXPECT_EQ(H5Tget_size(ft), dtype_size(*t)) << name;
    EXPECT_EQ(H5Tget_class(ft) == H5T_FLOAT, dtype_is_float(*t)) << name;
    EXPECT_EQ(H5Tget_order(ft), H5T_ORDER_LE) << name;
    const bool is_signed = dtype_is_float(*t) || H5Tget_sign(ft) == H5T_SGN_2;
    EXPECT_EQ(dtype_of_storage(dtype_is_float(*t), is_signed, static_cast<int>(dtype_size(*t))), t) << name;
  }
  EXPECT_EQ(count, 10);
  EXPECT_FALSE(dtype_named("float16"));
  EXPECT_FALSE(dtype_of_storage(true, true, 2));
  EXPECT_EQ(dtype_of<std::uint16_t>(), DType::kUInt16);
}

}  // namespace
}  // namespace hpctrain::h5
