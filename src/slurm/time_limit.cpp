// Time limit: SLURM's time left, read once in a while on rank 0, against a margin from the
// measured step and save times.
#include "hpctrain/slurm/time_limit.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <vector>

#include "hpctrain/core/log.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/slurm/command.h"

namespace hpctrain::slurm {

std::optional<double> parse_duration(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ' || t.back() == '\r')) t.pop_back();
  while (!t.empty() && t.front() == ' ') t.erase(t.begin());
  if (t.empty()) return std::nullopt;
  double days = 0;
  const bool with_days = t.find('-') != std::string::npos;
  if (with_days) {
    const auto dash = t.find('-');
    const std::string d = t.substr(0, dash);  // named: `end` points into it (a temporary died at once)
    if (d.empty() || d.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
    days = std::strtod(d.c_str(), nullptr);
    t = t.substr(dash + 1);
  }
  std::vector<double> parts;
  std::stringstream ss(t);
  for (std::string p; std::getline(ss, p, ':');) {
    if (p.empty() || p.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
    parts.push_back(std::strtod(p.c_str(), nullptr));
  }
  double s = 0;
  if (with_days) {  // days-hours[:minutes[:seconds]]
    if (parts.empty() || parts.size() > 3) return std::nullopt;
    const double mult[] = {3600, 60, 1};
    for (std::size_t i = 0; i < parts.size(); ++i) s += parts[i] * mult[i];
    return days * 86400 + s;
  }
  switch (parts.size()) {
    case 1: return parts[0] * 60;                                     // minutes
    case 2: return parts[0] * 60 + parts[1];                          // minutes:seconds
    case 3: return parts[0] * 3600 + parts[1] * 60 + parts[2];        // hours:minutes:seconds
    default: return std::nullopt;
  }
}

std::optional<double> job_seconds_left(const dist::SlurmInfo& slurm, double timeout_s, bool* timed_out,
                                       const std::atomic<bool>* cancel) {
  if (timed_out) *timed_out = false;
  if (!slurm.present) return std::nullopt;
  if (!valid_job_id(slurm.job_id)) return std::nullopt;
  const CommandResult r = run_command("squeue -h -j " + slurm.job_id + " -o %L", timeout_s, cancel);
  if (timed_out) *timed_out = r.timed_out;
  if (r.status != 0) return std::nullopt;
  // The first line that reads as a duration (stderr is joined: skip any warning before it).
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);)
    if (auto d = parse_duration(line)) return d;
  return std::nullopt;
}

TimeLimit::TimeLimit(const dist::Environment& env, const std::string& margin, double query_timeout_s)
    : env_(env), query_timeout_s_(query_timeout_s) {
  if (margin == "off" || env.rank() != 0 || !env.slurm().present) return;
  if (margin != "auto") fixed_margin_ = std::strtod(margin.c_str(), nullptr);  // checked by validate()
  enabled_ = true;
  thread_ = std::thread([this] { loop(); });
}

TimeLimit::~TimeLimit() {
  cancel_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void TimeLimit::loop() {
  bool first = true, reported_slow = false;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    const auto asked = Clock::now();
    bool timed_out = false;
    const auto left = job_seconds_left(env_.slurm(), query_timeout_s_, &timed_out, &cancel_);
    lock.lock();
    if (stop_) break;
    timed_out = timed_out && !cancel_;
    if (left) {
      // A failed query keeps the deadline known before.
      if (!deadline_) initial_left_ = *left;  // the first answer: the time this run had
      deadline_ = asked + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*left));
    }
    if (timed_out && !reported_slow) {
      reported_slow = true;
      HPCT_LOG(warning) << "time limit: squeue did not answer within " << query_timeout_s_
                        << " s (slurm_query_timeout); training goes on, with "
                        << (deadline_ ? "the last known limit" : "no known limit (only signals stop the job early)")
                        << "; asked again in 10 minutes";
    }
    if (first) {
      first = false;
      if (deadline_) {
        HPCT_LOG(info) << "time limit: " << static_cast<long long>(initial_left_)
                       << " s left in this job; a checkpoint is written when less than the margin ("
                       << (fixed_margin_ >= 0 ? std::to_string(static_cast<long long>(fixed_margin_)) + " s"
                                              : std::string("auto: 30 s + 2 x step + 2 x save"))
                       << ") is left";
      } else if (!timed_out) {
        HPCT_LOG(info) << "time limit: none known for job " << env_.slurm().job_id
                       << " (unlimited, or squeue cannot be asked); only signals stop it early";
      }
    }
    cv_.wait_for(lock, std::chrono::minutes(10), [&] { return stop_; });
  }
}

double TimeLimit::margin_seconds(double step_s, double save_s) const {
  return fixed_margin_ >= 0 ? fixed_margin_ : 30 + 2 * step_s + 2 * save_s;
}

bool TimeLimit::active() const {
  std::lock_guard<std::mutex> lock(mu_);
  return deadline_.has_value();
}

double TimeLimit::seconds_left() const {
  std::lock_guard<std::mutex> lock(mu_);
  return deadline_ ? std::chrono::duration<double>(*deadline_ - Clock::now()).count() : 0;
}

bool TimeLimit::should_stop(double step_s, double save_s) {
  if (!enabled_) return false;
  double left = 0, initial = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!deadline_) return false;
    left = std::chrono::duration<double>(*deadline_ - Clock::now()).count();
    initial = initial_left_;
  }
  const double margin = margin_seconds(step_s, save_s);
  if (margin >= initial) {
    // Stopping now would leave every run of the job one step: say so once and rely on signals.
    HPCT_LOG(warning) << "time limit: the checkpoint margin (" << static_cast<long long>(margin)
                      << " s) is not below the time this run had (" << static_cast<long long>(initial)
                      << " s); not stopping for the time limit (set time_limit_margin, or ask for more time)";
    enabled_ = false;
    return false;
  }
  return left < margin;
}

}  // namespace hpctrain::slurm
