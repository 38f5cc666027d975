// The learning-rate schedules against their closed forms.
#include <gtest/gtest.h>

#include <cmath>

#include "hpctrain/train/scheduler.h"

namespace hpctrain::train {
namespace {

TEST(LrSchedule, LinearWithWarmup) {
  LrSchedule s{SchedulerType::kLinear, 10, 110};
  EXPECT_DOUBLE_EQ(s.factor(0), 0.0);
  EXPECT_DOUBLE_EQ(s.factor(5), 0.5);
  EXPECT_DOUBLE_EQ(s.factor(10), 1.0);
  EXPECT_DOUBLE_EQ(s.factor(60), 0.5);
  EXPECT_DOUBLE_EQ(s.factor(110), 0.0);
  EXPECT_DOUBLE_EQ(s.factor(200), 0.0);
}

TEST(LrSchedule, CosineWithWarmup) {
  LrSchedule s{SchedulerType::kCosine, 4, 104};
  EXPECT_DOUBLE_EQ(s.factor(2), 0.5);
  EXPECT_DOUBLE_EQ(s.factor(4), 1.0);
  EXPECT_NEAR(s.factor(54), 0.5, 1e-12);
  EXPECT_NEAR(s.factor(29), 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-12);
  EXPECT_NEAR(s.factor(104), 0.0, 1e-12);
}

TEST(LrSchedule, ConstantAndConstantWithWarmup) {
  LrSchedule c{SchedulerType::kConstant, 0, 10};
  EXPECT_DOUBLE_EQ(c.factor(0), 1.0);
  EXPECT_DOUBLE_EQ(c.factor(9), 1.0);
  LrSchedule w{SchedulerType::kConstantWithWarmup, 4, 10};
  EXPECT_DOUBLE_EQ(w.factor(1), 0.25);
  EXPECT_DOUBLE_EQ(w.factor(4), 1.0);
  EXPECT_DOUBLE_EQ(w.factor(9), 1.0);
}

}  // namespace
}  // namespace hpctrain::train
