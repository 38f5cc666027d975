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
  if (!restarts.empty() && restarts.find_first_not_of("0123456789") == std::string::npos) info.restarts = std::stoi(restarts);
  return info;
}

}  // namespace hpctrain::slurm
