// RunLock: O_EXCL creation of output_dir/.lock; staleness by pid (same host) or SLURM job state.
#include "hpctrain/slurm/run_lock.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <sstream>

#include "hpctrain/core/error.h"
#include "hpctrain/core/files.h"
#include "hpctrain/core/json.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/slurm/command.h"

namespace hpctrain::slurm {
namespace fs = std::filesystem;

namespace {

std::map<std::string, std::string> read_lock(const std::string& path) {
  std::map<std::string, std::string> kv;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) {
    auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

enum class Alive { kYes, kNo, kUnknown };

// Whether SLURM still runs (or will run) job `id`. squeue lists a pending or running job, prints
// nothing for one that ended, and "Invalid job id" for one it forgot; anything else (no squeue,
// no controller) cannot be told.
Alive slurm_job_alive(const std::string& id) {
  if (!valid_job_id(id)) return Alive::kUnknown;  // not a job id: never put into a command
  const CommandResult r = run_command("squeue -h -j " + id + " -o %T");
  if (r.output.find("Invalid job id") != std::string::npos) return Alive::kNo;
  if (r.status != 0) return Alive::kUnknown;
  // A state word (PENDING, RUNNING, ...) on a line of its own; stderr warnings are other lines.
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && line.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == std::string::npos) return Alive::kYes;
  return Alive::kNo;
}

using LockFields = std::map<std::string, std::string>;

std::string get(const LockFields& kv, const char* key) {
  auto it = kv.find(key);
  return it == kv.end() ? std::string() : it->second;
}

// Who holds a lock, for messages: "job 12_3 (pid 77 on node1)".
std::string describe_holder(const std::string& job, const std::string& pid, const std::string& host) {
  return "job " + (job.empty() ? std::string("-") : job) + " (pid " + pid + " on " + host + ")";
}
std::string describe_holder(const LockFields& kv) { return describe_holder(get(kv, "slurm_job"), get(kv, "pid"), get(kv, "host")); }

// A process's state letter and when it started, in clock ticks since boot (fields 3 and 22 of
// /proc/<pid>/stat, read after the command's closing parenthesis, which may itself hold spaces);
// empty when they cannot be read.
struct ProcessStat {
  std::string state, start;
};
ProcessStat process_stat(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::size_t close = text.rfind(')');
  ProcessStat st;
  if (close == std::string::npos) return st;
  std::istringstream fields(text.substr(close + 1));
  std::string f;
  for (int i = 3; i <= 22 && (fields >> f); ++i) {
    if (i == 3) st.state = f;
    if (i == 22) st.start = f;
  }
  return st;
}

std::string boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

// Whether the lock's process runs; it can be told only on its own host. A pid alone is not the
// process: after the holder died (a lost node that booted again, a long gap) another process may
// have its pid, so a lock that names its holder's start time and boot is held only by that one;
// and a holder killed but not yet reaped (a zombie) holds it no more.
Alive pid_alive(const LockFields& kv, const std::string& host) {
  if (get(kv, "host") != host || get(kv, "pid").empty()) return Alive::kUnknown;
  long pid = 0;
  try {
    pid = std::stol(get(kv, "pid"));
  } catch (const std::exception&) {
    return Alive::kUnknown;
  }
  // Out of a pid's range (a damaged lock): never cast into a negative pid, which kill() would take
  // for a process group.
  if (pid <= 0 || pid > std::numeric_limits<pid_t>::max()) return Alive::kUnknown;
  if (kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return Alive::kNo;
  const std::string start = get(kv, "start"), boot = get(kv, "boot");
  if (!boot.empty() && boot != boot_id()) return Alive::kNo;
  const ProcessStat now = process_stat(pid);
  // A zombie (killed, not yet reaped by its parent) answers kill(pid, 0) but holds nothing.
  if (now.state == "Z" || now.state == "X") return Alive::kNo;
  if (!start.empty() && !now.start.empty() && now.start != start) return Alive::kNo;
  return Alive::kYes;
}

// Whether the lock's holder runs: its SLURM job, or else its process.
Alive holder_alive(const LockFields& kv, const std::string& host) {
  if (!get(kv, "slurm_job").empty()) return slurm_job_alive(get(kv, "slurm_job"));
  return pid_alive(kv, host);
}

}  // namespace

RunLock::RunLock(const dist::Environment& env, const std::string& output_dir)
    : path_((fs::path(output_dir) / ".lock").string()), dir_(output_dir), rank_(env.rank()),
      restart_count_(env.slurm().restart_count) {
  std::string error;
  if (env.rank() == 0) {
    const std::string job = env.slurm().present ? env.slurm().requeue_id() : "";
    job_ = job;
    holder_ = describe_holder(job, std::to_string(getpid()), env.host());
    const int restart = env.slurm().restart_count;
    std::ostringstream me;
    me << "host=" << env.host() << "\npid=" << getpid() << "\nstart=" << process_stat(getpid()).start << "\nboot=" << boot_id()
       << "\nslurm_job=" << job << "\nrestart=" << restart << "\n";
    std::error_code mk;
    fs::create_directories(output_dir, mk);
    if (mk) error = "output_dir " + output_dir + " cannot be created: " + mk.message();
    for (int attempt = 0; attempt < 3 && !held_ && error.empty(); ++attempt) {
      int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd >= 0) {
        const std::string text = me.str();
        if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()) || ::fsync(fd) != 0)
          error = "cannot write the lock " + path_ + ": " + std::strerror(errno);
        if (::close(fd) != 0 && error.empty()) error = "cannot write the lock " + path_ + ": " + std::strerror(errno);
        held_ = error.empty();
        if (!held_) ::unlink(path_.c_str());  // a lock that names nobody would bar the directory for good
        break;
      }
      if (errno != EEXIST) {
        // Not "taken by another": the directory refuses us (read-only, full, no permission).
        error = "output_dir " + output_dir + ": cannot create the lock " + path_ + ": " + std::strerror(errno);
        break;
      }
      auto kv = read_lock(path_);
      if (kv.empty()) continue;  // removed meanwhile: try again
      const std::string holder = describe_holder(kv);
      std::string why;  // why the lock is stale, or "" when it is not
      if (!job.empty() && kv["slurm_job"] == job) {
        // Our own job: an earlier run of it (requeued), or a crashed step of this run; another
        // live step of this allocation keeps it.
        const int theirs = kv["restart"].empty() ? -1 : std::stoi(kv["restart"]);
        if (theirs < restart) why = "an earlier run of this job";
        else if (pid_alive(kv, env.host()) == Alive::kNo) why = "a step of this job that no longer runs";
      } else if (holder_alive(kv, env.host()) == Alive::kNo) {
        why = "a job that no longer runs";
      }
      if (why.empty()) {
        error = "output_dir " + output_dir + " is in use by " + holder + " (lock " + path_ +
                "); use another output_dir, or remove the lock if that job is gone";
        break;
      }
      // Take it over by moving it aside first: of two jobs that judged the same lock stale, one
      // moves it; a fresh lock moved by mistake is put back.
      const std::string aside = path_ + ".stale." + env.host() + "." + std::to_string(getpid());
      if (std::rename(path_.c_str(), aside.c_str()) != 0) {
        if (errno != ENOENT) {  // not a race with another job: the file system says no
          error = "output_dir " + output_dir + ": cannot take over the stale lock " + path_ + " of " + holder + ": " +
                  std::strerror(errno);
          break;
        }
        continue;
      }
      if (read_lock(aside) != kv) {
        if (::link(aside.c_str(), path_.c_str()) != 0) {
          HPCT_LOG(warning) << "could not put back the lock " << path_;
        }
        fs::remove(aside);
        continue;
      }
      fs::remove(aside);
      HPCT_LOG(warning) << "taking over the stale lock " << path_ << " of " << holder << ", " << why;
    }
    if (!held_ && error.empty())
      error = "output_dir " + output_dir + ": cannot take the lock " + path_ + " (another job keeps taking and releasing it)";
  }
  error = env.broadcast_string(error, 0);
  if (!error.empty()) throw CollectiveError(error, exit_code::kConfig);
}

