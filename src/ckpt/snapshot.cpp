// Snapshot: the ownership plan and the host copies of this rank's bytes.
#include "snapshot.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "hpctrain/ckpt/format.h"
#include "hpctrain/core/error.h"

namespace hpctrain::ckpt {

namespace {
std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }
}  // namespace

char* Arena::take(std::size_t n) {
  if (n == 0) return nullptr;
  n = round_up(n, kPage);
  while (block_ < blocks_.size()) {
    auto& [mem, size] = blocks_[block_];
    if (size - used_ >= n) {
      char* p = mem.get() + used_;
      used_ += n;
      return p;
    }
    if (used_ == 0 && size < n) {  // the model grew: this block is too small for good
      blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(block_));
      continue;
    }
    ++block_, used_ = 0;
  }
  const std::size_t size = std::max<std::size_t>(n, std::size_t{64} << 20);
  char* mem = static_cast<char*>(std::aligned_alloc(kPage, size));
  if (!mem) throw std::bad_alloc();
  blocks_.emplace_back(std::unique_ptr<char, Free>(mem), size);
  block_ = blocks_.size() - 1;
  used_ = n;
  return mem;
}

void Arena::reserve(std::size_t bytes) {
  if (bytes == 0 || capacity() >= bytes) return;
  const std::size_t size = round_up(bytes, kPage);
  char* mem = static_cast<char*>(std::aligned_alloc(kPage, size));
  if (!mem) throw std::bad_alloc();
  std::memset(mem, 0, size);  // the page faults now, at start-up, not in the first save
  blocks_.clear();
  blocks_.emplace_back(std::unique_ptr<char, Free>(mem), size);
  reset();
}

std::size_t Arena::capacity() const {
  std::size_t n = 0;
  for (const auto& b : blocks_) n += b.second;
  return n;
}

void Snapshot::begin_piece(const std::string& key) {
  check_entry_name(key, "checkpoint piece");
  for (const auto& p : pieces_)
    if (p.key == key) throw Error("checkpoint: two pieces of state have the key '" + key + "'");
  pieces_.push_back(Piece{key, Json::object(), {}, {}, {}});
}

Snapshot::Piece& Snapshot::current() {
  HPCT_CHECK(!pieces_.empty(), "checkpoint: an entry was saved outside any piece");
  return pieces_.back();
}

Snapshot::Tensor& Snapshot::add(const std::string& name, DType type, const std::vector<std::int64_t>& shape,
                                std::vector<std::size_t> bounds) {
  Piece& p = current();
  check_entry_name(name, "checkpoint piece '" + p.key + "'");
  Tensor t;
  t.name = name;
  t.path = entry_path(p.key, name);
  t.type = type;
  t.shape = shape;
  t.bytes = dtype_size(type);
  for (auto d : shape) {
    HPCT_CHECK(d >= 0, "checkpoint: " << t.path << " has a negative dimension");
    t.bytes *= static_cast<std::size_t>(d);
  }
  // Sharded tensors: each rank writes the part it holds. Large tensors: every rank writes an
  // aligned share. Small ones: the least loaded rank writes it whole, so small writes of different
  // ranks rarely share a block of the file.
  if (!bounds.empty()) {
    bool ok = bounds.size() == static_cast<std::size_t>(world_) + 1 && bounds.front() == 0 && bounds.back() == t.bytes;
    for (std::size_t r = 0; ok && r + 1 < bounds.size(); ++r) ok = bounds[r] <= bounds[r + 1];
    HPCT_CHECK(ok, "checkpoint: " << t.path << ": a sharded tensor's bounds must run from 0 to its " << t.bytes
                                  << " bytes in " << world_ << " nondecreasing parts");
    t.owner = -2;
    t.bounds = std::move(bounds);
    for (int r = 0; r < world_; ++r) load_[static_cast<std::size_t>(r)] += t.bounds[r + 1] - t.bounds[r];
  } else if (world_ > 1 && t.bytes >= kAlignment) {
    t.owner = -1;
    for (int r = 0; r < world_; ++r) {
      auto [lo, hi] = range(t, r);
      load_[static_cast<std::size_t>(r)] += hi - lo;
    }
  } else {
    t.owner = static_cast<int>(std::min_element(load_.begin(), load_.end()) - load_.begin());
    load_[static_cast<std::size_t>(t.owner)] += t.bytes;
  }
  p.tensors.push_back(tensors_.size());
  bytes_total_ += t.bytes;
  tensors_.push_back(std::move(t));
  return tensors_.back();
}

std::pair<std::size_t, std::size_t> Snapshot::range(const Tensor& t, int r) const {
  if (t.owner == -2) return {t.bounds[static_cast<std::size_t>(r)], t.bounds[static_cast<std::size_t>(r) + 1]};
  if (t.owner >= 0) return t.owner == r ? std::make_pair(std::size_t{0}, t.bytes) : std::make_pair(t.bytes, t.bytes);
  const std::size_t units = (t.bytes + kAlignment - 1) / kAlignment;
  const std::size_t lo = units * static_cast<std::size_t>(r) / static_cast<std::size_t>(world_) * kAlignment;
  const std::size_t hi = units * static_cast<std::size_t>(r + 1) / static_cast<std::size_t>(world_) * kAlignment;
  return {std::min(lo, t.bytes), std::min(hi, t.bytes)};
}

