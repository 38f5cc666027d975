// The state protocol: every piece of run state that a checkpoint holds (model, optimizer, sampler,
// RNG, schedule, trainer state, stateful callbacks) is one Stateful with a key and a save and a
// load written side by side. Torch-free: tensors arrive as typed host buffers (or a function that
// copies byte ranges of them out of device memory).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hpctrain/core/dtype.h"
#include "hpctrain/core/json.h"

namespace hpctrain::ckpt {

/// Element types a checkpoint stores: core's (one vocabulary with the communicators).
using hpctrain::DType;
using hpctrain::dtype_name;
using hpctrain::dtype_size;
/// The DType of a name written by dtype_name; throws DataError naming `what` for any other.
DType dtype_from_name(const std::string& name, const std::string& what);

/// Copies `len` bytes starting at byte `offset` of a tensor into host memory at `dst`.
using CopyFn = std::function<void(std::size_t offset, std::size_t len, void* dst)>;

/// What a piece hands over when it is saved. Everything given is a snapshot of this instant: the
/// manager copies what it keeps before save() returns, so training may change the state at once.
class StateWriter {
 public:
  virtual ~StateWriter() = default;
  /// A tensor every rank holds whole and alike (parameters, optimizer state). `data` is host
  /// memory that stays valid until the piece's save() returns.
  virtual void tensor(const std::string& name, DType type, const std::vector<std::int64_t>& shape,
                      const void* data) = 0;
  /// The same for host memory that is the state itself, not a temporary (a contiguous parameter or
  /// optimizer buffer): a synchronous save writes it in place instead of copying it first.
  virtual void live_tensor(const std::string& name, DType type, const std::vector<std::int64_t>& shape,
                           const void* data) = 0;
  /// The same for a tensor outside host memory (a GPU): `copy` fetches the byte ranges wanted.
  virtual void tensor(const std::string& name, DType type, const std::vector<std::int64_t>& shape, CopyFn copy) = 0;
  /// A tensor the ranks hold in consecutive parts (sharded optimizer state, ZeRO-1): rank r holds
  /// its bytes [bounds[r], bounds[r + 1]); `bounds` (world + 1 offsets from 0 to the tensor's
  /// size) is the same on every rank. The tensor lands in the same dataset as a whole one, so a
  /// checkpoint does not know how it was written. `mine` is this rank's part (host memory valid
  /// until save() returns; unused when the part is empty); `live`: it is the state itself, which a
  /// synchronous save writes in place, not a temporary.
  virtual void sharded_tensor(const std::string& name, DType type, const std::vector<std::int64_t>& shape,
                              std::vector<std::size_t> bounds, const void* mine,
                              bool live) = 0;
  /// The same for a part outside host memory: `copy` fetches byte ranges of this rank's part.
  virtual void sharded_tensor(const std::string& name, DType type, const std::vector<std::int64_t>& shape,
                              std::vector<std::size_t> bounds, CopyFn copy) = 0;
  /// Bytes of this rank alone (its RNG stream, its running sums). Every rank gives the same length.
  virtual void per_rank(const std::string& name, std::vector<std::uint8_t> mine) = 0;
  /// Facts about the piece that its load checks (fingerprints, seeds, kinds). Rank 0's are stored.
  virtual Json& info() = 0;
  /// A JSON document stored as the file `file` in the checkpoint directory (rank 0's), covered
  /// by a checksum like every dataset (trainer_state.json, as Hugging Face keeps it).
  virtual void document(const std::string& file, Json doc) = 0;
};

/// A checkpoint as one piece sees it: only the piece's own entries, every read checked against
/// its CRC32.
class StateReader {
 public:
  virtual ~StateReader() = default;
  /// "checkpoint '<dir>'", for messages.
  virtual const std::string& where() const = 0;
  /// Ranks of the job that wrote the checkpoint, and the step it was written at.
  virtual int saved_world_size() const = 0;
  virtual std::int64_t saved_step() const = 0;
  /// The facts the piece saved (an empty object when none).
  virtual const Json& info() const = 0;
  virtual bool has(const std::string& name) const = 0;
  /// Shape and type of a tensor; DataError naming the checkpoint and tensor when absent.
  virtual std::vector<std::int64_t> shape(const std::string& name) const = 0;
  virtual DType type(const std::string& name) const = 0;
  /// Reads a whole tensor as `type` into `out` (sized by the caller); DataError when its
  /// checksum does not match.
  virtual void read(const std::string& name, DType type, void* out) const = 0;
  /// Rank `rank`'s bytes of a per_rank entry; empty when the saving job had no such rank.
  virtual std::vector<std::uint8_t> per_rank(const std::string& name, int rank) const = 0;
  /// Every saved rank's bytes of a per_rank entry, in rank order, each checked, in one pass over
  /// the rows (a rank reading all of them on an elastic resume: not a dataset open per row).
  using RowVisitor = std::function<void(int rank, const std::uint8_t* bytes, std::size_t n)>;
  virtual void per_rank_rows(const std::string& name, const RowVisitor& each) const = 0;
  /// A document the piece saved, parsed after its checksum was checked.
  virtual Json document(const std::string& file) const = 0;
};

/// One piece of run state. key() names its group in state.h5 and its section of the meta data
/// ("model", "optimizer", "callbacks/early_stopping"): one key, one owner.
class Stateful {
 public:
  virtual ~Stateful() = default;
  virtual std::string key() const = 0;
  /// Called on every rank at a step boundary, all pieces at the same instant.
  virtual void save(StateWriter& w) const = 0;
  /// Checks that the checkpoint fits this run, naming what differs (ConfigError), then applies it.
  virtual void load(const StateReader& r) = 0;
  /// The checkpoint has no entry for this piece. Default: ConfigError naming the key; a piece
  /// that can start fresh (a callback added on resume) overrides it.
  virtual void missing(const std::string& where);
};

}  // namespace hpctrain::ckpt
