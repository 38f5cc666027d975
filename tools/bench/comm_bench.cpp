// Collective benchmark for the scaling model (tools/bench/dp_bench.sh): hpctrain's communicator
// (MPI here) timing allreduce, reduce-scatter and all-gather of float32 buffers from 4 KiB to
// 64 MiB. Each size: 5 samples of enough repetitions for 50 ms, the median kept; every result is
// checked (a wrong sum exits 1). The latency and bandwidth terms are fitted from these lines.
//   mpirun -np N comm_bench [--max_mib 64]
// Prints "COLL op=... ranks=N bytes=B seconds=S" lines on rank 0.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/communicator.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/dist/failure.h"
#include "hpctrain/dist/mpi_check.h"

using namespace hpctrain;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Seconds per call of `op`, the median of 5 samples, each long enough for 50 ms (rank 0 decides
// the repetitions, so that every rank calls the collective equally often).
template <class Op>
double time_op(const dist::Environment& env, Op&& op) {
  op();
  int reps = 1;
  for (;;) {
    MPI_Barrier(env.comm());
    const auto t = Clock::now();
    for (int i = 0; i < reps; ++i) op();
    double s = std::chrono::duration<double>(Clock::now() - t).count();
    HPCT_MPI_CHECK(MPI_Bcast(&s, 1, MPI_DOUBLE, 0, env.comm()));
    if (s >= 0.05 || reps >= (1 << 16)) break;
    reps *= 2;
  }
  std::vector<double> samples;
  for (int k = 0; k < 5; ++k) {
    MPI_Barrier(env.comm());
    const auto t = Clock::now();
    for (int i = 0; i < reps; ++i) op();
    samples.push_back(std::chrono::duration<double>(Clock::now() - t).count() / reps);
  }
  return median(samples);
}

}  // namespace

int main(int argc, char** argv) {
  dist::Environment env(&argc, &argv);
  log::init({env.rank(), env.size(), log::Level::warning, log::Level::warning, nullptr});
  long max_mib = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--max_mib") max_mib = std::stol(v);
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  if (max_mib < 1 || max_mib > 4096) {
    std::cerr << "--max_mib " << max_mib << ": expected 1 to 4096 (the buffers are allocated twice)\n";
    return 2;
  }
  return dist::run_guarded(env, [&] {
    auto comm = dist::make_communicator(env, {"mpi", 600});
    const int n = env.size(), r = env.rank();
    bool ok = true;
    for (std::size_t bytes = 4096; bytes <= static_cast<std::size_t>(max_mib) << 20; bytes *= 4) {
      // A multiple of the ranks, as the flat buffers are.
      const std::size_t count = std::max<std::size_t>(static_cast<std::size_t>(n), bytes / 4 / n * n), block = count / n;
      std::vector<float> buf(count, 1.0f), shard(block);
      const double ar = time_op(env, [&] {
        std::fill(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(count, 16)), 1.0f);
        comm->allreduce(buf.data(), count, dist::ReduceOp::kSum);
      });
      ok &= buf[0] == static_cast<float>(n);
      const double rs = time_op(env, [&] { comm->reduce_scatter(buf.data(), shard.data(), block, dist::ReduceOp::kSum); });
      std::fill(buf.begin() + static_cast<std::ptrdiff_t>(r * block), buf.begin() + static_cast<std::ptrdiff_t>((r + 1) * block),
                static_cast<float>(r));
      const double ag = time_op(env, [&] { comm->allgather(buf.data(), block); });
      for (int k = 0; k < n; ++k) ok &= buf[static_cast<std::size_t>(k) * block] == static_cast<float>(k);
      if (r == 0) {
        for (const auto& [op, s] : {std::make_pair("allreduce", ar), std::make_pair("reduce_scatter", rs), std::make_pair("allgather", ag)})
          std::printf("COLL op=%s ranks=%d bytes=%zu seconds=%.9f\n", op, n, count * 4, s);
        std::fflush(stdout);
      }
    }
    int all_ok = ok ? 1 : 0;
    HPCT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &all_ok, 1, MPI_INT, MPI_MIN, env.comm()));
    if (!all_ok && r == 0) std::cerr << "comm_bench: a collective gave a wrong result\n";
    return all_ok ? 0 : 1;
  });
}
