// The data set the end-to-end tests train on: 6000 samples of 64 features in 10 classes (5400
// to train, 600 to evaluate), generated once per test process by hpctrain-data.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "common/subprocess.h"

namespace hpctrain::testing {

inline const std::string& e2e_data() {
  static const std::string dir = [] {
    const std::string d = temp_dir("hpct-e2e-data");
    auto r = run({HPCTRAIN_DATA_BINARY, "synth", "--samples", "6000", "--shape", "64", "--classes", "10", "--noise", "2",
                  "--out", d, "--eval_fraction", "0.1"},
                 120);
    EXPECT_EQ(r.exit_code, 0) << r.all();
    return d;
  }();
  return dir;
}

}  // namespace hpctrain::testing
