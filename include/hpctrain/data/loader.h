// Loader: turns a stream of planned micro-batches into Batches, reading ahead on one I/O thread
// so that training does not wait for data. Errors on the I/O thread surface in next().
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "hpctrain/data/batch.h"
#include "hpctrain/data/reader.h"

namespace hpctrain::data {

class Loader {
 public:
  /// Fills the next planned micro-batch; returns false when there is no more.
  using Source = std::function<bool(MicroBatch*)>;

  /// prefetch = batches read ahead on the I/O thread; 0 reads in next() on the caller's thread.
  Loader(std::shared_ptr<const ShardSet> set, const DataArguments& args, Source source, int prefetch);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  /// The next batch, or false at the end. Rethrows the I/O thread's error. The buffers `out`
  /// held before the call go back to the I/O thread, which reads a later batch into them: a
  /// tensor that views a batch's memory (from_blob) must be gone before the next call.
  bool next(Batch* out);

  /// Stops reading ahead (returns once the I/O thread is idle), e.g. while a checkpoint is being
  /// written; resume() lets it go on. Batches already read stay queued.
  void pause();
  void resume();

  /// Seconds next() has spent waiting for data.
  double wait_seconds() const { return wait_seconds_; }
  std::int64_t bytes_read() const;

 private:
  void run();
  Batch take_spare();

  Reader reader_;
  Source source_;
  const std::size_t prefetch_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  std::vector<Batch> spare_;  // given back by next(), read into again
  bool end_ = false;
  bool stop_ = false;
  bool paused_ = false;
  bool busy_ = false;
  std::exception_ptr error_;
  double wait_seconds_ = 0;
  std::thread thread_;
};

/// A source over an evaluation split: this rank's contiguous range, in batches of `batch` samples.
Loader::Source eval_source(std::int64_t begin, std::int64_t end, std::int64_t batch);

/// A source over a training plan (it owns a copy of the plan).
Loader::Source train_source(TrainPlan plan);

}  // namespace hpctrain::data
