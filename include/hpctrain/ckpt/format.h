// state.h5, the file of a checkpoint: its layout (made by rank 0 before the ranks write the tensors'
// bytes), its checksums, a reader that trusts nothing it has not checked, and verify().
//
// Layout (format version 2): /meta is the JSON meta data (a uint8 dataset with a crc32 attribute)
// and the manifest of every entry; each piece <key> has its tensors at /<key>/<name> (contiguous,
// with a crc32 attribute over the whole tensor) and its per-rank entries at /<key>/<name> as a
// [world, bytes] uint8 dataset with one crc32 per row; documents are files beside state.h5 whose
// crc32 and size the manifest holds.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hpctrain/ckpt/state.h"
#include "hpctrain/core/h5.h"
#include "hpctrain/core/json.h"

namespace hpctrain::ckpt {

constexpr int kFormatVersion = 2;
/// Large tensors start on this boundary in the file, and ranks split them at multiples of it, so
/// no two ranks (or nodes) write into the same file-system block or stripe.
constexpr std::size_t kAlignment = std::size_t{1} << 20;

/// CRC-32 as zlib and Python's zlib.crc32 compute it, continuing from `crc`.
std::uint32_t crc32(const void* data, std::size_t n, std::uint32_t crc = 0);
/// The CRC-32 of A followed by B, from crc(A), crc(B) and B's length.
std::uint32_t crc32_combine(std::uint32_t a, std::uint32_t b, std::size_t len_b);

/// The HDF5 path of a piece's entry: "/<key>/<name>".
std::string entry_path(const std::string& key, const std::string& name);
/// Throws Error when a key or name is not a clean relative HDF5 path ("a/b", no empty, . or ..).
void check_entry_name(const std::string& name, const std::string& what);

/// What rank 0 puts into a new state.h5 before the ranks write the tensors' bytes.
struct Container {
  struct Tensor {
    std::string path;
    DType type = DType::kFloat32;
    std::vector<std::int64_t> shape;
    std::uint32_t crc32 = 0;
  };
  struct PerRank {
    std::string path;
    std::size_t row_bytes = 0;
    std::vector<std::uint8_t> rows;  ///< world x row_bytes, rank after rank
  };
  int world = 1;
  std::vector<Tensor> tensors;
  std::vector<PerRank> per_rank;
  Json meta;
};

/// Creates `path` with every tensor dataset allocated (contiguous, never filled, large ones
/// aligned to kAlignment) and its crc32, the per-rank datasets and /meta written. Returns each
/// tensor's byte offset in the file (-1 when it has no bytes). Throws Error naming the file.
std::vector<std::int64_t> create_container(const std::string& path, const Container& c);

/// Writes all `len` bytes at `offset` of the open file `fd` (called `path` in errors), or throws.
void write_at(int fd, const std::string& path, const void* data, std::size_t len, std::int64_t offset);

/// What the manifest in /meta says of one piece.
struct PieceManifest {
  struct Tensor {
    std::string name;
    DType type = DType::kFloat32;
    std::vector<std::int64_t> shape;
    std::size_t bytes = 0;
  };
  struct PerRank {
    std::string name;
    std::size_t bytes = 0;
  };
  struct Document {
    std::string file;
    std::uint32_t crc32 = 0;
    std::size_t bytes = 0;
  };
  Json info = Json::object();
  std::vector<Tensor> tensors;
  std::vector<PerRank> per_rank;
  std::vector<Document> documents;
};

/// A checkpoint directory opened for reading on one process. The meta data and manifest are
/// checked when it opens; every tensor, row and document when it is read.
class FileReader {
 public:
  /// Throws DataError naming the directory and what is wrong (missing, not HDF5, foreign or
  /// damaged meta data, unknown format version).
  explicit FileReader(const std::string& dir);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  const std::string& dir() const { return dir_; }
  /// "checkpoint '<dir>'"
  const std::string& where() const { return where_; }
  const Json& meta() const { return meta_; }
  int world_size() const { return world_; }
  std::int64_t step() const { return step_; }
  /// Saved with save_only_model: the model and nothing else.
  bool model_only() const { return model_only_; }
  const std::map<std::string, PieceManifest>& pieces() const { return pieces_; }
  /// One piece's reader (nullptr when the checkpoint has no such piece); valid while this lives.
  std::unique_ptr<StateReader> piece(const std::string& key) const;

  /// Reads every tensor, row and document and checks its checksum; throws DataError naming the
  /// first one that fails. Memory stays bounded: large tensors are checked in slices.
  void check_all() const;
  /// The same for one tensor (read from the file in slices, its storage checked first) and for
  /// one per-rank entry (every row, read in blocks; `each` then sees each row that matched its
  /// checksum, e.bytes long, with its rank).
  using RowFn = std::function<void(int rank, const std::uint8_t* row)>;
  void check_tensor(const std::string& key, const PieceManifest::Tensor& t) const;
  void check_rows(const std::string& key, const PieceManifest::PerRank& e, const RowFn& each = {}) const;

  // For the piece readers.
  void read_tensor(const std::string& key, const PieceManifest::Tensor& t, DType type, void* out) const;
  std::vector<std::uint8_t> read_row(const std::string& key, const PieceManifest::PerRank& e, int rank) const;
  Json read_document(const PieceManifest::Document& d) const;

 private:
  h5::Handle open_dataset(const std::string& path, DType type, const std::vector<std::int64_t>& shape) const;
  std::int64_t raw_offset(hid_t ds, std::size_t bytes, const std::string& path) const;
  std::string dir_, file_, where_;
  std::size_t file_size_ = 0;
  h5::Handle h5_;
  Json meta_;
  int world_ = 0;
  std::int64_t step_ = 0;
  bool model_only_ = false;
  std::map<std::string, PieceManifest> pieces_;
};

/// Checks a checkpoint directory as a load would: state.h5 opens, its format version is known, the
/// manifest is complete and every tensor, per-rank row and document matches its CRC32. Returns ""
/// when valid, else what is wrong.
std::string verify(const std::string& dir);

}  // namespace hpctrain::ckpt
