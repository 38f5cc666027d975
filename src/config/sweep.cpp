// Sweep spaces: reading and checking the INI file, and the deterministic expansion of a point.
#include "hpctrain/config/sweep.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "hpctrain/core/error.h"
#include "hpctrain/core/files.h"
#include "hpctrain/core/text.h"
#include "hpctrain/config/config.h"

namespace hpctrain::config {
namespace fs = std::filesystem;

namespace {

// Values separated by spaces (and commas, when the key's own values never hold one); "..." quotes.
std::vector<std::string> split_values(const std::string& text, bool commas, const std::string& where) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false, have = false;
  for (char c : text) {
    if (c == '"') {
      quoted = !quoted;
      have = true;
    } else if (!quoted && (c == ' ' || c == '\t' || (commas && c == ','))) {
      if (have) out.push_back(cur);
      cur.clear();
      have = false;
    } else {
      cur += c;
      have = true;
    }
  }
  if (quoted) throw ConfigError(where + ": unbalanced quote in '" + text + "'");
  if (have) out.push_back(cur);
  return out;
}

std::string quote_if_needed(const std::string& v) {
  if (!v.empty() && v.find_first_of(" \t\"#") == std::string::npos) return v;
  return "\"" + v + "\"";
}

double parse_number(const std::string& s, const std::string& where) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
    throw ConfigError(where + ": '" + s + "' is not a finite number");
  return v;
}

// SplitMix64: a portable counter-based generator, so a point's draws are the same everywhere.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

// Uniform in [0, 1) for (seed, point, key).
double unit(std::uint64_t seed, std::int64_t point, const std::string& key) {
  const std::uint64_t x = mix(mix(mix(seed) ^ fnv1a(key)) ^ static_cast<std::uint64_t>(point));
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

// A range bound as text its key reads: randint bounds as integers (100, not 1e+02).
std::string bound_text(const SweepAxis& a, double v) {
  return a.kind == SweepAxis::Kind::kRandInt ? std::to_string(static_cast<long long>(v)) : format_shortest(v);
}

// A sweep name is a directory name: no '/', no spaces, not "." or "..".
bool valid_name(const std::string& n) {
  return !n.empty() && n != "." && n != ".." && n.find_first_of("/ \t\"#") == std::string::npos;
}

const char* kind_name(SweepAxis::Kind k) {
  switch (k) {
    case SweepAxis::Kind::kUniform: return "uniform";
    case SweepAxis::Kind::kLogUniform: return "loguniform";
    case SweepAxis::Kind::kRandInt: return "randint";
    case SweepAxis::Kind::kChoice: return "choice";
    case SweepAxis::Kind::kGrid: break;
  }
  return "grid";
}

// Keys a sweep may not set: it sets them itself, per point.
bool reserved(const std::string& key) {
  return key == "output_dir" || key == "run_name" || key == "resume_from_checkpoint";
}

}  // namespace

std::string sweep_point_dirname(std::int64_t index, std::int64_t points) {
  const int width = std::max<int>(3, static_cast<int>(std::to_string(std::max<std::int64_t>(points - 1, 0)).size()));
  char buf[48];
  std::snprintf(buf, sizeof(buf), "point-%0*lld", width, static_cast<long long>(index));
  return buf;
}

