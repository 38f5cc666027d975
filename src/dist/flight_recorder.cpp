// FlightRecorder: the ring of collectives, its record file, and reading a directory of records.
#include "hpctrain/dist/flight_recorder.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <iomanip>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "hpctrain/core/error.h"
#include "hpctrain/core/files.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/environment.h"

namespace hpctrain::dist {
namespace fs = std::filesystem;

namespace {

std::atomic<FlightRecorder*> g_active{nullptr};

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// "allreduce of 4 float64 (max)", from a record's entry.
std::string describe(const Json& e) {
  auto text = [&](const char* k) {
    const Json* v = json::find(e, k);
    return v && v->is_string() ? v->get<std::string>() : std::string();
  };
  auto number = [&](const char* k) {
    const Json* v = json::find(e, k);
    return v && v->is_number() ? json::number(*v) : -1.0;
  };
  std::ostringstream os;
  os << text("op");
  if (text("op") != "barrier") os << " of " << static_cast<long long>(number("count")) << " " << text("dtype");
  if (!text("reduce").empty()) os << " (" << text("reduce") << ")";
  if (number("root") >= 0) os << " (root " << static_cast<long long>(number("root")) << ")";
  return os.str();
}

std::int64_t seq_of(const Json& e) {
  const Json* v = json::find(e, "seq");
  return v && json::is_int64(*v) ? v->get<std::int64_t>() : -1;
}

struct Records {
  int world = 0;
  std::vector<std::string> hosts;
  std::map<int, Json> by_rank;
  std::vector<std::string> unreadable;
};

Records read_records(const std::string& dir) {
  Records out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind("rank-", 0) != 0 || it->path().extension() != ".json") continue;
    try {
      Json r = json::parse_file(it->path().string());
      const Json* rank = json::find(r, "rank");
      const Json* world = json::find(r, "world");
      if (!rank || !json::is_int64(*rank) || !world || !json::is_int64(*world)) throw Error("no rank or world");
      out.world = std::max(out.world, static_cast<int>(world->get<std::int64_t>()));
      if (const Json* h = json::find(r, "hosts"); h && h->is_array() && out.hosts.empty())
        for (const auto& x : *h) out.hosts.push_back(x.is_string() ? x.get<std::string>() : "?");
      out.by_rank[static_cast<int>(rank->get<std::int64_t>())] = std::move(r);
    } catch (const std::exception& e) {
      out.unreadable.push_back(name + " (" + e.what() + ")");
    }
  }
  return out;
}

}  // namespace

FlightRecorder::FlightRecorder(const Environment& env, std::string dir, std::size_t capacity)
    : env_(env), dir_(std::move(dir)), ring_(std::max<std::size_t>(capacity, 1)) {
  g_active.store(this);
}

FlightRecorder::~FlightRecorder() {
  FlightRecorder* me = this;
  g_active.compare_exchange_strong(me, nullptr);
}

FlightRecorder* FlightRecorder::active() { return g_active.load(); }

std::uint64_t FlightRecorder::begin(const char* op, std::size_t count, DType type, const char* reduce, int root) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::uint64_t seq = next_seq_++;
  Entry& e = ring_[seq % ring_.size()];
  e = Entry{seq, op, count, type, reduce ? reduce : "", root, now_s(), -1};
  return seq;
}

void FlightRecorder::end(std::uint64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = ring_[seq % ring_.size()];
  if (e.seq == seq) e.end = now_s();
}

Json FlightRecorder::record(const std::string& why) const {
  std::vector<Entry> entries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& e : ring_)
      if (e.seq != 0) entries.push_back(e);
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.seq < b.seq; });
  Json list = Json::array(), in_progress = nullptr;
  for (const auto& e : entries) {
    Json j = Json::object();
    j["seq"] = static_cast<std::int64_t>(e.seq);
    j["op"] = e.op;
    j["count"] = static_cast<std::int64_t>(e.count);
    j["dtype"] = dtype_name(e.type);
    if (*e.reduce) j["reduce"] = e.reduce;
    if (e.root >= 0) j["root"] = e.root;
    j["start"] = e.start;
    j["end"] = e.end < 0 ? Json(nullptr) : Json(e.end);
    if (e.end < 0) in_progress = j;
    list.push_back(j);
  }
  Json hosts = Json::array();
  for (const auto& h : env_.hosts()) hosts.push_back(h);
  Json r = Json::object();
  r["rank"] = env_.rank();
  r["world"] = env_.size();
  r["host"] = env_.host();
  r["pid"] = static_cast<std::int64_t>(::getpid());
  r["why"] = why;
  r["time"] = now_s();
  r["in_progress"] = in_progress;
  r["collectives"] = list;
  r["hosts"] = hosts;
  return r;
}

bool FlightRecorder::dump_before_abort(const std::string& why, double seconds) const {
  if (dir_.empty()) return false;
  struct Outcome {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false, ok = false;
  };
  auto outcome = std::make_shared<Outcome>();
  std::thread([this, why, outcome] {
    const bool ok = dump(why);
    std::lock_guard<std::mutex> lock(outcome->mu);
    outcome->done = true;
    outcome->ok = ok;
    outcome->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(outcome->mu);
  if (!outcome->cv.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return outcome->done; })) {
    HPCT_LOG(warning) << "flight record: writing to " << dir_ << " did not finish within " << seconds
                      << " s (a file system that does not answer?); going on without it";
    return false;
  }
  return outcome->ok;
}

bool FlightRecorder::dump(const std::string& why) const {
  if (dir_.empty()) return false;
  try {
    fs::create_directories(dir_);
    files::write_atomic((fs::path(dir_) / ("rank-" + std::to_string(env_.rank()) + ".json")).string(),
                        json::dump(record(why), 1) + "\n");
    return true;
  } catch (const std::exception& e) {
    HPCT_LOG(error) << "flight recorder: cannot write this rank's record into " << dir_ << ": " << e.what();
    return false;
  }
}

