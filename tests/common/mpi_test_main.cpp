// GoogleTest main for multi-rank tests: one Environment for the process, every rank runs every
// test, rank 0 prints the usual report, other ranks print only their failures, and the exit code
// is nonzero when a test failed on any rank.
#include <gtest/gtest.h>

#include <iostream>
#include <memory>

#include "common/mpi_env.h"
#include "hpctrain/core/log.h"

namespace hpctrain::testing {
namespace {
dist::Environment* g_env = nullptr;

// Prints a failed assertion with its rank; used on ranks other than 0.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::cerr << "[rank " << rank_ << "] " << (r.file_name() ? r.file_name() : "?") << ":" << r.line_number()
              << ": failure\n" << r.summary() << std::endl;
  }

 private:
  int rank_;
};
}  // namespace

const dist::Environment& env() { return *g_env; }
}  // namespace hpctrain::testing

int main(int argc, char** argv) {
  auto env = std::make_unique<hpctrain::dist::Environment>(&argc, &argv);
  hpctrain::testing::g_env = env.get();
  hpctrain::log::init({env->rank(), env->size(), hpctrain::log::Level::warning, hpctrain::log::Level::warning, nullptr});
  ::testing::InitGoogleTest(&argc, argv);
  if (env->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new hpctrain::testing::RankFailurePrinter(env->rank()));
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, env->comm());
  if (env->rank() == 0 && any_failed && !failed)
    std::cerr << "a test failed on another rank (see its [rank r] lines above)" << std::endl;
  env.reset();
  return any_failed;
}
