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
  {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = true;
    ++generation_;
    what_ = std::move(what);
    since_ = std::chrono::steady_clock::now();
  }
  cv_.notify_all();
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
      cv_.wait(lock, [&] { return stop_ || armed_; });
      continue;
    }
    const std::uint64_t gen = generation_;
    const auto deadline = since_ + timeout;
    cv_.wait_until(lock, deadline, [&] { return stop_ || !armed_ || generation_ != gen; });
    if (stop_ || !armed_ || generation_ != gen) continue;
    if (std::chrono::steady_clock::now() < deadline) continue;
    const std::string what = what_;
    const double age = std::chrono::duration<double>(std::chrono::steady_clock::now() - since_).count();
    armed_ = false;
    lock.unlock();
    on_expire_(what, age);  // normally ends the process
    lock.lock();
  }
}

}  // namespace hpctrain::dist