bool RunLock::set_status(const std::string& status, const std::string& detail, bool any_rank) const {
  if (rank_ != 0 && !any_rank) return true;
  Json j = Json::object();
  j["status"] = status;
  j["holder"] = holder_;
  if (!job_.empty()) j["slurm_job"] = job_;
  j["restart_count"] = restart_count_;
  j["time"] = static_cast<std::int64_t>(std::time(nullptr));
  if (!detail.empty()) j["detail"] = detail;
  try {
    files::write_atomic((fs::path(dir_) / "run_status.json").string(), json::dump(j, 2) + "\n");
  } catch (const std::exception& e) {
    HPCT_LOG(warning) << "cannot record the run status '" << status << "': " << e.what();
    return false;
  }
  return true;
}

RunDirStatus inspect_run_dir(const std::string& output_dir) {
  const fs::path dir(output_dir);
  const std::string lock = (dir / ".lock").string();
  Json recorded;
  std::error_code ec;
  if (fs::exists(dir / "run_status.json", ec)) {
    try {
      recorded = json::parse_file((dir / "run_status.json").string());
    } catch (const std::exception& e) {
      return {"failed", e.what()};
    }
  }
  auto field = [&](const char* k) {
    const Json* v = json::find(recorded, k);
    return v && !v->is_null() && !v->is_number() ? v->get<std::string>() : std::string();
  };
  if (fs::exists(lock, ec)) {
    auto kv = read_lock(lock);
    const std::string holder = describe_holder(kv);
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    const Alive alive = holder_alive(kv, host);
    if (alive == Alive::kYes) return {"running", holder};
    if (alive == Alive::kUnknown) return {"running", holder + " (not verified: SLURM or its host cannot be asked)"};
    return {"failed", holder + " ended without recording an end" +
                          (field("detail").empty() ? std::string() : ": " + field("detail"))};
  }
  const std::string status = field("status");
  if (status.empty()) return {"pending", ""};
  if (status == "running") return {"failed", field("holder") + " ended without recording an end"};
  // A preempted run waits for its requeued job; if SLURM no longer knows that job (it died, or it
  // was not requeued), nothing will resume it.
  if (status == "preempted" && !field("slurm_job").empty() && slurm_job_alive(field("slurm_job")) == Alive::kNo)
    return {"failed", "job " + field("slurm_job") + " stopped (" + field("detail") +
                          ") and is gone from SLURM: nothing will resume it; submit it again with the same output_dir"};
  return {status, field("detail")};
}

RunLock::~RunLock() {
  if (held_) {
    std::error_code ec;
    fs::remove(path_, ec);
  }
}

void claim_sweep_dir(const std::string& root, const std::string& space_ini, const std::string& space_file,
                     const std::string& metric) {
  const std::string text = "# The sweep space of this directory, written by the first point that ran.\n" + space_ini;
  const std::string file = (std::filesystem::path(root) / "sweep.ini").string();
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (files::create_exclusive(file, text)) return;
  std::string existing;
  try {
    existing = files::read_all(file);
  } catch (const std::exception& e) {
    throw ConfigError(std::string("sweep directory: ") + e.what());
  }
  if (existing != text)
    throw ConfigError("sweep directory " + root + " holds another sweep: its sweep.ini differs from the space of '" +
                      space_file + "' (with metric " + metric + "); use another output_dir or the same space");
}

}  // namespace hpctrain::slurm
