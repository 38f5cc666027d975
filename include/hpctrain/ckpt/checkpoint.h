// Checkpoints: one directory checkpoint-<step>/ with state.h5 (parallel HDF5, written collectively:
// each rank writes its slab of every tensor) and trainer_state.json; written as .partial, then
// renamed and pointed at by output_dir/latest, so a checkpoint is complete or invisible.
// Torch-free: tensors arrive as typed host buffers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hpctrain/core/h5.h"
#include "hpctrain/core/json.h"

namespace hpctrain::dist {
class Environment;
}

namespace hpctrain::ckpt {

constexpr int kFormatVersion = 1;

enum class DType { kFloat32, kFloat64, kInt64, kUInt8 };
/// Bytes per element.
std::size_t dtype_size(DType t);

/// Writes state.h5 collectively with the MPI-IO driver. Every call is collective: every rank makes
/// the same calls in the same order with the same names and shapes.
class Writer {
 public:
  Writer(const dist::Environment& env, const std::string& path);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  /// A tensor every rank holds whole (replicated state): rank r writes rows
  /// [d0*r/N, d0*(r+1)/N) of it; its CRC32 is stored as the attribute "crc32".
  void tensor(const std::string& path, DType type, const std::vector<std::int64_t>& shape, const void* data);
  /// Per-rank bytes of equal length on every rank (RNG states): a [world, len] uint8 dataset.
  void per_rank(const std::string& path, const std::vector<std::uint8_t>& mine);
  /// The root attribute "meta": JSON text (format version, world size, step, model, ...).
  void meta(const Json& meta);
  /// Flushes and closes the file (collective).
  void close();

 private:
  hid_t group_for(const std::string& path);
  const dist::Environment& env_;
  std::string path_;
  h5::Handle file_, dxpl_;
};

/// Reads a checkpoint's state.h5 on one process (each rank reads what it needs).
class Reader {
 public:
  explicit Reader(const std::string& path);
  Json meta() const;
  bool has(const std::string& path) const;
  std::vector<std::int64_t> shape(const std::string& path) const;
  /// The type a dataset was written with.
  DType stored_type(const std::string& path) const;
  /// Reads a whole tensor as `type` into `out` (sized by the caller) and checks its CRC32.
  void read(const std::string& path, DType type, void* out) const;
  /// Rank `rank`'s bytes of a per_rank dataset; empty when the checkpoint had fewer ranks.
  std::vector<std::uint8_t> per_rank(const std::string& path, int rank) const;
  /// Every tensor path under /model and /optimizer.
  std::vector<std::string> tensors() const;

 private:
  std::string path_;
  h5::Handle file_;
};

/// "<dir>/checkpoint-<step>".
std::string checkpoint_dir(const std::string& output_dir, std::int64_t step);

/// Checks a checkpoint directory: state.h5 opens, its format version is known, every tensor's
/// CRC32 matches, trainer_state.json parses. Returns "" when valid, else what is wrong.
std::string verify(const std::string& dir);

/// Collective, after every rank closed its Writer on `partial`: rank 0 fsyncs the files, renames
/// the .partial directory to `final_dir`, fsyncs output_dir and atomically replaces
/// output_dir/latest; then all ranks continue.
void commit(const dist::Environment& env, const std::string& partial, const std::string& final_dir,
            const std::string& output_dir);

/// Rank 0: deletes the oldest checkpoint-* beyond `keep` (0: keep all), never `protect`.
void rotate(const std::string& output_dir, std::int64_t keep, const std::string& protect);

/// Collective: the checkpoint to resume from. `spec` is none, auto (latest, else the newest
/// checkpoint-* that verifies; invalid ones are skipped with a warning) or a directory (which
/// must verify). nullopt: start fresh. Rank 0 decides, every rank gets the same answer; an
/// explicit directory that does not verify is a CollectiveError.
std::optional<std::string> find_resume(const dist::Environment& env, const std::string& output_dir,
                                       const std::string& spec);

}  // namespace hpctrain::ckpt
