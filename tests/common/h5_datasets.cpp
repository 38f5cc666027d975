// read_datasets: H5Ovisit over a file, reading each dataset and its crc32 attribute.
#include "common/h5_datasets.h"

#include <hdf5.h>

namespace hpctrain::testing {
namespace {
struct Visit {
  std::map<std::string, DatasetInfo>* out;
  bool with_bytes;
};
herr_t visit(hid_t loc, const char* name, const H5O_info_t* info, void* data) {
  if (info->type != H5O_TYPE_DATASET) return 0;
  const auto* v = static_cast<Visit*>(data);
  hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
  hid_t type = H5Dget_type(d), space = H5Dget_space(d);
  DatasetInfo ds;
  if (v->with_bytes) {
    ds.bytes.resize(static_cast<std::size_t>(H5Sget_simple_extent_npoints(space)) * H5Tget_size(type));
    if (!ds.bytes.empty()) H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds.bytes.data());
  }
  if (H5Aexists(d, "crc32") > 0) {
    hid_t a = H5Aopen(d, "crc32", H5P_DEFAULT);
    hid_t as = H5Aget_space(a);
    ds.crc.resize(static_cast<std::size_t>(H5Sget_simple_extent_npoints(as)));
    H5Aread(a, H5T_NATIVE_UINT32, ds.crc.data());
    H5Sclose(as);
    H5Aclose(a);
  }
  ds.offset = H5Dget_offset(d);
  ds.storage = static_cast<std::size_t>(H5Dget_storage_size(d));
  H5Sclose(space);
  H5Tclose(type);
  H5Dclose(d);
  (*v->out)[std::string("/") + name] = std::move(ds);
  return 0;
}
}  // namespace

std::map<std::string, DatasetInfo> read_datasets(const std::string& file, bool with_bytes) {
  std::map<std::string, DatasetInfo> out;
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return out;
  Visit v{&out, with_bytes};
  H5Ovisit(f, H5_INDEX_NAME, H5_ITER_INC, visit, &v);
  H5Fclose(f);
  return out;
}

}  // namespace hpctrain::testing
