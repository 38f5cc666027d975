// save_steps = auto: Young/Daly's checkpoint interval sqrt(2 x C x M), where C is what one save
// costs training and M the expected time between failures; chosen from an estimate before the
// first save and re-chosen as C and the step time are measured.
#pragma once

#include <cstdint>
#include <string>

#include "hpctrain/ckpt/manager.h"

namespace hpctrain::ckpt {

/// Young/Daly's optimal time between checkpoints, in seconds.
double young_daly_seconds(double cost_seconds, double mtbf_seconds);

class AutoInterval {
 public:
  explicit AutoInterval(double mtbf_seconds) : mtbf_(mtbf_seconds) {}

  /// Before any save: C from the state's size (at 200 MB/s for a synchronous write; for a
  /// background one, the host copy of a rank's share at 2 GB/s and a tenth of the write).
  void estimate(std::size_t state_bytes, int world, bool background);
  /// A finished step: its seconds, and whether a save was being written meanwhile.
  void step(double seconds, bool save_in_flight);
  /// A committed save: C becomes the time training was blocked, plus for a background save how
  /// much slower the steps ran while it was written.
  void saved(const SaveStats& s);

  /// Steps between saves (>= 1); 0 before the first step has been timed.
  std::int64_t steps() const;
  double cost_seconds() const { return cost_; }
  double step_seconds() const { return step_idle_; }
  double mtbf_seconds() const { return mtbf_; }
  /// True when the interval is worth a line in the log: once the first 20 steps are timed (the
  /// first steps are slow), then whenever it moved by more than half from the value last reported.
  bool take_change();
  /// "every N steps (C s per save, T s per step, MTBF M h)".
  std::string describe() const;

 private:
  double mtbf_;
  double cost_ = 0;
  double min_seconds_ = 0;  // a background save must finish before the next one starts
  double step_idle_ = 0, step_busy_ = 0;
  std::int64_t steps_in_flight_ = 0;
  std::int64_t steps_timed_ = 0;
  std::int64_t reported_ = 0;
};

}  // namespace hpctrain::ckpt
