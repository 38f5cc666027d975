// The checks a resume makes of the Trainer's own pieces of state, in one place for load and verify.
#include "hpctrain/train/saved_state.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "hpctrain/core/error.h"
#include "hpctrain/core/text.h"

namespace hpctrain::train::saved {
namespace {

// `subject`: "state 'sampler'", "trainer_state.json".
[[noreturn]] void damaged(const ckpt::StateReader& r, const std::string& subject, const std::string& what) {
  throw DataError(r.where() + ": " + subject + " " + what + " (damaged, or written by something else)");
}

const Json& field(const ckpt::StateReader& r, const std::string& key, const Json& obj, const char* name) {
  const Json* v = json::find(obj, name);
  if (!v) damaged(r, key, std::string("lacks '") + name + "'");
  return *v;
}

std::int64_t integer(const ckpt::StateReader& r, const std::string& key, const Json& obj, const char* name, std::int64_t lo,
                     std::int64_t hi) {
  const Json& v = field(r, key, obj, name);
  if (!json::is_int64(v) || v.get<std::int64_t>() < lo || v.get<std::int64_t>() > hi)
    damaged(r, key, std::string("has '") + name + "' = " + json::shown(v) + ", expected an integer in [" + std::to_string(lo) +
                        ", " + std::to_string(hi) + "]");
  return v.get<std::int64_t>();
}

double finite(const ckpt::StateReader& r, const std::string& key, const Json& obj, const char* name, double lo, double hi) {
  const Json& v = field(r, key, obj, name);
  if (!v.is_number() || !std::isfinite(json::number(v)) || json::number(v) < lo || json::number(v) > hi)
    damaged(r, key, std::string("has '") + name + "' = " + json::shown(v) + ", expected a finite number in [" +
                        format_shortest(lo) + ", " + format_shortest(hi) + "]");
  return json::number(v);
}

const std::string& text(const ckpt::StateReader& r, const std::string& key, const Json& obj, const char* name) {
  const Json& v = field(r, key, obj, name);
  if (!v.is_string()) damaged(r, key, std::string("has '") + name + "' = " + json::shown(v) + ", expected a string");
  return v.get_ref<const std::string&>();
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
  for (const auto& e : history)
    if (!e.is_object()) damaged(r, doc, "has a 'log_history' entry that is not an object: " + json::shown(e));
  d.log_history.assign(history.begin(), history.end());
  if (const Json* b = json::find(js, "best_metric"); b && !b->is_null()) {
    d.best_metric = finite(r, doc, js, "best_metric", -HUGE_VAL, HUGE_VAL);
    d.has_best = true;
  }
  if (const Json* b = json::find(js, "best_model_checkpoint"); b && !b->is_null()) d.best_model_checkpoint = text(r, doc, js, "best_model_checkpoint");
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
      damaged(r, "state 'trainer_state'", "has log_sums of rank " + std::to_string(rank) + " counting " + format_shortest(c) +
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
  if (!shuffle.is_boolean()) damaged(r, key, "has 'shuffle' = " + json::shown(shuffle) + ", expected true or false");
  d.shuffle = shuffle.get<bool>();
  d.shards = field(r, key, i, "shards");
  if (!d.shards.is_array()) damaged(r, key, "has 'shards' that is not a list");
  std::int64_t total = 0;
  for (const auto& s : d.shards) {
    if (!s.is_array() || s.size() != 2 || !s[0].is_string() || !json::is_int64(s[1]) ||
        s[1].get<std::int64_t>() < 1 || s[1].get<std::int64_t>() > d.samples)
      damaged(r, key, "has a shard entry " + json::shown(s) + ", expected [file name, samples]");
    total += s[1].get<std::int64_t>();
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
  for (const auto& e : entries) {
    if (!e.is_string()) damaged(r, key, "has an entry " + json::shown(e) + " that is not a string");
    d.entries.push_back(e.get<std::string>());
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
