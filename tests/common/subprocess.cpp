// Test helpers: programs run through core/process, waits, and the files tests write and read.
#include "common/subprocess.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "hpctrain/core/process.h"

namespace hpctrain::testing {

namespace {
// What the tests' children inherit: Open MPI refuses root without these (the tests run as root in
// CI, and tools/hpctrain-mpirun calls plain mpirun), and more ranks than cores need
// oversubscription. The multi-rank CTest tests get the same through their environment.
const bool g_mpi_env = [] {
  if (geteuid() == 0) {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  }
  setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
  return true;
}();
}  // namespace

double time_scale() {
  static const double k = [] {
    const char* s = std::getenv("HPCTRAIN_TEST_TIME_SCALE");
    const double v = s ? std::atof(s) : 1.0;
    return v >= 1 && v <= 100 ? v : 1.0;
  }();
  return k;
}

double scaled(double seconds) { return seconds * time_scale(); }

RunResult run(const std::vector<std::string>& argv, double timeout_s, const std::string& cwd) {
  process::Options o;
  o.timeout_s = scaled(timeout_s);
  o.cwd = cwd;
  o.die_with_parent = true;  // a test killed by CTest's time limit leaves no launcher behind
  process::Result p = process::run(argv, o);
  if (!p.started) throw std::runtime_error("cannot start " + (argv.empty() ? std::string("(nothing)") : argv[0]));
  RunResult r;
  r.exit_code = p.status;
  r.timed_out = p.timed_out;
  r.seconds = p.seconds;
  r.out = std::move(p.out);
  r.err = std::move(p.err);
  return r;
}

int spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  // die_with_parent: a test killed by CTest's time limit leaves no launcher behind.
  const pid_t pid = process::start(argv, {log_path, "", /*die_with_parent=*/true});
  if (pid < 0) throw std::runtime_error("cannot start " + (argv.empty() ? std::string("nothing") : argv[0]) + " with output to " + log_path);
  return pid;
}

namespace {
// Parent pid -> child pids, from /proc.
std::map<int, std::vector<int>> process_tree() {
  std::map<int, std::vector<int>> children;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    int ppid = 0;
    rest >> state >> ppid;
    children[ppid].push_back(std::stoi(name));
  }
  return children;
}

// Every live descendant of `root` (the MPI ranks run in their own process groups under mpiexec).
std::vector<int> descendants(int root) {
  auto children = process_tree();
  std::vector<int> out, todo = {root};
  while (!todo.empty()) {
    const int p = todo.back();
    todo.pop_back();
    for (int c : children[p]) {
      out.push_back(c);
      todo.push_back(c);
    }
  }
  return out;
}
}  // namespace

std::vector<int> children_named(int parent, const std::string& comm) {
  std::vector<int> out;
  const auto tree = process_tree();  // not in the range expression: a temporary there would dangle
  const auto it = tree.find(parent);
  if (it == tree.end()) return out;
  for (int c : it->second)
    if (read_file("/proc/" + std::to_string(c) + "/comm") == comm + "\n") out.push_back(c);
  return out;
}

std::vector<int> wait_for_children(int parent, const std::string& comm, std::size_t count, double timeout_s) {
  std::vector<int> found;
  for (int i = 0; i < static_cast<int>(scaled(timeout_s) * 100) && found.size() < count; ++i) {
    found = children_named(parent, comm);
    if (found.size() < count) usleep(10000);
  }
  return found;
}

int kill_group(int pid, int signal) {
  const std::vector<int> tree = descendants(pid);
  kill(-pid, signal);
  for (int p : tree) kill(p, signal);
  int status = 0;
  waitpid(pid, &status, 0);
  // Wait until the descendants are gone too (they are reaped by init, not by us).
  for (int i = 0; i < 500; ++i) {
    bool any = false;
    for (int p : tree) any = any || (kill(p, 0) == 0 && std::ifstream("/proc/" + std::to_string(p) + "/stat"));
    if (!any) break;
    usleep(10000);
  }
  return status;
}

bool wait_for_path(const std::string& path, double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(scaled(timeout_s));
  while (std::chrono::steady_clock::now() < deadline) {
    if (access(path.c_str(), F_OK) == 0) return true;
    usleep(20000);
  }
  return false;
}

std::vector<std::string> mpiexec(int np, const std::vector<std::string>& argv) {
  std::vector<std::string> cmd = {HPCTRAIN_MPIEXEC, "-np", std::to_string(np)};
  if (geteuid() == 0) cmd.push_back("--allow-run-as-root");  // Open MPI refuses root otherwise
  std::istringstream extra(HPCTRAIN_MPIEXEC_FLAGS);
  for (std::string f; extra >> f;) cmd.push_back(f);
  cmd.insert(cmd.end(), argv.begin(), argv.end());
  return cmd;
}

std::string temp_dir(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
  return std::string(buf.data());
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  if (!(f << text)) throw std::runtime_error("cannot write " + path);
}

void flip_byte(const std::string& path, long long offset, unsigned char mask) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  char c = 0;
  if (!f.seekg(offset) || !f.read(&c, 1)) throw std::runtime_error("cannot read byte " + std::to_string(offset) + " of " + path);
  c = static_cast<char>(c ^ static_cast<char>(mask));
  if (!f.seekp(offset) || !f.write(&c, 1) || !f.flush()) throw std::runtime_error("cannot write " + path);
}

std::vector<Json> read_metrics(const std::string& output_dir) {
  std::vector<Json> v;
  std::ifstream f(output_dir + "/metrics.jsonl");
  for (std::string line; std::getline(f, line);) v.push_back(json::parse(line, output_dir + "/metrics.jsonl"));
  return v;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace hpctrain::testing
