// CheckpointManager: the one owner of checkpoint files. It finds the checkpoint to resume from,
// loads and saves the registered pieces of state (ckpt/state.h), writes in the background when
// asked, commits (partial -> fsync -> rename -> latest), rotates, and never shows a checkpoint
// that is not complete. The Trainer says "load this" and "save now"; it knows no file names.
//
// A save: at a step boundary every rank copies the bytes it will write into host memory (its
// share of every tensor) and training goes on. A writer thread then, on a communicator of its
// own: gathers the checksums and per-rank entries to rank 0, which creates state.h5 with every
// dataset allocated and checked; every rank writes its bytes at their offsets and fsyncs; rank 0
// writes the documents, renames checkpoint-<step>.partial to checkpoint-<step>, replaces latest
// and rotates; and every rank learns the outcome. At most one save is in flight.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "hpctrain/ckpt/state.h"
#include "hpctrain/core/json.h"

namespace hpctrain::dist {
class Environment;
}

namespace hpctrain::ckpt {

class Arena;
class FileReader;
class PolledComm;

/// "<output_dir>/checkpoint-<step>".
std::string checkpoint_dir(const std::string& output_dir, std::int64_t step);

/// What `<output_dir>/latest` names, in `name` (at most its first 4 KiB, without the line end).
/// True when that is a checkpoint-<step> directory of this output_dir, not a path elsewhere (an
/// absolute path, .., or a symbolic link out); false otherwise, with `name` empty when there is
/// no latest file or it is empty.
bool latest_checkpoint(const std::string& output_dir, std::string& name);

/// The gradient accumulation that keeps a checkpoint's global batch of `saved_batch` (written by
/// `saved_world` ranks) on `world` ranks of `per_device` samples each. ConfigError listing the
/// per-device sizes that would divide it when none does.
std::int64_t elastic_accumulation(std::int64_t saved_batch, int saved_world, std::int64_t per_device, int world,
                                  const std::string& where);

/// Rank 0, after committing checkpoint-<current>: deletes the oldest checkpoints at or before
/// `current` beyond `keep` (0: keep all), never `protect`; later ones (of an earlier run that went
/// further) are left alone.
void rotate(const std::string& output_dir, std::int64_t keep, std::int64_t current, const std::string& protect);

/// What one save cost.
struct SaveStats {
  std::int64_t step = -1;
  bool background = false;
  double blocked_seconds = 0;  ///< training stopped for it: waiting for the save before, and the host copy
  double copy_seconds = 0;     ///< the host copy alone
  double write_seconds = 0;    ///< after the copy until the commit: every rank's bytes on disk
  std::size_t bytes = 0;       ///< every tensor's bytes (the whole checkpoint)
  double layout_seconds = 0;   ///< rank 0: making state.h5's layout, the only time a save holds the HDF5 lock
};

class CheckpointManager {
 public:
  struct Options {
    std::string output_dir;
    std::int64_t save_total_limit = 0;  ///< checkpoints kept (0: all); the protected best is never deleted
    bool background = true;             ///< write in a background thread (needs MPI_THREAD_MULTIPLE)
    /// Synchronous saves write live tensors in place instead of copying them first: no host copy
    /// of the state (for memory that cannot hold one), but no O_DIRECT either (the tensors' memory
    /// is not page-aligned), so the write goes through the page cache and costs more CPU.
    bool in_place = false;
    double timeout_seconds = 1800;      ///< how long ranks wait for each other during a save
    /// The pieces' own checks of what a load reads (train::saved::check_saved_state), made with
    /// the checksums before a checkpoint is chosen, so that `auto` passes over any a load refuses.
    std::function<void(const FileReader&)> check_state;
  };
  enum class Scope { kModel, kTraining };

  /// Collective (it duplicates the job's communicator for the writer).
  CheckpointManager(const dist::Environment& env, Options options);
  /// Waits for a save in flight; its failure is logged, not thrown.
  ~CheckpointManager();
  CheckpointManager(const CheckpointManager&) = delete;
  CheckpointManager& operator=(const CheckpointManager&) = delete;

  /// Registers a piece (not owned; it must outlive the manager). kModel pieces are saved and
  /// loaded alone by save_only_model checkpoints and by evaluate/predict.
  void add(Stateful& piece, Scope scope);

  /// Allocates and touches the host memory of a background save of about `state_bytes` (every
  /// tensor of the state) now, so that the first save does not pay for fresh pages.
  void reserve(std::size_t state_bytes);

  /// Collective: the checkpoint to start from for `spec` (none, auto, or a directory). auto takes
  /// `latest`, else the newest checkpoint-* that verifies; damaged ones are skipped with a warning,
  /// and so are model-only ones when `need_training_state`. An explicit directory must verify:
  /// CollectiveError otherwise. Every rank gets rank 0's answer; nullopt: none.
  std::optional<std::string> find(const std::string& spec, bool need_training_state) const;

  /// Loads the registered pieces (kModel ones only when `model_only`) from `dir`. Each piece checks
  /// the checkpoint against the run first and names what differs.
  void load(const std::string& dir, bool model_only);

  struct SaveRequest {
    std::int64_t step = 0;
    bool model_only = false;  ///< kModel pieces alone (save_only_model)
    bool wait = false;        ///< return once committed (a preemption, the end of training)
    std::string protect;      ///< a checkpoint directory rotation must keep (the best model)
  };
  /// Collective: snapshots every piece now and writes checkpoint-<step>: in the background when
  /// the options allow and !wait. Waits first for the save in flight (and throws its failure).
  void save(const SaveRequest& request);
  /// Waits for the save in flight; throws its failure (CollectiveError when every rank agreed on it).
  void wait();
  /// Between steps: when the save in flight has committed, joins its writer and returns true (its
  /// stats are then last()). A failed save is left for wait(), which every rank calls together.
  bool collect();
  /// A save is being written.
  bool in_flight() const { return running_.load(); }
  /// The save in flight has ended in a failure this rank knows of (wait() throws it).
  bool failed() const { return failed_.load(); }
  /// Stats of the newest finished save (step -1 before the first), and how many saves have
  /// committed so far (a change says last() is new).
  SaveStats last() const;
  std::int64_t saves_committed() const { return saves_committed_; }
  /// The longest write of any save so far (seconds), for the SLURM time-limit margin.
  double max_write_seconds() const { return max_write_seconds_; }
  bool background() const { return options_.background; }
  const std::string& output_dir() const { return options_.output_dir; }
  std::string dir_for(std::int64_t step) const { return checkpoint_dir(options_.output_dir, step); }

 private:
  struct Job;
  void run(Job& job);
  std::string write_and_commit(Job& job);
  std::vector<Stateful*> pieces(bool model_only) const;

  const dist::Environment& env_;
  Options options_;
  std::unique_ptr<PolledComm> comm_;
  std::vector<std::pair<Stateful*, Scope>> pieces_;
  std::unique_ptr<Arena> arena_;
  std::unique_ptr<Job> job_;
  std::thread thread_;
  std::atomic<bool> running_{false}, failed_{false};
  double max_write_seconds_ = 0;
  std::int64_t saves_committed_ = 0;
  SaveStats last_;
};

}  // namespace hpctrain::ckpt
