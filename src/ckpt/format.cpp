// state.h5: the container rank 0 creates, checked raw writes, and the reader that checks before
// it trusts (meta data, manifest, every tensor, row and document against its CRC32).
#include "hpctrain/ckpt/format.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>
#ifdef HPCTRAIN_HAVE_ISAL
#include <isa-l/crc.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>

#include "hpctrain/core/error.h"
#include "hpctrain/core/files.h"

namespace hpctrain::ckpt {
namespace fs = std::filesystem;

namespace {

hid_t mem_type(DType t) {
  switch (t) {
    case DType::kFloat32: return H5T_NATIVE_FLOAT;
    case DType::kFloat64: return H5T_NATIVE_DOUBLE;
    case DType::kInt8: return H5T_NATIVE_INT8;
    case DType::kInt16: return H5T_NATIVE_INT16;
    case DType::kInt32: return H5T_NATIVE_INT32;
    case DType::kInt64: return H5T_NATIVE_INT64;
    case DType::kUInt8: return H5T_NATIVE_UINT8;
    case DType::kUInt16: return H5T_NATIVE_UINT16;
    case DType::kUInt32: return H5T_NATIVE_UINT32;
    case DType::kUInt64: return H5T_NATIVE_UINT64;
  }
  return H5T_NATIVE_UINT8;
}


// The DType a dataset was stored with, when it is one of ours (little-endian, as written).
bool stored_as(hid_t ds, DType t) {
  h5::Handle type(H5Dget_type(ds), H5Tclose);
  return type && H5Tequal(type.get(), h5::file_type(t)) > 0;
}

// Checked JSON access for the manifest: a damaged or foreign file gets a message, never a crash.
const Json& field(const Json& obj, const std::string& key, const std::string& where) {
  const Json* v = json::find(obj, key);
  if (!v) throw DataError(where + ": the meta data lacks '" + key + "'");
  return *v;
}
std::int64_t int_field(const Json& obj, const std::string& key, const std::string& where, std::int64_t lo,
                       std::int64_t hi) {
  const Json& v = field(obj, key, where);
  if (!json::is_int64(v) || v.get<std::int64_t>() < lo || v.get<std::int64_t>() > hi)
    throw DataError(where + ": meta data '" + key + "' is " + json::dump(v) + ", expected an integer in [" +
                    std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v.get<std::int64_t>();
}
const std::string& string_field(const Json& obj, const std::string& key, const std::string& where) {
  const Json& v = field(obj, key, where);
  if (!v.is_string()) throw DataError(where + ": meta data '" + key + "' is " + json::dump(v) + ", expected a string");
  return v.get_ref<const std::string&>();
}
const Json& array_field(const Json& obj, const std::string& key, const std::string& where) {
  const Json& v = field(obj, key, where);
  if (!v.is_array()) throw DataError(where + ": meta data '" + key + "' is not a list");
  return v;
}

constexpr std::int64_t kMaxBytes = std::int64_t{1} << 50;  // 1 PiB: beyond it a size is damage, not data

std::size_t bytes_of(DType type, const std::vector<std::int64_t>& shape, const std::string& what) {
  std::int64_t n = static_cast<std::int64_t>(dtype_size(type));
  for (auto d : shape) {
    if (d < 0 || (d > 0 && n > kMaxBytes / d)) throw DataError(what + ": implausible shape");
    n *= d;
  }
  return static_cast<std::size_t>(n);
}

void write_u32_attribute(hid_t obj, const std::vector<std::uint32_t>& values, bool scalar, const std::string& what) {
  const hsize_t n = values.size();
  h5::Handle space(scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, nullptr), H5Sclose);
  h5::Handle attr(HPCT_H5_CHECK(H5Acreate2(obj, "crc32", H5T_STD_U32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                                "creating the crc32 of " << what),
                  H5Aclose);
  HPCT_H5_CHECK(H5Awrite(attr.get(), H5T_NATIVE_UINT32, values.data()), "writing the crc32 of " << what);
}

std::vector<std::uint32_t> read_u32_attribute(hid_t obj, std::size_t expected, const std::string& what) {
  if (H5Aexists(obj, "crc32") <= 0) throw DataError(what + " has no crc32 attribute");
  h5::Handle attr(H5Aopen(obj, "crc32", H5P_DEFAULT), H5Aclose);
  h5::Handle space(H5Aget_space(attr.get()), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (!attr || n != static_cast<hssize_t>(expected)) throw DataError(what + " has a damaged crc32 attribute");
  std::vector<std::uint32_t> out(expected);
  if (H5Aread(attr.get(), H5T_NATIVE_UINT32, out.data()) < 0) throw DataError(what + ": cannot read its crc32");
  return out;
}

h5::Handle link_create_props() {
  h5::Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  return lcpl;
}

// A dataset written whole now (meta data, per-rank rows). Its attributes are stored densely: a
// per-rank entry's crc32 holds one value per rank, beyond the 64 KiB of a compact attribute from
// about 16,000 ranks on.
void write_small(hid_t file, const std::string& path, const std::vector<hsize_t>& dims, const void* data,
                 const std::vector<std::uint32_t>& crcs, bool scalar_crc, const std::string& what) {
  h5::Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  h5::Handle lcpl = link_create_props();
  h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  HPCT_H5_CHECK(H5Pset_attr_phase_change(dcpl.get(), 0, 0), "dense attributes for " << path);
  h5::Handle ds(HPCT_H5_CHECK(H5Dcreate2(file, path.c_str(), H5T_STD_U8LE, space.get(), lcpl.get(), dcpl.get(),
                                         H5P_DEFAULT),
                              "creating " << path << " in " << what),
                H5Dclose);
  HPCT_H5_CHECK(H5Dwrite(ds.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
                "writing " << path << " in " << what);
  write_u32_attribute(ds.get(), crcs, scalar_crc, path + " in " + what);
}

}  // namespace

DType dtype_from_name(const std::string& name, const std::string& what) {
  if (const auto t = dtype_named(name)) return *t;
  throw DataError(what + ": unknown dtype '" + name + "'");
}

std::uint32_t crc32(const void* data, std::size_t n, std::uint32_t crc) {
  if (n == 0) return crc;
#ifdef HPCTRAIN_HAVE_ISAL
  // The same CRC as zlib's (the gzip polynomial, reflected), continued from `crc` the same way.
  return crc32_gzip_refl(crc, static_cast<const unsigned char*>(data), n);
#else
  uLong c = crc;
  const auto* p = static_cast<const Bytef*>(data);
  while (n > 0) {  // zlib takes a uInt length
    const uInt chunk = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
    c = ::crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<std::uint32_t>(c);
#endif
}

std::uint32_t crc32_combine(std::uint32_t a, std::uint32_t b, std::size_t len_b) {
  return static_cast<std::uint32_t>(::crc32_combine64(a, b, static_cast<z_off64_t>(len_b)));
}

std::string entry_path(const std::string& key, const std::string& name) { return "/" + key + "/" + name; }

void check_entry_name(const std::string& name, const std::string& what) {
  bool ok = !name.empty() && name.size() < 1024;
  std::size_t start = 0;
  while (ok) {
    const std::size_t end = name.find('/', start);
    const std::string part = name.substr(start, end == std::string::npos ? std::string::npos : end - start);
    ok = !part.empty() && part != "." && part != ".." &&
         std::all_of(part.begin(), part.end(), [](char c) { return c >= 0x20 && c != 0x7f; });
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (!ok) throw Error(what + ": '" + name + "' is not a valid checkpoint entry name (parts separated by /, no empty, . or ..)");
}

std::vector<std::int64_t> create_container(const std::string& path, const Container& c) {
  h5::Lock lock;
  h5::quiet_errors();
  const std::string what = "'" + path + "'";
  h5::Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  HPCT_H5_CHECK(H5Pset_fapl_sec2(fapl.get()), "checkpoint " << what << ": file driver");
  HPCT_H5_CHECK(H5Pset_alignment(fapl.get(), kAlignment, kAlignment), "checkpoint " << what << ": alignment");
  // The 1.8 file format: dense attribute storage, and still readable by every HDF5 since 1.8.
  HPCT_H5_CHECK(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_V18), "checkpoint " << what << ": format");
  std::vector<std::int64_t> offsets;
  const hid_t file = HPCT_H5_CHECK(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()),
                                   "creating checkpoint file " << what);
  try {
    // Tensors: space allocated now and never filled, so the owners' raw writes are the only bytes.
    h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    HPCT_H5_CHECK(H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS), "checkpoint " << what << ": layout");
    HPCT_H5_CHECK(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY), "checkpoint " << what << ": allocation");
    HPCT_H5_CHECK(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), "checkpoint " << what << ": fill");
    h5::Handle lcpl = link_create_props();
    for (const auto& t : c.tensors) {
      std::vector<hsize_t> dims(t.shape.begin(), t.shape.end());
      h5::Handle space(dims.empty() ? H5Screate(H5S_SCALAR)
                                    : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                       H5Sclose);
      h5::Handle ds(HPCT_H5_CHECK(H5Dcreate2(file, t.path.c_str(), h5::file_type(t.type), space.get(), lcpl.get(),
                                             dcpl.get(), H5P_DEFAULT),
                                  "creating " << t.path << " in " << what),
                    H5Dclose);
      write_u32_attribute(ds.get(), {t.crc32}, /*scalar=*/true, t.path + " in " + what);
      const haddr_t off = H5Dget_offset(ds.get());
      offsets.push_back(off == HADDR_UNDEF ? -1 : static_cast<std::int64_t>(off));
    }
    for (const auto& r : c.per_rank) {
      std::vector<std::uint32_t> crcs;
      for (int k = 0; k < c.world; ++k) crcs.push_back(crc32(r.rows.data() + k * r.row_bytes, r.row_bytes));
      write_small(file, r.path, {static_cast<hsize_t>(c.world), static_cast<hsize_t>(r.row_bytes)}, r.rows.data(), crcs,
                  /*scalar=*/false, what);
    }
    const std::string text = json::dump(c.meta);
    write_small(file, "/meta", {static_cast<hsize_t>(text.size())}, text.data(), {crc32(text.data(), text.size())},
                /*scalar=*/true, what);
  } catch (...) {
    H5Fclose(file);
    throw;
  }
  // Every object above is closed: this close writes the file's meta data, and its failure counts.
  HPCT_H5_CHECK(H5Fclose(file), "closing checkpoint file " << what);
  return offsets;
}

void write_at(int fd, const std::string& path, const void* data, std::size_t len, std::int64_t offset) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    const ssize_t n = ::pwrite(fd, p, std::min<std::size_t>(len, std::size_t{1} << 30), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error("cannot write '" + path + "': " + std::strerror(n < 0 ? errno : EIO));
    p += n;
    len -= static_cast<std::size_t>(n);
    offset += n;
  }
}

