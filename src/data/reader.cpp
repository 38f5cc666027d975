// Reader: coalesced reads of arbitrary sample lists from HDF5 shards, with dtype conversion.
#include "hpctrain/data/reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <csetjmp>
#include <csignal>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <type_traits>

#include "hpctrain/core/error.h"
#include "hpctrain/core/h5.h"

namespace hpctrain::data {

namespace {
constexpr std::size_t kMaxOpenFiles = 64;
constexpr const char* kChangedAdvice =
    ". A run must not see its data change under it: restore the file, or restart the job (it resumes from its "
    "checkpoint; set resume_allow_data_change=true when the change is deliberate)";

template <class S, class T>
void convert(const char* src, T* dst, std::int64_t n) {
  if constexpr (std::is_same_v<S, T>) {
    std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(T));
  } else {
    const S* s = reinterpret_cast<const S*>(src);
    for (std::int64_t i = 0; i < n; ++i) dst[i] = static_cast<T>(s[i]);
  }
}

// Converts n elements of the file's dtype (little-endian, standard sizes) to T.
template <class T>
void convert_raw(const DatasetMeta& m, const char* src, T* dst, std::int64_t n) {
  if (m.is_float) {
    if (m.elem_size == 4) return convert<float>(src, dst, n);
    return convert<double>(src, dst, n);
  }
  switch (m.elem_size * (m.is_signed ? -1 : 1)) {
    case -1: return convert<std::int8_t>(src, dst, n);
    case -2: return convert<std::int16_t>(src, dst, n);
    case -4: return convert<std::int32_t>(src, dst, n);
    case -8: return convert<std::int64_t>(src, dst, n);
    case 1: return convert<std::uint8_t>(src, dst, n);
    case 2: return convert<std::uint16_t>(src, dst, n);
    case 4: return convert<std::uint32_t>(src, dst, n);
    case 8: return convert<std::uint64_t>(src, dst, n);
  }
  throw Error("unsupported raw dtype " + m.dtype_name());
}

template <class T>
hid_t native_type();
template <>
hid_t native_type<float>() { return H5T_NATIVE_FLOAT; }
template <>
hid_t native_type<std::int64_t>() { return H5T_NATIVE_INT64; }

// A read from a memory map of a file that shrank under it raises SIGBUS. The reading thread
// arms a jump target around its copies from the map; the handler jumps back there, and the read
// fails with an error naming the file instead of ending the process. Unarmed, SIGBUS goes to
// whatever handled it before (MPI's backtrace handler, or the default action).
thread_local sigjmp_buf* t_bus_guard = nullptr;
struct sigaction g_previous_bus {};

extern "C" void on_sigbus(int sig, siginfo_t* info, void* context) {
  if (sigjmp_buf* target = t_bus_guard) siglongjmp(*target, 1);
  // Not ours: the previous handler, or the previous action back (returning re-runs the access,
  // which then takes it).
  if ((g_previous_bus.sa_flags & SA_SIGINFO) && g_previous_bus.sa_sigaction) {
    g_previous_bus.sa_sigaction(sig, info, context);
  } else if (g_previous_bus.sa_handler != SIG_DFL && g_previous_bus.sa_handler != SIG_IGN && g_previous_bus.sa_handler) {
    g_previous_bus.sa_handler(sig);
  } else {
    sigaction(sig, &g_previous_bus, nullptr);
  }
}

void install_sigbus_guard() {
  static const bool installed = [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;  // a later fault on this thread must reach the handler again
    sigaction(SIGBUS, &sa, &g_previous_bus);
    return true;
  }();
  (void)installed;
}

}  // namespace

