// run_command: fork/exec of /bin/sh with a pipe, a deadline and a process-group kill.
#include "hpctrain/slurm/command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

namespace hpctrain::slurm {

CommandResult run_command(const std::string& command, double timeout_s, const std::atomic<bool>* cancel) {
  CommandResult r;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return r;
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return r;
  }
  if (pid == 0) {
    // The child: its own process group (killed whole on a time-out), stdout and stderr into the
    // pipe, default signal actions (the parent's preemption handlers are not its own).
    ::setpgid(0, 0);
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    for (int sig : {SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGHUP, SIGXCPU}) ::signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  ::close(fds[1]);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  char buf[4096];
  for (;;) {
    const double left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0 || (cancel && cancel->load())) {
      r.timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int n = ::poll(&p, 1, std::min(100, static_cast<int>(left * 1000) + 1));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    const ssize_t got = ::read(fds[0], buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // the command closed its output: it ends
    if (r.output.size() < (1u << 20)) r.output.append(buf, static_cast<std::size_t>(got));
  }
  ::close(fds[0]);
  // The command closed its output (or timed out): it must also end before the deadline.
  int raw = 0;
  pid_t done = 0;
  while (!r.timed_out) {
    done = ::waitpid(pid, &raw, WNOHANG);
    if (done != 0 && !(done < 0 && errno == EINTR)) break;
    if (std::chrono::steady_clock::now() >= deadline || (cancel && cancel->load())) {
      r.timed_out = true;
      break;
    }
    ::usleep(10000);
  }
  if (r.timed_out) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    while ((done = ::waitpid(pid, &raw, 0)) < 0 && errno == EINTR) {
    }
  }
  if (r.timed_out || done != pid) {
    r.status = -1;  // no exit status to trust (timed out, or reaped elsewhere: ECHILD)
  } else {
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  }
  while (!r.output.empty() && (r.output.back() == '\n' || r.output.back() == '\r' || r.output.back() == ' '))
    r.output.pop_back();
  return r;
}

bool valid_job_id(const std::string& id) {
  const auto us = id.find('_');
  auto digits = [](const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos; };
  return us == std::string::npos ? digits(id) : digits(id.substr(0, us)) && digits(id.substr(us + 1));
}

JobInfo job_info(const std::string& id) {
  JobInfo info;
  if (!valid_job_id(id)) return info;
  const CommandResult r = run_command("scontrol -o show job " + id);
  if (r.status != 0) return info;
  auto field = [&](const std::string& key) {
    const auto at = r.output.find(" " + key + "=");
    if (at == std::string::npos) return std::string();
    const auto begin = at + key.size() + 2;
    return r.output.substr(begin, r.output.find_first_of(" \n", begin) - begin);
  };
  info.state = field("JobState");
  const std::string restarts = field("Restarts");
  if (!restarts.empty() && restarts.find_first_not_of("0123456789") == std::string::npos && restarts.size() < 9)
    info.restarts = std::stoi(restarts);
  return info;
}

}  // namespace hpctrain::slurm