// ---- reading ----

namespace {

class PieceReader : public StateReader {
 public:
  PieceReader(const FileReader& f, std::string key, const PieceManifest& m) : f_(f), key_(std::move(key)), m_(m) {}
  const std::string& where() const override { return f_.where(); }
  int saved_world_size() const override { return f_.world_size(); }
  std::int64_t saved_step() const override { return f_.step(); }
  const Json& info() const override { return m_.info; }
  bool has(const std::string& name) const override { return find(name) != nullptr; }
  std::vector<std::int64_t> shape(const std::string& name) const override { return get(name).shape; }
  DType type(const std::string& name) const override { return get(name).type; }
  void read(const std::string& name, DType type, void* out) const override { f_.read_tensor(key_, get(name), type, out); }
  std::vector<std::uint8_t> per_rank(const std::string& name, int rank) const override {
    return f_.read_row(key_, row_entry(name), rank);
  }
  void per_rank_rows(const std::string& name, const RowVisitor& each) const override {
    const auto& e = row_entry(name);
    f_.check_rows(key_, e, [&](int k, const std::uint8_t* row) { each(k, row, e.bytes); });
  }
  Json document(const std::string& file) const override {
    for (const auto& d : m_.documents)
      if (d.file == file) return f_.read_document(d);
    throw DataError(f_.where() + " lacks the document " + file + " of " + key_);
  }

