// Test helper: every dataset of an HDF5 file as the HDF5 C API sees it (an independent reader of
// checkpoints): raw bytes, the crc32 attribute's values, file offset and storage size.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace hpctrain::testing {

struct DatasetInfo {
  std::string bytes;                ///< the data in the file's type (empty when !with_bytes)
  std::vector<std::uint32_t> crc;   ///< the "crc32" attribute ({} when absent)
  std::uint64_t offset = 0;         ///< H5Dget_offset (contiguous data)
  std::size_t storage = 0;          ///< H5Dget_storage_size
};

/// "/group/name" -> its DatasetInfo, for every dataset in `file`.
std::map<std::string, DatasetInfo> read_datasets(const std::string& file, bool with_bytes = true);

}  // namespace hpctrain::testing
