// Watchdog: a thread that ends the job when one collective takes longer than ddp_timeout, so a
// rank that hangs (rather than dies) cannot leave the others waiting forever.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace hpctrain::dist {

class Watchdog {
 public:
  /// Called on the watchdog thread with a description of the stuck operation and its age.
  using OnExpire = std::function<void(const std::string& what, double seconds)>;

  Watchdog(double timeout_s, OnExpire on_expire);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  /// Arms the watchdog for one operation while the returned Scope lives.
  class Scope {
   public:
    explicit Scope(Watchdog* w) : w_(w) {}
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    ~Scope() {
      if (w_) w_->disarm();
    }

   private:
    Watchdog* w_;
  };
  [[nodiscard]] Scope watch(std::string what);
  /// The same without a scope: arm() for one operation, disarm() when it is over.
  void arm(std::string what);
  void disarm();

  double timeout_s() const { return timeout_s_; }

 private:
  void loop();

  double timeout_s_;
  OnExpire on_expire_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false;
  bool idle_ = false;  // the thread waits for an arm() with no deadline: arm() must wake it
  bool stop_ = false;
  std::string what_;
  std::chrono::steady_clock::time_point since_;
  std::thread thread_;
};

}  // namespace hpctrain::dist
