// Failure propagation under mpiexec (HPCT_TEST_NP ranks): one rank fails while the others sit in
// a collective; the whole job must end within seconds, nonzero, with a message naming the rank.
#include <gtest/gtest.h>

#include <cstdlib>

#include "common/subprocess.h"
#include "hpctrain/core/error.h"

namespace hpctrain {
namespace {

int np() {
  const char* v = std::getenv("HPCT_TEST_NP");
  return v ? std::atoi(v) : 2;
}

testing::RunResult probe(const std::string& mode, int rank) {
  return testing::run(testing::mpiexec(np(), {FAILURE_PROBE, mode, std::to_string(rank)}), /*timeout_s=*/60);
}

TEST(FailurePropagation, ExceptionOnOneRankEndsTheJobPromptly) {
  auto r = probe("throw", 1);
  EXPECT_FALSE(r.timed_out) << r.all();
  EXPECT_NE(r.exit_code, 0) << r.all();
  EXPECT_LT(r.seconds, testing::scaled(20.0)) << r.all();
  const std::string tag = "[rank 1/" + std::to_string(np()) + "] critical: fatal error on rank 1/";
  EXPECT_NE(r.all().find(tag), std::string::npos) << r.all();
  EXPECT_NE(r.all().find("injected failure on purpose"), std::string::npos) << r.all();
  // Logged once: only the failing rank reports the error.
  EXPECT_EQ(r.all().find("injected failure on purpose", r.all().find("injected failure on purpose") + 1),
            std::string::npos)
      << r.all();
}

TEST(FailurePropagation, ExceptionOnTheLastRankToo) {
  auto r = probe("throw", np() - 1);
  EXPECT_NE(r.exit_code, 0) << r.all();
  EXPECT_LT(r.seconds, testing::scaled(20.0)) << r.all();
  EXPECT_NE(r.all().find("fatal error on rank " + std::to_string(np() - 1) + "/"), std::string::npos) << r.all();
}

TEST(FailurePropagation, ExceptionOnAThreadEndsTheJob) {
  auto r = probe("thread", 1);
  EXPECT_NE(r.exit_code, 0) << r.all();
  EXPECT_LT(r.seconds, testing::scaled(20.0)) << r.all();
  EXPECT_NE(r.all().find("injected failure on a thread"), std::string::npos) << r.all();
  EXPECT_NE(r.all().find("fatal error on rank 1/"), std::string::npos) << r.all();
}

TEST(FailurePropagation, HungRankIsCaughtByTheWatchdog) {
  auto r = probe("hang", 1);
  EXPECT_FALSE(r.timed_out) << r.all();
  EXPECT_NE(r.exit_code, 0) << r.all();
  EXPECT_LT(r.seconds, testing::scaled(30.0)) << r.all();  // ddp_timeout is 2 s in the probe
  EXPECT_NE(r.all().find("has not completed after"), std::string::npos) << r.all();
  EXPECT_NE(r.all().find("ddp_timeout=2 s"), std::string::npos) << r.all();
  EXPECT_NE(r.all().find("allreduce #"), std::string::npos) << r.all();
}

}  // namespace
}  // namespace hpctrain
