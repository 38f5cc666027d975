// A job that fails on one rank, for failure_test: the failing rank throws (or hangs, or throws on
// a thread) while the other ranks sit in a collective. Usage: failure_probe throw|hang|thread RANK
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/communicator.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/dist/failure.h"

int main(int argc, char** argv) {
  using namespace hpctrain;
  dist::Environment env(&argc, &argv);
  log::init({env.rank(), env.size(), log::Level::info, log::Level::warning, nullptr});
  const std::string mode = argc > 1 ? argv[1] : "throw";
  const int bad_rank = argc > 2 ? std::atoi(argv[2]) : 1;
  return dist::run_guarded(env, [&] {
    auto comm = dist::make_communicator(env, {"mpi", /*timeout_s=*/2.0});
    float x = 1.0f;
    comm->allreduce(&x, 1, dist::ReduceOp::kSum);  // all ranks are up and talking
    if (env.rank() == bad_rank) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      if (mode == "throw") throw Error("injected failure on purpose");
      if (mode == "thread") {
        std::thread t([] { throw std::runtime_error("injected failure on a thread"); });
        t.join();
      }
      if (mode == "hang") std::this_thread::sleep_for(std::chrono::seconds(600));
    }
    for (int i = 0; i < 1000000; ++i) comm->allreduce(&x, 1, dist::ReduceOp::kMax);  // waits for bad_rank
    return 0;
  });
}