 private:
  const PieceManifest::PerRank& row_entry(const std::string& name) const {
    for (const auto& e : m_.per_rank)
      if (e.name == name) return e;
    throw DataError(f_.where() + " lacks " + entry_path(key_, name));
  }
  const PieceManifest::Tensor* find(const std::string& name) const {
    for (const auto& t : m_.tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
  const PieceManifest::Tensor& get(const std::string& name) const {
    const auto* t = find(name);
    if (!t) throw DataError(f_.where() + " lacks " + entry_path(key_, name));
    return *t;
  }
  const FileReader& f_;
  std::string key_;
  const PieceManifest& m_;
};

}  // namespace

FileReader::FileReader(const std::string& dir)
    : dir_(dir), file_((fs::path(dir) / "state.h5").string()), where_("checkpoint '" + dir + "'") {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw DataError(where_ + " is not a directory");
  if (!fs::exists(file_, ec)) throw DataError(where_ + " has no state.h5");
  file_size_ = static_cast<std::size_t>(fs::file_size(file_, ec));
  if (ec) throw DataError(where_ + ": state.h5 is not a readable file: " + ec.message());
  h5::Lock lock;
  h5::quiet_errors();
  const hid_t f = H5Fopen(file_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) throw DataError(where_ + ": state.h5 cannot be opened: " + h5::take_error_stack());
  h5_ = h5::Handle(f, H5Fclose);
  if (!h5::missing_prefix(f, "/meta").empty())
    throw DataError(where_ + " has no /meta (not an hpctrain checkpoint, or one older than format version " +
                    std::to_string(kFormatVersion) + ")");
  std::string text;
  {
    h5::Handle ds(H5Dopen2(f, "/meta", H5P_DEFAULT), H5Dclose);
    h5::Handle space(ds ? H5Dget_space(ds.get()) : H5I_INVALID_HID, H5Sclose);
    const hssize_t n = space ? H5Sget_simple_extent_npoints(space.get()) : -1;
    if (!ds || !stored_as(ds.get(), DType::kUInt8) || H5Sget_simple_extent_ndims(space.get()) != 1 || n < 2 ||
        n > (hssize_t{1} << 30))
      throw DataError(where_ + ": /meta is damaged");
    text.resize(static_cast<std::size_t>(n));
    if (H5Dread(ds.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, text.data()) < 0)
      throw DataError(where_ + ": cannot read /meta: " + h5::take_error_stack());
    if (read_u32_attribute(ds.get(), 1, where_ + ": /meta")[0] != crc32(text.data(), text.size()))
      throw DataError(where_ + ": /meta fails its checksum (corrupted)");
  }
  meta_ = json::parse(text, where_ + " meta data");
  const std::int64_t version = int_field(meta_, "format_version", where_, 0, 1 << 20);
  if (version != kFormatVersion)
    throw DataError(where_ + " has format version " + std::to_string(version) + "; this hpctrain reads version " +
                    std::to_string(kFormatVersion));
  world_ = static_cast<int>(int_field(meta_, "world_size", where_, 1, 1 << 24));
  step_ = int_field(meta_, "global_step", where_, 0, std::numeric_limits<std::int64_t>::max());
  const Json& mo = field(meta_, "model_only", where_);
  if (!mo.is_boolean()) throw DataError(where_ + ": meta data 'model_only' is not true or false");
  model_only_ = mo.get<bool>();
  const Json& pieces = field(meta_, "pieces", where_);
  if (!pieces.is_object()) throw DataError(where_ + ": meta data 'pieces' is not an object");
  for (const auto& [key, p] : pieces.items()) {
    const std::string w = where_ + " piece '" + key + "'";
    check_entry_name(key, w);
    PieceManifest m;
    const Json& info = field(p, "info", w);
    if (!info.is_object()) throw DataError(w + ": 'info' is not an object");
    m.info = info;
    for (const auto& t : array_field(p, "tensors", w)) {
      PieceManifest::Tensor e;
      e.name = string_field(t, "name", w);
      check_entry_name(e.name, w);
      e.type = dtype_from_name(string_field(t, "dtype", w), w + " " + e.name);
      for (const auto& d : array_field(t, "shape", w)) {
        if (!json::is_int64(d) || d.get<std::int64_t>() < 0) throw DataError(w + " " + e.name + ": damaged shape");
        e.shape.push_back(d.get<std::int64_t>());
      }
      if (e.shape.size() > 32) throw DataError(w + " " + e.name + ": damaged shape");
      e.bytes = bytes_of(e.type, e.shape, w + " " + e.name);
      m.tensors.push_back(std::move(e));
    }
    for (const auto& r : array_field(p, "per_rank", w)) {
      PieceManifest::PerRank e;
      e.name = string_field(r, "name", w);
      check_entry_name(e.name, w);
      e.bytes = static_cast<std::size_t>(int_field(r, "bytes", w, 0, 1 << 30));
      m.per_rank.push_back(std::move(e));
    }
    for (const auto& d : array_field(p, "documents", w)) {
      PieceManifest::Document e;
      e.file = string_field(d, "file", w);
      if (e.file.empty() || e.file.find('/') != std::string::npos || e.file[0] == '.' || e.file == "state.h5")
        throw DataError(w + ": document name '" + e.file + "' is not a plain file name");
      e.crc32 = static_cast<std::uint32_t>(int_field(d, "crc32", w, 0, 0xffffffffLL));
      e.bytes = static_cast<std::size_t>(int_field(d, "bytes", w, 0, std::int64_t{1} << 34));
      m.documents.push_back(std::move(e));
    }
    pieces_.emplace(key, std::move(m));
  }
}

FileReader::~FileReader() = default;

std::unique_ptr<StateReader> FileReader::piece(const std::string& key) const {
  auto it = pieces_.find(key);
  if (it == pieces_.end()) return nullptr;
  return std::make_unique<PieceReader>(*this, key, it->second);
}

h5::Handle FileReader::open_dataset(const std::string& path, DType type, const std::vector<std::int64_t>& shape) const {
  // Caller holds the lock.
  if (!h5::missing_prefix(h5_.get(), path).empty()) throw DataError(where_ + " lacks " + path);
  h5::Handle ds(H5Dopen2(h5_.get(), path.c_str(), H5P_DEFAULT), H5Dclose);
  if (!ds) throw DataError(where_ + ": " + path + " cannot be opened: " + h5::take_error_stack());
  h5::Handle space(H5Dget_space(ds.get()), H5Sclose);
  const int nd = space ? H5Sget_simple_extent_ndims(space.get()) : -1;
  std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(0, nd)));
  if (nd > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  if (nd < 0 || std::vector<std::int64_t>(dims.begin(), dims.end()) != shape || !stored_as(ds.get(), type))
    throw DataError(where_ + ": " + path + " does not have the shape and type its manifest gives (damaged)");
  return ds;
}

void FileReader::read_tensor(const std::string& key, const PieceManifest::Tensor& t, DType type, void* out) const {
  const std::string path = entry_path(key, t.name);
  if (type != t.type)
    throw DataError(where_ + ": " + path + " is " + dtype_name(t.type) + ", expected " + dtype_name(type));
  h5::Lock lock;
  h5::Handle ds = open_dataset(path, t.type, t.shape);
  const std::uint32_t stored = read_u32_attribute(ds.get(), 1, where_ + ": " + path)[0];
  raw_offset(ds.get(), t.bytes, path);
  if (t.bytes > 0 && H5Dread(ds.get(), mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
    throw DataError(where_ + ": cannot read " + path + ": " + h5::take_error_stack());
  if (crc32(out, t.bytes) != stored) throw DataError(where_ + ": " + path + " fails its checksum (corrupted)");
}

std::vector<std::uint8_t> FileReader::read_row(const std::string& key, const PieceManifest::PerRank& e, int rank) const {
  if (rank < 0 || rank >= world_) return {};
  const std::string path = entry_path(key, e.name);
  h5::Lock lock;
  h5::Handle ds = open_dataset(path, DType::kUInt8, {world_, static_cast<std::int64_t>(e.bytes)});
  const auto crcs = read_u32_attribute(ds.get(), static_cast<std::size_t>(world_), where_ + ": " + path);
  std::vector<std::uint8_t> out(e.bytes);
  if (e.bytes > 0) {
    h5::Handle fspace(H5Dget_space(ds.get()), H5Sclose);
    hsize_t off[2] = {static_cast<hsize_t>(rank), 0}, cnt[2] = {1, static_cast<hsize_t>(e.bytes)};
    H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, off, nullptr, cnt, nullptr);
    h5::Handle mspace(H5Screate_simple(2, cnt, nullptr), H5Sclose);
    if (H5Dread(ds.get(), H5T_NATIVE_UINT8, mspace.get(), fspace.get(), H5P_DEFAULT, out.data()) < 0)
      throw DataError(where_ + ": cannot read " + path + ": " + h5::take_error_stack());
  }
  if (crc32(out.data(), out.size()) != crcs[static_cast<std::size_t>(rank)])
    throw DataError(where_ + ": " + path + " row " + std::to_string(rank) + " fails its checksum (corrupted)");
  return out;
}

Json FileReader::read_document(const PieceManifest::Document& d) const {
  const std::string path = (fs::path(dir_) / d.file).string();
  std::error_code ec;
  // Size first: a damaged manifest or a swapped file must not make us read without end.
  if (!fs::is_regular_file(path, ec)) throw DataError(where_ + " lacks " + d.file + " (or it is not a regular file)");
  if (fs::file_size(path, ec) != d.bytes || ec)
    throw DataError(where_ + ": " + d.file + " fails its checksum (corrupted or changed: another size)");
  const std::string text = files::read_all(path);
  if (text.size() != d.bytes || crc32(text.data(), text.size()) != d.crc32)
    throw DataError(where_ + ": " + d.file + " fails its checksum (corrupted or changed)");
  return json::parse(text, path);
}

std::int64_t FileReader::raw_offset(hid_t ds, std::size_t bytes, const std::string& path) const {
  // Caller holds the lock. Our tensors are contiguous, allocated and inside the file; anything
  // else is damage, found before a byte is read.
  h5::Handle dcpl(H5Dget_create_plist(ds), H5Pclose);
  const haddr_t off = H5Dget_offset(ds);
  const bool ok = dcpl && H5Pget_layout(dcpl.get()) == H5D_CONTIGUOUS &&
                  (bytes == 0 || (off != HADDR_UNDEF && H5Dget_storage_size(ds) == bytes &&
                                  off <= static_cast<haddr_t>(file_size_) && bytes <= file_size_ - off));
  if (!ok) throw DataError(where_ + ": " + path + " has no complete storage in state.h5 (damaged or truncated)");
  return bytes == 0 ? -1 : static_cast<std::int64_t>(off);
}

namespace {
// CRC-32 of `bytes` bytes at `offset` of `fd`, read in slices of 64 MiB.
std::uint32_t crc_of_range(int fd, std::int64_t offset, std::size_t bytes, const std::string& what) {
  std::vector<char> buf(std::min<std::size_t>(bytes, std::size_t{64} << 20));
  std::uint32_t c = 0;
  while (bytes > 0) {
    const std::size_t want = std::min(bytes, buf.size());
    const ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw DataError(what + ": cannot read: " + (n < 0 ? std::strerror(errno) : "the file ends early"));
    c = crc32(buf.data(), static_cast<std::size_t>(n), c);
    offset += n;
    bytes -= static_cast<std::size_t>(n);
  }
  return c;
}
}  // namespace

void FileReader::check_tensor(const std::string& key, const PieceManifest::Tensor& t) const {
  const std::string path = entry_path(key, t.name);
  std::uint32_t stored = 0;
  std::int64_t offset = -1;
  {
    h5::Lock lock;
    h5::Handle ds = open_dataset(path, t.type, t.shape);
    stored = read_u32_attribute(ds.get(), 1, where_ + ": " + path)[0];
    offset = raw_offset(ds.get(), t.bytes, path);
  }
  if (t.bytes == 0) {
    if (stored != 0) throw DataError(where_ + ": " + path + " fails its checksum (corrupted)");
    return;
  }
  const int fd = ::open(file_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw DataError(where_ + ": cannot open state.h5: " + std::strerror(errno));
  std::uint32_t c = 0;
  try {
    c = crc_of_range(fd, offset, t.bytes, where_ + ": " + path);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  if (c != stored) throw DataError(where_ + ": " + path + " fails its checksum (corrupted)");
}

void FileReader::check_rows(const std::string& key, const PieceManifest::PerRank& e, const RowFn& each) const {
  const std::string path = entry_path(key, e.name);
  h5::Lock lock;
  h5::Handle ds = open_dataset(path, DType::kUInt8, {world_, static_cast<std::int64_t>(e.bytes)});
  const auto crcs = read_u32_attribute(ds.get(), static_cast<std::size_t>(world_), where_ + ": " + path);
  if (e.bytes == 0) {
    // Empty rows, as read_row() sees them: the checksum of nothing.
    for (int k = 0; k < world_; ++k) {
      if (crcs[static_cast<std::size_t>(k)] != 0)
        throw DataError(where_ + ": " + path + " row " + std::to_string(k) + " fails its checksum (corrupted)");
      if (each) each(k, nullptr);
    }
    return;
  }
  // Blocks of whole rows, every row checked, the checksums read once.
  const std::int64_t per = std::max<std::int64_t>(1, static_cast<std::int64_t>((std::size_t{16} << 20) / e.bytes));
  std::vector<std::uint8_t> buf;
  for (std::int64_t r0 = 0; r0 < world_; r0 += per) {
    const std::int64_t n = std::min<std::int64_t>(per, world_ - r0);
    buf.resize(static_cast<std::size_t>(n) * e.bytes);
    h5::Handle fspace(H5Dget_space(ds.get()), H5Sclose);
    hsize_t off[2] = {static_cast<hsize_t>(r0), 0}, cnt[2] = {static_cast<hsize_t>(n), static_cast<hsize_t>(e.bytes)};
    H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, off, nullptr, cnt, nullptr);
    h5::Handle mspace(H5Screate_simple(2, cnt, nullptr), H5Sclose);
    if (H5Dread(ds.get(), H5T_NATIVE_UINT8, mspace.get(), fspace.get(), H5P_DEFAULT, buf.data()) < 0)
      throw DataError(where_ + ": cannot read " + path + ": " + h5::take_error_stack());
    for (std::int64_t k = 0; k < n; ++k) {
      const std::uint8_t* row = buf.data() + static_cast<std::size_t>(k) * e.bytes;
      if (crc32(row, e.bytes) != crcs[static_cast<std::size_t>(r0 + k)])
        throw DataError(where_ + ": " + path + " row " + std::to_string(r0 + k) + " fails its checksum (corrupted)");
      if (each) each(static_cast<int>(r0 + k), row);
    }
  }
}

void FileReader::check_all() const {
  for (const auto& [key, m] : pieces_) {
    for (const auto& t : m.tensors) check_tensor(key, t);
    for (const auto& e : m.per_rank) check_rows(key, e);
    for (const auto& d : m.documents) read_document(d);
  }
}

std::string verify(const std::string& dir) {
  try {
    FileReader r(dir);
    r.check_all();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace hpctrain::ckpt
