// Loader: a bounded queue filled by one I/O thread, with pause/resume around checkpoints.
#include "hpctrain/data/loader.h"

#include <chrono>

namespace hpctrain::data {

Loader::Loader(std::shared_ptr<const ShardSet> set, const DataArguments& args, Source source, int prefetch)
    : reader_(std::move(set), args), source_(std::move(source)), prefetch_(prefetch > 0 ? prefetch : 0) {
  if (prefetch_ > 0) thread_ = std::thread([this] { run(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Loader::run() {
  for (;;) {
    MicroBatch work;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || (!paused_ && !busy_ && queue_.size() < prefetch_); });
      if (stop_ || end_) return;
      busy_ = true;
    }
    // A batch the consumer has given back: its buffers are the right size already, so reading into
    // them allocates and zero-fills nothing (fresh buffers cost this thread as much as the copy).
    Batch b = take_spare();
    bool more = false;
    std::exception_ptr err;
    try {
      more = source_(&work);
      if (more) {
        reader_.read(work.indices, &b);
        b.plan = std::move(work);
      }
    } catch (...) {
      err = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      busy_ = false;
      if (err) {
        error_ = err;
        end_ = true;
      } else if (!more) {
        end_ = true;
      } else {
        queue_.push_back(std::move(b));
      }
    }
    cv_.notify_all();
    if (err || !more) return;
  }
}

bool Loader::next(Batch* out) {
  const auto start = std::chrono::steady_clock::now();
  if (prefetch_ == 0) {
    MicroBatch work;
    if (!source_(&work)) return false;
    reader_.read(work.indices, out);
    out->plan = std::move(work);
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return true;
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty() || end_ || (paused_ && !busy_); });
  if (queue_.empty() && !end_) {
    // Paused with nothing queued: read on this thread rather than wait for a resume that this
    // thread itself would have to give. The I/O thread stays parked while busy_ is set.
    busy_ = true;
    lock.unlock();
    MicroBatch work;
    bool more = false;
    try {
      more = source_(&work);
      if (more) reader_.read(work.indices, out);
    } catch (...) {
      lock.lock();
      busy_ = false;
      cv_.notify_all();
      throw;
    }
    lock.lock();
    busy_ = false;
    cv_.notify_all();
    if (!more) {
      end_ = true;
      return false;
    }
    out->plan = std::move(work);
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return true;
  }
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!queue_.empty()) {
    std::swap(*out, queue_.front());
    if (spare_.size() < prefetch_ + 1) spare_.push_back(std::move(queue_.front()));
    queue_.pop_front();
    lock.unlock();
    cv_.notify_all();
    return true;
  }
  if (error_) std::rethrow_exception(error_);
  return false;
}

Batch Loader::take_spare() {
  std::lock_guard<std::mutex> lock(mu_);
  if (spare_.empty()) return Batch{};
  Batch b = std::move(spare_.back());
  spare_.pop_back();
  return b;
}

void Loader::pause() {
  std::unique_lock<std::mutex> lock(mu_);
  paused_ = true;
  cv_.wait(lock, [&] { return !busy_; });
}

void Loader::resume() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    paused_ = false;
  }
  cv_.notify_all();
}

std::int64_t Loader::bytes_read() const { return reader_.bytes_read(); }

Loader::Source eval_source(std::int64_t begin, std::int64_t end, std::int64_t batch) {
  auto pos = std::make_shared<std::int64_t>(begin);
  return [pos, end, batch](MicroBatch* w) {
    if (*pos >= end) return false;
    const std::int64_t stop = std::min(end, *pos + batch);
    w->indices.clear();
    for (std::int64_t i = *pos; i < stop; ++i) w->indices.push_back(i);
    w->last_in_step = true;
    w->last_in_epoch = stop >= end;
    *pos = stop;
    return true;
  };
}

Loader::Source train_source(TrainPlan plan) {
  auto p = std::make_shared<TrainPlan>(std::move(plan));
  return [p](MicroBatch* w) {
    *w = p->next();
    return true;
  };
}

}  // namespace hpctrain::data
