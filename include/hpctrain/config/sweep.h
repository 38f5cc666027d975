// Hyperparameter sweeps: a sweep space (an INI file of grid values and random draws) expanded
// into numbered points, one per SLURM array task. A point depends only on the space and its
// index, so every task, requeued or not, computes the same values without talking to the others.
//
//   [sweep]                       # all optional
//   name = lr-width               # default: the file's name without .ini
//   seed = 0                      # of the random draws
//   count = 4                     # random draws per grid point (default 1)
//   metric = eval_accuracy        # ranks the points (default: the base's metric_for_best_model)
//   greater_is_better = true      # default: false for metrics ending in loss
//   config = ../mlp-digits.ini    # base configuration, relative to this file (--config wins)
//   parallel = 4                  # array tasks at once, for `hpctrain-sweep plan` (the % throttle)
//   [grid]                        # every combination, the last key fastest
//   model.hidden_sizes = 128,128 512,512      # values separated by spaces ("..." quotes);
//   model.activation = relu, gelu             # commas too, for keys whose values have none
//   [random]                      # drawn per point
//   learning_rate = loguniform 1e-4 1e-2
//   weight_decay = uniform 0 0.1
//   warmup_steps = randint 0 100  # both ends included
//   model.dropout = choice 0 0.1 0.2
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "hpctrain/config/training_arguments.h"

namespace hpctrain::config {

struct Config;

/// One swept key.
struct SweepAxis {
  enum class Kind { kGrid, kUniform, kLogUniform, kRandInt, kChoice };
  std::string key;
  Kind kind = Kind::kGrid;
  std::vector<std::string> values;  ///< grid values, or the choices
  double lo = 0, hi = 0;            ///< range of uniform, loguniform, randint
};

using SweepParams = std::vector<std::pair<std::string, std::string>>;  ///< key, value; in file order

struct SweepSpace {
  std::string file;         ///< where it was read from
  std::string name;         ///< [sweep] name, or the file's stem
  std::string base_config;  ///< [sweep] config resolved against the file's directory ("" when none)
  std::string metric;       ///< [sweep] metric ("" when none)
  AutoBool greater_is_better = AutoBool::kAuto;  ///< [sweep] greater_is_better (auto: by the metric's name)
  std::uint64_t seed = 0;
  std::int64_t count = 1;     ///< random draws per grid point
  std::int64_t parallel = 0;  ///< suggested array throttle (0: not given)
  std::vector<SweepAxis> grid, random;

  /// Reads and checks a space: every key must be a configuration key (not output_dir, run_name
  /// or resume_from_checkpoint, which the sweep sets), every grid value and choice must be a valid
  /// value of its key, and every range must suit its distribution and key. Throws ConfigError
  /// naming the file, line and key.
  static SweepSpace read(const std::string& path);
  /// The swept keys in the order of a point's values: grid keys, then random keys.
  std::vector<std::string> keys() const;
  /// Number of points: the product of the grid sizes, times count.
  std::int64_t size() const;
  /// The values of point `index` (0 <= index < size()): grid values, then random draws.
  SweepParams point(std::int64_t index) const;
  /// The space as INI text that read() turns back into the same points (the sweep directory's
  /// sweep.ini; two spaces with the same text define the same points).
  std::string to_ini() const;
};

/// The point a run trains (Config::sweep).
struct SweepPoint {
  std::string space_file;
  std::string name;
  std::int64_t index = -1;  ///< -1: not a sweep run
  std::int64_t points = 0;
  std::string root;         ///< the sweep directory: every point's output_dir is inside it
  SweepParams params;
  std::string space_ini;    ///< SweepSpace::to_ini() with the metric resolved, for root/sweep.ini
  std::string metric_name;  ///< the metric that ranks the points
  std::string metric() const { return metric_name; }
};

/// The directory name of point `index` of `points`: point-007.
std::string sweep_point_dirname(std::int64_t index, std::int64_t points);

/// Applies point `index` of `space` to `config`, whose output_dir is the directory the sweep
/// directory goes in: sets the point's values, output_dir = <output_dir>/<name>/point-NNN,
/// run_name = <name>-NNN, metric_for_best_model from the space, and config.sweep. `explicit_keys`
/// are keys set on the command line; sweeping one of them is an error. Throws ConfigError.
void apply_sweep_point(Config& config, const SweepSpace& space, std::int64_t index,
                       const std::vector<std::string>& explicit_keys);

}  // namespace hpctrain::config
