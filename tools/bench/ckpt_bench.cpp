// Checkpoint benchmark: writes a training state of a given size with hpctrain's parallel HDF5
// checkpoint (every rank writes its slab of each tensor, then the fsync + rename commit) beside a
// raw sequential write of the same bytes with fsync on the same disk, and loads it back.
//   mpirun -np N ckpt_bench [--mb 100] [--dir DIR] [--min_ratio 0.5]
// Prints "RESULT ..." on rank 0; exits 1 when the data read back differ or the bar is missed.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <vector>

#include "hpctrain/ckpt/checkpoint.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/dist/failure.h"

using namespace hpctrain;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
double secs(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// dd-style: the same bytes written sequentially in one file (16 MiB per write), then fsync.
double raw_write_mbs(const std::string& path, const std::vector<std::vector<float>>& state) {
  std::size_t bytes = 0;
  auto t = Clock::now();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  for (const auto& tensor : state) {
    const std::size_t n = tensor.size() * sizeof(float);
    if (::write(fd, tensor.data(), n) != static_cast<ssize_t>(n)) throw std::runtime_error("raw write failed");
    bytes += n;
  }
  ::fsync(fd);
  ::close(fd);
  const double s = secs(t);
  fs::remove(path);
  return bytes / 1e6 / s;
}
}  // namespace

int main(int argc, char** argv) {
  dist::Environment env(&argc, &argv);
  log::init({env.rank(), env.size(), log::Level::warning, log::Level::warning, nullptr});
  double mb = 100, min_ratio = 0.5;
  std::string dir = "/tmp/hpctrain-ckpt-bench";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--mb") mb = std::stod(v);
    else if (k == "--dir") dir = v;
    else if (k == "--min_ratio") min_ratio = std::stod(v);
  }
  return dist::run_guarded(env, [&] {
    // The state: tensors of 4 M floats (16 MB), like a model's weights and Adam moments.
    const std::size_t per_tensor = 4u << 20;
    const std::size_t tensors = std::max<std::size_t>(1, static_cast<std::size_t>(mb * 1e6 / (per_tensor * 4)));
    std::vector<std::vector<float>> state(tensors, std::vector<float>(per_tensor));
    // Incompressible values: a virtual disk must not get away with zero pages.
    std::uint32_t x = 2463534242u;
    for (auto& tensor : state)
      for (auto& v : tensor) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v = static_cast<float>(x) * 1e-9f;
      }
    const std::size_t bytes = tensors * per_tensor * 4;
    if (env.rank() == 0) {
      fs::remove_all(dir);
      fs::create_directories(dir);
    }
    MPI_Barrier(env.comm());
    double raw = 0;
    if (env.rank() == 0) raw = raw_write_mbs(dir + "/raw.bin", state);
    MPI_Barrier(env.comm());

    auto t = Clock::now();
    const std::string partial = dir + "/checkpoint-1.partial", final_dir = dir + "/checkpoint-1";
    if (env.rank() == 0) fs::create_directories(partial);
    MPI_Barrier(env.comm());
    {
      ckpt::Writer w(env, partial + "/state.h5");
      for (std::size_t k = 0; k < tensors; ++k)
        w.tensor("/model/t" + std::to_string(k), ckpt::DType::kFloat32,
                 {static_cast<std::int64_t>(per_tensor / 1024), 1024}, state[k].data());
      w.meta(Json(Json::Object{{"format_version", ckpt::kFormatVersion}}));
      w.close();
    }
    if (env.rank() == 0) {
      std::FILE* f = std::fopen((partial + "/trainer_state.json").c_str(), "w");
      std::fputs("{}\n", f);
      std::fclose(f);
    }
    MPI_Barrier(env.comm());
    ckpt::commit(env, partial, final_dir, dir);
    const double write_s = secs(t);

    // Load: every rank reads the whole state (as a resume does).
    t = Clock::now();
    bool ok = true;
    {
      ckpt::Reader r(final_dir + "/state.h5");
      std::vector<float> buf(per_tensor);
      for (std::size_t k = 0; k < tensors; ++k) {
        r.read("/model/t" + std::to_string(k), ckpt::DType::kFloat32, buf.data());
        ok = ok && buf == state[k];
      }
    }
    double load_s = secs(t);
    MPI_Allreduce(MPI_IN_PLACE, &load_s, 1, MPI_DOUBLE, MPI_MAX, env.comm());
    int all_ok = ok ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &all_ok, 1, MPI_INT, MPI_MIN, env.comm());
    // The disk is measured again after the checkpoint and the better figure kept (conservative:
    // fsync speed on virtual disks varies from one write to the next).
    MPI_Barrier(env.comm());
    if (env.rank() == 0) raw = std::max(raw, raw_write_mbs(dir + "/raw.bin", state));
    const double write_mbs = bytes / 1e6 / write_s;
    if (env.rank() == 0) {
      std::printf("RESULT ranks=%d state_mb=%.0f raw_write_mbs=%.0f ckpt_write_mbs=%.0f ratio=%.2f write_s=%.3f "
                  "load_mbs_per_rank=%.0f correct=%d\n",
                  env.size(), bytes / 1e6, raw, write_mbs, write_mbs / raw, write_s, bytes / 1e6 / load_s, all_ok);
      fs::remove_all(dir);
    }
    return all_ok && write_mbs / raw >= min_ratio ? 0 : 1;
  });
}
