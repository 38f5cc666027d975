// Loader benchmark: in one run, the raw sequential read rate of a data set's files (whole-dataset
// H5Dread, and plain read() of the file) beside the Loader's sustained rate in shuffled and
// block-shuffled order, contiguous and gzip; plus the time a training loop with a given step time
// waits for data with prefetch. Exits nonzero when a result is wrong or the bar is missed.
//   loader_bench [--samples N] [--features F] [--batch B] [--step_us U] [--dir DIR] [--min_ratio R]
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "hpctrain/core/h5.h"
#include "hpctrain/data/convert.h"
#include "hpctrain/data/loader.h"

using namespace hpctrain;
using namespace hpctrain::data;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double secs(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

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

struct LoaderResult {
  double samples_per_s = 0, mbs = 0, wait_per_step_ms = 0;
  bool correct = true;
};

// Reads one epoch of batches through the Loader. With step_us > 0, each batch is "trained on" by
// spinning that long, and the time next() waited is measured.
LoaderResult run_loader(std::shared_ptr<ShardSet> set, std::int64_t batch, std::int64_t block, int prefetch,
                        double step_us, const std::vector<float>& first_values) {
  DataArguments args;
  args.check_finite = false;
  TrainPlan plan(Sampler(set->size(), 1, true, block), 0, 1, batch, 1, true);
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
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t samples = 100000, features = 784, batch = 128;
  double step_us = 2000, min_ratio = 0.7;
  std::string dir = (fs::temp_directory_path() / "hpctrain-loader-bench").string();
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--samples") samples = std::stoll(v);
    else if (k == "--features") features = std::stoll(v);
    else if (k == "--batch") batch = std::stoll(v);
    else if (k == "--step_us") step_us = std::stod(v);
    else if (k == "--dir") dir = v;
    else if (k == "--min_ratio") min_ratio = std::stod(v);
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  fs::remove_all(dir);
  Samples s = synth_classification(samples, {features}, 10, 1.0, 1);
  std::vector<float> first(static_cast<std::size_t>(samples));
  for (std::int64_t i = 0; i < samples; ++i) first[i] = s.inputs[i * features];
  std::cout << "data: " << samples << " samples x " << features << " float32 (" << samples * features * 4 / 1e6
            << " MB), 4 shards; batch " << batch << "; page cache warm\n";
  bool ok = true;
  double contiguous_ratio = 0;
  std::printf("\n| layout | raw read() MB/s | HDF5 whole-dataset MB/s | order | loader samples/s | loader MB/s | loader / HDF5 | wait per %.1f ms step (prefetch 2) |\n",
              step_us / 1000);
  std::printf("|---|---|---|---|---|---|---|---|\n");
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
    file_read_mbs(files);  // warm the page cache
    h5_read_mbs(*set, &sink);
    const double raw = std::max(file_read_mbs(files), file_read_mbs(files));
    const double h5 = std::max(h5_read_mbs(*set, &sink), h5_read_mbs(*set, &sink));
    for (std::int64_t block : {std::int64_t{0}, std::int64_t{4096}}) {
      run_loader(set, batch, block, 0, 0, first);  // warm
      LoaderResult r = run_loader(set, batch, block, 0, 0, first);
      LoaderResult p = run_loader(set, batch, block, 2, step_us, first);
      ok = ok && r.correct && p.correct;
      // MB/s of the loader counts the bytes it delivered (decompressed), like the HDF5 column.
      const double delivered = r.samples_per_s * features * 4 / 1e6;
      const double ratio = delivered / h5;
      if (!gzip && block == 0) contiguous_ratio = ratio;
      std::printf("| %s | %.0f | %.0f | %s | %.0f | %.0f | %.2f | %.3f ms |\n", gzip ? "chunked 256 rows, gzip 1" : "contiguous",
                  raw, h5, block ? "block-shuffled (4096)" : "shuffled", r.samples_per_s, delivered, ratio,
                  p.wait_per_step_ms);
    }
  }
  fs::remove_all(dir);
  std::printf("\nshuffled contiguous reads at %.0f%% of the HDF5 sequential rate (bar: %.0f%%)\n", contiguous_ratio * 100,
              min_ratio * 100);
  if (!ok) std::cout << "FAIL: the loader returned wrong values\n";
  if (contiguous_ratio < min_ratio) std::cout << "FAIL: below the bar\n";
  return ok && contiguous_ratio >= min_ratio ? 0 : 1;
}
