// Reader: reads any list of samples of a ShardSet into a Batch. Indices are sorted and coalesced
// into contiguous runs. Contiguous uncompressed data is read from the memory-mapped file straight
// into batch order, converted on the way; anything else is read a run at a time as an HDF5
// hyperslab (HDF5 converts; a chunk cache serves shuffled reads) and scattered into batch order.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "hpctrain/data/batch.h"
#include "hpctrain/data/data_arguments.h"
#include "hpctrain/data/shard_set.h"

namespace hpctrain::data {

/// Maps `len` bytes of `fd` read-only (MAP_SHARED) at a 2 MiB-aligned address with MADV_HUGEPAGE,
/// so that the kernel can map the page cache's 2 MiB folios whole (one TLB entry each) where the
/// file system keeps them; elsewhere the mapping behaves as a plain one. MAP_FAILED and errno on
/// failure; munmap(p, len) releases it.
void* map_file_huge_aligned(int fd, std::size_t len);

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
  /// The shard's file, opened (and checked against its size when the set was opened) on first use.
  OpenFile& file(std::size_t shard);
  /// DataError naming the file when it was deleted, replaced, resized or modified since this
  /// reader opened it.
  void check_unchanged(std::size_t shard);
  /// The dataset's bytes in the mapped file, or nullptr when it must be read through HDF5.
  const char* mapped(std::size_t shard, const DatasetMeta& meta);
  /// Rows start..start+count of `meta` into dst, converted (read() counts the bytes of a batch).
  template <class T>
  void read_rows(std::size_t shard, const DatasetMeta& meta, std::int64_t start, std::int64_t count, T* dst);
  /// Reads rows local..local+count of `meta` (a run) and puts row (indices[positions[j]] - first)
  /// at batch position positions[j] of `out`: from `base` (the dataset's bytes in the mapped file,
  /// `row` elements a row) or, when it is nullptr, through HDF5. With `check`, a NaN or Inf
  /// delivered from a float dataset is a DataError naming the sample.
  template <class T>
  void gather(std::size_t shard, const DatasetMeta& meta, std::int64_t local, std::int64_t count,
              const std::int64_t* positions, std::size_t n, const std::vector<std::int64_t>& indices,
              std::int64_t first, T* out, std::vector<T>& staging, const char* base, std::int64_t row, bool check);
  void check_finite(const float* values, std::int64_t rows, std::int64_t row_elems, std::size_t shard,
                    const DatasetMeta& meta, std::int64_t first_local);

  std::shared_ptr<const ShardSet> set_;
  DataArguments args_;
  std::map<std::size_t, std::unique_ptr<OpenFile>> open_;
  // Per batch, kept to spare allocations: (index, batch position) in file order, the positions,
  // and each sample's (shard, row in the shard).
  std::vector<std::pair<std::int64_t, std::int64_t>> sorted_;
  std::vector<std::uint64_t> keys_;  // the same, packed as index << 24 | position, to sort
  std::vector<std::int64_t> order_;
  std::vector<std::pair<std::size_t, std::int64_t>> where_;
  std::atomic<std::int64_t> bytes_read_{0};
};

}  // namespace hpctrain::data
