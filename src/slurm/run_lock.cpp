// RunLock: O_EXCL creation of output_dir/.lock; staleness by pid (same host) or SLURM job state.
#include "hpctrain/slurm/run_lock.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/environment.h"

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

// Whether SLURM still runs (or will run) job `id`; true when that cannot be told.
bool slurm_job_alive(const std::string& id) {
  const std::string cmd = "squeue -h -j " + id + " -o %T 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return true;
  char buf[64] = {0};
  const bool listed = std::fgets(buf, sizeof(buf), p) != nullptr;
  const int rc = pclose(p);
  if (rc != 0) return false;  // squeue knows no such job
  return listed;
}

bool holder_alive(const std::map<std::string, std::string>& kv, const std::string& host) {
  auto get = [&](const char* k) { auto it = kv.find(k); return it == kv.end() ? std::string() : it->second; };
  if (!get("slurm_job").empty()) return slurm_job_alive(get("slurm_job"));
  if (get("host") == host && !get("pid").empty()) return kill(std::stoi(get("pid")), 0) == 0 || errno == EPERM;
  return true;  // another host, no SLURM job to ask: assume it runs
}

}  // namespace

RunLock::RunLock(const dist::Environment& env, const std::string& output_dir)
    : path_((fs::path(output_dir) / ".lock").string()) {
  std::string error;
  if (env.rank() == 0) {
    const std::string job = env.slurm().present ? env.slurm().requeue_id() : "";
    std::ostringstream me;
    me << "host=" << env.host() << "\npid=" << getpid() << "\nslurm_job=" << job << "\n";
    fs::create_directories(output_dir);
    for (int attempt = 0; attempt < 2 && !held_; ++attempt) {
      int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
      if (fd >= 0) {
        const std::string text = me.str();
        if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) error = "cannot write " + path_;
        ::close(fd);
        held_ = error.empty();
        break;
      }
      auto kv = read_lock(path_);
      const std::string holder = "job " + (kv["slurm_job"].empty() ? std::string("-") : kv["slurm_job"]) + " (pid " +
                                 kv["pid"] + " on " + kv["host"] + ")";
      if (!job.empty() && kv["slurm_job"] == job) {
        fs::remove(path_);  // our own job, requeued: its earlier run's lock
      } else if (!holder_alive(kv, env.host())) {
        HPCT_LOG(warning) << "taking over the stale lock " << path_ << " of " << holder << ", which no longer runs";
        fs::remove(path_);
      } else {
        error = "output_dir " + output_dir + " is in use by " + holder + " (lock " + path_ +
                "); use another output_dir, or remove the lock if that job is gone";
        break;
      }
    }
  }
  error = env.broadcast_string(error, 0);
  if (!error.empty()) throw CollectiveError(error, exit_code::kConfig);
}

RunLock::~RunLock() {
  if (held_) {
    std::error_code ec;
    fs::remove(path_, ec);
  }
}

}  // namespace hpctrain::slurm