// A shuffled batch touches a new page for nearly every sample, and with 4 KiB pages each costs a
// TLB miss and a page walk (in a virtual machine, a nested one): measured here, a 128-row gather
// of 3136-byte rows on the trainer's core took 0.7-1.3 ms from a mapping of 4 KiB pages and 0.35
// ms from one whose page cache held 2 MiB folios. The kernel maps a 2 MiB folio with one entry only
// where the address is aligned like the file offset; MADV_HUGEPAGE makes a read through the mapping
// bring pages in as 2 MiB folios where the file system supports large folios (XFS, tmpfs, ext4 from
// Linux 6.16, ...). Pages already cached in small folios, and older kernels, get 4 KiB mappings.
void* map_file_huge_aligned(int fd, std::size_t len) {
  constexpr std::size_t kHuge = std::size_t{2} << 20;
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t span = (len + page - 1) / page * page;
  // Reserve address space with room to align, map the file over the aligned part, give back the rest.
  void* area = mmap(nullptr, span + kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (area == MAP_FAILED) return mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
  char* base = static_cast<char*>(area);
  char* aligned = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(base) + kHuge - 1) & ~(kHuge - 1));
  void* p = mmap(aligned, len, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    munmap(area, span + kHuge);
    errno = err;
    return MAP_FAILED;
  }
  if (aligned > base) munmap(base, static_cast<std::size_t>(aligned - base));
  char* tail = aligned + span;
  if (tail < base + span + kHuge) munmap(tail, static_cast<std::size_t>(base + span + kHuge - tail));
  madvise(p, len, MADV_HUGEPAGE);  // advice: EINVAL on kernels without THP changes nothing
  return p;
}

struct Reader::OpenFile {
  // The whole file mapped read-only: contiguous datasets are read straight from the page cache
  // into the batch, converting on the way (one copy, no system call per sample).
  const char* map = nullptr;
  std::size_t map_len = 0;
  int fd = -1;           // held open to see (fstat) whether the file changes under the job
  struct stat opened {};  // what this rank saw when it first opened it
  h5::Handle file;
  std::map<std::string, h5::Handle> datasets;
  ~OpenFile() {
    if (map) munmap(const_cast<char*>(map), map_len);
    if (fd >= 0) ::close(fd);
    datasets.clear();
    file.reset();
  }
};

Reader::Reader(std::shared_ptr<const ShardSet> set, const DataArguments& args) : set_(std::move(set)), args_(args) {
  install_sigbus_guard();
}

Reader::~Reader() {
  h5::Lock lock;  // handles close under the lock
  open_.clear();
}

Reader::OpenFile& Reader::file(std::size_t shard) {
  auto it = open_.find(shard);
  if (it != open_.end()) return *it->second;
  const Shard& s = set_->shards()[shard];
  auto f = std::make_unique<OpenFile>();
  f->fd = ::open(s.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) throw DataError("data file '" + s.file + "': cannot open: " + std::strerror(errno));
  if (fstat(f->fd, &f->opened) != 0) throw DataError("data file '" + s.file + "': cannot stat: " + std::strerror(errno));
  if (f->opened.st_size != s.file_bytes)
    throw DataError("data file '" + s.file + "' changed since the job opened its data: " + std::to_string(s.file_bytes) +
                    " bytes then, " + std::to_string(f->opened.st_size) + " now" + kChangedAdvice);
  return *open_.emplace(shard, std::move(f)).first->second;
}

void Reader::check_unchanged(std::size_t shard) {
  OpenFile& f = file(shard);
  struct stat now {};
  const std::string& path = set_->shards()[shard].file;
  if (fstat(f.fd, &now) != 0) throw DataError("data file '" + path + "': cannot stat: " + std::strerror(errno));
  std::string what;
  if (now.st_nlink == 0) what = "it was deleted (or replaced by another file under its name)";
  else if (now.st_size != f.opened.st_size)
    what = "it was " + std::string(now.st_size < f.opened.st_size ? "truncated" : "extended") + " from " +
           std::to_string(f.opened.st_size) + " to " + std::to_string(now.st_size) + " bytes";
  else if (now.st_mtim.tv_sec != f.opened.st_mtim.tv_sec || now.st_mtim.tv_nsec != f.opened.st_mtim.tv_nsec)
    what = "it was modified (its modification time changed)";
  if (!what.empty()) throw DataError("data file '" + path + "' changed while the job reads it: " + what + kChangedAdvice);
}

