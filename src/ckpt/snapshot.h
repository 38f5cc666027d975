// A host copy of every piece's state at one step boundary, and the plan of which bytes each rank
// writes: large tensors split among the ranks at kAlignment boundaries, small ones whole to the
// least loaded rank. Each rank copies only the bytes it will write.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "hpctrain/ckpt/state.h"
#include "hpctrain/core/json.h"

namespace hpctrain::ckpt {

/// Host memory for snapshots, kept from one save to the next: the same model needs the same
/// blocks each time, so a save touches no fresh pages (no page faults, no zeroing by the kernel).
/// Every piece starts on a kPage boundary, as O_DIRECT writes need.
class Arena {
 public:
  static constexpr std::size_t kPage = 4096;
  void reset() { block_ = 0, used_ = 0; }
  char* take(std::size_t n);
  /// Makes sure the next takes of `bytes` in all find memory already touched (paid for now).
  void reserve(std::size_t bytes);
  std::size_t capacity() const;

 private:
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::vector<std::pair<std::unique_ptr<char, Free>, std::size_t>> blocks_;
  std::size_t block_ = 0, used_ = 0;
};

class Snapshot : public StateWriter {
 public:
  struct Tensor {
    std::string path;
    std::string name;
    DType type = DType::kFloat32;
    std::vector<std::int64_t> shape;
    std::size_t bytes = 0;
    int owner = -1;                 ///< the rank that writes it whole; -1: split among all ranks; -2: by `bounds`
    std::vector<std::size_t> bounds;  ///< owner -2: rank r writes bytes [bounds[r], bounds[r + 1])
    const char* mine = nullptr;     ///< this rank's bytes [range(rank)) of it (a copy, or the live state)
  };
  struct PerRank {
    std::string path;
    std::string name;
    std::vector<std::uint8_t> bytes;
  };
  struct Document {
    std::string file;
    std::string text;
  };
  struct Piece {
    std::string key;
    Json info = Json::object();
    std::vector<std::size_t> tensors, per_rank, documents;
  };

  /// `copy_live`: copy live tensors too (a background save); false: a synchronous save writes them
  /// in place.
  Snapshot(int rank, int world, Arena& arena, bool copy_live = true)
      : rank_(rank), world_(world), copy_live_(copy_live), arena_(arena), load_(world, 0) {}

  /// Entries given from here on belong to the piece `key`.
  void begin_piece(const std::string& key);

  void tensor(const std::string& name, DType type, const std::vector<std::int64_t>& shape, const void* data) override;
  void live_tensor(const std::string& name, DType type, const std::vector<std::int64_t>& shape, const void* data) override;
  void tensor(const std::string& name, DType type, const std::vector<std::int64_t>& shape, CopyFn copy) override;
  void sharded_tensor(const std::string& name, DType type, const std::vector<std::int64_t>& shape,
                      std::vector<std::size_t> bounds, const void* mine, bool live) override;
  void sharded_tensor(const std::string& name, DType type, const std::vector<std::int64_t>& shape,
                      std::vector<std::size_t> bounds, CopyFn copy) override;
  void per_rank(const std::string& name, std::vector<std::uint8_t> mine) override;
  Json& info() override;
  void document(const std::string& file, Json doc) override;

  /// Bytes [first, second) of tensor `t` that rank `r` writes.
  std::pair<std::size_t, std::size_t> range(const Tensor& t, int r) const;
  /// The manifest: every piece's info, tensors, per-rank entries and documents (rank 0's).
  Json manifest() const;
  /// The same on every rank when the ranks saved the same entries in the same order.
  std::uint64_t layout_hash() const;
  /// Bytes this rank writes (its share of the tensors).
  std::size_t bytes_mine() const { return bytes_mine_; }
  std::size_t bytes_total() const { return bytes_total_; }

  const std::vector<Piece>& pieces() const { return pieces_; }
  const std::vector<Tensor>& tensors() const { return tensors_; }
  const std::vector<PerRank>& per_ranks() const { return per_rank_; }
  const std::vector<Document>& documents() const { return documents_; }

 private:
  Tensor& add(const std::string& name, DType type, const std::vector<std::int64_t>& shape,
              std::vector<std::size_t> bounds = {});
  // This rank's bytes of `t` from `data`, which holds the tensor's bytes from `first` on: kept in
  // place when `live` and the save writes in place, else copied into the arena.
  void keep(Tensor& t, const void* data, std::size_t first, bool live);
  // The same through `copy`, which fetches byte ranges counted from `first`.
  void fetch(Tensor& t, const CopyFn& copy, std::size_t first);
  Piece& current();
  int rank_, world_;
  bool copy_live_;
  Arena& arena_;
  std::vector<std::size_t> load_;  // bytes planned per rank so far
  std::vector<Piece> pieces_;
  std::vector<Tensor> tensors_;
  std::vector<PerRank> per_rank_;
  std::vector<Document> documents_;
  std::size_t bytes_mine_ = 0, bytes_total_ = 0;
};

}  // namespace hpctrain::ckpt