SweepSpace SweepSpace::read(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("sweep space '" + path + "' cannot be opened (" + std::strerror(errno) + ")");
  SweepSpace s;
  s.file = path;
  s.name = fs::path(path).stem().string();
  Config scratch;
  const auto table = option_table(scratch);
  std::string section;
  std::vector<std::string> seen;
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    const std::string where = "sweep space '" + path + "', line " + std::to_string(n);
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[') {
      if (line.back() != ']') throw ConfigError(where + ": expected a section header like [grid], got '" + line + "'");
      section = trim(line.substr(1, line.size() - 2));
      if (section != "sweep" && section != "grid" && section != "random")
        throw ConfigError(where + ": unknown section [" + section + "]; expected [sweep], [grid] or [random]");
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos) throw ConfigError(where + ": expected 'key = value', got '" + line + "'");
    const std::string key = trim(line.substr(0, eq));
    std::string value = trim(line.substr(eq + 1));
    // An inline comment starts with " #"
    if (auto hash = value.find(" #"); hash != std::string::npos) value = trim(value.substr(0, hash));
    if (section.empty()) throw ConfigError(where + ": '" + key + "' is outside a section ([sweep], [grid] or [random])");

    if (section == "sweep") {
      if (key == "name") {
        if (!valid_name(value))
          throw ConfigError(where + ": name '" + value + "' must be a directory name: non-empty, without '/', spaces, "
                            "quotes or '#', not '.' or '..'");
        s.name = value;
      } else if (key == "seed") {
        char* end = nullptr;
        errno = 0;
        const unsigned long long v = std::strtoull(value.c_str(), &end, 10);
        if (value.empty() || value[0] == '-' || *end != '\0' || errno == ERANGE)
          throw ConfigError(where + ": seed '" + value + "' must be an integer in [0, 2^64)");
        s.seed = v;
      } else if (key == "count" || key == "parallel") {
        const double v = parse_number(value, where + " (" + key + ")");
        if (v < 1 || v != std::floor(v) || v > 1e6) throw ConfigError(where + ": " + key + " " + value + " must be an integer >= 1");
        (key == "count" ? s.count : s.parallel) = static_cast<std::int64_t>(v);
      } else if (key == "metric") {
        s.metric = value;
      } else if (key == "greater_is_better") {
        const auto g = from_name<AutoBool>(value);
        if (!g) throw ConfigError(where + ": greater_is_better '" + value + "': expected true, false or auto");
        s.greater_is_better = *g;
      } else if (key == "config") {
        const fs::path p(value);
        s.base_config = p.is_absolute() || value.empty() ? value : (fs::path(path).parent_path() / p).lexically_normal().string();
      } else {
        throw ConfigError(where + ": unknown key '" + key + "' in [sweep]; expected name, seed, count, metric, greater_is_better, config or parallel");
      }
      continue;
    }

    const OptionSpec* spec = nullptr;
    for (const auto& o : table)
      if (o.key == key) spec = &o;
    if (!spec) throw ConfigError(where + ": '" + key + "' is not a configuration key (hpctrain --help lists them)");
    if (reserved(key)) throw ConfigError(where + ": '" + key + "' cannot be swept: the sweep sets it for every point");
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) throw ConfigError(where + ": '" + key + "' is swept twice");
    seen.push_back(key);
    const bool numeric = spec->kind == OptionSpec::Kind::kInt || spec->kind == OptionSpec::Kind::kFloat;
    const bool commas = spec->kind != OptionSpec::Kind::kString;
    auto check_value = [&](const std::string& v) {
      try {
        spec->set(v);
      } catch (const std::invalid_argument& e) {
        throw ConfigError(where + ": " + key + " value '" + v + "': " + e.what());
      }
    };

    SweepAxis axis;
    axis.key = key;
    if (section == "grid") {
      axis.values = split_values(value, commas, where);
      if (axis.values.empty()) throw ConfigError(where + ": " + key + " has no values");
      for (const auto& v : axis.values) check_value(v);
      s.grid.push_back(std::move(axis));
      continue;
    }
    // [random]: <distribution> <arguments>
    auto words = split_values(value, /*commas=*/false, where);
    if (words.empty()) throw ConfigError(where + ": " + key + " needs a distribution: uniform, loguniform, randint or choice");
    const std::string dist = words.front();
    words.erase(words.begin());
    if (dist == "choice") {
      axis.kind = SweepAxis::Kind::kChoice;
      if (commas && words.size() == 1) words = split_values(words.front(), true, where);
      if (words.empty()) throw ConfigError(where + ": " + key + " = choice needs at least one value");
      for (const auto& v : words) check_value(v);
      axis.values = words;
    } else if (dist == "uniform" || dist == "loguniform" || dist == "randint") {
      axis.kind = dist == "uniform" ? SweepAxis::Kind::kUniform
                  : dist == "loguniform" ? SweepAxis::Kind::kLogUniform : SweepAxis::Kind::kRandInt;
      if (words.size() == 1) words = split_values(words.front(), true, where);  // "uniform 0,1"
      if (words.size() != 2) throw ConfigError(where + ": " + key + " = " + dist + " needs two numbers: LOW HIGH");
      if (!numeric) throw ConfigError(where + ": " + key + " is not numeric; use choice for it");
      if (spec->kind == OptionSpec::Kind::kInt && axis.kind != SweepAxis::Kind::kRandInt)
        throw ConfigError(where + ": " + key + " is an integer key; use randint LOW HIGH");
      axis.lo = parse_number(words[0], where);
      axis.hi = parse_number(words[1], where);
      if (!(axis.lo <= axis.hi)) throw ConfigError(where + ": " + key + ": LOW " + words[0] + " is above HIGH " + words[1]);
      if (axis.kind == SweepAxis::Kind::kLogUniform && !(axis.lo > 0))
        throw ConfigError(where + ": " + key + " = loguniform needs LOW > 0, got " + words[0]);
      if (axis.kind == SweepAxis::Kind::kRandInt && (axis.lo != std::floor(axis.lo) || axis.hi != std::floor(axis.hi)))
        throw ConfigError(where + ": " + key + " = randint needs integer bounds");
      check_value(bound_text(axis, axis.lo));
      check_value(bound_text(axis, axis.hi));
    } else {
      throw ConfigError(where + ": unknown distribution '" + dist + "' for " + key +
                        "; expected uniform, loguniform, randint or choice");
    }
    s.random.push_back(std::move(axis));
  }
  if (!valid_name(s.name))
    throw ConfigError("sweep space '" + path + "': its file name gives the sweep name '" + s.name +
                      "', which is not a directory name (no spaces, quotes or '#'); set [sweep] name");
  if (s.grid.empty() && s.random.empty()) throw ConfigError("sweep space '" + path + "' sweeps no key: give [grid] or [random] keys");
  if (s.random.empty() && s.count != 1)
    throw ConfigError("sweep space '" + path + "': count = " + std::to_string(s.count) + " needs [random] keys to draw");
  if (s.size() > 1000000) throw ConfigError("sweep space '" + path + "' has " + std::to_string(s.size()) + " points; at most 1000000");
  return s;
}