const char* Reader::mapped(std::size_t shard, const DatasetMeta& meta) {
  if (meta.raw_offset < 0) return nullptr;
  OpenFile& f = file(shard);
  if (!f.map) {
    const std::string& path = set_->shards()[shard].file;
    const std::size_t len = static_cast<std::size_t>(f.opened.st_size);
    void* p = len > 0 ? map_file_huge_aligned(f.fd, len) : MAP_FAILED;
    if (p == MAP_FAILED) throw DataError("data file '" + path + "': cannot map: " + std::strerror(errno));
    f.map = static_cast<const char*>(p);
    f.map_len = len;
  }
  const std::int64_t end = meta.raw_offset + meta.shape[0] * meta.row_elems() * meta.elem_size;
  if (end > static_cast<std::int64_t>(f.map_len))
    throw DataError("data file '" + set_->shards()[shard].file + "', dataset '" + meta.key +
                    "': the file is shorter than its data (" + std::to_string(f.map_len) + " < " + std::to_string(end) +
                    " bytes): truncated since it was opened?");
  return f.map + meta.raw_offset;
}

template <class T>
void Reader::read_rows(std::size_t shard, const DatasetMeta& meta, std::int64_t start, std::int64_t count, T* dst) {
  const std::string& path = set_->shards()[shard].file;
  const std::int64_t row = meta.row_elems();
  const std::int64_t n = count * row;
  if (const char* base = mapped(shard, meta)) {
    convert_raw(meta, base + start * row * meta.elem_size, dst, n);
    return;
  }
  OpenFile& f = file(shard);
  // Through HDF5 (chunked, compressed, big-endian, odd types): it converts to our type.
  h5::Lock lock;
  if (!f.file) {
    f.file = h5::Handle(HPCT_H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "data file '" << path << "'"),
                        H5Fclose);
  }
  auto ds = f.datasets.find(meta.key);
  if (ds == f.datasets.end()) {
    // A chunk cache large enough that shuffled reads re-use decompressed chunks.
    h5::Handle dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
    H5Pset_chunk_cache(dapl.get(), 10007, 64u << 20, 1.0);
    hid_t id = HPCT_H5_CHECK(H5Dopen2(f.file.get(), meta.key.c_str(), dapl.get()),
                             "data file '" << path << "': opening dataset " << meta.key);
    ds = f.datasets.emplace(meta.key, h5::Handle(id, H5Dclose)).first;
  }
  const int rank = static_cast<int>(meta.shape.size());
  std::vector<hsize_t> off(rank, 0), cnt(rank);
  off[0] = static_cast<hsize_t>(start);
  cnt[0] = static_cast<hsize_t>(count);
  for (int d = 1; d < rank; ++d) cnt[d] = static_cast<hsize_t>(meta.shape[d]);
  h5::Handle fspace(H5Dget_space(ds->second.get()), H5Sclose);
  HPCT_H5_CHECK(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, off.data(), nullptr, cnt.data(), nullptr),
                "data file '" << path << "', dataset " << meta.key << ": selecting rows " << start << "+" << count);
  h5::Handle mspace(H5Screate_simple(rank, cnt.data(), nullptr), H5Sclose);
  HPCT_H5_CHECK(H5Dread(ds->second.get(), native_type<T>(), mspace.get(), fspace.get(), H5P_DEFAULT, dst),
                "data file '" << path << "', dataset " << meta.key << ": reading rows " << start << "+" << count);
}

