// Tests of the watchdog: fires once for an operation that overstays, never for one that ends.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "hpctrain/dist/watchdog.h"

namespace hpctrain::dist {
namespace {

TEST(Watchdog, FiresForAnOperationThatOverstays) {
  std::atomic<int> fired{0};
  std::string what;
  double age = 0;
  Watchdog w(0.2, [&](const std::string& wh, double a) {
    what = wh;
    age = a;
    ++fired;
  });
  {
    auto scope = w.watch("allreduce #7");
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
  }
  EXPECT_EQ(fired.load(), 1);
  EXPECT_EQ(what, "allreduce #7");
  EXPECT_GE(age, 0.2);
}

TEST(Watchdog, QuietForOperationsThatEndInTime) {
  std::atomic<int> fired{0};
  Watchdog w(0.3, [&](const std::string&, double) { ++fired; });
  for (int i = 0; i < 10; ++i) {
    auto scope = w.watch("op " + std::to_string(i));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // 10 x 50 ms is longer than the timeout in total: each operation has its own deadline.
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_EQ(fired.load(), 0);
}

}  // namespace
}  // namespace hpctrain::dist
