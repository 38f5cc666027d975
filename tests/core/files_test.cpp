// Tests of the file helpers: atomic replacement and exclusive creation leave whole files and no
// temporary files behind, and name the file when they fail.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/subprocess.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/files.h"

namespace hpctrain {
namespace {
namespace fs = std::filesystem;

std::size_t entries(const std::string& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

TEST(Files, WriteAtomicReplacesTheWholeFile) {
  const std::string dir = testing::temp_dir("hpct-files");
  files::write_atomic(dir + "/a", "first version, longer\n");
  files::write_atomic(dir + "/a", "second\n");
  EXPECT_EQ(files::read_all(dir + "/a"), "second\n");
  EXPECT_EQ(entries(dir), 1u);  // no temporary file left
  try {
    files::write_atomic(dir + "/no/such/dir/a", "x");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/no/such/dir/a"), std::string::npos) << e.what();
  }
}

TEST(Files, CreateExclusiveCreatesOnce) {
  const std::string dir = testing::temp_dir("hpct-files");
  EXPECT_TRUE(files::create_exclusive(dir + "/claim", "mine\n"));
  EXPECT_FALSE(files::create_exclusive(dir + "/claim", "theirs\n"));
  EXPECT_EQ(files::read_all(dir + "/claim"), "mine\n");
  EXPECT_EQ(entries(dir), 1u);
  EXPECT_THROW(files::read_all(dir + "/none"), Error);
}

}  // namespace
}  // namespace hpctrain
