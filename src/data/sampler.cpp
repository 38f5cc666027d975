// Sample order and batch plans. The permutation is a keyed Feistel network so that the order is
// reproducible on every platform (no std:: distributions) and needs no memory.
#include "hpctrain/data/sampler.h"

#include <memory>

#include "hpctrain/core/error.h"

namespace hpctrain::data {
namespace {
std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
}  // namespace

Permutation::Permutation(std::uint64_t n, std::uint64_t key) : n_(n), key_(splitmix64(key)) {
  // Domain 2^(2*half_bits) >= n, with at least 2 bits, so cycle walking takes < 4 tries on average.
  int bits = n <= 4 ? 2 : 64 - __builtin_clzll(n - 1);  // smallest bits with 2^bits >= n
  if (bits % 2) ++bits;
  half_bits_ = bits / 2;
  half_mask_ = (std::uint64_t{1} << half_bits_) - 1;
  for (int r = 0; r < kRounds; ++r) round_keys_[r] = splitmix64(key_ + static_cast<std::uint64_t>(r));
}

std::uint64_t Permutation::round(std::uint64_t x, int r) const {
  return splitmix64(x ^ round_keys_[r]) & half_mask_;
}

std::uint64_t Permutation::operator()(std::uint64_t i) const {
  HPCT_CHECK(i < n_, "Permutation: " << i << " outside [0, " << n_ << ")");
  std::uint64_t x = i;
  do {
    std::uint64_t left = x >> half_bits_, right = x & half_mask_;
    for (int r = 0; r < kRounds; ++r) {
      const std::uint64_t next = left ^ round(right, r);
      left = right;
      right = next;
    }
    x = (left << half_bits_) | right;
  } while (x >= n_);  // cycle walking: stays a bijection of [0, n)
  return x;
}

Sampler::Sampler(std::int64_t num_samples, std::uint64_t seed, bool shuffle, std::int64_t block)
    : n_(num_samples), seed_(seed), shuffle_(shuffle), block_(block) {
  HPCT_CHECK(n_ > 0, "Sampler over an empty data set");
  HPCT_CHECK(block_ >= 0, "Sampler: negative block size");
}

std::int64_t Sampler::at(std::int64_t epoch, std::int64_t position) const {
  HPCT_CHECK(position >= 0 && position < n_, "Sampler: position " << position << " outside [0, " << n_ << ")");
  if (!shuffle_) return position;
  const bool blocks = block_ > 0 && block_ < n_;
  const std::int64_t full = blocks ? n_ / block_ : 0;  // full blocks are shuffled; a partial tail block stays last
  if (!cache_ || cache_epoch_ != epoch) {
    cache_key_ = splitmix64(seed_) ^ splitmix64(static_cast<std::uint64_t>(epoch) * 0x9e37ULL + 1);
    cache_ = std::make_shared<Permutation>(static_cast<std::uint64_t>(blocks ? full : n_), cache_key_);
    cache_epoch_ = epoch;
  }
  const std::uint64_t key = cache_key_;
  if (!blocks) return static_cast<std::int64_t>((*cache_)(static_cast<std::uint64_t>(position)));
  const std::int64_t b = position / block_;
  const std::int64_t off = position % block_;
  const std::int64_t len = b < full ? block_ : n_ - full * block_;
  const std::int64_t block = b < full ? static_cast<std::int64_t>((*cache_)(static_cast<std::uint64_t>(b))) : b;
  const std::int64_t inner = static_cast<std::int64_t>(
      Permutation(static_cast<std::uint64_t>(len), key ^ splitmix64(static_cast<std::uint64_t>(block) + 7))(off));
  return block * block_ + inner;
}

std::pair<std::int64_t, std::int64_t> even_split(std::int64_t n, std::int64_t i, std::int64_t parts) {
  return {n * i / parts, n * (i + 1) / parts};
}

std::pair<std::int64_t, std::int64_t> eval_range(std::int64_t n, int rank, int world) {
  return even_split(n, rank, world);
}

TrainPlan::TrainPlan(Sampler sampler, int rank, int world, std::int64_t per_device, std::int64_t accumulation,
                     bool drop_last)
    : sampler_(sampler),
      rank_(rank),
      world_(world),
      per_device_(per_device),
      accumulation_(accumulation),
      global_batch_(per_device * world * accumulation),
      drop_last_(drop_last) {
  HPCT_CHECK(per_device >= 1 && accumulation >= 1 && world >= 1 && rank >= 0 && rank < world,
             "TrainPlan: bad sizes");
  if (drop_last_ && sampler_.size() < global_batch_)
    throw DataError("the training set has " + std::to_string(sampler_.size()) +
                    " samples, fewer than one global batch (" + std::to_string(global_batch_) +
                    ") and dataloader_drop_last=true: no step would ever run");
}

std::int64_t TrainPlan::steps_per_epoch() const {
  const std::int64_t n = sampler_.size();
  return drop_last_ ? n / global_batch_ : (n + global_batch_ - 1) / global_batch_;
}

void TrainPlan::restore(const SamplerState& s) {
  HPCT_CHECK(s.epoch >= 0 && s.consumed >= 0 && s.consumed <= sampler_.size(),
             "TrainPlan::restore: state (epoch " << s.epoch << ", consumed " << s.consumed << ") does not fit a data set of "
                                                 << sampler_.size() << " samples");
  state_ = s;
  micro_ = 0;
}

MicroBatch TrainPlan::next() {
  const std::int64_t n = sampler_.size();
  // A finished epoch (or one whose remainder drop_last skips) rolls over to the next.
  if (state_.consumed >= n || (drop_last_ && n - state_.consumed < global_batch_)) {
    state_.epoch += 1;
    state_.consumed = 0;
  }
  const std::int64_t step = std::min(global_batch_, n - state_.consumed);
  const auto [rb, re] = even_split(step, rank_, world_);
  const auto [mb, me] = even_split(re - rb, micro_, accumulation_);
  MicroBatch out;
  out.epoch = state_.epoch;
  out.micro = micro_;
  out.step_samples = step;
  out.indices.reserve(static_cast<std::size_t>(me - mb));
  for (std::int64_t p = rb + mb; p < rb + me; ++p) out.indices.push_back(sampler_.at(state_.epoch, state_.consumed + p));
  out.last_in_step = micro_ + 1 == accumulation_;
  SamplerState after{state_.epoch, state_.consumed + step};
  out.last_in_epoch = after.consumed >= n || (drop_last_ && n - after.consumed < global_batch_);
  out.after = after;
  if (out.last_in_step) {
    state_ = after;
    micro_ = 0;
  } else {
    ++micro_;
  }
  return out;
}

}  // namespace hpctrain::data
