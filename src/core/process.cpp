// process::run and process::start: fork/exec in a process group of its own; run with pipes, a
// deadline and a group kill, start in the background with output to a file.
#include "hpctrain/core/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>

namespace hpctrain::process {

namespace {
using Clock = std::chrono::steady_clock;

void close_pair(int p[2]) {
  for (int i = 0; i < 2; ++i)
    if (p[i] >= 0) ::close(p[i]);
}

// The child's side of every start: its own process group (killed whole), `out_fd` and `err_fd`
// as its output, /dev/null as input, default signal actions and no blocked signals (the caller's
// preemption handling is not the child's). Returns the pid, or -1 when fork failed.
pid_t fork_exec(const std::vector<std::string>& argv, int out_fd, int err_fd, const std::string& cwd, bool die_with_parent) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid != 0) {
    if (pid > 0) ::setpgid(pid, pid);  // also here: no race with a kill of the group before the child ran
    return pid;
  }
  ::setpgid(0, 0);
  if (die_with_parent) ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  ::dup2(out_fd, STDOUT_FILENO);
  ::dup2(err_fd, STDERR_FILENO);
  const int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
  for (int sig : {SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGHUP, SIGXCPU, SIGPIPE}) ::signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) {
    std::fprintf(stderr, "cannot enter %s: %s\n", cwd.c_str(), std::strerror(errno));
    ::_exit(126);
  }
  ::execvp(args[0], args.data());
  std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
  ::_exit(127);
}

// Waits until `pid` can be reaped or `expired()` says the time is up; true when it can. Blocks
// on a pidfd (Linux 5.3), in slices so that a cancel is seen; polls every 5 ms without one.
template <typename TimePoint>
bool wait_for_exit(pid_t pid, const std::function<bool()>& expired, const TimePoint deadline) {
  const int pfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  for (;;) {
    siginfo_t info{};
    const int w = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
    if ((w == 0 && info.si_pid == pid) || (w < 0 && errno != EINTR)) break;
    if (expired()) {
      if (pfd >= 0) ::close(pfd);
      return false;
    }
    if (pfd >= 0) {
      const double left = std::chrono::duration<double>(deadline - Clock::now()).count();
      pollfd f{pfd, POLLIN, 0};
      ::poll(&f, 1, std::max(1, std::min(100, static_cast<int>(left * 1000) + 1)));
    } else {
      ::usleep(5000);
    }
  }
  if (pfd >= 0) ::close(pfd);
  return true;
}
}  // namespace

Result run(const std::vector<std::string>& argv, const Options& o) {
  Result r;
  if (argv.empty()) return r;
  int out[2] = {-1, -1}, err[2] = {-1, -1};
  if (::pipe2(out, O_CLOEXEC) != 0 || (!o.join_stderr && ::pipe2(err, O_CLOEXEC) != 0)) {
    close_pair(out);
    close_pair(err);
    return r;
  }
  const auto start = Clock::now();
  const pid_t pid = fork_exec(argv, out[1], o.join_stderr ? out[1] : err[1], o.cwd, o.die_with_parent);
  if (pid < 0) {
    close_pair(out);
    close_pair(err);
    return r;
  }
  r.started = true;
  ::close(out[1]);
  if (!o.join_stderr) ::close(err[1]);
  const auto deadline = start + std::chrono::duration<double>(o.timeout_s);
  auto expired = [&] { return Clock::now() >= deadline || (o.cancel && o.cancel->load()); };
  pollfd fds[2] = {{out[0], POLLIN, 0}, {o.join_stderr ? -1 : err[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = o.join_stderr ? 1 : 2;
  char buf[4096];
  while (open_fds > 0) {
    if (expired()) {
      r.timed_out = true;
      break;
    }
    const double left = std::chrono::duration<double>(deadline - Clock::now()).count();
    const int n = ::poll(fds, 2, std::max(1, std::min(100, static_cast<int>(left * 1000) + 1)));
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t k = ::read(fds[i].fd, buf, sizeof(buf));
      if (k < 0 && errno == EINTR) continue;
      if (k > 0) {
        std::string& sink = *sinks[i];
        const std::size_t keep =
            o.max_output == 0 ? static_cast<std::size_t>(k)
                              : std::min(static_cast<std::size_t>(k), o.max_output - std::min(o.max_output, sink.size()));
        sink.append(buf, keep);
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  // Its output closed (or the time is up): it must also end before the deadline.
  int raw = 0;
  pid_t done = 0;
  if (!r.timed_out) {
    if (wait_for_exit(pid, expired, deadline)) {
      while ((done = ::waitpid(pid, &raw, 0)) < 0 && errno == EINTR) {
      }
    } else {
      r.timed_out = true;
    }
  }
  ::kill(-pid, SIGKILL);  // at the deadline the whole group; after an exit, what it left behind
  if (r.timed_out) {
    ::kill(pid, SIGKILL);
    while ((done = ::waitpid(pid, &raw, 0)) < 0 && errno == EINTR) {
    }
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (done == pid) r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : WIFSIGNALED(raw) ? 128 + WTERMSIG(raw) : -1;
  return r;
}

pid_t start(const std::vector<std::string>& argv, const StartOptions& o) {
  if (argv.empty()) return -1;
  const int fd = ::open(o.output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  const pid_t pid = fork_exec(argv, fd, fd, o.cwd, o.die_with_parent);
  ::close(fd);
  return pid;
}

}  // namespace hpctrain::process
