// Writes HDF5 test files with the plain C API.
#include "data/h5_fixture.h"

#include <stdexcept>

namespace hpctrain::testing {

void write_h5(const std::string& path, const std::vector<DsetSpec>& datasets) {
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) throw std::runtime_error("H5Fcreate " + path);
  for (const auto& d : datasets) {
    hid_t space = H5Screate_simple(static_cast<int>(d.dims.size()), d.dims.data(), nullptr);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (d.chunk_rows) {
      std::vector<hsize_t> chunk = d.dims;
      chunk[0] = d.chunk_rows;
      H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
      if (d.shuffle) H5Pset_shuffle(dcpl);
      if (d.gzip) H5Pset_deflate(dcpl, static_cast<unsigned>(d.gzip));
    }
    hid_t ds = H5Dcreate2(f, d.key.c_str(), d.file_type, space, lcpl, dcpl, H5P_DEFAULT);
    if (ds < 0) throw std::runtime_error("H5Dcreate2 " + d.key);
    if (d.data && H5Dwrite(ds, d.mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, d.data) < 0)
      throw std::runtime_error("H5Dwrite " + d.key);
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    H5Sclose(space);
  }
  H5Fclose(f);
}

}  // namespace hpctrain::testing
