// ShardWriter: creates shard files with the HDF5 C API.
#include "hpctrain/data/writer.h"

#include <algorithm>

#include "hpctrain/core/error.h"

namespace hpctrain::data {

DType parse_dtype(const std::string& name) {
  if (auto t = dtype_named(name)) return *t;
  throw ConfigError("dtype '" + name + "' is not supported; expected one of: " + dtype_names());
}

ShardWriter::ShardWriter(const std::string& path) : path_(path) {
  h5::Lock lock;
  file_ = h5::Handle(HPCT_H5_CHECK(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
                                   "creating shard '" << path << "'"),
                     H5Fclose);
}

ShardWriter::~ShardWriter() {
  try {
    close();
  } catch (...) {
  }
}

void ShardWriter::create(const std::string& key, DType dtype, const std::vector<std::int64_t>& shape,
                         const WriteOptions& o) {
  h5::Lock lock;
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  h5::Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  h5::Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (o.chunk_rows > 0 && !shape.empty() && shape[0] > 0) {
    std::vector<hsize_t> chunk = dims;
    chunk[0] = static_cast<hsize_t>(std::min(o.chunk_rows, shape[0]));
    HPCT_H5_CHECK(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), "chunking " << key);
    if (o.shuffle_filter) HPCT_H5_CHECK(H5Pset_shuffle(dcpl.get()), "shuffle filter on " << key);
    if (o.gzip > 0) HPCT_H5_CHECK(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(o.gzip)), "gzip on " << key);
  } else if (o.gzip > 0 || o.shuffle_filter) {
    throw ConfigError("gzip and the shuffle filter need chunked storage: set a chunk size (--chunk ROWS)");
  }
  hid_t id = HPCT_H5_CHECK(H5Dcreate2(file_.get(), key.c_str(), h5::file_type(dtype), space.get(), lcpl.get(), dcpl.get(),
                                      H5P_DEFAULT),
                           "creating dataset " << key << " in '" << path_ << "'");
  datasets_.emplace_back(key, h5::Handle(id, H5Dclose));
}

void ShardWriter::write(const std::string& key, std::int64_t start, std::int64_t count, hid_t mem_type,
                        const void* data) {
  h5::Lock lock;
  auto it = std::find_if(datasets_.begin(), datasets_.end(), [&](const auto& d) { return d.first == key; });
  HPCT_CHECK(it != datasets_.end(), "ShardWriter: dataset " << key << " was not created");
  h5::Handle fspace(H5Dget_space(it->second.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(fspace.get());
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank)), off(static_cast<std::size_t>(rank), 0);
  H5Sget_simple_extent_dims(fspace.get(), dims.data(), nullptr);
  off[0] = static_cast<hsize_t>(start);
  dims[0] = static_cast<hsize_t>(count);
  if (count == 0) return;
  HPCT_H5_CHECK(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, off.data(), nullptr, dims.data(), nullptr),
                "selecting rows of " << key);
  h5::Handle mspace(H5Screate_simple(rank, dims.data(), nullptr), H5Sclose);
  HPCT_H5_CHECK(H5Dwrite(it->second.get(), mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, data),
                "writing rows " << start << "+" << count << " of " << key << " in '" << path_ << "'");
}

void ShardWriter::write_rows(const std::string& key, std::int64_t start, std::int64_t count, const float* data) {
  write(key, start, count, H5T_NATIVE_FLOAT, data);
}

void ShardWriter::write_rows(const std::string& key, std::int64_t start, std::int64_t count, const std::int64_t* data) {
  write(key, start, count, H5T_NATIVE_INT64, data);
}

void ShardWriter::close() {
  h5::Lock lock;
  datasets_.clear();
  if (file_) {
    HPCT_H5_CHECK(H5Fflush(file_.get(), H5F_SCOPE_GLOBAL), "flushing '" << path_ << "'");
    file_.reset();
  }
}

}  // namespace hpctrain::data