std::vector<std::string> SweepSpace::keys() const {
  std::vector<std::string> k;
  for (const auto& a : grid) k.push_back(a.key);
  for (const auto& a : random) k.push_back(a.key);
  return k;
}

std::int64_t SweepSpace::size() const {
  std::int64_t n = count;
  for (const auto& a : grid) {
    n *= static_cast<std::int64_t>(a.values.size());
    if (n > 1000000000) return n;  // reported by read(), without overflow
  }
  return n;
}

SweepParams SweepSpace::point(std::int64_t index) const {
  if (index < 0 || index >= size())
    throw ConfigError("sweep_index " + std::to_string(index) + " is out of range: sweep space '" + file + "' has " +
                      std::to_string(size()) + " points (0-" + std::to_string(size() - 1) + ")");
  SweepParams out;
  // Grid: mixed-radix digits of index / count, the last key fastest.
  std::int64_t g = index / count;
  std::vector<std::size_t> digit(grid.size());
  for (std::size_t i = grid.size(); i-- > 0;) {
    const auto n = static_cast<std::int64_t>(grid[i].values.size());
    digit[i] = static_cast<std::size_t>(g % n);
    g /= n;
  }
  for (std::size_t i = 0; i < grid.size(); ++i) out.emplace_back(grid[i].key, grid[i].values[digit[i]]);
  for (const auto& a : random) {
    const double u = unit(seed, index, a.key);
    std::string v;
    switch (a.kind) {
      case SweepAxis::Kind::kUniform: v = format_g(a.lo + u * (a.hi - a.lo), 6); break;
      case SweepAxis::Kind::kLogUniform: v = format_g(std::exp(std::log(a.lo) + u * (std::log(a.hi) - std::log(a.lo))), 6); break;
      case SweepAxis::Kind::kRandInt:
        v = std::to_string(static_cast<long long>(a.lo) + static_cast<long long>(std::floor(u * (a.hi - a.lo + 1))));
        break;
      case SweepAxis::Kind::kChoice: v = a.values[static_cast<std::size_t>(std::floor(u * static_cast<double>(a.values.size())))]; break;
      case SweepAxis::Kind::kGrid: break;
    }
    out.emplace_back(a.key, v);
  }
  return out;
}

