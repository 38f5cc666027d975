// Reader: reads any list of samples of a ShardSet into a Batch. Indices are sorted and coalesced
// into contiguous runs, each run read at once (pread at the dataset's file offset for contiguous
// uncompressed data, an HDF5 hyperslab otherwise), converted to float32 / int64 and scattered back
// into batch order.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "hpctrain/data/batch.h"
#include "hpctrain/data/data_arguments.h"
#include "hpctrain/data/shard_set.h"

namespace hpctrain::data {

class Reader {
 public:
  Reader(std::shared_ptr<const ShardSet> set, const DataArguments& args);
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  /// Fills out->indices, shapes and buffers for `indices` (out->plan is left as it is).
  void read(const std::vector<std::int64_t>& indices, Batch* out);

  /// Bytes read from files so far (for throughput figures).
  std::int64_t bytes_read() const { return bytes_read_.load(); }

 private:
  struct OpenFile;
  OpenFile& file(std::size_t shard);
  template <class T>
  void read_rows(std::size_t shard, const DatasetMeta& meta, std::int64_t start, std::int64_t count, T* dst);
  void check_finite(const float* values, std::int64_t rows, std::int64_t row_elems, std::size_t shard,
                    const DatasetMeta& meta, std::int64_t first_local);

  std::shared_ptr<const ShardSet> set_;
  DataArguments args_;
  std::map<std::size_t, std::unique_ptr<OpenFile>> open_;
  std::vector<char> raw_;
  std::atomic<std::int64_t> bytes_read_{0};
};

}  // namespace hpctrain::data
