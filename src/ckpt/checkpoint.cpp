// Parallel HDF5 checkpoint files and the directory protocol (partial -> rename -> latest).
#include "hpctrain/ckpt/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "hpctrain/core/error.h"
#include "hpctrain/core/files.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/environment.h"

namespace hpctrain::ckpt {
namespace fs = std::filesystem;

namespace {

hid_t mem_type(DType t) {
  switch (t) {
    case DType::kFloat32: return H5T_NATIVE_FLOAT;
    case DType::kFloat64: return H5T_NATIVE_DOUBLE;
    case DType::kInt64: return H5T_NATIVE_INT64;
    case DType::kUInt8: return H5T_NATIVE_UINT8;
  }
  return H5T_NATIVE_FLOAT;
}
hid_t file_type(DType t) {
  switch (t) {
    case DType::kFloat32: return H5T_IEEE_F32LE;
    case DType::kFloat64: return H5T_IEEE_F64LE;
    case DType::kInt64: return H5T_STD_I64LE;
    case DType::kUInt8: return H5T_STD_U8LE;
  }
  return H5T_IEEE_F32LE;
}

std::uint32_t crc(const void* data, std::size_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  while (n > 0) {  // crc32 takes a uInt length
    const uInt chunk = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
    c = crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<std::uint32_t>(c);
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

std::int64_t step_of(const fs::path& p) {
  const std::string name = p.filename().string();
  if (name.rfind("checkpoint-", 0) != 0 || name.find(".partial") != std::string::npos) return -1;
  try {
    return std::stoll(name.substr(11));
  } catch (...) {
    return -1;
  }
}

}  // namespace

std::size_t dtype_size(DType t) { return t == DType::kUInt8 ? 1 : t == DType::kFloat32 ? 4 : 8; }

Writer::Writer(const dist::Environment& env, const std::string& path) : env_(env), path_(path) {
  h5::Lock lock;
  h5::quiet_errors();
  h5::Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  HPCT_H5_CHECK(H5Pset_fapl_mpio(fapl.get(), env.comm(), MPI_INFO_NULL), "checkpoint '" << path << "': MPI-IO driver");
  file_ = h5::Handle(HPCT_H5_CHECK(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()),
                                   "creating checkpoint file '" << path << "'"),
                     H5Fclose);
  dxpl_ = h5::Handle(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  H5Pset_dxpl_mpio(dxpl_.get(), H5FD_MPIO_COLLECTIVE);
}

Writer::~Writer() {
  try {
    close();
  } catch (...) {
  }
}

void Writer::tensor(const std::string& path, DType type, const std::vector<std::int64_t>& shape, const void* data) {
  h5::Lock lock;
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  std::size_t total = 1;
  for (auto d : dims) total *= d;
  h5::Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  h5::Handle space(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                   H5Sclose);
  h5::Handle ds(HPCT_H5_CHECK(H5Dcreate2(file_.get(), path.c_str(), file_type(type), space.get(), lcpl.get(), H5P_DEFAULT,
                                         H5P_DEFAULT),
                              "checkpoint '" << path_ << "': creating " << path),
                H5Dclose);
  // Rank r's rows along the first axis (a scalar: rank 0 alone).
  const int r = env_.rank(), n = env_.size();
  h5::Handle fspace(H5Dget_space(ds.get()), H5Sclose);
  h5::Handle mspace;
  const char* src = static_cast<const char*>(data);
  if (dims.empty()) {  // a scalar: rank 0 writes it
    if (r == 0) {
      mspace = h5::Handle(H5Screate(H5S_SCALAR), H5Sclose);
    } else {
      const hsize_t one = 1;
      H5Sselect_none(fspace.get());
      mspace = h5::Handle(H5Screate_simple(1, &one, nullptr), H5Sclose);
      H5Sselect_none(mspace.get());
    }
  } else {
    const hsize_t lo = dims[0] * static_cast<hsize_t>(r) / static_cast<hsize_t>(n);
    const hsize_t hi = dims[0] * static_cast<hsize_t>(r + 1) / static_cast<hsize_t>(n);
    std::vector<hsize_t> off(dims.size(), 0), cnt = dims;
    off[0] = lo;
    cnt[0] = hi - lo;
    std::vector<hsize_t> mdims = cnt;
    if (hi > lo) {
      H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, off.data(), nullptr, cnt.data(), nullptr);
    } else {
      H5Sselect_none(fspace.get());
      mdims[0] = 1;
    }
    mspace = h5::Handle(H5Screate_simple(static_cast<int>(mdims.size()), mdims.data(), nullptr), H5Sclose);
    if (hi == lo) H5Sselect_none(mspace.get());
    std::size_t row = total / std::max<hsize_t>(1, dims[0]);
    src += lo * row * dtype_size(type);
  }
  HPCT_H5_CHECK(H5Dwrite(ds.get(), mem_type(type), mspace.get(), fspace.get(), dxpl_.get(), src),
                "checkpoint '" << path_ << "': writing " << path);
  // Every rank holds the same data, so every rank computes and writes the same attribute.
  const std::uint32_t c = crc(data, total * dtype_size(type));
  h5::Handle aspace(H5Screate(H5S_SCALAR), H5Sclose);
  h5::Handle attr(HPCT_H5_CHECK(H5Acreate2(ds.get(), "crc32", H5T_STD_U32LE, aspace.get(), H5P_DEFAULT, H5P_DEFAULT),
                                "checkpoint attribute crc32 of " << path),
                  H5Aclose);
  HPCT_H5_CHECK(H5Awrite(attr.get(), H5T_NATIVE_UINT32, &c), "writing crc32 of " << path);
}

void Writer::per_rank(const std::string& path, const std::vector<std::uint8_t>& mine) {
  h5::Lock lock;
  hsize_t dims[2] = {static_cast<hsize_t>(env_.size()), static_cast<hsize_t>(mine.size())};
  h5::Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  h5::Handle space(H5Screate_simple(2, dims, nullptr), H5Sclose);
  h5::Handle ds(HPCT_H5_CHECK(H5Dcreate2(file_.get(), path.c_str(), H5T_STD_U8LE, space.get(), lcpl.get(), H5P_DEFAULT,
                                         H5P_DEFAULT),
                              "checkpoint '" << path_ << "': creating " << path),
                H5Dclose);
  hsize_t off[2] = {static_cast<hsize_t>(env_.rank()), 0}, cnt[2] = {1, dims[1]};
  h5::Handle fspace(H5Dget_space(ds.get()), H5Sclose);
  H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, off, nullptr, cnt, nullptr);
  h5::Handle mspace(H5Screate_simple(2, cnt, nullptr), H5Sclose);
  HPCT_H5_CHECK(H5Dwrite(ds.get(), H5T_NATIVE_UINT8, mspace.get(), fspace.get(), dxpl_.get(), mine.data()),
                "checkpoint '" << path_ << "': writing " << path);
}

void Writer::meta(const Json& meta) {
  h5::Lock lock;
  const std::string text = meta.dump();
  h5::Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), text.size() + 1);
  h5::Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  h5::Handle attr(HPCT_H5_CHECK(H5Acreate2(file_.get(), "meta", type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                                "checkpoint '" << path_ << "': meta"),
                  H5Aclose);
  HPCT_H5_CHECK(H5Awrite(attr.get(), type.get(), text.c_str()), "checkpoint '" << path_ << "': writing meta");
}

