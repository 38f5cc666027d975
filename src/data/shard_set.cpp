// ShardSet: resolving a data-set spec to files and checking every shard on open, so that a bad
// file stops the job before training with an error naming the file and key.
#include "hpctrain/data/shard_set.h"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>
#include <sstream>

#include "hpctrain/core/bytes.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/h5.h"
#include "hpctrain/core/text.h"
#include "hpctrain/dist/environment.h"

namespace hpctrain::data {
namespace fs = std::filesystem;

namespace {

// "shard-2.h5" < "shard-10.h5": digit runs compare as numbers.
bool natural_less(const std::string& a, const std::string& b) {
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      std::size_t i2 = i, j2 = j;
      while (i2 < a.size() && std::isdigit(static_cast<unsigned char>(a[i2]))) ++i2;
      while (j2 < b.size() && std::isdigit(static_cast<unsigned char>(b[j2]))) ++j2;
      std::string na = a.substr(i, i2 - i), nb = b.substr(j, j2 - j);
      na.erase(0, std::min(na.find_first_not_of('0'), na.size()));
      nb.erase(0, std::min(nb.find_first_not_of('0'), nb.size()));
      if (na.size() != nb.size()) return na.size() < nb.size();
      if (na != nb) return na < nb;
      i = i2;
      j = j2;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

bool is_hdf5_name(const fs::path& p) {
  const std::string e = p.extension().string();
  return e == ".h5" || e == ".hdf5" || e == ".he5" || e == ".hdf";
}

[[noreturn]] void fail(const std::string& file, const std::string& key, const std::string& problem) {
  throw DataError("data file '" + file + "'" + (key.empty() ? "" : ", dataset '" + key + "'") + ": " + problem);
}

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string out = "(";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

std::vector<std::int64_t> trailing(const std::vector<std::int64_t>& s) {
  return s.size() > 1 ? std::vector<std::int64_t>(s.begin() + 1, s.end()) : std::vector<std::int64_t>{};
}

// Reads what the reader needs to know of `key` in an open file. Caller holds the HDF5 lock.
DatasetMeta inspect(hid_t file, const std::string& path, const std::string& key, std::int64_t file_size) {
  DatasetMeta m;
  m.key = key;
  if (key.find_first_not_of('/') == std::string::npos) fail(path, key, "is not a dataset path");
  const std::string missing = h5::missing_prefix(file, key);
  if (!missing.empty())
    fail(path, key, "not found (no '" + missing + "' in the file); set data.inputs_key/targets_key/tokens_key");
  const std::string sofar = key.front() == '/' ? key : "/" + key;
  H5O_info_t info;
  if (H5Oget_info_by_name(file, sofar.c_str(), &info, H5P_DEFAULT) < 0 || info.type != H5O_TYPE_DATASET)
    fail(path, key, "is not a dataset (a group or a named type?)");
  h5::Handle ds(HPCT_H5_CHECK(H5Dopen2(file, sofar.c_str(), H5P_DEFAULT), "data file '" << path << "': opening " << key),
                H5Dclose);
  h5::Handle type(H5Dget_type(ds.get()), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    const char* names[] = {"integer", "float", "time", "string", "bitfield", "opaque", "compound",
                           "reference", "enum", "variable-length", "array"};
    const std::string name = cls >= 0 && cls < 11 ? names[cls] : "unknown";
    fail(path, key, "has dtype class " + name + "; expected an integer or floating-point dtype");
  }
  m.is_float = cls == H5T_FLOAT;
  m.elem_size = static_cast<int>(H5Tget_size(type.get()));
  m.is_signed = m.is_float || H5Tget_sign(type.get()) == H5T_SGN_2;
  const bool little = H5Tget_order(type.get()) == H5T_ORDER_LE;

  h5::Handle space(H5Dget_space(ds.get()), H5Sclose);
  const int ndims = H5Sget_simple_extent_ndims(space.get());
  if (ndims < 1) fail(path, key, "is a scalar; expected samples along the first axis");
  std::vector<hsize_t> dims(static_cast<std::size_t>(ndims));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  for (auto d : dims) m.shape.push_back(static_cast<std::int64_t>(d));

  h5::Handle dcpl(H5Dget_create_plist(ds.get()), H5Pclose);
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  const int nfilters = H5Pget_nfilters(dcpl.get());
  const int nexternal = H5Pget_external_count(dcpl.get());
  m.layout = layout == H5D_CONTIGUOUS ? "contiguous" : layout == H5D_CHUNKED ? "chunked" : "compact";
  if (nfilters > 0) m.layout += " +" + std::to_string(nfilters) + " filters";
  const haddr_t offset = H5Dget_offset(ds.get());
  h5::take_error_stack();  // H5Dget_offset "fails" for chunked data: not an error for us
  const bool standard = m.dtype().has_value();
  std::int64_t elems = 1;
  for (auto d : m.shape) elems *= d;
  if (layout == H5D_CONTIGUOUS && nfilters == 0 && nexternal == 0 && offset != HADDR_UNDEF && little && standard) {
    m.raw_offset = static_cast<std::int64_t>(offset);
    if (m.raw_offset + elems * m.elem_size > file_size)
      fail(path, key, "its data ends at byte " + std::to_string(m.raw_offset + elems * m.elem_size) +
                          " but the file has " + std::to_string(file_size) + " bytes: truncated file?");
  }
  return m;
}

}  // namespace

std::string DatasetMeta::dtype_name() const {
  if (const auto t = dtype()) return hpctrain::dtype_name(*t);
  std::string base = is_float ? "float" : (is_signed ? "int" : "uint");
  return base + std::to_string(elem_size * 8);
}

std::int64_t DatasetMeta::row_elems() const {
  std::int64_t n = 1;
  for (std::size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}

std::vector<std::string> resolve_files(const std::string& spec, const std::string& what) {
  std::vector<std::string> files;
  std::stringstream items(spec);
  for (std::string item; std::getline(items, item, ',');) {
    item = trim(item);
    if (item.empty()) continue;
    std::vector<std::string> found;
    if (item.find_first_of("*?[") != std::string::npos) {
      glob_t g;
      int rc = glob(item.c_str(), 0, nullptr, &g);
      if (rc == 0)
        for (std::size_t i = 0; i < g.gl_pathc; ++i) found.push_back(g.gl_pathv[i]);
      globfree(&g);
      if (found.empty()) throw DataError(what + " = " + spec + ": no file matches '" + item + "'");
    } else {
      std::error_code ec;
      if (fs::is_directory(item, ec)) {
        for (const auto& e : fs::directory_iterator(item, ec))
          if (e.is_regular_file() && is_hdf5_name(e.path())) found.push_back(e.path().string());
        if (found.empty())
          throw DataError(what + " = " + spec + ": directory '" + item + "' holds no .h5/.hdf5 files");
      } else if (fs::exists(item, ec)) {
        found.push_back(item);
      } else {
        throw DataError(what + " = " + spec + ": '" + item + "' does not exist");
      }
    }
    std::sort(found.begin(), found.end(), natural_less);
    files.insert(files.end(), found.begin(), found.end());
  }
  if (files.empty()) throw DataError(what + " is empty: expected a glob, a directory or a list of HDF5 files");
  std::set<std::string> seen;
  for (const auto& f : files) {
    std::error_code ec;
    const std::string canon = fs::weakly_canonical(f, ec).string();
    if (!seen.insert(canon).second) throw DataError(what + " = " + spec + ": file '" + f + "' is listed twice");
  }
  return files;
}

ShardSet ShardSet::scan(const std::vector<std::string>& files, const DataArguments& args, const std::string& what,
                        bool targets_optional) {
  ShardSet set;
  set.what_ = what;
  set.tokens_ = args.format == DataFormat::kTokens;
  set.seq_len_ = args.seq_len;
  h5::Lock lock;
  h5::quiet_errors();
  for (const auto& path : files) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) fail(path, "", "cannot be read (" + std::string(std::strerror(errno)) + ")");
    if (!S_ISREG(st.st_mode)) fail(path, "", "is not a regular file");
    const htri_t is_h5 = H5Fis_hdf5(path.c_str());
    h5::take_error_stack();
    if (is_h5 <= 0) fail(path, "", "is not an HDF5 file (no HDF5 signature)");
    hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fid < 0) fail(path, "", "cannot be opened by HDF5: " + h5::take_error_stack());
    h5::Handle file(fid, H5Fclose);

