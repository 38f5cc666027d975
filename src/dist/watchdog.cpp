// Watchdog thread: waits for the armed operation's deadline and fires once if it passes.
#include "hpctrain/dist/watchdog.h"

namespace hpctrain::dist {

Watchdog::Watchdog(double timeout_s, OnExpire on_expire)
    : timeout_s_(timeout_s), on_expire_(std::move(on_expire)), thread_([this] { loop(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

Watchdog::Scope Watchdog::watch(std::string what) {
  arm(std::move(what));
  return Scope(this);
}

void Watchdog::arm(std::string what) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = true;
    what_ = std::move(what);
    since_ = std::chrono::steady_clock::now();
    wake = idle_;
  }
  // Only an idle thread needs waking: one waiting for an earlier operation's deadline finds this
  // operation's start when it wakes and waits on for its deadline. So the thread wakes about once
  // per ddp_timeout, not at every collective (twice a step, each wake a context switch on the
  // rank's own core).
  if (wake) cv_.notify_all();
}

void Watchdog::disarm() {
  std::lock_guard<std::mutex> lock(mu_);
  armed_ = false;
}

void Watchdog::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  const auto timeout = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(timeout_s_));
  while (!stop_) {
    if (!armed_) {
      idle_ = true;
      cv_.wait(lock, [&] { return stop_ || armed_; });
      idle_ = false;
      continue;
    }
    const auto deadline = since_ + timeout;
    if (std::chrono::steady_clock::now() < deadline) {
      // Woken by the deadline or stop only; what is armed then is looked at afresh.
      cv_.wait_until(lock, deadline, [&] { return stop_; });
      continue;
    }
    const std::string what = what_;
    const double age = std::chrono::duration<double>(std::chrono::steady_clock::now() - since_).count();
    armed_ = false;
    lock.unlock();
    on_expire_(what, age);  // normally ends the process
    lock.lock();
  }
}

}  // namespace hpctrain::dist
