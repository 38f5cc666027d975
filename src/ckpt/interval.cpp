// Young/Daly intervals for save_steps = auto.
#include "hpctrain/ckpt/interval.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace hpctrain::ckpt {

double young_daly_seconds(double cost_seconds, double mtbf_seconds) {
  return std::sqrt(2.0 * std::max(cost_seconds, 0.0) * std::max(mtbf_seconds, 0.0));
}

void AutoInterval::estimate(std::size_t state_bytes, int world, bool background) {
  const double write = static_cast<double>(state_bytes) / 200e6;
  cost_ = background ? static_cast<double>(state_bytes) / std::max(world, 1) / 2e9 + 0.1 * write : write;
  cost_ = std::max(cost_, 1e-3);
  min_seconds_ = background ? write : 0;
}

void AutoInterval::step(double seconds, bool save_in_flight) {
  // Exponential means: the newest steps count most, one odd step does not swing the interval.
  auto update = [&](double& mean) { mean = mean == 0 ? seconds : 0.9 * mean + 0.1 * seconds; };
  ++steps_timed_;
  if (save_in_flight) {
    update(step_busy_);
    ++steps_in_flight_;
  } else {
    update(step_idle_);
  }
}

void AutoInterval::saved(const SaveStats& s) {
  double c = s.blocked_seconds;
  if (s.background && step_busy_ > 0 && step_idle_ > 0)
    c += std::max(0.0, step_busy_ - step_idle_) * static_cast<double>(steps_in_flight_);
  cost_ = std::max(c, 1e-3);
  min_seconds_ = s.background ? 1.5 * (s.copy_seconds + s.write_seconds) : 0;
  steps_in_flight_ = 0;
}

std::int64_t AutoInterval::steps() const {
  if (step_idle_ <= 0) return 0;
  const double seconds = std::max(young_daly_seconds(cost_, mtbf_), min_seconds_);
  const double n = std::ceil(seconds / step_idle_);
  return n >= 1e15 ? static_cast<std::int64_t>(1e15) : std::max<std::int64_t>(1, static_cast<std::int64_t>(n));
}

bool AutoInterval::take_change() {
  const std::int64_t n = steps();
  if (n == 0 || steps_timed_ < 20) return false;
  const double ratio = static_cast<double>(n) / static_cast<double>(std::max<std::int64_t>(reported_, 1));
  if (reported_ != 0 && ratio < 1.5 && ratio > 1 / 1.5) return false;
  reported_ = n;
  return true;
}

std::string AutoInterval::describe() const {
  std::ostringstream os;
  os.precision(3);
  os << "every " << steps() << " steps (" << cost_ << " s per save, " << step_idle_ << " s per step, expected time "
     << "between failures " << mtbf_ / 3600 << " h)";
  return os.str();
}

}  // namespace hpctrain::ckpt
