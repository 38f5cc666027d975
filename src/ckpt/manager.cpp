// CheckpointManager: resume discovery, loading the pieces, snapshots, the background writer and
// the commit protocol.
#include "hpctrain/ckpt/manager.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "hpctrain/ckpt/format.h"
#include "hpctrain/core/bytes.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/files.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/version.h"
#include "polled_comm.h"
#include "snapshot.h"

namespace hpctrain::ckpt {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

void Stateful::missing(const std::string& where) {
  throw ConfigError(where + " holds no '" + key() + "' state, which this run needs");
}

namespace {

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The step of "checkpoint-<step>", or -1 for any other name (18 digits at most: no overflow).
std::int64_t step_of(const fs::path& p) {
  const std::string name = p.filename().string();
  if (name.rfind("checkpoint-", 0) != 0 || name.size() == 11 || name.size() > 11 + 18) return -1;
  std::int64_t step = 0;
  for (std::size_t i = 11; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

// Committed checkpoints of output_dir with their steps, newest first.
std::vector<std::pair<std::int64_t, std::string>> checkpoints_with_steps(const std::string& output_dir) {
  std::vector<std::pair<std::int64_t, std::string>> all;
  std::error_code ec;
  for (fs::directory_iterator it(output_dir, ec), end; !ec && it != end; it.increment(ec))
    // A symbolic link (to another run's checkpoint, say) is not one of this output_dir's.
    if (!it->is_symlink(ec) && it->is_directory(ec) && step_of(it->path()) >= 0)
      all.emplace_back(step_of(it->path()), it->path().string());
  std::sort(all.rbegin(), all.rend());
  return all;
}

}  // namespace

bool latest_checkpoint(const std::string& output_dir, std::string& name) {
  name.clear();
  std::ifstream in(fs::path(output_dir) / "latest", std::ios::binary);
  char buf[4096];
  in.read(buf, sizeof(buf));
  name.assign(buf, static_cast<std::size_t>(in.gcount()));
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r' || name.back() == ' ')) name.pop_back();
  if (name.empty() || name.find('/') != std::string::npos || step_of(name) < 0) return false;
  // A checkpoint-<step> that is a symbolic link elsewhere is not this run's either.
  std::error_code ec;
  const fs::path real = fs::canonical(fs::path(output_dir) / name, ec);
  if (ec) return true;  // absent: the caller finds that and falls back, saying why
  const fs::path home = fs::canonical(output_dir, ec);
  return !ec && real.parent_path() == home;
}

namespace {

std::vector<std::string> checkpoints_newest_first(const std::string& output_dir) {
  std::vector<std::string> out;
  for (auto& a : checkpoints_with_steps(output_dir)) out.push_back(std::move(a.second));
  return out;
}

// "" when `dir` can start a run (or, when !need_training_state, an evaluation), else why not
// ("checkpoint '<dir>' ..."): every checksum, then the pieces' own checks (`check_state`).
std::string usable(const std::string& dir, bool need_training_state,
                   const std::function<void(const FileReader&)>& check_state) {
  try {
    FileReader r(dir);
    r.check_all();
    if (check_state) check_state(r);
    if (need_training_state && r.model_only())
      return r.where() + " was saved with save_only_model=true and holds the model alone; training cannot resume from it";
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Lowers the writer thread's priority: on a machine whose cores all compute, its checksums and
// copies into the page cache then take the gaps instead of the training threads' time.
void lower_thread_priority() {
#ifdef SYS_gettid
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
#endif
}

// An fd that closes itself; close errors of the write path are checked where they matter.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Writes this rank's share of every tensor into `path` at the offsets rank 0 laid out, then
// fsyncs. Page-aligned runs go through O_DIRECT where the file system takes it: straight from the
// snapshot to the disk, with no copy into the page cache and no write-back later, which would
// take CPU from training. The rest (short tails, small tensors) is written through the cache.
void write_share(const std::string& path, const Snapshot& snap, const std::vector<std::int64_t>& offsets, int rank) {
  Fd cached, direct;
  cached.fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (cached.fd < 0) throw Error("cannot open '" + path + "': " + std::strerror(errno));
  direct.fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_DIRECT);  // -1: not on this file system
  const auto& tensors = snap.tensors();
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto [lo, hi] = snap.range(tensors[i], rank);
    if (hi <= lo) continue;
    const char* data = tensors[i].mine;
    std::int64_t at = offsets.at(i) + static_cast<std::int64_t>(lo);
    std::size_t len = hi - lo;
    const std::size_t page = Arena::kPage;
    const std::size_t aligned = len / page * page;
    if (direct.fd >= 0 && aligned > 0 && at % static_cast<std::int64_t>(page) == 0 &&
        reinterpret_cast<std::uintptr_t>(data) % page == 0) {
      std::size_t done = 0;
      while (done < aligned) {
        const ssize_t n = ::pwrite(direct.fd, data + done, std::min<std::size_t>(aligned - done, std::size_t{1} << 30),
                                   static_cast<off_t>(at + static_cast<std::int64_t>(done)));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EINVAL && done == 0) break;  // O_DIRECT refused here: the cache takes it all
        if (n <= 0) throw Error("cannot write '" + path + "': " + std::strerror(n < 0 ? errno : EIO));
        if (static_cast<std::size_t>(n) % page != 0) {  // a short direct write: finish through the cache
          done += static_cast<std::size_t>(n);
          break;
        }
        done += static_cast<std::size_t>(n);
      }
      data += done;
      at += static_cast<std::int64_t>(done);
      len -= done;
    }
    if (len > 0) write_at(cached.fd, path, data, len, at);
  }
  if (::fsync(cached.fd) != 0) throw Error("cannot flush '" + path + "' to disk: " + std::strerror(errno));
  const int fd = cached.fd;
  cached.fd = -1;
  if (::close(fd) != 0) throw Error("cannot close '" + path + "': " + std::strerror(errno));
}

}  // namespace

std::string checkpoint_dir(const std::string& output_dir, std::int64_t step) {
  return (fs::path(output_dir) / ("checkpoint-" + std::to_string(step))).string();
}

std::int64_t elastic_accumulation(std::int64_t saved_batch, int saved_world, std::int64_t per_device, int world,
                                  const std::string& where) {
  const std::int64_t per_step = per_device * world;
  if (saved_batch > 0 && per_step > 0 && saved_batch % per_step == 0) return saved_batch / per_step;
  std::string valid;
  for (std::int64_t b = 1; b <= saved_batch && b <= (std::int64_t{1} << 40); ++b)
    if (saved_batch % (b * world) == 0) valid += (valid.empty() ? "" : ", ") + std::to_string(b);
  throw ConfigError("resume from " + where + ": the checkpoint's global batch is " + std::to_string(saved_batch) + " (" +
                    std::to_string(saved_world) + " ranks); with " + std::to_string(world) +
                    " ranks per_device_train_batch_size must divide it evenly: " +
                    (valid.empty() ? std::string("none does") : "one of " + valid));
}

void rotate(const std::string& output_dir, std::int64_t keep, std::int64_t current, const std::string& protect) {
  if (keep <= 0) return;
  std::int64_t kept = 0;
  for (const auto& [step, p] : checkpoints_with_steps(output_dir)) {
    std::error_code ec;
    // Checkpoints past the one just committed belong to an earlier run that went further (this
    // one resumed from an older checkpoint): not this run's to delete.
    if (step > current) continue;
    const bool is_protected = !protect.empty() && fs::exists(protect, ec) && fs::equivalent(p, protect, ec);
    if (kept < keep || is_protected) {
      kept += !is_protected;
      continue;
    }
    fs::remove_all(p, ec);
    if (ec) {
      HPCT_LOG(warning) << "rotation: cannot delete " << p << ": " << ec.message();
    }
  }
}

// ---- the manager ----

struct CheckpointManager::Job {
  SaveRequest request;
  std::unique_ptr<Snapshot> snapshot;
  Json meta;
  std::string partial, final_dir;
  SaveStats stats;
  Clock::time_point start, written_from;
  std::string snapshot_error;  // this rank could not take its snapshot
  std::string error;
  bool agreed = false;  // every rank has this error (rank 0 decided it and told everyone)
};

CheckpointManager::CheckpointManager(const dist::Environment& env, Options options)
    : env_(env), options_(std::move(options)), arena_(std::make_unique<Arena>()) {
  if (options_.background && env.thread_level() < MPI_THREAD_MULTIPLE) {
    if (env.rank() == 0) {
      HPCT_LOG(warning) << "checkpoints are written synchronously: MPI gives " << dist::thread_level_name(env.thread_level())
                        << ", background saves need MPI_THREAD_MULTIPLE";
    }
    options_.background = false;
  }
  comm_ = std::make_unique<PolledComm>(env.comm(), options_.timeout_seconds);
}

CheckpointManager::~CheckpointManager() {
  if (!thread_.joinable()) return;
  thread_.join();
  if (job_ && !job_->error.empty()) {
    HPCT_LOG(error) << "checkpoint " << job_->final_dir << " failed: " << job_->error;
  }
}

void CheckpointManager::reserve(std::size_t state_bytes) {
  // A rank's share, with room for the page rounding of each of its pieces.
  const std::size_t share = state_bytes / static_cast<std::size_t>(env_.size());
  arena_->reserve(share + share / 64 + (std::size_t{16} << 20));
}

void CheckpointManager::add(Stateful& piece, Scope scope) {
  for (const auto& p : pieces_)
    HPCT_CHECK(p.first->key() != piece.key(), "checkpoint: two pieces of state have the key '" << piece.key() << "'");
  pieces_.emplace_back(&piece, scope);
}

std::vector<Stateful*> CheckpointManager::pieces(bool model_only) const {
  std::vector<Stateful*> out;
  for (const auto& [p, scope] : pieces_)
    if (!model_only || scope == Scope::kModel) out.push_back(p);
  return out;
}

std::optional<std::string> CheckpointManager::find(const std::string& spec, bool need_training_state) const {
  if (spec.empty() || spec == "none") return std::nullopt;
  std::string chosen, error;
  const std::string& out = options_.output_dir;
  if (env_.rank() == 0) {
    if (spec != "auto") {
      error = usable(spec, need_training_state, options_.check_state);
      if (error.empty()) chosen = spec;
    } else {
      std::vector<std::string> candidates;
      const auto all = checkpoints_newest_first(out);
      std::string name;
      if (latest_checkpoint(out, name)) {
        candidates.push_back((fs::path(out) / name).string());
      } else if (!name.empty()) {
        HPCT_LOG(warning) << "resume: " << out << "/latest names '" << name.substr(0, 200)
                          << "', which is not a checkpoint-<step> directory of this output_dir; it is ignored";
      } else if (!all.empty()) {
        HPCT_LOG(warning) << "resume: " << out << "/latest is missing or empty; looking for checkpoints";
      }
      candidates.insert(candidates.end(), all.begin(), all.end());
      std::vector<std::string> tried;
      for (const auto& c : candidates) {
        std::error_code ec;
        if (std::any_of(tried.begin(), tried.end(), [&](const std::string& t) { return fs::equivalent(t, c, ec); })) continue;
        tried.push_back(c);
        const std::string why = usable(c, need_training_state, options_.check_state);
        if (why.empty()) {
          chosen = c;
          break;
        }
        HPCT_LOG(warning) << "resume: skipping " << why;
      }
    }
  }
  error = env_.broadcast_string(error, 0);
  if (!error.empty())
    throw CollectiveError("resume_from_checkpoint=" + spec + ": not a usable checkpoint: " + error, exit_code::kConfig);
  chosen = env_.broadcast_string(chosen, 0);
  if (chosen.empty()) return std::nullopt;
  return chosen;
}

void CheckpointManager::load(const std::string& dir, bool model_only) {
  FileReader file(dir);
  if (!model_only && file.model_only())
    throw ConfigError(file.where() + " was saved with save_only_model=true and holds the model alone; training cannot resume from it");
  std::map<std::string, bool> used;
  for (const auto& [key, m] : file.pieces()) used[key] = false;
  for (Stateful* p : pieces(model_only)) {
    auto reader = file.piece(p->key());
    if (!reader) {
      p->missing(file.where());
      continue;
    }
    used[p->key()] = true;
    p->load(*reader);
  }
  if (!model_only && env_.rank() == 0) {
    for (const auto& [key, u] : used)
      if (!u) {
        HPCT_LOG(warning) << file.where() << " holds state '" << key << "' that this run does not use; it is ignored";
      }
  }
}

void CheckpointManager::save(const SaveRequest& request) {
  const auto t0 = Clock::now();
  wait();  // at most one save in flight; its failure stops this one
  auto job = std::make_unique<Job>();
  job->request = request;
  job->final_dir = dir_for(request.step);
  job->partial = job->final_dir + ".partial";
  job->start = t0;
  arena_->reset();
  const auto t_copy = Clock::now();
  const bool background = options_.background && !request.wait;
  // A background save copies the live state; a synchronous one too (into page-aligned memory that
  // O_DIRECT takes), unless memory is short: then it writes the live state in place.
  job->snapshot = std::make_unique<Snapshot>(env_.rank(), env_.size(), *arena_,
                                             /*copy_live=*/background || !options_.in_place);
  try {
    for (Stateful* p : pieces(request.model_only)) {
      job->snapshot->begin_piece(p->key());
      p->save(*job->snapshot);
    }
  } catch (const std::exception& e) {
    // The other ranks go on to the save's collectives: this rank joins them and says why it
    // cannot, so that every rank fails the save together instead of waiting for this one.
    job->snapshot_error = std::string("rank ") + std::to_string(env_.rank()) + " on " + env_.host() + ": " + e.what();
  }
  job->stats.step = request.step;
  job->stats.copy_seconds = since(t_copy);
  job->written_from = Clock::now();
  job->stats.bytes = job->snapshot->bytes_total();
  job->meta = Json::object();
  job->meta["format_version"] = kFormatVersion;
  job->meta["hpctrain_version"] = HPCTRAIN_VERSION;
  job->meta["world_size"] = env_.size();
  job->meta["global_step"] = request.step;
  job->meta["model_only"] = request.model_only;
  job->stats.background = background;
  job_ = std::move(job);
  failed_ = false;
  running_ = true;
  if (job_->stats.background) {
    job_->stats.blocked_seconds = since(t0);
    Job* job_ptr = job_.get();
    thread_ = std::thread([this, job_ptr] {
      lower_thread_priority();
      run(*job_ptr);
    });
    return;
  }
  run(*job_);
  job_->stats.blocked_seconds = since(t0);
  wait();
}

void CheckpointManager::run(Job& job) {
  try {
    job.error = write_and_commit(job);
    job.agreed = true;
  } catch (const CollectiveError& e) {
    job.error = e.what();
    job.agreed = true;
  } catch (const std::exception& e) {
    job.error = std::string("rank ") + std::to_string(env_.rank()) + " on " + env_.host() + ": " + e.what();
    job.agreed = false;
  }
  job.stats.write_seconds = since(job.written_from);
  if (!job.error.empty()) failed_ = true;
  running_ = false;
}

std::string CheckpointManager::write_and_commit(Job& job) {
  Snapshot& snap = *job.snapshot;
  const int rank = env_.rank(), world = env_.size();
  const auto& tensors = snap.tensors();
  const std::string& where = job.final_dir;

  // 1. Checksums of this rank's bytes, and its per-rank entries, to rank 0 (or why it has none).
  ByteWriter mine;
  mine.put(job.snapshot_error);
  if (job.snapshot_error.empty()) {
    mine.put<std::uint64_t>(snap.layout_hash());
    for (const auto& t : tensors) {
      const auto [lo, hi] = snap.range(t, rank);
      if (hi > lo) mine.put<std::uint32_t>(crc32(t.mine, hi - lo));
    }
    for (const auto& r : snap.per_ranks()) mine.put(std::string(r.bytes.begin(), r.bytes.end()));
  }
  const auto all = comm_->gather(mine.bytes());

  // 2. Rank 0 makes state.h5: every dataset allocated with its checksum, per-rank entries, meta.
  std::string verdict;
  std::vector<std::int64_t> offsets;
  if (rank == 0) {
    try {
      Container c;
      c.world = world;
      for (const auto& t : tensors) c.tensors.push_back({t.path, t.type, t.shape, crc32(nullptr, 0)});
      std::vector<bool> have(tensors.size(), false);
      for (const auto& r : snap.per_ranks()) c.per_rank.push_back({r.path, r.bytes.size(), {}});
      for (int k = 0; k < world; ++k) {
        ByteReader in(all[static_cast<std::size_t>(k)]);
        if (const std::string why = in.get_string(); !why.empty()) throw Error(why);
        if (in.get<std::uint64_t>() != snap.layout_hash())
          throw Error("rank " + std::to_string(k) + " saved other state than rank 0 (another model or optimizer?)");
        for (std::size_t i = 0; i < tensors.size(); ++i) {
          const auto [lo, hi] = snap.range(tensors[i], k);
          if (hi <= lo) continue;
          const auto crc = in.get<std::uint32_t>();
          // Ranges are in rank order: the whole tensor's CRC continues from the previous rank's.
          c.tensors[i].crc32 = have[i] ? crc32_combine(c.tensors[i].crc32, crc, hi - lo) : crc;
          have[i] = true;
        }
        for (auto& r : c.per_rank) {
          const std::string bytes = in.get_string();
          if (bytes.size() != r.row_bytes)
            throw Error(r.path + " has " + std::to_string(bytes.size()) + " bytes on rank " + std::to_string(k) + " and " +
                        std::to_string(r.row_bytes) + " on rank 0");
          r.rows.insert(r.rows.end(), bytes.begin(), bytes.end());
        }
      }
      job.meta["pieces"] = snap.manifest();
      c.meta = job.meta;
      std::error_code ec;
      fs::remove_all(job.partial, ec);
      fs::create_directories(job.partial);
      const auto t_layout = Clock::now();
      offsets = create_container((fs::path(job.partial) / "state.h5").string(), c);
      job.stats.layout_seconds = since(t_layout);
    } catch (const std::exception& e) {
      verdict = e.what();
    }
  }
  ByteWriter w;
  w.put(verdict);
  w.put(offsets);
  const std::string answer = comm_->broadcast(w.bytes());
  {
    ByteReader in(answer);
    verdict = in.get_string();
    offsets = in.get_vector<std::int64_t>();
  }
  auto fail = [&](const std::string& why) {
    if (rank == 0) {
      std::error_code ec;
      fs::remove_all(job.partial, ec);
    }
    return "checkpoint " + where + " not saved: " + why;
  };
  if (!verdict.empty()) return fail(verdict);

  // 3. Every rank writes its bytes at their offsets and flushes them (each rank its own: on a
  // file system shared by nodes, one node's fsync does not cover another's writes).
  std::string my_error;
  const std::string state = (fs::path(job.partial) / "state.h5").string();
  try {
    // Rank 0 wrote the layout: it flushes the file even when it owns no tensor bytes.
    if (snap.bytes_mine() > 0 || rank == 0) write_share(state, snap, offsets, rank);
  } catch (const std::exception& e) {
    my_error = "rank " + std::to_string(rank) + " on " + env_.host() + ": " + e.what();
  }
  const auto errors = comm_->gather(my_error);

  // 4. Rank 0: the documents, then the commit (rename, latest), then rotation.
  verdict.clear();
  if (rank == 0) {
    for (const auto& e : errors)
      if (!e.empty()) verdict += (verdict.empty() ? "" : "; ") + e;
    if (verdict.empty()) {
      try {
        for (const auto& d : snap.documents()) files::write_atomic((fs::path(job.partial) / d.file).string(), d.text);
        files::fsync_path(job.partial);
        // A checkpoint of this step already there (an earlier run's, or this step's model-only save
        // before a preemption's whole one) is moved aside first and deleted after the rename.
        std::error_code ec;
        const std::string replaced = job.final_dir + ".replaced";
        fs::remove_all(replaced, ec);
        if (fs::exists(job.final_dir, ec)) fs::rename(job.final_dir, replaced);
        fs::rename(job.partial, job.final_dir);
        files::fsync_path(options_.output_dir);
        fs::remove_all(replaced, ec);
        files::write_atomic((fs::path(options_.output_dir) / "latest").string(),
                            fs::path(job.final_dir).filename().string() + "\n");
        files::fsync_path(options_.output_dir);
      } catch (const std::exception& e) {
        verdict = e.what();
      }
    }
    if (verdict.empty()) {
      try {
        rotate(options_.output_dir, options_.save_total_limit, job.request.step, job.request.protect);
      } catch (const std::exception& e) {  // the checkpoint is committed: a failed cleanup is no failed save
        HPCT_LOG(warning) << "rotation after " << job.final_dir << ": " << e.what();
      }
    } else {
      std::error_code ec;
      fs::remove_all(job.partial, ec);
    }
  }
  verdict = comm_->broadcast(verdict);
  if (!verdict.empty()) return "checkpoint " + where + " not saved: " + verdict;
  return "";
}

void CheckpointManager::wait() {
  if (thread_.joinable()) thread_.join();
  if (!job_) return;
  std::unique_ptr<Job> job = std::move(job_);
  running_ = false;
  failed_ = false;
  // What a synchronous save of this state costs: the copy and the write.
  max_write_seconds_ = std::max(max_write_seconds_, job->stats.copy_seconds + job->stats.write_seconds);
  last_ = job->stats;
  if (!job->error.empty()) {
    if (job->agreed) throw CollectiveError(job->error, exit_code::kWriteFailed);
    throw Error(job->error);
  }
  ++saves_committed_;
  if (env_.rank() == 0) {
    HPCT_LOG(info) << "checkpoint " << job->final_dir << " saved: " << static_cast<double>(job->stats.bytes) / 1e6
                   << " MB, training blocked " << job->stats.blocked_seconds << " s (host copy "
                   << job->stats.copy_seconds << " s), written in " << job->stats.write_seconds << " s"
                   << (job->stats.background ? " in the background" : "") << " (HDF5 lock held "
                   << job->stats.layout_seconds << " s)";
  }
}

bool CheckpointManager::collect() {
  if (!job_ || running_.load() || failed_.load()) return false;
  wait();
  return true;
}

SaveStats CheckpointManager::last() const { return last_; }

}  // namespace hpctrain::ckpt
