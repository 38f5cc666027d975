// hpctrain-sweep: plan a hyperparameter sweep and report on it.
//   hpctrain-sweep plan SPACE.ini [--config BASE.ini] [--parallel K] [--runs DIR]
//       the points, each checked against the base configuration, and the sbatch line to submit
//   hpctrain-sweep report SWEEP_DIR [--out PREFIX] [--no-plot]
//       every point's status, best metric and step, ranked; PREFIX.md, PREFIX.csv, PREFIX.png
//       (PREFIX defaults to SWEEP_DIR/report)
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

#include "hpctrain/core/error.h"
#include "hpctrain/core/files.h"
#include "hpctrain/core/json.h"
#include "hpctrain/slurm/run_lock.h"
#include "hpctrain/config/config.h"
#include "hpctrain/train/trainer_state.h"
#include "hpctrain/config/sweep.h"

#ifndef HPCTRAIN_PLOT_SCRIPT
#define HPCTRAIN_PLOT_SCRIPT "hpctrain-plot"
#endif

using namespace hpctrain;
namespace fs = std::filesystem;

namespace {

const char* kUsage =
    "Usage:\n"
    "  hpctrain-sweep plan SPACE.ini [--config BASE.ini] [--parallel K] [--runs DIR]\n"
    "      list the points (each checked against the base configuration) and print the sbatch line\n"
    "      that submits them as a job array of slurm/sweep.sbatch (run directories under DIR, default runs)\n"
    "  hpctrain-sweep report SWEEP_DIR [--out PREFIX] [--no-plot]\n"
    "      rank the points of a sweep directory by the sweep's metric: PREFIX.md, PREFIX.csv and a plot\n"
    "      of the metric against each swept value, PREFIX.png (default PREFIX: SWEEP_DIR/report)\n";

// --key value pairs after the positional argument.
std::map<std::string, std::string> options(int argc, char** argv, int first, const std::vector<std::string>& allowed) {
  std::map<std::string, std::string> out;
  for (int i = first; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || std::find(allowed.begin(), allowed.end(), k.substr(2)) == allowed.end())
      throw ConfigError("unexpected argument '" + k + "'\n" + kUsage);
    k = k.substr(2);
    if (k == "no-plot") {
      out[k] = "1";
      continue;
    }
    if (i + 1 >= argc) throw ConfigError("--" + k + " needs a value");
    out[k] = argv[++i];
  }
  return out;
}

// Table cells joined as a Markdown row.
std::string md_row(const std::vector<std::string>& cells) {
  std::string r = "|";
  for (const auto& c : cells) r += " " + c + " |";
  return r + "\n";
}

std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string fmt(double v) {
  std::ostringstream os;
  os << std::setprecision(6) << v;
  return os.str();
}

config::ParseResult parse_point(const std::string& space, std::int64_t index, const std::string& base) {
  std::vector<std::string> args = {"hpctrain", "train", "--sweep", space, "--sweep_index", std::to_string(index)};
  if (!base.empty()) {
    args.push_back("--config");
    args.push_back(base);
  }
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return config::parse_command_line(static_cast<int>(argv.size()), argv.data());
}

