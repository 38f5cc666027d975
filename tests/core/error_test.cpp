// Tests of the error types and HPCT_CHECK.
#include <gtest/gtest.h>

#include "hpctrain/core/error.h"

namespace hpctrain {
namespace {

TEST(Error, CheckThrowsWithMessageAndLocation) {
  const int world = 3;
  try {
    HPCT_CHECK(world == 4, "expected 4 ranks, got " << world);
    FAIL() << "HPCT_CHECK did not throw";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("expected 4 ranks, got 3"), std::string::npos) << what;
    EXPECT_NE(what.find("tests/core/error_test.cpp:"), std::string::npos) << what;
    EXPECT_EQ(e.exit_code(), exit_code::kFatal);
  }
}

TEST(Error, CheckPassesSilentlyWhenTrue) { EXPECT_NO_THROW(HPCT_CHECK(1 + 1 == 2, "never")); }

TEST(Error, ConfigErrorCarriesTheConfigExitCode) {
  ConfigError e("learning_rate=-1: expected a number >= 0");
  EXPECT_EQ(e.exit_code(), exit_code::kConfig);
  EXPECT_STREQ(e.what(), "learning_rate=-1: expected a number >= 0");
}

TEST(Error, HostNameIsKnown) { EXPECT_FALSE(detail::host_name().empty()); }

}  // namespace
}  // namespace hpctrain
