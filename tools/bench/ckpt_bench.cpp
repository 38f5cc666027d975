// Checkpoint benchmark: a synchronous save of a training state of a given size through the
// CheckpointManager (host copy, every rank writing its share, fsync, commit) beside a raw
// sequential write of the same bytes with fsync on the same disk (the physical limit, measured in
// the same run), interleaved, --repeat times; then a load through the manager that compares every
// byte. Prints "RESULT ..." on rank 0 with medians and spreads; exits 1 when the data read back
// differ or the median ratio is below --min_ratio.
// --tensors N splits the state into N tensors (default: 16 MB each), to see what a save costs per
// tensor beside its cost per byte.
//   mpirun -np N ckpt_bench [--mb 100] [--tensors N] [--dir DIR] [--min_ratio 0.5] [--repeat 3]
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <vector>

#include "hpctrain/ckpt/manager.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/dist/failure.h"

using namespace hpctrain;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
double secs(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A piece of state made of float tensors, like a model's weights and Adam moments. load() reads
// into its own buffers and compares them with what was saved.
class BenchState : public ckpt::Stateful {
 public:
  explicit BenchState(std::vector<std::vector<float>>& tensors) : tensors_(tensors) {}
  std::string key() const override { return "bench"; }
  void save(ckpt::StateWriter& w) const override {
    for (std::size_t k = 0; k < tensors_.size(); ++k)
      w.tensor("t" + std::to_string(k), ckpt::DType::kFloat32, {static_cast<std::int64_t>(tensors_[k].size())},
               tensors_[k].data());
  }
  void load(const ckpt::StateReader& r) override {
    std::vector<float> buf;
    for (std::size_t k = 0; k < tensors_.size(); ++k) {
      buf.resize(tensors_[k].size());
      r.read("t" + std::to_string(k), ckpt::DType::kFloat32, buf.data());
      same = same && std::memcmp(buf.data(), tensors_[k].data(), buf.size() * sizeof(float)) == 0;
    }
  }
  bool same = true;

 private:
  std::vector<std::vector<float>>& tensors_;
};

// dd-style: rank 0 writes the same bytes sequentially in one file, then fsync.
double raw_write_seconds(const std::string& path, const std::vector<std::vector<float>>& state) {
  auto t = Clock::now();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create " + path);
  for (const auto& tensor : state) {
    const std::size_t n = tensor.size() * sizeof(float);
    if (::write(fd, tensor.data(), n) != static_cast<ssize_t>(n)) throw std::runtime_error("raw write failed");
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) throw std::runtime_error("raw fsync failed");
  const double s = secs(t);
  fs::remove(path);
  return s;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  dist::Environment env(&argc, &argv);
  log::init({env.rank(), env.size(), log::Level::warning, log::Level::warning, nullptr});
  double mb = 100, min_ratio = 0.5;
  int repeat = 3;
  long long tensors = 0;
  std::string dir = "/tmp/hpctrain-ckpt-bench";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--mb") mb = std::stod(v);
    else if (k == "--dir") dir = v;
    else if (k == "--min_ratio") min_ratio = std::stod(v);
    else if (k == "--repeat") repeat = std::max(1, std::stoi(v));
    else if (k == "--tensors") tensors = std::stoll(v);
  }
  return dist::run_guarded(env, [&] {
    // Tensors of 4 M floats (16 MB) of incompressible values: a virtual disk must not get away
    // with zero pages.
    if (mb <= 0 || mb > 1e5 || tensors < 0 || tensors > 1000000)
      throw Error("--mb: expected 0 < MB <= 100000; --tensors: expected 0 (16 MB each) to 1000000");
    std::size_t per_tensor = 4u << 20;
    std::size_t count = std::max<std::size_t>(1, static_cast<std::size_t>(mb * 1e6 / (per_tensor * 4)));
    if (tensors > 0) {
      count = static_cast<std::size_t>(tensors);
      per_tensor = std::max<std::size_t>(1, static_cast<std::size_t>(mb * 1e6 / 4 / static_cast<double>(count)));
    }
    std::vector<std::vector<float>> state(count, std::vector<float>(per_tensor));
    std::uint32_t x = 2463534242u;
    for (auto& tensor : state)
      for (auto& v : tensor) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v = static_cast<float>(x) * 1e-9f;
      }
    const double bytes = static_cast<double>(count * per_tensor * 4);
    if (env.rank() == 0) {
      fs::remove_all(dir);
      fs::create_directories(dir);
    }
    MPI_Barrier(env.comm());
    BenchState piece(state);
    ckpt::CheckpointManager::Options o;
    o.output_dir = dir;
    o.save_total_limit = 1;
    o.background = false;
    ckpt::CheckpointManager manager(env, o);
    manager.add(piece, ckpt::CheckpointManager::Scope::kModel);

    std::vector<double> raw, ckpt_write, ratio, save_s;
    for (int rep = 0; rep < repeat; ++rep) {
      MPI_Barrier(env.comm());
      double r = 0;
      if (env.rank() == 0) r = raw_write_seconds(dir + "/raw.bin", state);
      MPI_Bcast(&r, 1, MPI_DOUBLE, 0, env.comm());
      MPI_Barrier(env.comm());
      const auto t = Clock::now();
      manager.save({rep + 1, /*model_only=*/true, /*wait=*/true, ""});
      double w = secs(t);
      MPI_Allreduce(MPI_IN_PLACE, &w, 1, MPI_DOUBLE, MPI_MAX, env.comm());
      save_s.push_back(w);
      raw.push_back(bytes / 1e6 / r);
      ckpt_write.push_back(bytes / 1e6 / w);
      ratio.push_back(r / w);
    }
    // Load: every rank reads the whole state (as a resume does) and compares it.
    auto t = Clock::now();
    manager.load(manager.dir_for(repeat), /*model_only=*/true);
    double load_s = secs(t);
    MPI_Allreduce(MPI_IN_PLACE, &load_s, 1, MPI_DOUBLE, MPI_MAX, env.comm());
    int ok = piece.same ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, env.comm());
    const double med = median(ratio);
    if (env.rank() == 0) {
      std::printf("RESULT ranks=%d nodes=%d tensors=%zu state_mb=%.1f save_s=%.4f save_min_s=%.4f save_max_s=%.4f repeats=%d raw_write_mbs=%.0f raw_min=%.0f raw_max=%.0f "
                  "ckpt_write_mbs=%.0f ckpt_min=%.0f ckpt_max=%.0f ratio=%.2f ratio_min=%.2f ratio_max=%.2f "
                  "load_mbs_per_rank=%.0f correct=%d\n",
                  env.size(), env.node_count(), count, bytes / 1e6, median(save_s), *std::min_element(save_s.begin(), save_s.end()),
                  *std::max_element(save_s.begin(), save_s.end()), repeat, median(raw), *std::min_element(raw.begin(), raw.end()),
                  *std::max_element(raw.begin(), raw.end()), median(ckpt_write),
                  *std::min_element(ckpt_write.begin(), ckpt_write.end()),
                  *std::max_element(ckpt_write.begin(), ckpt_write.end()), med,
                  *std::min_element(ratio.begin(), ratio.end()), *std::max_element(ratio.begin(), ratio.end()),
                  bytes / 1e6 / load_s, ok);
      fs::remove_all(dir);
    }
    return ok && med >= min_ratio ? 0 : 1;
  });
}
