// Backend choice and the pieces every backend shares (datatype names, the stall watchdog).
#include "hpctrain/dist/communicator.h"

#include <sstream>

#include "backends.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/environment.h"

namespace hpctrain::dist {

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32: return 4;
    case DType::kFloat64: return 8;
    case DType::kInt32: return 4;
    case DType::kInt64: return 8;
    case DType::kUInt8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kUInt8: return "uint8";
  }
  return "?";
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

std::string describe_collective(const char* name, std::uint64_t seq, std::size_t count, DType type,
                                const char* op) {
  std::ostringstream os;
  os << name << " #" << seq << ": " << count << " " << dtype_name(type);
  if (op && *op) os << " (" << op << ")";
  return os.str();
}

std::unique_ptr<Watchdog> make_collective_watchdog(const Environment& env, double timeout_s) {
  const Environment* e = &env;
  return std::make_unique<Watchdog>(timeout_s, [e, timeout_s](const std::string& what, double age) {
    HPCT_LOG(critical) << "collective " << what << " on rank " << e->rank() << " (" << e->host()
                       << ") has not completed after " << age << " s (ddp_timeout=" << timeout_s
                       << " s): another rank is stuck or gone; aborting the job";
    e->abort(exit_code::kTimeout);
  });
}

std::string compiled_backends() {
#ifdef HPCTRAIN_HAVE_NCCL
  return "mpi nccl";
#else
  return "mpi";
#endif
}

std::unique_ptr<Communicator> make_communicator(const Environment& env, const CommOptions& options) {
  const std::string& b = options.backend;
  if (b == "mpi") return make_mpi_communicator(env, options);
  if (b == "nccl" || (b == "auto" && env.device().cuda)) {
#ifdef HPCTRAIN_HAVE_NCCL
    if (!env.device().cuda)
      throw ConfigError("ddp_backend=nccl: rank " + std::to_string(env.rank()) + " on " + env.host() +
                        " has no GPU (" + env.cuda_status() + "); use ddp_backend=mpi or auto");
    return make_nccl_communicator(env, options);
#else
    if (b == "nccl")
      throw ConfigError("ddp_backend=nccl: this hpctrain was built without NCCL (compiled backends: " +
                        compiled_backends() + "); rebuild with -DHPCTRAIN_WITH_NCCL=ON or use ddp_backend=mpi");
    return make_mpi_communicator(env, options);
#endif
  }
  if (b == "auto") return make_mpi_communicator(env, options);
  throw ConfigError("ddp_backend='" + b + "' is not a backend; expected one of: auto, mpi, nccl");
}

}  // namespace hpctrain::dist
