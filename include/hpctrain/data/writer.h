// ShardWriter: writes a shard file (serial HDF5): numeric datasets with samples along the first
// axis, contiguous or chunked and compressed. Used by hpctrain-data and the benchmarks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hpctrain/core/dtype.h"
#include "hpctrain/core/h5.h"

namespace hpctrain::data {

struct WriteOptions {
  std::int64_t chunk_rows = 0;  ///< 0: contiguous layout; else chunks of this many samples
  int gzip = 0;                 ///< deflate level 1-9 (needs chunk_rows); 0: none
  bool shuffle_filter = false;  ///< HDF5 byte-shuffle filter before deflate
};

/// The DType a user names (float32, float64, int8..int64, uint8..uint64); throws ConfigError
/// naming the valid names otherwise.
DType parse_dtype(const std::string& name);

class ShardWriter {
 public:
  explicit ShardWriter(const std::string& path);  ///< creates or truncates
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  /// Creates dataset `key` (intermediate groups too) of `dtype` and `shape`.
  void create(const std::string& key, DType dtype, const std::vector<std::int64_t>& shape,
              const WriteOptions& options);
  /// Writes rows [start, start+count) of `key` from memory (float or int64), converting to the file dtype.
  void write_rows(const std::string& key, std::int64_t start, std::int64_t count, const float* data);
  void write_rows(const std::string& key, std::int64_t start, std::int64_t count, const std::int64_t* data);
  /// Flushes and closes the file (also done by the destructor).
  void close();

 private:
  void write(const std::string& key, std::int64_t start, std::int64_t count, hid_t mem_type, const void* data);
  std::string path_;
  h5::Handle file_;
  std::vector<std::pair<std::string, h5::Handle>> datasets_;
};

}  // namespace hpctrain::data
