// Loader benchmark: in one run, the limits of this machine beside the Loader's sustained rate.
// The limits: plain read() of the files and HDF5's whole-dataset read (sequential), and the
// gather limit: the very samples the loader delivers, in its order, copied row by row with
// memcpy from a memory map of the files and nothing else (the random-access floor: a shuffled
// batch is a new short stream per sample, which runs far below a sequential read on any memory
// system). Contiguous data is measured in two page-cache states: as the writer left it, and
// after the files were dropped from the cache and read back through the loader's memory map (the
// state a job that reads its data from disk sees). Each loader/limit figure is the median of
// --reps interleaved rounds, with the spread. Exits nonzero when a value read is wrong or the
// loader's shuffled contiguous rate is below --min_ratio of the lower of the two limits
// (sequential HDF5 and the gather limit) in either state.
//   loader_bench [--samples N] [--features F] [--batch B] [--step_us U] [--dir DIR] [--min_ratio R] [--reps K] [--check_finite 0|1]
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "hpctrain/core/h5.h"
#include "hpctrain/data/convert.h"
#include "hpctrain/data/loader.h"
#include "hpctrain/data/reader.h"

using namespace hpctrain;
using namespace hpctrain::data;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double secs(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

struct Stat {
  double median = 0, lo = 0, hi = 0;
};
Stat summary(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return {v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2, v.front(), v.back()};
}

// Plain read() of every file in 1 MiB blocks: the floor of what any reader can do.
double file_read_mbs(const std::vector<std::string>& files) {
  std::vector<char> buf(1 << 20);
  std::size_t total = 0;
  auto t = Clock::now();
  for (const auto& f : files) {
    int fd = ::open(f.c_str(), O_RDONLY);
    for (ssize_t k; (k = ::read(fd, buf.data(), buf.size())) > 0;) total += static_cast<std::size_t>(k);
    ::close(fd);
  }
  return total / 1e6 / secs(t);
}

// H5Dread of each whole inputs dataset into float32: HDF5's own sequential rate.
double h5_read_mbs(const ShardSet& set, std::vector<float>* sink) {
  std::size_t total = 0;
  auto t = Clock::now();
  h5::Lock lock;
  for (const auto& s : set.shards()) {
    h5::Handle f(H5Fopen(s.file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    h5::Handle d(H5Dopen2(f.get(), s.inputs.key.c_str(), H5P_DEFAULT), H5Dclose);
    const std::size_t n = static_cast<std::size_t>(s.num_samples * s.inputs.row_elems());
    sink->resize(n);
    H5Dread(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, sink->data());
    total += n * static_cast<std::size_t>(s.inputs.elem_size);
  }
  return total / 1e6 / secs(t);
}

// Flushes the benchmark's own files (the kernel's write-back would otherwise share the cores with
// the first measurements) and, with drop, takes them out of the page cache, so that the next
// reader brings them in through its own path.
void flush(const std::vector<std::string>& files, bool drop) {
  for (const auto& f : files) {
    int fd = ::open(f.c_str(), O_RDONLY);
    if (fd < 0) continue;
    fdatasync(fd);
    if (drop) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// Share of the set's file bytes this process maps with 2 MiB entries (/proc/self/smaps_rollup).
double pmd_mapped_share(const ShardSet& set) {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string key;
  double kb = 0;
  while (in >> key) {
    if (key == "FilePmdMapped:") in >> kb;
    else in.ignore(1 << 20, '\n');
  }
  double bytes = 0;
  for (const auto& s : set.shards()) bytes += static_cast<double>(s.file_bytes);
  return bytes > 0 ? std::min(1.0, kb * 1024 / bytes) : 0;
}

TrainPlan plan_for(const ShardSet& set, std::int64_t batch, std::int64_t block) {
  return TrainPlan(Sampler(set.size(), 1, true, block), 0, 1, batch, 1, true);
}

// The gather limit: every sample of one epoch in the loader's order (sorted within a batch, as
// the reader sorts), its input row and target copied with memcpy from the mapped files, the rows
// a few samples ahead requested in software (the best plain loop measured here). MB/s of input
// bytes, like the loader's column.
double gather_limit_mbs(const ShardSet& set, std::int64_t batch) {
  struct Map {
    const char* p;
    std::size_t len;
  };
  std::vector<Map> maps;
  for (const auto& s : set.shards()) {
    int fd = ::open(s.file.c_str(), O_RDONLY);
    void* p = map_file_huge_aligned(fd, static_cast<std::size_t>(s.file_bytes));
    ::close(fd);
    if (p == MAP_FAILED) throw std::runtime_error("cannot map " + s.file);
    maps.push_back({static_cast<const char*>(p), static_cast<std::size_t>(s.file_bytes)});
  }
  const std::int64_t row = set.shards()[0].inputs.row_elems() * set.shards()[0].inputs.elem_size;
  const std::int64_t trow = set.shards()[0].targets.row_elems() * set.shards()[0].targets.elem_size;
  std::vector<char> out(static_cast<std::size_t>(batch * row)), tout(static_cast<std::size_t>(batch * trow));
  TrainPlan plan = plan_for(set, batch, 0);
  const std::int64_t steps = plan.steps_per_epoch();
  std::vector<const char*> src, tsrc;
  double copy_seconds = 0;
  for (std::int64_t s = 0; s < steps; ++s) {
    MicroBatch mb = plan.next();
    std::sort(mb.indices.begin(), mb.indices.end());
    src.clear();
    tsrc.clear();
    for (std::int64_t i : mb.indices) {
      std::int64_t local = 0;
      const std::size_t k = set.locate(i, &local);
      const Shard& sh = set.shards()[k];
      src.push_back(maps[k].p + sh.inputs.raw_offset + local * row);
      tsrc.push_back(maps[k].p + sh.targets.raw_offset + local * trow);
    }
    auto t = Clock::now();  // only the copy is timed
    constexpr std::size_t kAhead = 4;
    for (std::size_t j = 0; j < src.size(); ++j) {
      if (j + kAhead < src.size()) {
        for (std::int64_t o = 0; o < std::min<std::int64_t>(row, 4096); o += 64) __builtin_prefetch(src[j + kAhead] + o);
        __builtin_prefetch(tsrc[j + kAhead]);
      }
      std::memcpy(out.data() + j * row, src[j], static_cast<std::size_t>(row));
      std::memcpy(tout.data() + j * trow, tsrc[j], static_cast<std::size_t>(trow));
    }
    copy_seconds += secs(t);
  }
  for (const auto& m : maps) munmap(const_cast<char*>(m.p), m.len);
  return static_cast<double>(steps * batch * row) / 1e6 / copy_seconds;
}

struct LoaderResult {
  double samples_per_s = 0, mbs = 0, wait_per_step_ms = 0, pmd_share = 0;
  bool correct = true;
};

// Reads one epoch of batches through the Loader. With step_us > 0, each batch is "trained on" by
// spinning that long, and the time next() waited is measured.
// check_finite: as training reads (data.check_finite defaults to true).
LoaderResult run_loader(std::shared_ptr<ShardSet> set, std::int64_t batch, std::int64_t block, int prefetch,
                        double step_us, const std::vector<float>& first_values, bool check_finite) {
  DataArguments args;
  args.check_finite = check_finite;
  TrainPlan plan = plan_for(*set, batch, block);
  const std::int64_t steps = plan.steps_per_epoch();
  Loader loader(set, args, train_source(plan), prefetch);
  Batch b;
  LoaderResult r;
  const std::int64_t row = set->shards()[0].inputs.row_elems();
  auto t = Clock::now();
  for (std::int64_t s = 0; s < steps; ++s) {
    if (!loader.next(&b)) break;
    // Correctness: every sample's first value is what the file holds for that index.
    for (std::size_t k = 0; k < b.indices.size(); k += 17)
      if (b.inputs[k * row] != first_values[b.indices[k]]) r.correct = false;
    if (step_us > 0) {
      auto until = Clock::now() + std::chrono::duration<double, std::micro>(step_us);
      while (Clock::now() < until) {
      }
    }
  }
  const double el = secs(t);
  r.samples_per_s = steps * batch / el;
  r.mbs = loader.bytes_read() / 1e6 / el;
  r.wait_per_step_ms = loader.wait_seconds() / steps * 1e3;
  r.pmd_share = pmd_mapped_share(*set);  // while the loader's maps are alive
  return r;
}

std::string spread(const Stat& s, const char* fmt) {
  char a[64], b[64], c[64];
  std::snprintf(a, sizeof a, fmt, s.median);
  std::snprintf(b, sizeof b, fmt, s.lo);
  std::snprintf(c, sizeof c, fmt, s.hi);
  return std::string(a) + " (" + b + "-" + c + ")";
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t samples = 100000, features = 784, batch = 128;
  double step_us = 2000, min_ratio = 0.7;
  int reps = 3;
  bool check_finite = true;
  std::string dir = (fs::temp_directory_path() / "hpctrain-loader-bench").string();
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--samples") samples = std::stoll(v);
    else if (k == "--features") features = std::stoll(v);
    else if (k == "--batch") batch = std::stoll(v);
    else if (k == "--step_us") step_us = std::stod(v);
    else if (k == "--dir") dir = v;
    else if (k == "--min_ratio") min_ratio = std::stod(v);
    else if (k == "--reps") reps = std::stoi(v);
    else if (k == "--check_finite") check_finite = v != "0" && v != "false";
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  if (reps < 1 || reps > 50) {
    std::cerr << "--reps " << reps << ": expected 1 to 50 rounds (3 or more for a median worth reading)\n";
    return 2;
  }
  fs::remove_all(dir);
  Samples s = synth_classification(samples, {features}, 10, 1.0, 1);
  std::vector<float> first(static_cast<std::size_t>(samples));
  for (std::int64_t i = 0; i < samples; ++i) first[i] = s.inputs[i * features];
  std::cout << "data: " << samples << " samples x " << features << " float32 (" << samples * features * 4 / 1e6
            << " MB), 4 shards; batch " << batch << "; " << reps << " interleaved rounds per figure, median (min-max)\n";
  bool ok = true;
  std::vector<std::string> failures;
  std::printf("\n| layout | page cache | 2 MiB-mapped | read() MB/s | HDF5 sequential MB/s | gather limit MB/s | loader shuffled MB/s "
              "| loader / HDF5 | loader / gather limit | loader block-shuffled (4096) MB/s | wait per %.1f ms step (prefetch 2) |\n",
              step_us / 1000);
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int gzip : {0, 1}) {
    WriteOptions w;
    if (gzip) {
      w.chunk_rows = 256;
      w.gzip = 1;
    }
    const std::string sub = dir + (gzip ? "/gzip" : "/contiguous");
    auto files = write_shards(s, {}, 0, samples, sub, 4, w);
    auto set = std::make_shared<ShardSet>(ShardSet::scan(files, {}, "bench"));
    std::vector<float> sink;
    // Contiguous: as written, then dropped and read back through the loader's map. gzip goes
    // through HDF5's chunk cache, whatever the page cache's folios: as written only.
    for (int state = 0; state < (gzip ? 1 : 2); ++state) {
      flush(files, state == 1);
      run_loader(set, batch, 0, 0, 0, first, check_finite);  // warm (state 1: brings the pages in through the map)
      file_read_mbs(files);
      h5_read_mbs(*set, &sink);
      std::vector<double> raw, h5, limit, loader, over_h5, over_limit, pmd;
      for (int r = 0; r < reps; ++r) {
        raw.push_back(file_read_mbs(files));
        h5.push_back(h5_read_mbs(*set, &sink));
        if (!gzip) limit.push_back(gather_limit_mbs(*set, batch));
        LoaderResult lr = run_loader(set, batch, 0, 0, 0, first, check_finite);
        ok = ok && lr.correct;
        // MB/s of the loader counts the bytes it delivered (decompressed), like the HDF5 column.
        const double delivered = lr.samples_per_s * features * 4 / 1e6;
        loader.push_back(delivered);
        over_h5.push_back(delivered / h5.back());
        if (!gzip) over_limit.push_back(delivered / limit.back());
        pmd.push_back(lr.pmd_share);
      }
      LoaderResult blk = run_loader(set, batch, 4096, 0, 0, first, check_finite);
      LoaderResult p = run_loader(set, batch, 0, 2, step_us, first, check_finite);
      ok = ok && blk.correct && p.correct;
      const Stat lim = gzip ? Stat{} : summary(limit), hh = summary(h5), ld = summary(loader);
      std::printf("| %s | %s | %.0f%% | %s | %s | %s | %s | %.2f | %s | %.0f | %.3f ms |\n",
                  gzip ? "chunked 256 rows, gzip 1" : "contiguous", state ? "read through the map" : "as written",
                  summary(pmd).median * 100, spread(summary(raw), "%.0f").c_str(), spread(hh, "%.0f").c_str(),
                  gzip ? "-" : spread(lim, "%.0f").c_str(), spread(ld, "%.0f").c_str(), summary(over_h5).median,
                  gzip ? "-" : spread(summary(over_limit), "%.2f").c_str(), blk.samples_per_s * features * 4 / 1e6,
                  p.wait_per_step_ms);
      if (!gzip) {
        const double bar = std::min(hh.median, lim.median) * min_ratio;
        if (ld.median < bar) {
          char m[256];
          std::snprintf(m, sizeof m, "contiguous, %s: loader %.0f MB/s, below %.0f%% of min(HDF5 sequential, gather limit) = %.0f MB/s",
                        state ? "read through the map" : "as written", ld.median, min_ratio * 100, bar / min_ratio);
          failures.push_back(m);
        }
      }
    }
  }
  fs::remove_all(dir);
  if (!ok) std::cout << "FAIL: the loader returned wrong values\n";
  for (const auto& f : failures) std::cout << "BELOW TARGET: " << f << "\n";
  if (ok && failures.empty()) std::cout << "\nthe loader is within the bar in every state\n";
  return ok && failures.empty() ? 0 : 1;
}
