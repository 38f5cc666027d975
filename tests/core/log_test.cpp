// Tests of the logging facade: rank tags, per-rank thresholds, line format.
#include <gtest/gtest.h>

#include <regex>
#include <sstream>

#include "hpctrain/core/log.h"

namespace hpctrain::log {
namespace {

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  for (std::string l; std::getline(is, l);) out.push_back(l);
  return out;
}

TEST(Log, RankZeroLogsInfoWithTimeAndRankTag) {
  std::ostringstream os;
  init({0, 4, Level::info, Level::warning, &os});
  HPCT_LOG(info) << "step " << 10 << " loss " << 0.5;
  HPCT_LOG(debug) << "hidden";
  auto l = lines(os.str());
  ASSERT_EQ(l.size(), 1u) << os.str();
  EXPECT_TRUE(std::regex_match(l[0], std::regex(R"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} \[rank 0/4\] info: step 10 loss 0\.5)")))
      << l[0];
  init({0, 1, Level::info, Level::warning, nullptr});
}

TEST(Log, ReplicaRanksUseTheReplicaLevel) {
  std::ostringstream os;
  init({2, 4, Level::debug, Level::warning, &os});
  HPCT_LOG(info) << "not on replicas";
  HPCT_LOG(warning) << "disk almost full";
  HPCT_LOG(critical) << "fatal";
  auto l = lines(os.str());
  ASSERT_EQ(l.size(), 2u) << os.str();
  EXPECT_NE(l[0].find("[rank 2/4] warning: disk almost full"), std::string::npos) << l[0];
  EXPECT_NE(l[1].find("[rank 2/4] critical: fatal"), std::string::npos) << l[1];
  init({0, 1, Level::info, Level::warning, nullptr});
}

TEST(Log, DisabledLinesAreNotFormatted) {
  std::ostringstream os;
  init({1, 2, Level::info, Level::error, &os});
  int evaluated = 0;
  auto count = [&] { return ++evaluated; };
  HPCT_LOG(info) << count();
  EXPECT_EQ(evaluated, 0);
  HPCT_LOG(error) << count();
  EXPECT_EQ(evaluated, 1);
  init({0, 1, Level::info, Level::warning, nullptr});
}

TEST(Log, ParsesHuggingFaceLevelNames) {
  EXPECT_EQ(parse_level("debug"), Level::debug);
  EXPECT_EQ(parse_level("warning"), Level::warning);
  EXPECT_EQ(parse_level("critical"), Level::critical);
  EXPECT_FALSE(parse_level("verbose").has_value());
}

}  // namespace
}  // namespace hpctrain::log