namespace {
// A finite x gives x - x = +0 and NaN or Inf gives NaN, so the bits of those differences OR-ed
// together are zero only when every value was finite (a -0 from another rounding mode would only
// send the caller to its exact scan, which names the element). No branch per element and no early
// exit: std::isfinite in a loop that stopped at the first hit took the loader's rate down by a
// fifth.
inline std::uint32_t nonfinite_bits(float x) {
  const float d = x - x;
  std::uint32_t b;
  std::memcpy(&b, &d, sizeof b);
  return b;
}

// True when none of v[0..n) is NaN or Inf. Blocks of a fixed length let the compiler vectorise the
// loop at -O2.
bool all_finite(const float* v, std::int64_t n) {
  constexpr std::int64_t kBlock = 64;
  std::uint32_t bad = 0;
  std::int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock)
    for (std::int64_t j = 0; j < kBlock; ++j) bad |= nonfinite_bits(v[i + j]);
  for (; i < n; ++i) bad |= nonfinite_bits(v[i]);
  return bad == 0;
}

// Copies n float32 values from src (a mapped file's bytes, any alignment) to dst and says whether
// all were finite: the check rides on the copy instead of a second pass over the row. Measured
// here on shuffled 3136-byte rows from a huge-page map: memcpy alone 6.9-7.6 GB/s, memcpy and then
// all_finite() 5.5-5.8, this with AVX2 7.4-7.7, the compiler's vectorisation of the portable loop
// below 6.4-6.9.
bool copy_finite_portable(const char* __restrict src, float* __restrict dst, std::int64_t n) {
  constexpr std::int64_t kBlock = 64;
  std::uint32_t bad = 0;
  auto one = [&](std::int64_t i) {
    float x;
    std::memcpy(&x, src + 4 * i, sizeof x);
    dst[i] = x;
    bad |= nonfinite_bits(x);
  };
  std::int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock)
    for (std::int64_t j = 0; j < kBlock; ++j) one(i + j);
  for (; i < n; ++i) one(i);
  return bad == 0;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) bool copy_finite_avx2(const char* src, float* dst, std::int64_t n) {
  const float* s = reinterpret_cast<const float*>(src);
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 x = _mm256_loadu_ps(s + i), y = _mm256_loadu_ps(s + i + 8);
    _mm256_storeu_ps(dst + i, x);
    _mm256_storeu_ps(dst + i + 8, y);
    a0 = _mm256_or_ps(a0, _mm256_sub_ps(x, x));
    a1 = _mm256_or_ps(a1, _mm256_sub_ps(y, y));
  }
  const __m256i acc = _mm256_castps_si256(_mm256_or_ps(a0, a1));
  bool finite = _mm256_testz_si256(acc, acc) != 0;
  return copy_finite_portable(src + 4 * i, dst + i, n - i) && finite;
}
#endif

using CopyFinite = bool (*)(const char*, float*, std::int64_t);
CopyFinite pick_copy_finite() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) return copy_finite_avx2;
#endif
  return copy_finite_portable;
}
const CopyFinite copy_finite = pick_copy_finite();
}  // namespace

void Reader::check_finite(const float* values, std::int64_t rows, std::int64_t row_elems, std::size_t shard,
                          const DatasetMeta& meta, std::int64_t first_local) {
  if (all_finite(values, rows * row_elems)) return;
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* v = values + r * row_elems;
    for (std::int64_t j = 0; j < row_elems; ++j) {
      if (!std::isfinite(v[j])) {
        const auto& s = set_->shards()[shard];
        throw DataError("data file '" + s.file + "', dataset '" + meta.key + "': sample " +
                        std::to_string(first_local + r) + " (global sample " +
                        std::to_string(s.first_sample + first_local + r) + ") holds " +
                        (std::isnan(v[j]) ? "NaN" : "Inf") + " at element " + std::to_string(j) +
                        "; clean the data, or set data.check_finite=false to train on it anyway");
      }
    }
  }
}

