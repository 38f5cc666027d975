// `hpctrain env`: what each rank found about itself, printed by rank 0 in rank order.
#include "hpctrain/train/env_report.h"

#include <iostream>
#include <sstream>

#include "hpctrain/dist/communicator.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/train/torch_runtime.h"

#ifdef HPCTRAIN_HAVE_NCCL
#include <nccl.h>
#endif

namespace hpctrain::train {

std::string describe_rank(const dist::Environment& env) {
  std::ostringstream os;
  os << "rank " << env.rank() << "/" << env.size() << "  local rank " << env.local_rank() << "/"
     << env.local_size() << "  host " << env.host() << "  nodes " << env.node_count() << "\n";
  os << "  device: " << env.device().str();
  if (!env.device().cuda) os << " (" << env.cuda_status() << ")";
  else os << " (" << env.cuda_device_count() << " CUDA devices visible)";
  os << "\n";
  os << "  backends: compiled [" << dist::compiled_backends() << "]; mpi: available, " << env.mpi_library()
     << ", thread level " << dist::thread_level_name(env.thread_level());
#ifdef HPCTRAIN_HAVE_NCCL
  int nccl_version = 0;
  ncclGetVersion(&nccl_version);
  os << "; nccl " << nccl_version / 10000 << "." << (nccl_version / 100) % 100 << "." << nccl_version % 100 << ": "
     << (env.device().cuda ? "available" : "unavailable (no GPU on this rank)");
#else
  os << "; nccl: not compiled";
#endif
  os << "; default: " << (env.device().cuda && dist::compiled_backends().find("nccl") != std::string::npos ? "nccl" : "mpi")
     << "\n";
  os << "  torch: " << torch_version() << ", cuda " << (torch_cuda_available() ? "yes" : "no") << ", intra-op threads "
     << torch_threads() << "\n";
  os << "  slurm: " << env.slurm().describe();
  return os.str();
}

void print_env_report(const dist::Environment& env) {
  auto blocks = env.gather_to_root(describe_rank(env));
  if (env.rank() != 0) return;
  for (const auto& b : blocks) std::cout << b << "\n";
  std::cout.flush();
}

}  // namespace hpctrain::train
