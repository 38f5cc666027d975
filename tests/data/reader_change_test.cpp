// A data file that changes under a running job: truncated, extended, deleted, replaced or
// modified, it ends the read with an error naming the file, never a signal; a truncation racing
// with reads from the memory map (SIGBUS) gives the same. Files written with the HDF5 C API.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <numeric>
#include <random>
#include <thread>

#include "common/subprocess.h"
#include "data/h5_fixture.h"
#include "hpctrain/core/error.h"
#include "hpctrain/data/reader.h"

namespace hpctrain::data {
namespace {

namespace fs = std::filesystem;

// One contiguous shard of `n` samples of 256 floats and their labels.
std::string write_shard(const std::string& dir, int n) {
  std::vector<float> x(static_cast<std::size_t>(n) * 256);
  std::iota(x.begin(), x.end(), 0.f);
  std::vector<std::int64_t> y(static_cast<std::size_t>(n), 1);
  const std::string path = dir + "/s.h5";
  testing::write_h5(path, {{"inputs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {hsize_t(n), 256}, x.data()},
                           {"targets", H5T_STD_I64LE, H5T_NATIVE_INT64, {hsize_t(n)}, y.data()}});
  return path;
}

std::vector<std::int64_t> all(int n) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// What a read says after `change` was done to the file it had opened.
template <class Change>
std::string error_after(Change change) {
  const std::string dir = testing::temp_dir("hpct-change");
  const std::string path = write_shard(dir, 400);
  auto set = std::make_shared<ShardSet>(ShardSet::scan({path}, {}, "[data] train"));
  Reader r(set, {});
  Batch b;
  r.read(all(64), &b);  // opens and maps the file
  EXPECT_EQ(b.inputs[256], 256.f);
  change(path);
  try {
    r.read(all(64), &b);
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("data file '" + path + "'"), std::string::npos) << e.what();
    return e.what();
  }
  return "(no error)";
}

TEST(Reader, AFileThatChangesUnderTheJobIsNamed) {
  EXPECT_NE(error_after([](const std::string& p) { fs::resize_file(p, fs::file_size(p) / 2); })
                .find("changed while the job reads it: it was truncated from"),
            std::string::npos);
  EXPECT_NE(error_after([](const std::string& p) { fs::resize_file(p, fs::file_size(p) + 4096); })
                .find("it was extended from"),
            std::string::npos);
  EXPECT_NE(error_after([](const std::string& p) { fs::remove(p); }).find("it was deleted"), std::string::npos);
  EXPECT_NE(error_after([](const std::string& p) {
              fs::create_directories(fs::path(p).parent_path() / "new");
              write_shard(fs::path(p).parent_path().string() + "/new", 400);
              fs::rename(fs::path(p).parent_path() / "new" / "s.h5", p);  // replaced under its name
            }).find("it was deleted (or replaced"),
            std::string::npos);
  EXPECT_NE(error_after([](const std::string& p) {
              fs::last_write_time(p, fs::last_write_time(p) + std::chrono::seconds(5));
            }).find("it was modified"),
            std::string::npos);
}

TEST(Reader, AFileChangedBetweenOpeningTheSetAndReadingIsNamed) {
  const std::string dir = testing::temp_dir("hpct-change");
  const std::string path = write_shard(dir, 400);
  auto set = std::make_shared<ShardSet>(ShardSet::scan({path}, {}, "[data] train"));
  fs::resize_file(path, fs::file_size(path) - 1000);
  Reader r(set, {});
  Batch b;
  try {
    r.read(all(8), &b);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("changed since the job opened its data"), std::string::npos) << e.what();
  }
}

TEST(Reader, ATruncationRacingTheReadsEndsInAnErrorNotASignal) {
  // A thread truncates the file while another reads it as fast as it can: whichever the read
  // meets first, the fstat check or SIGBUS on the map, it fails naming the file; the process lives.
  int sigbus = 0, checked = 0;
  sigset_t before;
  pthread_sigmask(SIG_SETMASK, nullptr, &before);
  for (int trial = 0; trial < 20; ++trial) {
    const std::string dir = testing::temp_dir("hpct-race");
    const std::string path = write_shard(dir, 2000);
    auto set = std::make_shared<ShardSet>(ShardSet::scan({path}, {}, "[data] train"));
    Reader r(set, {});
    Batch b;
    std::vector<std::int64_t> idx = all(2000);
    std::shuffle(idx.begin(), idx.end(), std::mt19937(trial));
    idx.resize(1024);
    r.read(idx, &b);
    std::atomic<bool> go{false};
    std::thread cut([&] {
      while (!go) std::this_thread::yield();
      std::this_thread::sleep_for(std::chrono::microseconds(50 * trial));
      ::truncate(path.c_str(), 8192);
    });
    std::string what;
    go = true;
    try {
      for (int i = 0; i < 100000; ++i) r.read(idx, &b);
    } catch (const DataError& e) {
      what = e.what();
    }
    cut.join();
    ASSERT_NE(what.find("data file '" + path + "'"), std::string::npos) << "trial " << trial << ": " << what;
    (what.find("SIGBUS") != std::string::npos ? sigbus : checked) += 1;
    // The jump out of the handler leaves the thread's signal mask as it was (a handler run under
    // a wrapper that blocks every signal, as ThreadSanitizer's does, must not leave them blocked).
    sigset_t now;
    pthread_sigmask(SIG_SETMASK, nullptr, &now);
    for (const int sig : {SIGBUS, SIGUSR1, SIGTERM, SIGINT})
      ASSERT_EQ(sigismember(&now, sig), sigismember(&before, sig)) << "trial " << trial << ": signal " << sig;
  }
  std::cout << "truncations met: " << sigbus << " by SIGBUS on the map, " << checked << " by the fstat check\n";
}

}  // namespace
}  // namespace hpctrain::data
