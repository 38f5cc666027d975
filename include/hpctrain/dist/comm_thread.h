// CommThread: collectives run in order on a thread of their own while the caller computes, as
// PyTorch's MPI process group and Horovod's background loop run theirs. The overlapped gradient
// buckets go through it: each is posted as its gradients complete, and the optimizer waits for all.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace hpctrain::dist {

class CommThread {
 public:
  CommThread();
  /// Waits for the work in flight and drops the work not started (errors are dropped: a
  /// destructor must not throw). Call wait() first to have everything run.
  ~CommThread();
  CommThread(const CommThread&) = delete;
  CommThread& operator=(const CommThread&) = delete;

  /// Queues `work` behind everything posted before it. Every rank must post the same collectives
  /// in the same order: the thread runs them one at a time, in that order.
  void post(std::function<void()> work);
  /// Blocks until everything posted has run; rethrows the first exception one of them threw (the
  /// work after a failed one is skipped: its collective would pair with the wrong one elsewhere).
  void wait();

 private:
  void loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::uint64_t posted_ = 0, done_ = 0;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace hpctrain::dist