void Writer::close() {
  h5::Lock lock;
  if (!file_) return;
  dxpl_.reset();
  HPCT_H5_CHECK(H5Fflush(file_.get(), H5F_SCOPE_GLOBAL), "flushing checkpoint '" << path_ << "'");
  file_.reset();
}

Reader::Reader(const std::string& path) : path_(path) {
  h5::Lock lock;
  h5::quiet_errors();
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) throw DataError("checkpoint '" + path + "' cannot be opened: " + h5::take_error_stack());
  file_ = h5::Handle(f, H5Fclose);
}

Json Reader::meta() const {
  h5::Lock lock;
  if (H5Aexists(file_.get(), "meta") <= 0) throw DataError("checkpoint '" + path_ + "' has no meta attribute");
  h5::Handle attr(H5Aopen(file_.get(), "meta", H5P_DEFAULT), H5Aclose);
  h5::Handle type(H5Aget_type(attr.get()), H5Tclose);
  std::string text(H5Tget_size(type.get()), '\0');
  HPCT_H5_CHECK(H5Aread(attr.get(), type.get(), text.data()), "checkpoint '" << path_ << "': reading meta");
  text.resize(std::strlen(text.c_str()));
  return Json::parse(text, "checkpoint '" + path_ + "' meta");
}

bool Reader::has(const std::string& path) const {
  h5::Lock lock;
  return h5::missing_prefix(file_.get(), path).empty();
}