int plan(const std::string& path, const std::map<std::string, std::string>& opt) {
  const auto space = config::SweepSpace::read(path);
  const std::string base = opt.count("config") ? opt.at("config") : space.base_config;
  const std::int64_t n = space.size();
  std::cout << "sweep " << space.name << ": " << n << " points";
  if (!space.grid.empty()) {
    std::cout << " (";
    for (std::size_t i = 0; i < space.grid.size(); ++i) std::cout << (i ? " x " : "") << space.grid[i].values.size();
    std::cout << " grid" << (space.random.empty() ? "" : " x " + std::to_string(space.count) + " random draws") << ")";
  }
  std::cout << "\n";
  // Every point through the real parser and checks, so that a bad point fails here, not in the queue.
  const std::vector<std::string> keys = space.keys();
  std::vector<std::vector<std::string>> rows;
  std::string metric, problems;
  for (std::int64_t i = 0; i < n; ++i) {
    std::vector<std::string> row = {std::to_string(i)};
    try {
      auto parsed = parse_point(path, i, base);
      config::validate(parsed.config);
      metric = parsed.config.sweep.metric();
      for (const auto& kv : parsed.config.sweep.params) row.push_back(kv.second);
    } catch (const ConfigError& e) {
      if (problems.empty()) problems = "point " + std::to_string(i) + ": " + e.what();
      for (const auto& kv : space.point(i)) row.push_back(kv.second);
    }
    rows.push_back(row);
  }
  std::vector<std::size_t> width = {5};
  for (const auto& k : keys) width.push_back(k.size());
  for (const auto& r : rows)
    for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  auto print_row = [&](const std::vector<std::string>& r) {
    std::string line = " ";
    for (std::size_t c = 0; c < r.size(); ++c) line += " " + r[c] + std::string(width[c] - r[c].size() + 1, ' ');
    std::cout << line.substr(0, line.find_last_not_of(' ') + 1) << "\n";
  };
  std::vector<std::string> header = {"point"};
  header.insert(header.end(), keys.begin(), keys.end());
  print_row(header);
  for (const auto& r : rows) print_row(r);
  if (!problems.empty()) {
    std::cerr << "hpctrain-sweep plan: error: " << problems << "\n";
    return exit_code::kConfig;
  }
  std::int64_t k = space.parallel > 0 ? space.parallel : std::min<std::int64_t>(n, 4);
  if (opt.count("parallel")) {
    const std::string& v = opt.at("parallel");
    if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || std::stoll(v) < 1)
      throw ConfigError("--parallel '" + v + "': expected an integer >= 1");
    k = std::stoll(v);
  }
  const std::string runs = opt.count("runs") ? opt.at("runs") : "runs";
  if (n > 1001)
    std::cout << "note: " << n << " points need array indices up to " << n - 1
              << "; SLURM's default MaxArraySize (1001) allows 1000 at most: ask your site, or split the array "
                 "(--array=0-999, then --array=1000-...) if it is not raised\n";
  std::cout << "metric: " << metric << (base.empty() ? "" : "; base configuration " + base) << "\n"
            << "submit (" << k << " tasks at once; each resumes by itself when preempted):\n"
            << "  " << (opt.count("runs") ? "RUNS=" + runs + " " : "") << "sbatch --array=0-" << n - 1 << "%" << k << " slurm/sweep.sbatch " << path
            << (opt.count("config") ? " --config " + opt.at("config") : "") << "\n"
            << "report:\n  hpctrain-sweep report " << (fs::path(runs) / space.name).string() << "\n";
  return exit_code::kOk;
}

struct PointReport {
  std::int64_t index = 0;
  std::string status, detail, dir;
  std::optional<double> metric;
  std::int64_t best_step = -1, step = 0, max_steps = 0;
  config::SweepParams params;
};

// The newest trainer_state.json of a run directory: its own (written at the end of every run) or
// that of its latest checkpoint, whichever is further.
std::optional<Json> newest_state(const fs::path& dir) {
  std::optional<Json> best;
  auto consider = [&](const fs::path& p) {
    std::error_code ec;
    if (!fs::exists(p, ec)) return;
    try {
      Json j = json::parse_file(p.string());
      const Json* s = json::find(j, "global_step");
      const Json* b = best ? json::find(*best, "global_step") : nullptr;
      if (s && json::is_int64(*s) && (!b || s->get<std::int64_t>() > b->get<std::int64_t>())) best = j;
    } catch (const std::exception&) {
      // a state being replaced; the other one is used
    }
  };
  consider(dir / "trainer_state.json");
  std::ifstream latest(dir / "latest");
  std::string name;
  if (latest >> name) consider(dir / name / "trainer_state.json");
  return best;
}

