// Learning-rate schedules in closed form (Hugging Face's get_scheduler): the multiplier of the
// peak learning rate at a given optimizer step.
#pragma once

#include <cstdint>
#include <string>

#include "hpctrain/train/arguments.h"

namespace hpctrain::train {

struct LrSchedule {
  SchedulerType type = SchedulerType::kLinear;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 1;
  /// Multiplier for the step about to be taken (0-based), as HF's LambdaLR gives it.
  double factor(std::int64_t step) const;
};

}  // namespace hpctrain::train
