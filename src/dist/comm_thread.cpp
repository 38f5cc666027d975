// CommThread: a queue of collectives run in order on one thread.
#include "hpctrain/dist/comm_thread.h"

namespace hpctrain::dist {

CommThread::CommThread() : thread_([this] { loop(); }) {}

CommThread::~CommThread() {
  {
    // Work not started is dropped: torn down with work queued, the owner is unwinding an error,
    // and a collective the other ranks may never join must not keep it from reaching the abort.
    // The one in flight is waited for (it uses the owner's buffers); the watchdog bounds it.
    std::lock_guard<std::mutex> lock(mu_);
    done_ += queue_.size();
    queue_.clear();
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void CommThread::post(std::function<void()> work) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(work));
    ++posted_;
  }
  cv_.notify_all();
}

void CommThread::wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return done_ == posted_; });
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void CommThread::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_, and nothing left
    std::function<void()> work = std::move(queue_.front());
    queue_.pop_front();
    const bool skip = error_ != nullptr;
    lock.unlock();
    std::exception_ptr failed;
    if (!skip) {
      try {
        work();
      } catch (...) {
        failed = std::current_exception();
      }
    }
    lock.lock();
    if (failed && !error_) error_ = failed;
    ++done_;
    cv_.notify_all();
  }
}

}  // namespace hpctrain::dist