template <class T>
void Reader::gather(std::size_t shard, const DatasetMeta& meta, std::int64_t local, std::int64_t count,
                    const std::int64_t* positions, std::size_t n, const std::vector<std::int64_t>& indices,
                    std::int64_t first, T* out, std::vector<T>& staging, const char* base, std::int64_t row,
                    bool check) {
  check = check && meta.is_float;  // integers converted to float are always finite
  if (base) {
    const std::int64_t row_bytes = row * meta.elem_size;
    for (std::size_t j = 0; j < n; ++j) {
      const std::int64_t pos = positions[j], r = indices[pos] - first;
      const char* src = base + (local + r) * row_bytes;
      T* dst = out + pos * row;
      if constexpr (std::is_same_v<T, float>) {
        if (check && meta.elem_size == 4) {
          if (!copy_finite(src, dst, row)) check_finite(dst, 1, row, shard, meta, local + r);
          continue;
        }
      }
      convert_raw(meta, src, dst, row);
      if constexpr (std::is_same_v<T, float>)
        if (check) check_finite(dst, 1, row, shard, meta, local + r);
    }
    return;
  }
  staging.resize(static_cast<std::size_t>(count * row));
  read_rows(shard, meta, local, count, staging.data());
  for (std::size_t j = 0; j < n; ++j) {
    const std::int64_t pos = positions[j], r = indices[pos] - first;
    std::copy_n(staging.data() + r * row, row, out + pos * row);
    if constexpr (std::is_same_v<T, float>)
      if (check) check_finite(out + pos * row, 1, row, shard, meta, local + r);
  }
}

