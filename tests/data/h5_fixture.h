// Test fixtures written with the HDF5 C API directly (independent of hpctrain's ShardWriter), so
// the reader is checked against files it did not make.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace hpctrain::testing {

struct DsetSpec {
  std::string key;                 ///< may contain groups: /data/features
  hid_t file_type;                 ///< e.g. H5T_IEEE_F64LE, H5T_STD_U8BE
  hid_t mem_type;                  ///< type of `data`, e.g. H5T_NATIVE_DOUBLE
  std::vector<hsize_t> dims;
  const void* data = nullptr;
  hsize_t chunk_rows = 0;          ///< 0: contiguous
  int gzip = 0;
  bool shuffle = false;
};

/// Creates `path` holding the datasets (C API only).
void write_h5(const std::string& path, const std::vector<DsetSpec>& datasets);

}  // namespace hpctrain::testing