    Shard s;
    s.file = path;
    s.file_bytes = static_cast<std::int64_t>(st.st_size);
    if (set.tokens_) {
      s.tokens = inspect(fid, path, args.tokens_key, st.st_size);
      if (s.tokens.shape.size() != 1)
        fail(path, args.tokens_key, "has shape " + shape_str(s.tokens.shape) + "; expected a 1-D token stream");
      if (s.tokens.is_float) fail(path, args.tokens_key, "has dtype " + s.tokens.dtype_name() + "; token ids must be integers");
      const std::int64_t n = s.tokens.shape[0];
      if (n < args.seq_len + 1)
        fail(path, args.tokens_key, "has " + std::to_string(n) + " tokens; one window needs seq_len + 1 = " +
                                        std::to_string(args.seq_len + 1));
      s.num_samples = (n - 1) / args.seq_len;
    } else {
      s.inputs = inspect(fid, path, args.inputs_key, st.st_size);
      const bool absent = targets_optional && !h5::missing_prefix(fid, args.targets_key).empty();
      if (set.shards_.empty()) set.has_targets_ = !absent;
      if (absent != !set.has_targets_)
        fail(path, args.targets_key, absent ? "is missing, but '" + set.shards_.front().file + "' has it"
                                            : "is present, but '" + set.shards_.front().file + "' has none");
      s.targets = absent ? s.inputs : inspect(fid, path, args.targets_key, st.st_size);
      if (absent) s.targets.key.clear();
      if (s.inputs.shape[0] != s.targets.shape[0])
        fail(path, "", "'" + args.inputs_key + "' has " + std::to_string(s.inputs.shape[0]) + " samples but '" +
                           args.targets_key + "' has " + std::to_string(s.targets.shape[0]) +
                           "; expected the same length along the first axis");
      s.num_samples = s.inputs.shape[0];
      if (!absent && !s.targets.is_float && s.targets.shape.size() == 1 && s.num_samples > 0) {
        // Class labels are small next to the inputs: read them once for the class count.
        std::vector<std::int64_t> t(static_cast<std::size_t>(s.num_samples));
        h5::Handle ds(H5Dopen2(fid, args.targets_key.c_str(), H5P_DEFAULT), H5Dclose);
        HPCT_H5_CHECK(H5Dread(ds.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data()),
                      "data file '" << path << "': reading " << args.targets_key);
        auto [lo, hi] = std::minmax_element(t.begin(), t.end());
        if (*lo < 0)
          fail(path, args.targets_key, "sample " + std::to_string(lo - t.begin()) + " holds the negative label " +
                                           std::to_string(*lo) + "; class labels start at 0");
        set.target_min_ = set.shards_.empty() ? *lo : std::min(set.target_min_, *lo);
        if (set.shards_.empty() || *hi > set.target_max_) {
          set.target_max_ = *hi;
          set.target_max_sample_ = set.size_ + (hi - t.begin());
        }
      }
    }
    if (s.num_samples == 0) fail(path, set.tokens_ ? args.tokens_key : args.inputs_key, "has no samples");

