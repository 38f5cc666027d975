// run_command: popen, read everything, pclose.
#include "hpctrain/slurm/command.h"

#include <sys/wait.h>

#include <cstdio>

namespace hpctrain::slurm {

CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[512];
  while (std::fgets(buf, sizeof(buf), p)) r.output += buf;
  const int raw = pclose(p);
  r.status = raw == -1 ? -1 : WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  while (!r.output.empty() && (r.output.back() == '\n' || r.output.back() == '\r' || r.output.back() == ' '))
    r.output.pop_back();
  return r;
}

}  // namespace hpctrain::slurm
