// The whole run configuration (TrainingArguments plus [model] and [data]) and its parsing:
// `hpctrain <command> --config FILE.ini [--key value ...]`, the command line overriding the file.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "hpctrain/core/json.h"
#include "hpctrain/data/data_arguments.h"
#include "hpctrain/models/model_arguments.h"
#include "hpctrain/config/sweep.h"
#include "hpctrain/config/training_arguments.h"

namespace hpctrain::config {

/// Subcommands of the hpctrain executable.
inline const std::vector<std::string>& commands() {
  static const std::vector<std::string> c = {"train", "evaluate", "predict", "env"};
  return c;
}

struct Config {
  std::string command;      ///< train, evaluate, predict, env
  std::string config_file;  ///< "" when none was given
  TrainingArguments args;
  models::ModelArguments model;
  data::DataArguments data;
  SweepPoint sweep;         ///< the sweep point this run trains (--sweep, --sweep_index); index -1: none
};

/// One configuration key: its name ("learning_rate", "model.name"), help group, help text,
/// allowed values (for choices) and how to read and write it as text.
struct OptionSpec {
  enum class Kind { kString, kInt, kFloat, kBool, kChoice };
  std::string key;
  std::string group;
  std::string help;
  Kind kind = Kind::kString;
  std::vector<std::string> choices;
  std::function<void(const std::string&)> set;  ///< throws ConfigError naming what was expected
  std::function<std::string()> get;
};

/// Every key of `config`, bound to its fields, in help order.
std::vector<OptionSpec> option_table(Config& config);

/// What the command line asks for.
enum class Action { kRun, kHelp, kVersion, kPrintConfig };

struct ParseResult {
  Action action = Action::kRun;
  Config config;
  std::string help;  ///< the --help text (filled for Action::kHelp)
};

/// Parses argv (argv[0] is the program). Throws ConfigError naming the file or the command line,
/// the key, the value and what was expected.
ParseResult parse_command_line(int argc, const char* const* argv);

/// The configuration as an INI file that parse_command_line reads back to the same values.
std::string to_ini(const Config& config);

/// Checks every rule (the seed's and every other contradiction) and throws one ConfigError that
/// lists all problems found, each with its key, value and what would be valid.
void validate(const Config& config);

/// A value or key as an error message shows it: control characters as '?', cut to 80 bytes with
/// the full length said ("" for an empty one).
std::string shown_value(const std::string& value);

/// The value of metric_for_best_model in eval metrics ("accuracy" or "eval_accuracy"); nullptr if absent.
const Json* find_metric(const Json& metrics, const std::string& name);

/// greater_is_better for `metric`: `setting` when true or false; for auto, false for metrics
/// ending in loss, else true.
bool greater_is_better_for(const std::string& metric, AutoBool setting);

/// Fills the values other values imply (eval_steps from logging_steps, the best-model metric
/// for load_best_model_at_end, greater_is_better from the metric, run_name), as HF does.
void finalize(Config& config);

}  // namespace hpctrain::config