void Snapshot::keep(Tensor& t, const void* data, std::size_t first, bool live) {
  const auto [lo, hi] = range(t, rank_);
  if (hi <= lo) return;
  const char* mine = static_cast<const char*>(data) + (lo - first);
  if (live && !copy_live_) {
    t.mine = mine;  // a synchronous save writes the state in place
  } else {
    char* dst = arena_.take(hi - lo);
    std::memcpy(dst, mine, hi - lo);
    t.mine = dst;
  }
  bytes_mine_ += hi - lo;
}

void Snapshot::fetch(Tensor& t, const CopyFn& copy, std::size_t first) {
  const auto [lo, hi] = range(t, rank_);
  if (hi <= lo) return;
  char* dst = arena_.take(hi - lo);
  copy(lo - first, hi - lo, dst);
  t.mine = dst;
  bytes_mine_ += hi - lo;
}

void Snapshot::tensor(const std::string& name, DType type, const std::vector<std::int64_t>& shape, const void* data) {
  keep(add(name, type, shape), data, 0, /*live=*/false);
}

void Snapshot::live_tensor(const std::string& name, DType type, const std::vector<std::int64_t>& shape,
                           const void* data) {
  keep(add(name, type, shape), data, 0, /*live=*/true);
}

void Snapshot::tensor(const std::string& name, DType type, const std::vector<std::int64_t>& shape, CopyFn copy) {
  fetch(add(name, type, shape), copy, 0);
}

void Snapshot::sharded_tensor(const std::string& name, DType type, const std::vector<std::int64_t>& shape,
                              std::vector<std::size_t> bounds, const void* mine, bool live) {
  Tensor& t = add(name, type, shape, std::move(bounds));
  keep(t, mine, t.bounds[static_cast<std::size_t>(rank_)], live);
}

void Snapshot::sharded_tensor(const std::string& name, DType type, const std::vector<std::int64_t>& shape,
                              std::vector<std::size_t> bounds, CopyFn copy) {
  Tensor& t = add(name, type, shape, std::move(bounds));
  fetch(t, copy, t.bounds[static_cast<std::size_t>(rank_)]);
}

void Snapshot::per_rank(const std::string& name, std::vector<std::uint8_t> mine) {
  Piece& p = current();
  check_entry_name(name, "checkpoint piece '" + p.key + "'");
  p.per_rank.push_back(per_rank_.size());
  per_rank_.push_back(PerRank{entry_path(p.key, name), name, std::move(mine)});
}

Json& Snapshot::info() { return current().info; }

void Snapshot::document(const std::string& file, Json doc) {
  Piece& p = current();
  HPCT_CHECK(!file.empty() && file.find('/') == std::string::npos && file[0] != '.' && file != "state.h5",
             "checkpoint piece '" << p.key << "': document '" << file << "' is not a plain file name");
  for (const auto& d : documents_)
    HPCT_CHECK(d.file != file, "checkpoint: two pieces write the document '" << file << "'");
  p.documents.push_back(documents_.size());
  documents_.push_back(Document{file, rank_ == 0 ? json::dump(doc, 2) + "\n" : std::string()});
}

Json Snapshot::manifest() const {
  Json all = Json::object();
  for (const auto& p : pieces_) {
    Json tensors = Json::array(), rows = Json::array(), docs = Json::array();
    for (auto i : p.tensors) {
      const Tensor& t = tensors_[i];
      Json shape = Json::array();
      for (auto d : t.shape) shape.push_back(Json(d));
      tensors.push_back(Json::object({{"name", t.name}, {"dtype", dtype_name(t.type)}, {"shape", shape}}));
    }
    for (auto i : p.per_rank)
      rows.push_back(Json::object({{"name", per_rank_[i].name}, {"bytes", static_cast<std::int64_t>(per_rank_[i].bytes.size())}}));
    for (auto i : p.documents) {
      const Document& d = documents_[i];
      docs.push_back(Json::object({{"file", d.file},
                                  {"crc32", static_cast<std::int64_t>(crc32(d.text.data(), d.text.size()))},
                                  {"bytes", static_cast<std::int64_t>(d.text.size())}}));
    }
    all[p.key] = Json::object({{"info", p.info}, {"tensors", tensors}, {"per_rank", rows}, {"documents", docs}});
  }
  return all;
}

std::uint64_t Snapshot::layout_hash() const {
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a
  auto mix = [&](const void* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ULL;
  };
  for (const auto& t : tensors_) {
    mix(t.path.data(), t.path.size() + 1);
    mix(&t.type, sizeof(t.type));
    for (auto d : t.shape) mix(&d, sizeof(d));
    for (auto b : t.bounds) mix(&b, sizeof(b));
  }
  for (const auto& r : per_rank_) {
    mix(r.path.data(), r.path.size() + 1);
    const std::uint64_t n = r.bytes.size();
    mix(&n, sizeof(n));
  }
  return h;
}

}  // namespace hpctrain::ckpt