int report(const std::string& root, const std::map<std::string, std::string>& opt) {
  const fs::path ini = fs::path(root) / "sweep.ini";
  if (!fs::exists(ini))
    throw ConfigError(ini.string() + " not found: '" + root + "' is not a sweep directory (the first point to run writes it)");
  const auto space = config::SweepSpace::read(ini.string());
  const std::string metric = space.metric;
  const bool greater = config::greater_is_better_for(metric, space.greater_is_better);
  std::vector<PointReport> points;
  std::map<std::string, int> counts;
  for (std::int64_t i = 0; i < space.size(); ++i) {
    PointReport p;
    p.index = i;
    p.params = space.point(i);
    const fs::path dir = fs::path(root) / config::sweep_point_dirname(i, space.size());
    p.dir = dir.string();
    const auto st = slurm::inspect_run_dir(p.dir);
    p.status = st.status;
    p.detail = st.detail;
    if (auto js = newest_state(dir)) {
      p.step = js->at("global_step").get<std::int64_t>();  // newest_state keeps only states with a whole step
      if (const Json* m = json::find(*js, "max_steps"); m && json::is_int64(*m)) p.max_steps = m->get<std::int64_t>();
      if (const Json* b = json::find(*js, "best_metric"); b && b->is_number()) {
        p.metric = json::number(*b);
        if (const Json* h = json::find(*js, "log_history"); h && h->is_array())
          for (const auto& e : *h) {
            const Json* v = config::find_metric(e, metric);
            const Json* step = json::find(e, "step");
            if (v && v->is_number() && json::number(*v) == *p.metric && step && json::is_int64(*step)) {
              p.best_step = step->get<std::int64_t>();
              break;
            }
          }
      }
    }
    counts[p.status]++;
    points.push_back(p);
  }
  std::stable_sort(points.begin(), points.end(), [&](const PointReport& a, const PointReport& b) {
    if (a.metric.has_value() != b.metric.has_value()) return a.metric.has_value();
    if (!a.metric) return false;
    return greater ? *a.metric > *b.metric : *a.metric < *b.metric;
  });

  const std::vector<std::string> keys = space.keys();
  const std::string prefix = opt.count("out") ? opt.at("out") : (fs::path(root) / "report").string();
  std::ostringstream md, csv;
  md << "# Sweep " << space.name << "\n\n" << points.size() << " points, ranked by " << metric << " ("
     << (greater ? "higher" : "lower") << " is better):";
  for (const auto& [status, c] : counts) md << " " << c << " " << status << ";";
  md.seekp(-1, std::ios::cur);
  md << ".\n\n";
  std::vector<std::string> header = {"rank", "point", "status", metric, "best step", "step"};
  header.insert(header.end(), keys.begin(), keys.end());
  md << md_row(header);
  md << md_row(std::vector<std::string>(header.size(), "---"));
  csv << "rank,point,status," << csv_cell(metric) << ",best_step,step,max_steps";
  for (const auto& k : keys) csv << "," << csv_cell(k);
  csv << ",output_dir,detail\n";
  int rank = 0;
  for (const auto& p : points) {
    ++rank;
    const std::string m = p.metric ? fmt(*p.metric) : "";
    const std::string best_step = p.best_step >= 0 ? std::to_string(p.best_step) : "";
    const std::string step = p.max_steps > 0 ? std::to_string(p.step) + "/" + std::to_string(p.max_steps) : "";
    std::vector<std::string> cells = {p.metric ? std::to_string(rank) : "-", std::to_string(p.index), p.status, m, best_step, step};
    for (const auto& kv : p.params) cells.push_back(kv.second);
    md << md_row(cells);
    csv << (p.metric ? std::to_string(rank) : "") << "," << p.index << "," << p.status << "," << m << "," << best_step << ","
        << (p.max_steps > 0 ? std::to_string(p.step) : "") << "," << (p.max_steps > 0 ? std::to_string(p.max_steps) : "");
    for (const auto& kv : p.params) csv << "," << csv_cell(kv.second);
    csv << "," << csv_cell(p.dir) << "," << csv_cell(p.detail) << "\n";
  }
  for (const auto& p : points)
    if (p.status == "failed" && !p.detail.empty()) md << "\npoint " << p.index << " failed: " << p.detail << "\n";
  files::write_atomic(prefix + ".md", md.str());
  files::write_atomic(prefix + ".csv", csv.str());
  std::cout << md.str() << "\nwritten: " << prefix << ".md, " << prefix << ".csv" << std::flush;

  if (!opt.count("no-plot")) {
    bool any = false;
    for (const auto& p : points) any = any || p.metric.has_value();
    if (!any) {
      std::cout << "\nno point has a " << metric << " yet: no plot\n";
      return exit_code::kOk;
    }
    std::string script = HPCTRAIN_PLOT_SCRIPT;
    if (const char* e = std::getenv("HPCTRAIN_PLOT")) script = e;
    std::string keys_arg, logs;
    for (const auto& k : keys) keys_arg += (keys_arg.empty() ? "" : ",") + k;
    for (const auto& a : space.random)
      if (a.kind == config::SweepAxis::Kind::kLogUniform) logs += (logs.empty() ? "" : ",") + a.key;
    auto q = [](const std::string& s) {
      std::string o = "'";
      for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
      return o + "'";
    };
    const std::string cmd = q(script) + " --sweep " + q(prefix + ".csv") + " --metric " + q(metric) + " --params " +
                            q(keys_arg) + (logs.empty() ? "" : " --log " + q(logs)) + " -o " + q(prefix + ".png") + " >/dev/null";
    if (std::system(cmd.c_str()) != 0)
      throw Error("the plot failed (" + cmd + "); it needs /usr/bin/python3 with matplotlib (tools/install-deps.sh); --no-plot skips the plot");
    std::cout << ", " << prefix << ".png";
  }
  std::cout << "\n";
  return exit_code::kOk;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::cout << kUsage;
    return exit_code::kOk;
  }
  if (argc < 3) {
    std::cerr << kUsage;
    return exit_code::kConfig;
  }
  const std::string cmd = argv[1];
  try {
    if (cmd == "plan") return plan(argv[2], options(argc, argv, 3, {"config", "parallel", "runs"}));
    if (cmd == "report") return report(argv[2], options(argc, argv, 3, {"out", "no-plot"}));
    std::cerr << "hpctrain-sweep: unknown command '" << cmd << "'\n" << kUsage;
    return exit_code::kConfig;
  } catch (const Error& e) {
    std::cerr << "hpctrain-sweep " << cmd << ": error: " << e.what() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {
    std::cerr << "hpctrain-sweep " << cmd << ": error: " << e.what() << "\n";
    return exit_code::kFatal;
  }
}
