// SLURM's commands through the one process runner, and what they say.
#include "hpctrain/slurm/command.h"

#include "hpctrain/core/process.h"

namespace hpctrain::slurm {

CommandResult run_command(const std::string& command, double timeout_s, const std::atomic<bool>* cancel) {
  process::Options o;
  o.timeout_s = timeout_s;
  o.cancel = cancel;
  o.join_stderr = true;
  o.max_output = 1u << 20;
  process::Result p = process::run({"/bin/sh", "-c", command}, o);
  CommandResult r;
  r.timed_out = p.timed_out;
  r.status = p.timed_out ? -1 : p.status;  // no exit status to trust after a kill
  r.output = std::move(p.out);
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