void Reader::read(const std::vector<std::int64_t>& indices, Batch* out) {
  const ShardSet& set = *set_;
  const std::int64_t n = static_cast<std::int64_t>(indices.size());
  out->indices = indices;
  out->input_shape = set.input_shape();
  out->target_shape = set.target_shape();
  std::int64_t in_row = 1, tgt_row = 1;
  for (auto d : out->input_shape) in_row *= d;
  for (auto d : out->target_shape) tgt_row *= d;
  const bool int_targets = set.integer_targets();
  // Every element is overwritten below: keep the buffers (no clear) so that a batch of the same
  // size is not zero-filled again.
  auto size_to = [](auto& v, std::int64_t want, bool used) { v.resize(used ? static_cast<std::size_t>(want) : 0); };
  size_to(out->input_ids, n * in_row, set.integer_inputs());
  size_to(out->inputs, n * in_row, !set.integer_inputs());
  size_to(out->class_targets, n * tgt_row, int_targets && set.has_targets());
  size_to(out->float_targets, n * tgt_row, !int_targets && set.has_targets());
  if (n == 0) return;
  // Files stay open (and mapped) between batches, up to kMaxOpenFiles; they are closed only here,
  // between batches, since a batch holds addresses in the maps of the files it reads.
  if (open_.size() > kMaxOpenFiles) {
    h5::Lock lock;
    open_.clear();
  }

  // Batch positions in file order; runs of consecutive samples of one shard are read at once.
  // Sorted as (index, position) pairs, and each sample's shard and row found once, walking the
  // shards alongside (the order is monotonic).
  // A batch of up to 2^24 samples with indices below 2^39 (every training and evaluation batch the
  // options allow) sorts as single 64-bit keys, index above position: one comparison per step of
  // the sort instead of two. Larger reads (a whole data set at once) sort the pairs.
  sorted_.resize(static_cast<std::size_t>(n));
  constexpr int kPosBits = 24;
  bool packed = n <= (std::int64_t{1} << kPosBits);
  for (std::int64_t i = 0; packed && i < n; ++i) {
    const std::int64_t idx = indices[static_cast<std::size_t>(i)];
    packed = idx >= 0 && idx < (std::int64_t{1} << (63 - kPosBits));
  }
  if (packed) {
    keys_.resize(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i)
      keys_[static_cast<std::size_t>(i)] =
          static_cast<std::uint64_t>(indices[static_cast<std::size_t>(i)]) << kPosBits | static_cast<std::uint64_t>(i);
    std::sort(keys_.begin(), keys_.end());
    for (std::size_t q = 0; q < keys_.size(); ++q)
      sorted_[q] = {static_cast<std::int64_t>(keys_[q] >> kPosBits),
                    static_cast<std::int64_t>(keys_[q] & ((std::uint64_t{1} << kPosBits) - 1))};
  } else {
    for (std::int64_t i = 0; i < n; ++i) sorted_[static_cast<std::size_t>(i)] = {indices[static_cast<std::size_t>(i)], i};
    std::sort(sorted_.begin(), sorted_.end());
  }
  order_.resize(sorted_.size());
  where_.resize(sorted_.size());
  for (std::size_t q = 0; q < sorted_.size(); ++q) {
    order_[q] = sorted_[q].second;
    std::int64_t local = 0;
    const std::size_t shard =
        q > 0 && sorted_[q].first < set.shards()[where_[q - 1].first].first_sample + set.shards()[where_[q - 1].first].num_samples
            ? where_[q - 1].first
            : set.locate(sorted_[q].first, &local);
    where_[q] = {shard, sorted_[q].first - set.shards()[shard].first_sample};
  }
  const std::vector<std::int64_t>& order = order_;

  std::vector<float> fin, ftg;
  std::vector<std::int64_t> itg;
  // Copies from a memory map fault with SIGBUS when the file shrank under the job: the handler
  // jumps back here (the loop below holds no object that needs a destructor) and the read fails
  // naming the file. Disarmed on every way out. The jump restores the signal mask (one
  // sigprocmask per batch): whoever installed the handler we run under may block more than
  // SIGBUS while it runs (ThreadSanitizer's wrapper blocks every signal), and a mask left so
  // would turn the next fault into the process's death.
  volatile std::size_t reading = set.shards().size();
  sigjmp_buf guard;
  struct Disarm {
    ~Disarm() { t_bus_guard = nullptr; }
  } disarm;
  if (sigsetjmp(guard, 1) != 0) {
    t_bus_guard = nullptr;
    const std::size_t shard = reading;
    throw DataError("data file '" + (shard < set.shards().size() ? set.shards()[shard].file : std::string("?")) +
                    "': the file shrank under the job while it was being read (SIGBUS on its memory map)" +
                    kChangedAdvice);
  }
  t_bus_guard = &guard;

  // In file order a batch visits each shard in one stretch: a cursor resolves a shard's mapped
  // datasets once per stretch, so that the loops below do little per sample but copy.
  const bool targets = set.has_targets() && !set.tokens();
  struct Cursor {
    std::size_t shard = static_cast<std::size_t>(-1);
    const char* in = nullptr;  // the dataset's bytes in the mapped file; nullptr: through HDF5
    const char* tg = nullptr;
    std::int64_t in_bytes = 0, tg_bytes = 0;  // bytes a row in the file
  };
  auto resolve = [&](Cursor& c, std::size_t shard) {
    if (c.shard == shard) return;
    c.shard = shard;
    const Shard& sh = set.shards()[shard];
    c.in = set.tokens() ? nullptr : mapped(shard, sh.inputs);
    c.tg = targets ? mapped(shard, sh.targets) : nullptr;
    c.in_bytes = in_row * sh.inputs.elem_size;
    c.tg_bytes = targets ? tgt_row * sh.targets.elem_size : 0;
  };
  // A shuffled batch is a new short stream per sample, which the hardware prefetcher picks up only
  // after a few lines: the rows kAhead samples on (up to 4 KiB of each, beyond which the hardware
  // has caught on) are requested in software before a sample is copied, across runs and shards.
  // Measured here with 3136-byte rows on 2 MiB pages: a plain gather 6.8-7.3 GB/s, with this 9-10.
  // Prefetches never fault, so a file that shrank costs nothing here.
  constexpr std::size_t kAhead = 4;
  std::size_t prefetched = 0;
  Cursor ahead, cur;
  auto prefetch_until = [&](std::size_t stop) {
    for (stop = std::min(stop, order.size()); prefetched < stop; ++prefetched) {
      const auto [shard, local] = where_[prefetched];
      resolve(ahead, shard);
      if (ahead.in)
        for (std::int64_t o = 0, e = std::min<std::int64_t>(ahead.in_bytes, 4096); o < e; o += 64)
          __builtin_prefetch(ahead.in + local * ahead.in_bytes + o);
      if (ahead.tg) __builtin_prefetch(ahead.tg + local * ahead.tg_bytes);
    }
  };
  std::int64_t batch_bytes = 0;
  std::size_t k = 0;
  while (k < order.size()) {
    const auto [shard, local] = where_[k];
    reading = shard;
    const Shard& s = set.shards()[shard];
    if (cur.shard != shard) {
      // Every shard this batch touches is the file the job opened (one fstat per shard and batch).
      check_unchanged(shard);
      resolve(cur, shard);
    }
    // Extend the run while the next distinct index is the next sample of the same shard.
    std::size_t end = k + 1;
    std::int64_t last = indices[order[k]];
    while (end < order.size()) {
      const std::int64_t idx = indices[order[end]];
      if (idx != last && (idx != last + 1 || idx >= s.first_sample + s.num_samples)) break;
      last = idx;
      ++end;
    }
    const std::int64_t first = indices[order[k]];
    const std::int64_t count = last - first + 1;
    if (!set.tokens()) {
      prefetch_until(end + kAhead);
      batch_bytes += count * (cur.in_bytes + cur.tg_bytes);
    }

    if (set.tokens()) {
      const std::int64_t L = set.seq_len();
      itg.resize(static_cast<std::size_t>(count * L + 1));
      read_rows(shard, s.tokens, local * L, count * L + 1, itg.data());
      batch_bytes += (count * L + 1) * s.tokens.elem_size;
      for (std::size_t j = k; j < end; ++j) {
        const std::int64_t pos = order[j], w = indices[pos] - first;
        std::copy_n(itg.data() + w * L, L, out->input_ids.data() + pos * L);
        std::copy_n(itg.data() + w * L + 1, L, out->class_targets.data() + pos * L);
      }
    } else {
      // Scaled inputs are checked after the scaling (a finite value can overflow); otherwise the
      // check rides on the copy.
      const bool scale = args_.inputs_scale != 1.0 || args_.inputs_offset != 0.0;
      gather(shard, s.inputs, local, count, &order[k], end - k, indices, first, out->inputs.data(), fin, cur.in, in_row,
             args_.check_finite && !scale);
      if (scale) {
        const float a = static_cast<float>(args_.inputs_scale), b = static_cast<float>(args_.inputs_offset);
        for (std::size_t j = k; j < end; ++j) {
          float* row = out->inputs.data() + order[j] * in_row;
          for (std::int64_t e = 0; e < in_row; ++e) row[e] = row[e] * a + b;
          if (args_.check_finite && s.inputs.is_float)
            check_finite(row, 1, in_row, shard, s.inputs, local + indices[order[j]] - first);
        }
      }
      if (!set.has_targets()) {
        // data to predict: no targets
      } else if (int_targets) {
        gather(shard, s.targets, local, count, &order[k], end - k, indices, first, out->class_targets.data(), itg, cur.tg,
               tgt_row, false);
      } else {
        gather(shard, s.targets, local, count, &order[k], end - k, indices, first, out->float_targets.data(), ftg, cur.tg,
               tgt_row, args_.check_finite);
      }
    }
    k = end;
  }
  bytes_read_ += batch_bytes;
}

template void Reader::read_rows<float>(std::size_t, const DatasetMeta&, std::int64_t, std::int64_t, float*);
template void Reader::read_rows<std::int64_t>(std::size_t, const DatasetMeta&, std::int64_t, std::int64_t, std::int64_t*);

}  // namespace hpctrain::data
