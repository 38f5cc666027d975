// Closed forms of the learning-rate schedules.
#include "hpctrain/train/scheduler.h"

#include <algorithm>
#include <cmath>

namespace hpctrain::train {

double LrSchedule::factor(std::int64_t step) const {
  const double s = static_cast<double>(step), w = static_cast<double>(warmup_steps);
  if (type == SchedulerType::kConstant) return 1.0;
  if (step < warmup_steps) return s / std::max(1.0, w);
  if (type == SchedulerType::kConstantWithWarmup) return 1.0;
  const double total = static_cast<double>(total_steps);
  if (type == SchedulerType::kLinear) return std::max(0.0, (total - s) / std::max(1.0, total - w));
  // cosine, half a period
  const double progress = (s - w) / std::max(1.0, total - w);
  return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
}

}  // namespace hpctrain::train
