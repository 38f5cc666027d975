// The checks a resume makes of the Trainer's own pieces of state, in one place for load and verify.
#include "hpctrain/train/saved_state.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "hpctrain/core/error.h"

namespace hpctrain::train::saved {
namespace {

// `subject`: "state 'sampler'", "trainer_state.json".
[[noreturn]] void damaged(const ckpt::StateReader& r, const std::string& subject, const std::string& what) {
  throw DataError(r.where() + ": " + subject + " " + what + " (damaged, or written by something else)");
}

std::string shown(const Json& v) {
  std::string t = v.dump();
  return t.size() > 80 ? t.substr(0, 77) + "..." : t;
}

const Json& field(const ckpt::StateReader& r, const std::string& key, const Json& obj, const char* name) {
  const Json* v = obj.is_object() ? obj.find(name) : nullptr;
  if (!v) damaged(r, key, std::string("lacks '") + name + "'");
  return *v;
}

std::int64_t integer(const ckpt::StateReader& r, const std::string& key, const Json& obj, const char* name, std::int64_t lo,
                     std::int64_t hi) {
  const Json& v = field(r, key, obj, name);
  if (!v.is_integer() || v.integer() < lo || v.integer() > hi)
    damaged(r, key, std::string("has '") + name + "' = " + shown(v) + ", expected an integer in [" + std::to_string(lo) +
                        ", " + std::to_string(hi) + "]");
  return v.integer();
}

double finite(const ckpt::StateReader& r, const std::string& key, const Json& obj, const char* name, double lo, double hi) {
  const Json& v = field(r, key, obj, name);
  if (!v.is_number() || !std::isfinite(v.number()) || v.number() < lo || v.number() > hi)
    damaged(r, key, std::string("has '") + name + "' = " + shown(v) + ", expected a finite number in [" +
                        Json(lo).dump() + ", " + Json(hi).dump() + "]");
  return v.number();
}

const std::string& text(const ckpt::StateReader& r, const std::string& key, const Json& obj, const char* name) {
  const Json& v = field(r, key, obj, name);
  if (!v.is_string()) damaged(r, key, std::string("has '") + name + "' = " + shown(v) + ", expected a string");
  return v.str();
}

}  // namespace

TrainerStateData trainer_state(const ckpt::StateReader& r) {
  const std::string key = "state 'trainer_state'";
  TrainerStateData d;
  d.step = integer(r, key, r.info(), "global_step", 0, kMaxStep);
  if (d.step != r.saved_step())
    damaged(r, key, "is of step " + std::to_string(d.step) + ", the checkpoint of step " + std::to_string(r.saved_step()));
  d.global_batch = integer(r, key, r.info(), "global_batch", 1, kMaxGlobalBatch);
  const Json js = r.document("trainer_state.json");
  const std::string doc = "trainer_state.json";
  if (!js.is_object()) damaged(r, key, "has a " + doc + " that is not an object");
  const std::int64_t step = integer(r, doc, js, "global_step", 0, kMaxStep);
  if (step != d.step) damaged(r, doc, "names step " + std::to_string(step) + ", the checkpoint step " + std::to_string(d.step));
  // Epochs: at most num_train_epochs' bound, a fraction more for the epoch under way.
  d.epoch = finite(r, doc, js, "epoch", 0, 1e6 + 1);
  const Json& history = field(r, doc, js, "log_history");
  if (!history.is_array()) damaged(r, doc, "has a 'log_history' that is not a list");
  for (const auto& e : history.items())
    if (!e.is_object()) damaged(r, doc, "has a 'log_history' entry that is not an object: " + shown(e));
  d.log_history = history.items();
  if (const Json* b = js.find("best_metric"); b && !b->is_null()) {
    d.best_metric = finite(r, doc, js, "best_metric", -HUGE_VAL, HUGE_VAL);
    d.has_best = true;
  }
  if (const Json* b = js.find("best_model_checkpoint"); b && !b->is_null()) d.best_model_checkpoint = text(r, doc, js, "best_model_checkpoint");
  return d;
}

namespace {
// One rank's running sums from its row of log_sums.
LogSums sums_of(const ckpt::StateReader& r, int rank, const std::uint8_t* bytes, std::size_t n) {
  double v[4] = {0, 0, 0, 0};
  if (n != sizeof(v))
    damaged(r, "state 'trainer_state'", "has log_sums of rank " + std::to_string(rank) + " of " + std::to_string(n) +
                                            " bytes, expected " + std::to_string(sizeof(v)));
  std::memcpy(v, bytes, sizeof(v));
  // Counts of samples decide averages; the loss sums are kept as they were (a diverged run's too).
  for (const double c : {v[1], v[3]})
    if (!std::isfinite(c) || c < 0 || c > 9007199254740992.0)
      damaged(r, "state 'trainer_state'", "has log_sums of rank " + std::to_string(rank) + " counting " + Json(c).dump() +
                                              " samples, expected a whole number in [0, 2^53]");
  return LogSums{v[0], v[1], v[2], v[3]};
}
}  // namespace

LogSums log_sums(const ckpt::StateReader& r, int rank) {
  const std::vector<std::uint8_t> bytes = r.per_rank("log_sums", rank);
  return sums_of(r, rank, bytes.data(), bytes.size());
}

LogSums log_sums_of_all(const ckpt::StateReader& r) {
  LogSums all;
  r.per_rank_rows("log_sums", [&](int k, const std::uint8_t* row, std::size_t n) {
    const LogSums s = sums_of(r, k, row, n);
    all.window_loss += s.window_loss;
    all.window_count += s.window_count;
    all.total_loss += s.total_loss;
    all.total_count += s.total_count;
  });
  return all;
}

SamplerData sampler(const ckpt::StateReader& r) {
  const std::string key = "state 'sampler'";
  const Json& i = r.info();
  SamplerData d;
  d.epoch = integer(r, key, i, "epoch", 0, kMaxStep);
  d.samples = integer(r, key, i, "samples", 1, std::int64_t{1} << 50);
  d.consumed = integer(r, key, i, "consumed", 0, d.samples);
  d.data_seed = integer(r, key, i, "data_seed", std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max());
  d.shuffle_block = integer(r, key, i, "shuffle_block", 0, std::numeric_limits<std::int64_t>::max());
  const Json& shuffle = field(r, key, i, "shuffle");
  if (!shuffle.is_bool()) damaged(r, key, "has 'shuffle' = " + shown(shuffle) + ", expected true or false");
  d.shuffle = shuffle.boolean();
  d.shards = field(r, key, i, "shards");
  if (!d.shards.is_array()) damaged(r, key, "has 'shards' that is not a list");
  std::int64_t total = 0;
  for (const auto& s : d.shards.items()) {
    if (!s.is_array() || s.items().size() != 2 || !s.items()[0].is_string() || !s.items()[1].is_integer() ||
        s.items()[1].integer() < 1 || s.items()[1].integer() > d.samples)
      damaged(r, key, "has a shard entry " + shown(s) + ", expected [file name, samples]");
    total += s.items()[1].integer();
  }
  if (total != d.samples)
    damaged(r, key, "lists shards of " + std::to_string(total) + " samples in all, but 'samples' is " + std::to_string(d.samples));
  return d;
}

ScheduleData schedule(const ckpt::StateReader& r) {
  const std::string key = "state 'scheduler'";
  ScheduleData d;
  d.type = text(r, key, r.info(), "type");
  d.warmup_steps = integer(r, key, r.info(), "warmup_steps", 0, kMaxStep);
  d.total_steps = integer(r, key, r.info(), "total_steps", 0, kMaxStep);
  return d;
}

std::string optimizer_kind(const ckpt::StateReader& r) {
  const std::string& kind = text(r, "state 'optimizer'", r.info(), "kind");
  if (kind != "adamw" && kind != "adam" && kind != "sgd")
    damaged(r, "state 'optimizer'", "is of the kind '" + kind.substr(0, 80) + "'; checkpoints hold adamw, adam or sgd state");
  return kind;
}

ModelData model(const ckpt::StateReader& r) {
  const std::string key = "state 'model'";
  ModelData d;
  d.fingerprint = text(r, key, r.info(), "fingerprint");
  const Json& entries = field(r, key, r.info(), "entries");
  if (!entries.is_array()) damaged(r, key, "has 'entries' that is not a list");
  for (const auto& e : entries.items()) {
    if (!e.is_string()) damaged(r, key, "has an entry " + shown(e) + " that is not a string");
    d.entries.push_back(e.str());
  }
  return d;
}

void rng(const ckpt::StateReader& r) {
  if (r.per_rank("cpu", 0).empty()) damaged(r, "state 'rng'", "has an empty CPU generator state");
}

void check_saved_state(const ckpt::FileReader& f) {
  if (auto r = f.piece("model")) model(*r);
  if (auto r = f.piece("optimizer")) optimizer_kind(*r);
  if (auto r = f.piece("sampler")) sampler(*r);
  if (auto r = f.piece("rng")) rng(*r);
  if (auto r = f.piece("scheduler")) schedule(*r);
  if (auto r = f.piece("trainer_state")) {
    trainer_state(*r);
    log_sums_of_all(*r);
  }
}

std::string verify(const std::string& dir) {
  try {
    ckpt::FileReader f(dir);
    f.check_all();
    check_saved_state(f);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace hpctrain::train::saved