std::string analyse_flight_dir(const std::string& dir, int world, const std::vector<std::string>& hosts_in) {
  Records rec = read_records(dir);
  if (rec.by_rank.empty()) return "";
  world = std::max(world, rec.world);
  const std::vector<std::string>& hosts = hosts_in.empty() ? rec.hosts : hosts_in;
  auto host_of = [&](int r) { return r < static_cast<int>(hosts.size()) ? hosts[static_cast<std::size_t>(r)] : "?"; };
  // The collective the ranks wait in: the newest one in progress on any rank.
  std::int64_t waited = -1;
  Json waited_entry;
  for (const auto& [r, j] : rec.by_rank) {
    const Json* p = json::find(j, "in_progress");
    if (p && p->is_object() && seq_of(*p) > waited) {
      waited = seq_of(*p);
      waited_entry = *p;
    }
  }
  std::ostringstream os;
  std::vector<int> waiting;
  std::vector<std::string> behind, absent;
  for (int r = 0; r < world; ++r) {
    auto it = rec.by_rank.find(r);
    if (it == rec.by_rank.end()) {
      absent.push_back("rank " + std::to_string(r) + " on " + host_of(r));
      continue;
    }
    const Json* p = json::find(it->second, "in_progress");
    const std::int64_t mine = p && p->is_object() ? seq_of(*p) : -1;
    if (waited >= 0 && mine == waited) {
      waiting.push_back(r);
      continue;
    }
    // Its newest collective, and whether it ended.
    std::string last = "no collective yet";
    if (const Json* c = json::find(it->second, "collectives"); c && c->is_array() && !c->empty()) {
      const Json& e = c->back();
      const Json* end = json::find(e, "end");
      last = "last #" + std::to_string(seq_of(e)) + " " + describe(e) + (end && end->is_null() ? ", in progress" : ", done");
    }
    if (waited >= 0) behind.push_back("rank " + std::to_string(r) + " on " + host_of(r) + " (" + last + ")");
  }
  if (waited >= 0) {
    os << "collective #" << waited << " (" << describe(waited_entry) << ") waited in by rank";
    os << (waiting.size() == 1 ? " " : "s ");
    for (std::size_t i = 0; i < waiting.size(); ++i) os << (i ? ", " : "") << waiting[i];
    if (const Json* s = json::find(waited_entry, "start"); s && s->is_number())
      os << " since " << std::fixed << std::setprecision(1) << std::max(0.0, now_s() - json::number(*s)) << " s";
    os << "; never reached by ";
  } else {
    os << "no rank's record shows a collective in progress; ";
  }
  if (absent.empty() && behind.empty()) {
    os << (waited >= 0 ? "no rank (every rank is in it: a collective the network does not complete?)" : "every rank recorded");
  } else {
    std::string list;
    for (const auto& a : absent) list += (list.empty() ? "" : ", ") + a;
    if (!absent.empty()) list += absent.size() == 1 ? " (no record: stopped, dead, or stuck outside a collective)"
                                                    : " (no records: stopped, dead, or stuck outside a collective)";
    for (const auto& b : behind) list += (list.empty() ? "" : ", ") + b;
    os << list;
  }
  for (const auto& u : rec.unreadable) os << "; unreadable record " << u;
  return os.str();
}

std::string aligned_flight_view(const std::string& dir, std::size_t last) {
  Records rec = read_records(dir);
  if (rec.by_rank.empty()) return "no flight records (rank-<k>.json) in " + dir + "\n";
  const int world = rec.world;
  std::int64_t newest = 0;
  for (const auto& [r, j] : rec.by_rank)
    if (const Json* c = json::find(j, "collectives"); c && c->is_array())
      for (const auto& e : *c) newest = std::max(newest, seq_of(e));
  const std::int64_t first = std::max<std::int64_t>(1, newest - static_cast<std::int64_t>(last) + 1);
  std::ostringstream os;
  os << "flight records of " << rec.by_rank.size() << " of " << world << " ranks in " << dir << "\n";
  os << std::left << std::setw(42) << "collective";
  for (int r = 0; r < world; ++r) os << std::setw(12) << ("rank " + std::to_string(r));
  os << "\n";
  for (std::int64_t seq = first; seq <= newest; ++seq) {
    std::string what;
    std::vector<std::string> cells;
    for (int r = 0; r < world; ++r) {
      auto it = rec.by_rank.find(r);
      if (it == rec.by_rank.end()) {
        cells.push_back("(no record)");
        continue;
      }
      std::string cell = "-";
      const Json* time = json::find(it->second, "time");
      const double t = time && time->is_number() ? json::number(*time) : 0;
      if (const Json* c = json::find(it->second, "collectives"); c && c->is_array())
        for (const auto& e : *c) {
          if (seq_of(e) != seq) continue;
          if (what.empty()) what = describe(e);
          const Json* end = json::find(e, "end");
          const Json* start = json::find(e, "start");
          if (end && end->is_number()) {
            cell = "done";
          } else {
            std::ostringstream w;
            w << "WAIT " << std::fixed << std::setprecision(1)
              << (start && start->is_number() ? std::max(0.0, t - json::number(*start)) : 0.0) << "s";
            cell = w.str();
          }
        }
      cells.push_back(cell);
    }
    os << std::left << std::setw(42) << ("#" + std::to_string(seq) + " " + what);
    for (const auto& c : cells) os << std::setw(12) << c;
    os << "\n";
  }
  os << analyse_flight_dir(dir, world, rec.hosts) << "\n";
  return os.str();
}

}  // namespace hpctrain::dist