std::vector<std::int64_t> Reader::shape(const std::string& path) const {
  h5::Lock lock;
  h5::Handle ds(HPCT_H5_CHECK(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), "checkpoint '" << path_ << "': " << path),
                H5Dclose);
  h5::Handle space(H5Dget_space(ds.get()), H5Sclose);
  const int nd = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> d(static_cast<std::size_t>(std::max(0, nd)));
  if (nd > 0) H5Sget_simple_extent_dims(space.get(), d.data(), nullptr);
  return std::vector<std::int64_t>(d.begin(), d.end());
}

void Reader::read(const std::string& path, DType type, void* out) const {
  h5::Lock lock;
  h5::Handle ds(HPCT_H5_CHECK(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), "checkpoint '" << path_ << "': " << path),
                H5Dclose);
  HPCT_H5_CHECK(H5Dread(ds.get(), mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, out),
                "checkpoint '" << path_ << "': reading " << path);
  h5::Handle space(H5Dget_space(ds.get()), H5Sclose);
  const std::size_t n = static_cast<std::size_t>(H5Sget_simple_extent_npoints(space.get()));
  std::uint32_t stored = 0;
  if (H5Aexists(ds.get(), "crc32") > 0) {
    h5::Handle attr(H5Aopen(ds.get(), "crc32", H5P_DEFAULT), H5Aclose);
    H5Aread(attr.get(), H5T_NATIVE_UINT32, &stored);
    if (crc(out, n * dtype_size(type)) != stored)
      throw DataError("checkpoint '" + path_ + "': " + path + " fails its checksum (corrupted)");
  }
}

DType Reader::stored_type(const std::string& path) const {
  h5::Lock lock;
  h5::Handle ds(HPCT_H5_CHECK(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), "checkpoint '" << path_ << "': " << path),
                H5Dclose);
  h5::Handle type(H5Dget_type(ds.get()), H5Tclose);
  const std::size_t size = H5Tget_size(type.get());
  if (H5Tget_class(type.get()) == H5T_FLOAT) return size == 4 ? DType::kFloat32 : DType::kFloat64;
  return size == 1 ? DType::kUInt8 : DType::kInt64;
}

std::vector<std::uint8_t> Reader::per_rank(const std::string& path, int rank) const {
  if (!has(path)) return {};
  auto s = shape(path);
  if (s.size() != 2 || rank >= s[0]) return {};
  h5::Lock lock;
  h5::Handle ds(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), H5Dclose);
  h5::Handle fspace(H5Dget_space(ds.get()), H5Sclose);
  hsize_t off[2] = {static_cast<hsize_t>(rank), 0}, cnt[2] = {1, static_cast<hsize_t>(s[1])};
  H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, off, nullptr, cnt, nullptr);
  h5::Handle mspace(H5Screate_simple(2, cnt, nullptr), H5Sclose);
  std::vector<std::uint8_t> out(static_cast<std::size_t>(s[1]));
  HPCT_H5_CHECK(H5Dread(ds.get(), H5T_NATIVE_UINT8, mspace.get(), fspace.get(), H5P_DEFAULT, out.data()),
                "checkpoint '" << path_ << "': reading " << path);
  return out;
}

namespace {
herr_t collect(hid_t, const char* name, const H5O_info_t* info, void* data) {
  if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(data)->push_back(std::string("/") + name);
  return 0;
}
}  // namespace

std::vector<std::string> Reader::tensors() const {
  h5::Lock lock;
  std::vector<std::string> out;
  H5Ovisit(file_.get(), H5_INDEX_NAME, H5_ITER_INC, collect, &out);
  return out;
}

std::string checkpoint_dir(const std::string& output_dir, std::int64_t step) {
  return (fs::path(output_dir) / ("checkpoint-" + std::to_string(step))).string();
}