std::string SweepSpace::to_ini() const {
  std::ostringstream os;
  os << "[sweep]\nname = " << name << "\nseed = " << seed << "\ncount = " << count << "\n";
  if (!metric.empty()) os << "metric = " << metric << "\n";
  if (greater_is_better != AutoBool::kAuto) os << "greater_is_better = " << to_name(greater_is_better) << "\n";
  if (parallel > 0) os << "parallel = " << parallel << "\n";
  if (!grid.empty()) {
    os << "\n[grid]\n";
    for (const auto& a : grid) {
      os << a.key << " =";
      for (const auto& v : a.values) os << " " << quote_if_needed(v);
      os << "\n";
    }
  }
  if (!random.empty()) {
    os << "\n[random]\n";
    for (const auto& a : random) {
      os << a.key << " = " << kind_name(a.kind);
      if (a.kind == SweepAxis::Kind::kChoice) {
        for (const auto& v : a.values) os << " " << quote_if_needed(v);
      } else {
        os << " " << bound_text(a, a.lo) << " " << bound_text(a, a.hi);
      }
      os << "\n";
    }
  }
  return os.str();
}

void apply_sweep_point(Config& config, const SweepSpace& space, std::int64_t index,
                       const std::vector<std::string>& explicit_keys) {
  const SweepParams params = space.point(index);
  auto table = option_table(config);
  for (const auto& [key, value] : params) {
    if (std::find(explicit_keys.begin(), explicit_keys.end(), key) != explicit_keys.end())
      throw ConfigError("'" + key + "' is swept by '" + space.file + "' and also set on the command line; set it in one place");
    for (auto& o : table)
      if (o.key == key) o.set(value);  // checked by SweepSpace::read
  }
  auto& a = config.args;
  SweepSpace resolved = space;
  resolved.parallel = 0;  // a throttle, not part of what the points are
  if (!space.metric.empty()) a.metric_for_best_model = space.metric;
  if (a.metric_for_best_model.empty()) {
    if (config.data.eval.empty())
      throw ConfigError("sweep space '" + space.file + "': a sweep ranks its points by an evaluation metric; set [sweep] "
                        "metric (or metric_for_best_model) and an eval data set ([data] eval)");
    a.metric_for_best_model = "loss";
  }
  resolved.metric = a.metric_for_best_model;
  if (space.greater_is_better != AutoBool::kAuto) a.greater_is_better = space.greater_is_better;
  resolved.greater_is_better =
      greater_is_better_for(a.metric_for_best_model, a.greater_is_better) ? AutoBool::kTrue : AutoBool::kFalse;
  std::string parent = a.output_dir;
  while (parent.size() > 1 && parent.back() == '/') parent.pop_back();
  SweepPoint& p = config.sweep;
  p.space_file = space.file;
  p.name = space.name;
  p.index = index;
  p.points = space.size();
  p.root = (fs::path(parent) / space.name).string();
  p.params = params;
  p.space_ini = resolved.to_ini();
  p.metric_name = resolved.metric;
  const std::string dir = sweep_point_dirname(index, p.points);
  a.output_dir = (fs::path(p.root) / dir).string();
  a.run_name = space.name + "-" + dir.substr(dir.find('-') + 1);
}

}  // namespace hpctrain::config