    // Every shard must look like the first.
    if (!set.shards_.empty()) {
      const Shard& f = set.shards_.front();
      auto same = [&](const DatasetMeta& a, const DatasetMeta& b) {
        if (trailing(a.shape) != trailing(b.shape))
          fail(path, b.key, "has per-sample shape " + shape_str(trailing(b.shape)) + " but '" + f.file + "' has " +
                                shape_str(trailing(a.shape)) + "; every shard must match");
        if (a.is_float != b.is_float)
          fail(path, b.key, "has dtype " + b.dtype_name() + " but '" + f.file + "' has " + a.dtype_name() +
                                "; every shard must have the same dtype class (integer or float)");
      };
      if (set.tokens_) {
        same(f.tokens, s.tokens);
      } else {
        same(f.inputs, s.inputs);
        if (set.has_targets_) same(f.targets, s.targets);
      }
    }
    s.first_sample = set.size_;
    set.size_ += s.num_samples;
    set.shards_.push_back(std::move(s));
  }
  if (set.shards_.empty()) throw DataError(what + ": no files");
  return set;
}

ShardSet ShardSet::open(const dist::Environment& env, const std::string& spec, const DataArguments& args,
                        const std::string& what, bool targets_optional) {
  std::string payload;
  if (env.rank() == 0) {
    try {
      payload = "ok" + scan(resolve_files(spec, what), args, what, targets_optional).serialize();
    } catch (const Error& e) {
      payload = "er" + std::string(e.what());
    }
  }
  payload = env.broadcast_string(payload, 0);
  if (payload.compare(0, 2, "er") == 0) throw CollectiveError(payload.substr(2), exit_code::kConfig);
  return deserialize(payload.substr(2));
}

namespace {
void put_meta(ByteWriter& w, const DatasetMeta& m) {
  w.put(m.key);
  w.put<std::uint8_t>(m.is_float);
  w.put<std::uint8_t>(m.is_signed);
  w.put<std::int32_t>(m.elem_size);
  w.put(m.shape);
  w.put<std::int64_t>(m.raw_offset);
  w.put(m.layout);
}
DatasetMeta get_meta(ByteReader& r) {
  DatasetMeta m;
  m.key = r.get_string();
  m.is_float = r.get<std::uint8_t>();
  m.is_signed = r.get<std::uint8_t>();
  m.elem_size = r.get<std::int32_t>();
  m.shape = r.get_vector<std::int64_t>();
  m.raw_offset = r.get<std::int64_t>();
  m.layout = r.get_string();
  return m;
}
}  // namespace