std::string verify(const std::string& dir) {
  try {
    if (!fs::is_directory(dir)) return "'" + dir + "' is not a directory";
    const std::string state = (fs::path(dir) / "state.h5").string();
    if (!fs::exists(state)) return "'" + state + "' is missing";
    Reader r(state);
    Json meta = r.meta();
    const Json* v = meta.find("format_version");
    if (!v || static_cast<int>(v->number()) != kFormatVersion)
      return "'" + state + "' has format version " + (v ? v->dump() : std::string("none")) + ", expected " +
             std::to_string(kFormatVersion);
    std::vector<char> buf;
    for (const auto& t : r.tensors()) {
      auto s = r.shape(t);
      std::size_t n = 1;
      for (auto d : s) n *= static_cast<std::size_t>(d);
      const DType type = r.stored_type(t);
      buf.resize(n * dtype_size(type));
      r.read(t, type, buf.data());
    }
    Json::parse_file((fs::path(dir) / "trainer_state.json").string());
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

void commit(const dist::Environment& env, const std::string& partial, const std::string& final_dir,
            const std::string& output_dir) {
  std::string error;
  if (env.rank() == 0) {
    try {
      for (const auto& e : fs::directory_iterator(partial)) fsync_path(e.path().string());
      fs::remove_all(final_dir);  // a checkpoint of the same step from an earlier, interrupted run
      fs::rename(partial, final_dir);
      fsync_path(output_dir);
      files::write_atomic((fs::path(output_dir) / "latest").string(), fs::path(final_dir).filename().string() + "\n");
      fsync_path(output_dir);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  error = env.broadcast_string(error, 0);
  if (!error.empty()) throw CollectiveError("committing checkpoint '" + final_dir + "': " + error, exit_code::kFatal);
}

void rotate(const std::string& output_dir, std::int64_t keep, const std::string& protect) {
  if (keep <= 0) return;
  std::vector<std::pair<std::int64_t, fs::path>> all;
  for (const auto& e : fs::directory_iterator(output_dir))
    if (e.is_directory() && step_of(e.path()) >= 0) all.emplace_back(step_of(e.path()), e.path());
  std::sort(all.begin(), all.end());
  std::int64_t excess = static_cast<std::int64_t>(all.size()) - keep;
  for (const auto& [step, p] : all) {
    if (excess <= 0) break;
    std::error_code ec;
    if (!protect.empty() && fs::exists(protect, ec) && fs::equivalent(p, protect, ec)) continue;
    fs::remove_all(p);
    --excess;
  }
}

std::optional<std::string> find_resume(const dist::Environment& env, const std::string& output_dir,
                                       const std::string& spec) {
  if (spec.empty() || spec == "none") return std::nullopt;
  std::string chosen, error;
  if (env.rank() == 0) {
    if (spec != "auto") {
      error = verify(spec);
      if (error.empty()) chosen = spec;
    } else if (fs::is_directory(output_dir)) {
      std::vector<std::string> candidates;
      std::ifstream latest(fs::path(output_dir) / "latest");
      std::string name;
      if (latest >> name) candidates.push_back((fs::path(output_dir) / name).string());
      else HPCT_LOG(warning) << "resume: " << output_dir << "/latest is missing or empty; looking for checkpoints";
      std::vector<std::pair<std::int64_t, std::string>> all;
      for (const auto& e : fs::directory_iterator(output_dir))
        if (e.is_directory() && step_of(e.path()) >= 0) all.emplace_back(step_of(e.path()), e.path().string());
      std::sort(all.rbegin(), all.rend());
      for (const auto& a : all) candidates.push_back(a.second);
      for (const auto& c : candidates) {
        const std::string why = verify(c);
        if (why.empty()) {
          chosen = c;
          break;
        }
        HPCT_LOG(warning) << "resume: skipping checkpoint '" << c << "': " << why;
      }
    }
  }
  error = env.broadcast_string(error, 0);
  if (!error.empty())
    throw CollectiveError("resume_from_checkpoint=" + spec + ": not a valid checkpoint: " + error, exit_code::kConfig);
  chosen = env.broadcast_string(chosen, 0);
  if (chosen.empty()) return std::nullopt;
  return chosen;
}

}  // namespace hpctrain::ckpt
