// Parsing of `hpctrain <command> [--config FILE.ini] [--key value ...]` with Boost.Program_options:
// defaults, then the INI file, then the command line; every error names its source and key.
#include "hpctrain/config/config.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <boost/program_options.hpp>

#include "hpctrain/core/error.h"

namespace hpctrain::config {
namespace po = boost::program_options;

namespace {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// The closest key within 3 edits. The edit distance is at least the difference of the lengths,
// so only keys of about the same length are compared: fast for a key of any length.
std::string suggestion(const std::string& key, const std::vector<OptionSpec>& table) {
  std::string best;
  std::size_t best_d = 4;
  auto consider = [&](const std::string& candidate, std::size_t extra, const std::string& name) {
    const std::size_t gap = key.size() > candidate.size() ? key.size() - candidate.size() : candidate.size() - key.size();
    if (gap + extra >= best_d) return;
    const std::size_t d = edit_distance(key, candidate) + extra;
    if (d < best_d) {
      best_d = d;
      best = name;
    }
  };
  for (const auto& o : table) {
    consider(o.key, 0, o.key);
    // also match the key without its section (a top-level key written under [model], say)
    auto dot = o.key.find('.');
    if (dot != std::string::npos) consider(o.key.substr(dot + 1), 1, o.key);
  }
  return best.empty() ? "" : "; did you mean '" + best + "'?";
}

std::string describe_key_in_file(const std::string& key) {
  auto dot = key.find('.');
  if (dot == std::string::npos) return "key '" + key + "'";
  return "key '" + key.substr(dot + 1) + "' in section [" + key.substr(0, dot) + "]";
}

void add_table_options(po::options_description& desc, const std::vector<OptionSpec>& table, bool with_defaults) {
  for (const auto& o : table) {
    auto* v = po::value<std::string>();
    if (o.kind == OptionSpec::Kind::kBool) v->implicit_value("true");
    if (with_defaults) {
      const std::string d = o.get();
      v->default_value(d, d.empty() ? "\"\"" : d);
    }
    switch (o.kind) {
      case OptionSpec::Kind::kInt: v->value_name("int"); break;
      case OptionSpec::Kind::kFloat: v->value_name("float"); break;
      case OptionSpec::Kind::kBool: v->value_name("bool"); break;
      case OptionSpec::Kind::kChoice: v->value_name("choice"); break;
      case OptionSpec::Kind::kString: v->value_name("str"); break;
    }
    std::string help = o.help;
    if (o.kind == OptionSpec::Kind::kChoice) {
      help += " {";
      for (std::size_t i = 0; i < o.choices.size(); ++i) help += (i ? "|" : "") + o.choices[i];
      help += "}";
    }
    desc.add_options()(o.key.c_str(), v, help.c_str());
  }
}

po::options_description generic_options() {
  po::options_description g("General", 110);
  g.add_options()("help,h", "print this help and exit")("version", "print the version and exit")(
      "config", po::value<std::string>()->value_name("FILE.ini"),
      "INI file with the run's configuration; keys given on the command line override it")(
      "print_config", "print the resolved configuration as INI (which --config reads back) and exit")(
      "sweep", po::value<std::string>()->value_name("SPACE.ini"),
      "train one point of this sweep space (jobs/sweeps/*.ini); needs --sweep_index")(
      "sweep_index", po::value<std::string>()->value_name("int"),
      "the point to train, 0 <= i < points (in a job array: $SLURM_ARRAY_TASK_ID); its output_dir is "
      "<output_dir>/<sweep name>/point-<i, zero-padded to 3 digits>");
  return g;
}

std::string help_text(Config& defaults) {
  auto table = option_table(defaults);
  std::ostringstream os;
  os << "Usage: hpctrain <command> [--config FILE.ini] [--key value ...]\n\n"
        "Commands:\n"
        "  train      train the model (data-parallel over the MPI ranks)\n"
        "  evaluate   evaluate a checkpoint (or the initial model) on the eval data set\n"
        "  predict    predict the test data set and write the predictions to HDF5\n"
        "  env        print every rank's place in the job, device, backends and SLURM facts\n\n"
        "Every key can be set in the INI file (keys of [model] and [data] in those sections) or on the\n"
        "command line (--key value, --key=value; --model.name mlp). Booleans: true/false, yes/no, 1/0;\n"
        "a bare --flag means true.\n\n";
  os << generic_options() << "\n";
  std::vector<std::string> groups;
  for (const auto& o : table)
    if (std::find(groups.begin(), groups.end(), o.group) == groups.end()) groups.push_back(o.group);
  for (const auto& g : groups) {
    std::vector<OptionSpec> in_group;
    for (const auto& o : table)
      if (o.group == g) in_group.push_back(o);
    po::options_description desc(g, 110, 55);
    add_table_options(desc, in_group, /*with_defaults=*/true);
    os << desc << "\n";
  }
  return os.str();
}

struct Setting {
  std::string value;
  std::string source;  // "config file 'x.ini'" or "the command line"
};

void apply(const std::vector<OptionSpec>& table, const std::string& key, const Setting& s) {
  for (const auto& o : table) {
    if (o.key != key) continue;
    try {
      o.set(s.value);
    } catch (const std::invalid_argument& e) {
      throw ConfigError("invalid value for '" + key + "' in " + s.source + ": '" + s.value + "' (" + e.what() + ")");
    }
    return;
  }
}

std::map<std::string, Setting> read_config_file(const std::string& path, const std::vector<OptionSpec>& table) {
  std::ifstream in(path);
  if (!in) throw ConfigError("config file '" + path + "' cannot be opened (" + std::strerror(errno) + ")");
  po::options_description desc;
  add_table_options(desc, table, /*with_defaults=*/false);
  po::parsed_options parsed(&desc);
  try {
    parsed = po::parse_config_file(in, desc, /*allow_unregistered=*/true);
  } catch (const po::error& e) {
    throw ConfigError("config file '" + path + "': " + e.what());
  }
  const std::string source = "config file '" + path + "'";
  std::map<std::string, Setting> out;
  for (const auto& o : parsed.options) {
    if (o.unregistered)
      throw ConfigError("unknown " + describe_key_in_file(shown_value(o.string_key)) + " in " + source +
                        suggestion(o.string_key, table) + " (hpctrain --help lists every key)");
    const std::string value = o.value.empty() ? std::string() : o.value.front();
    auto [it, inserted] = out.emplace(o.string_key, Setting{value, source});
    if (!inserted)
      throw ConfigError(describe_key_in_file(o.string_key) + " is set twice in " + source + " ('" +
                        it->second.value + "' and '" + value + "')");
  }
  return out;
}

}  // namespace

std::string shown_value(const std::string& value) {
  std::string out;
  for (char c : value.substr(0, 80)) {
    const auto u = static_cast<unsigned char>(c);
    out += u < 0x20 || u == 0x7f ? '?' : c;  // control characters; UTF-8 text stays as it is
  }
  if (value.size() > 80) out += "... (" + std::to_string(value.size()) + " characters)";
  return out.empty() ? "\"\"" : out;
}

ParseResult parse_command_line(int argc, const char* const* argv) {
  ParseResult result;
  if (argc < 2) throw ConfigError("missing command; usage: hpctrain <train|evaluate|predict|env> [--config FILE.ini] "
                                  "[--key value ...] (hpctrain --help for all options)");
  std::vector<std::string> args(argv + 1, argv + argc);
  const std::string first = args.front();
  if (first == "--help" || first == "-h") {
    result.action = Action::kHelp;
    result.help = help_text(result.config);
    return result;
  }
  if (first == "--version") {
    result.action = Action::kVersion;
    return result;
  }
  const auto& cmds = commands();
  if (std::find(cmds.begin(), cmds.end(), first) == cmds.end())
    throw ConfigError("unknown command '" + first + "'; expected one of: train, evaluate, predict, env");
  result.config.command = first;
  args.erase(args.begin());

  Config& config = result.config;
  const auto table = option_table(config);
  po::options_description desc;
  desc.add(generic_options());
  add_table_options(desc, table, /*with_defaults=*/false);
  po::parsed_options parsed(&desc);
  try {
    // No prefix guessing: --max_step must not silently mean --max_steps.
    const int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
    parsed = po::command_line_parser(args).options(desc).style(style).allow_unregistered().run();
  } catch (const po::error& e) {
    throw ConfigError(std::string("command line: ") + e.what());
  }

  std::map<std::string, Setting> cli;
  std::string sweep_file, sweep_index;
  for (const auto& o : parsed.options) {
    if (o.position_key >= 0)
      throw ConfigError("unexpected argument '" + o.value.front() + "' on the command line (options are --key value)");
    if (o.unregistered) {
      std::string key = o.string_key;
      throw ConfigError("unknown option '" + shown_value(o.original_tokens.empty() ? key : o.original_tokens.front()) +
                        "' on the command line" + suggestion(key, table) + " (hpctrain --help lists every key)");
    }
    // A bare boolean flag (--bf16) carries no token; its implicit value is applied here.
    const std::string value = o.value.empty() ? std::string("true") : o.value.front();
    if (o.string_key == "help") {
      result.action = Action::kHelp;
    } else if (o.string_key == "print_config") {
      result.action = Action::kPrintConfig;
    } else if (o.string_key == "version") {
      result.action = Action::kVersion;
    } else if (o.string_key == "config") {
      config.config_file = value;
    } else if (o.string_key == "sweep") {
      sweep_file = value;
    } else if (o.string_key == "sweep_index") {
      sweep_index = value;
    } else {
      cli[o.string_key] = Setting{value, "the command line"};  // the last occurrence wins
    }
  }
  if (result.action == Action::kHelp) {
    Config defaults;
    result.help = help_text(defaults);
    return result;
  }

  if (sweep_file.empty() != sweep_index.empty())
    throw ConfigError(sweep_file.empty() ? "--sweep_index needs --sweep SPACE.ini" : "--sweep needs --sweep_index N");
  std::optional<SweepSpace> space;
  std::int64_t index = -1;
  if (!sweep_file.empty()) {
    space = SweepSpace::read(sweep_file);
    char* end = nullptr;
    errno = 0;
    index = std::strtoll(sweep_index.c_str(), &end, 10);
    if (sweep_index.empty() || *end != '\0' || errno == ERANGE)
      throw ConfigError("--sweep_index '" + sweep_index + "': expected an integer");
    if (config.config_file.empty()) config.config_file = space->base_config;  // --config wins
  }

  if (!config.config_file.empty())
    for (const auto& [key, setting] : read_config_file(config.config_file, table)) apply(table, key, setting);
  for (const auto& [key, setting] : cli) apply(table, key, setting);
  if (space) {
    std::vector<std::string> explicit_keys;
    for (const auto& kv : cli) explicit_keys.push_back(kv.first);
    apply_sweep_point(config, *space, index, explicit_keys);
  }
  return result;
}

std::string to_ini(const Config& config) {
  Config copy = config;
  const auto table = option_table(copy);
  std::ostringstream os;
  os << "# hpctrain configuration (resolved). Read it back with: hpctrain " << config.command
     << " --config FILE.ini\n";
  for (const std::string section : {"", "model", "data"}) {
    std::string group;
    bool header = false;
    for (const auto& o : table) {
      auto dot = o.key.find('.');
      const std::string sec = dot == std::string::npos ? "" : o.key.substr(0, dot);
      if (sec != section) continue;
      if (!header && !section.empty()) os << "\n[" << section << "]\n";
      header = true;
      if (o.group != group && section.empty()) {
        os << "\n# " << o.group << "\n";
        group = o.group;
      }
      os << (dot == std::string::npos ? o.key : o.key.substr(dot + 1)) << " = " << o.get() << "\n";
    }
  }
  return os.str();
}

}  // namespace hpctrain::config