std::string ShardSet::serialize() const {
  ByteWriter w;
  w.put(what_);
  w.put<std::uint8_t>(tokens_);
  w.put<std::uint8_t>(has_targets_);
  w.put<std::int64_t>(seq_len_);
  w.put<std::int64_t>(size_);
  w.put<std::int64_t>(target_min_);
  w.put<std::int64_t>(target_max_);
  w.put<std::int64_t>(target_max_sample_);
  w.put<std::uint64_t>(shards_.size());
  for (const auto& s : shards_) {
    w.put(s.file);
    w.put<std::int64_t>(s.file_bytes);
    w.put<std::int64_t>(s.num_samples);
    w.put<std::int64_t>(s.first_sample);
    put_meta(w, s.inputs);
    put_meta(w, s.targets);
    put_meta(w, s.tokens);
  }
  return w.bytes();
}

ShardSet ShardSet::deserialize(const std::string& bytes) {
  ByteReader r(bytes);
  ShardSet set;
  set.what_ = r.get_string();
  set.tokens_ = r.get<std::uint8_t>();
  set.has_targets_ = r.get<std::uint8_t>();
  set.seq_len_ = r.get<std::int64_t>();
  set.size_ = r.get<std::int64_t>();
  set.target_min_ = r.get<std::int64_t>();
  set.target_max_ = r.get<std::int64_t>();
  set.target_max_sample_ = r.get<std::int64_t>();
  const auto n = r.get<std::uint64_t>();
  for (std::uint64_t i = 0; i < n; ++i) {
    Shard s;
    s.file = r.get_string();
    s.file_bytes = r.get<std::int64_t>();
    s.num_samples = r.get<std::int64_t>();
    s.first_sample = r.get<std::int64_t>();
    s.inputs = get_meta(r);
    s.targets = get_meta(r);
    s.tokens = get_meta(r);
    set.shards_.push_back(std::move(s));
  }
  HPCT_CHECK(r.done(), "ShardSet::deserialize: trailing bytes");
  return set;
}

std::vector<std::int64_t> ShardSet::input_shape() const {
  if (tokens_) return {seq_len_};
  return trailing(shards_.front().inputs.shape);
}

std::vector<std::int64_t> ShardSet::target_shape() const {
  if (tokens_) return {seq_len_};
  if (!has_targets_) return {};
  return trailing(shards_.front().targets.shape);
}

bool ShardSet::integer_targets() const { return tokens_ || (has_targets_ && !shards_.front().targets.is_float); }

std::size_t ShardSet::locate(std::int64_t index, std::int64_t* local) const {
  HPCT_CHECK(index >= 0 && index < size_, what_ << ": sample " << index << " outside [0, " << size_ << ")");
  auto it = std::upper_bound(shards_.begin(), shards_.end(), index,
                             [](std::int64_t i, const Shard& s) { return i < s.first_sample; });
  const std::size_t k = static_cast<std::size_t>(it - shards_.begin()) - 1;
  *local = index - shards_[k].first_sample;
  return k;
}

std::string ShardSet::target_max_where() const {
  if (target_max_sample_ < 0 || target_max_sample_ >= size_) return what_;
  std::int64_t local = 0;
  const std::size_t k = locate(target_max_sample_, &local);
  return "data file '" + shards_[k].file + "': '" + shards_[k].targets.key + "' sample " + std::to_string(local);
}

std::int64_t ShardSet::classes(std::int64_t num_classes) const {
  if (num_classes > 0) {
    if (target_max_ >= num_classes)
      throw DataError(what_ + ": " + target_max_where() + " holds the label " + std::to_string(target_max_) +
                      ", but model.num_classes=" + std::to_string(num_classes) + " (labels 0.." +
                      std::to_string(num_classes - 1) + ")");
    return num_classes;
  }
  if (target_max_ >= kMaxInferredClasses)
    throw DataError(what_ + ": the largest label is " + std::to_string(target_max_) + " (" + target_max_where() +
                    "); the class count is inferred from the largest label up to " + std::to_string(kMaxInferredClasses) +
                    " classes, as beyond that a damaged label is likelier than a real task. Set [model] num_classes if "
                    "the data really has that many classes");
  return target_max_ + 1;
}

}  // namespace hpctrain::data
