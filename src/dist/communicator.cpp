// Backend choice and the pieces every backend shares (datatype names, the stall watchdog).
#include "hpctrain/dist/communicator.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <sstream>
#include <thread>

#include "backends.h"
#include "hpctrain/dist/mpi_check.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/files.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/environment.h"

namespace hpctrain::dist {


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

namespace {
// A collective as every rank must call it, for the agreement check: small integers only.
struct Descriptor {
  std::int64_t op, count, type, reduce, root;
  bool operator==(const Descriptor& o) const {
    return op == o.op && count == o.count && type == o.type && reduce == o.reduce && root == o.root;
  }
};
const char* const kOps[] = {"allreduce", "broadcast", "reduce", "barrier", "reduce_scatter", "allgather"};
constexpr std::size_t kNumOps = sizeof(kOps) / sizeof(kOps[0]);
const char* const kReduce[] = {"", "sum", "avg", "max", "min"};
std::int64_t index_of(const char* name, const char* const* names, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (std::string(name ? name : "") == names[i]) return static_cast<std::int64_t>(i);
  return -1;
}
std::string describe(const Descriptor& d) {
  std::ostringstream os;
  os << (d.op >= 0 && d.op < static_cast<std::int64_t>(kNumOps) ? kOps[d.op] : "?");
  if (d.op != 3) os << " of " << d.count << " " << dtype_name(static_cast<DType>(d.type));
  if (d.reduce > 0 && d.reduce < 5) os << " (" << kReduce[d.reduce] << ")";
  if (d.root >= 0) os << " (root " << d.root << ")";
  return os.str();
}
}  // namespace

CollectiveMonitor::CollectiveMonitor(const Environment& env, const CommOptions& options, MPI_Comm check_comm)
    : env_(env), options_(options), check_comm_(check_comm),
      recorder_(std::make_unique<FlightRecorder>(env, options.flight_dir)),
      watchdog_(std::make_unique<Watchdog>(options.timeout_s, [this](const std::string& what, double age) {
        on_stall(what, age);
      })) {}

CollectiveMonitor::~CollectiveMonitor() { watchdog_.reset(); }

CollectiveMonitor::Scope::~Scope() {
  m_.watchdog_->disarm();
  m_.recorder_->end(seq_);
}

std::unique_ptr<CollectiveMonitor::Scope> CollectiveMonitor::enter(const char* op, std::size_t count, DType type,
                                                                   const char* reduce, int root) {
  const std::uint64_t seq = recorder_->begin(op, count, type, reduce, root);
  std::string what = std::string(op) + " #" + std::to_string(seq);
  if (std::string(op) != "barrier") what = describe_collective(op, seq, count, type, reduce);
  watchdog_->arm(what);
  auto scope = std::make_unique<Scope>(*this, seq, std::move(what));
  if (options_.check_collectives) check(seq, op, count, type, reduce, root);
  return scope;
}

void CollectiveMonitor::check(std::uint64_t seq, const char* op, std::size_t count, DType type, const char* reduce,
                              int root) {
  const Descriptor mine{index_of(op, kOps, kNumOps), static_cast<std::int64_t>(count), static_cast<std::int64_t>(type),
                        index_of(reduce, kReduce, 5), root};
  int size = 1;
  MPI_Comm_size(check_comm_, &size);
  std::vector<Descriptor> all(static_cast<std::size_t>(size));
  HPCT_MPI_CHECK(MPI_Allgather(&mine, 5, MPI_INT64_T, all.data(), 5, MPI_INT64_T, check_comm_));
  if (std::all_of(all.begin(), all.end(), [&](const Descriptor& d) { return d == all.front(); })) return;
  // Group the ranks by what they call: the largest group is taken as the intended collective.
  std::vector<std::pair<Descriptor, std::vector<int>>> groups;
  for (int r = 0; r < size; ++r) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == all[static_cast<std::size_t>(r)]; });
    if (it == groups.end()) groups.push_back({all[static_cast<std::size_t>(r)], {r}});
    else it->second.push_back(r);
  }
  std::stable_sort(groups.begin(), groups.end(), [](const auto& a, const auto& b) { return a.second.size() > b.second.size(); });
  std::ostringstream os;
  os << "ddp_check_collectives: collective #" << seq << " differs between ranks: ";
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto& ranks = groups[g].second;
    os << (g ? "; " : "") << (ranks.size() == 1 ? "rank " : "ranks ");
    for (std::size_t i = 0; i < ranks.size(); ++i) {
      const int r = ranks[i];
      os << (i ? ", " : "") << r;
      if (g > 0 && r < static_cast<int>(env_.hosts().size())) os << " (" << env_.hosts()[static_cast<std::size_t>(r)] << ")";
    }
    os << (ranks.size() == 1 ? " calls " : " call ") << describe(groups[g].first);
  }
  throw CollectiveError(os.str(), exit_code::kFatal);
}

void CollectiveMonitor::on_stall(const std::string& what, double age) {
  HPCT_LOG(critical) << "collective " << what << " on rank " << env_.rank() << " (" << env_.host()
                     << ") has not completed after " << age << " s (ddp_timeout=" << options_.timeout_s << " s)";
  const std::string why = "collective " + what + " stalled for " + std::to_string(static_cast<long long>(age)) + " s";
  if (recorder_->dump_before_abort(why, 10)) {
    // The other live ranks' watchdogs fire about now too: give their records a moment to land,
    // then the lowest rank with a record reads them all and names who never arrived.
    const double grace = std::min(10.0, std::max(2.0, 0.2 * options_.timeout_s));
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace);
    auto records = [&] {
      int n = 0, lowest = env_.size();
      for (int r = 0; r < env_.size(); ++r) {
        std::error_code ec;
        if (std::filesystem::exists(options_.flight_dir + "/rank-" + std::to_string(r) + ".json", ec)) {
          ++n;
          lowest = std::min(lowest, r);
        }
      }
      return std::make_pair(n, lowest);
    };
    while (records().first < env_.size() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    // The lowest rank reports, then says so in <flight>/reported; the others wait for that (at
    // most 10 s) before they abort, so that their abort does not cut its report short.
    const std::string reported = options_.flight_dir + "/reported";
    if (records().second == env_.rank()) {
      const std::string summary = analyse_flight_dir(options_.flight_dir, env_.size(), env_.hosts());
      HPCT_LOG(critical) << "stalled collective: " << summary << "; flight records in " << options_.flight_dir
                         << " (hpctrain-flight " << options_.flight_dir << " shows them side by side); aborting the job";
      try {
        files::write_atomic(reported, summary + "\n");
      } catch (const std::exception&) {
        // the others abort after their wait
      }
    } else {
      const auto report_until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      std::error_code ec;
      while (!std::filesystem::exists(reported, ec) && std::chrono::steady_clock::now() < report_until)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  } else {
    HPCT_LOG(critical) << "another rank is stuck or gone; aborting the job";
  }
  env_.abort(exit_code::kTimeout);
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
