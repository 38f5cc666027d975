// Data-set makers: CSV and .npy readers, synthetic generators, shard writing.
#include "hpctrain/data/convert.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "hpctrain/core/error.h"
#include "hpctrain/data/sampler.h"

namespace hpctrain::data {
namespace fs = std::filesystem;

namespace {

std::int64_t product(const std::vector<std::int64_t>& s) {
  std::int64_t p = 1;
  for (auto d : s) p *= d;
  return p;
}

// A portable normal generator (std::normal_distribution differs between standard libraries, and
// data made by the tool must be the same everywhere).
struct Rng {
  std::mt19937_64 g;
  explicit Rng(std::uint64_t seed) : g(seed) {}
  double uniform() { return (static_cast<double>(g() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  double normal() { return std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform()); }
  std::uint64_t below(std::uint64_t n) { return g() % n; }
};

bool parse_double(const std::string& s, double* v) {
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  while (end && (*end == ' ' || *end == '\r' || *end == '\t')) ++end;
  return end != s.c_str() && end && *end == '\0';
}

bool all_integral(const std::vector<double>& v) {
  return std::all_of(v.begin(), v.end(), [](double x) { return std::floor(x) == x && std::fabs(x) < 9e15; });
}

void set_targets(Samples* s, const std::vector<double>& t) {
  s->int_targets = all_integral(t);
  if (s->int_targets) {
    s->class_targets.resize(t.size());
    std::transform(t.begin(), t.end(), s->class_targets.begin(), [](double x) { return static_cast<std::int64_t>(x); });
  } else {
    s->float_targets.assign(t.begin(), t.end());
  }
}

}  // namespace

NpyArray read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError("npy file '" + path + "' cannot be opened");
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw DataError("npy file '" + path + "': not a NumPy .npy file (bad magic)");
  std::uint32_t header_len = 0;
  if (magic[6] == 1) {
    std::uint16_t h;
    f.read(reinterpret_cast<char*>(&h), 2);
    header_len = h;
  } else {
    f.read(reinterpret_cast<char*>(&header_len), 4);
  }
  std::string header(header_len, '\0');
  if (!f.read(header.data(), header_len)) throw DataError("npy file '" + path + "': truncated header");
  auto field = [&](const std::string& name) {
    auto p = header.find("'" + name + "'");
    if (p == std::string::npos) throw DataError("npy file '" + path + "': header has no '" + name + "'");
    return header.substr(header.find(':', p) + 1);
  };
  std::string descr = field("descr");
  descr = descr.substr(descr.find('\'') + 1);
  descr = descr.substr(0, descr.find('\''));
  if (field("fortran_order").find("True") < field("fortran_order").find(','))
    throw DataError("npy file '" + path + "': Fortran order is not supported; save with np.ascontiguousarray");
  NpyArray a;
  const char order = descr[0];
  if (order == '>') throw DataError("npy file '" + path + "': big-endian dtype " + descr + " is not supported");
  const char kind = descr[1];
  const int bytes = std::atoi(descr.c_str() + 2);
  const std::optional<DType> type = kind == 'b' && bytes == 1 ? std::optional<DType>(DType::kUInt8)
                                    : kind == 'f' || kind == 'i' || kind == 'u'
                                        ? dtype_of_storage(kind == 'f', kind == 'i', bytes)
                                        : std::nullopt;
  if (type) a.dtype = *type;
  else throw DataError("npy file '" + path + "': dtype '" + descr + "' is not numeric; expected float, int or uint");
  std::string shape = field("shape");
  shape = shape.substr(shape.find('(') + 1, shape.find(')') - shape.find('(') - 1);
  std::stringstream ss(shape);
  for (std::string d; std::getline(ss, d, ',');)
    if (d.find_first_not_of(" ") != std::string::npos) a.shape.push_back(std::stoll(d));
  const std::size_t n = static_cast<std::size_t>(product(a.shape)) * static_cast<std::size_t>(bytes);
  a.data.resize(n);
  if (!f.read(a.data.data(), static_cast<std::streamsize>(n)))
    throw DataError("npy file '" + path + "': truncated data (expected " + std::to_string(n) + " bytes)");
  return a;
}

std::vector<double> npy_values(const NpyArray& a) {
  const std::size_t n = static_cast<std::size_t>(product(a.shape));
  std::vector<double> v(n);
  auto conv = [&](auto tag) {
    using T = decltype(tag);
    for (std::size_t i = 0; i < n; ++i) {
      T x;
      std::memcpy(&x, a.data.data() + i * sizeof(T), sizeof(T));
      v[i] = static_cast<double>(x);
    }
  };
  visit_dtype(a.dtype, conv);
  return v;
}

Samples load_csv(const std::string& path, int target_column) {
  std::ifstream f(path);
  if (!f) throw DataError("csv file '" + path + "' cannot be opened");
  Samples s;
  std::vector<double> targets;
  std::string line;
  std::int64_t cols = -1, lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (line.empty() || line == "\r") continue;
    std::vector<double> row;
    std::stringstream ss(line);
    bool numeric = true;
    for (std::string cell; std::getline(ss, cell, ',');) {
      double v;
      if (!parse_double(cell, &v)) {
        numeric = false;
        break;
      }
      row.push_back(v);
    }
    if (!numeric) {
      if (lineno == 1) continue;  // a header
      throw DataError("csv file '" + path + "', line " + std::to_string(lineno) + ": a cell is not a number");
    }
    if (cols < 0) cols = static_cast<std::int64_t>(row.size());
    if (static_cast<std::int64_t>(row.size()) != cols)
      throw DataError("csv file '" + path + "', line " + std::to_string(lineno) + ": " + std::to_string(row.size()) +
                      " columns, expected " + std::to_string(cols));
    if (cols < 2) throw DataError("csv file '" + path + "': needs at least 2 columns (features and a target)");
    const std::int64_t tc = target_column < 0 ? cols + target_column : target_column;
    if (tc < 0 || tc >= cols)
      throw DataError("csv file '" + path + "': target column " + std::to_string(target_column) + " outside " +
                      std::to_string(cols) + " columns");
    for (std::int64_t c = 0; c < cols; ++c) {
      if (c == tc) targets.push_back(row[c]);
      else s.inputs.push_back(static_cast<float>(row[c]));
    }
    ++s.n;
  }
  if (s.n == 0) throw DataError("csv file '" + path + "' has no data rows");
  s.sample_shape = {cols - 1};
  set_targets(&s, targets);
  return s;
}

Samples load_npy(const std::string& inputs_path, const std::string& targets_path) {
  NpyArray x = read_npy(inputs_path), y = read_npy(targets_path);
  if (x.shape.empty() || y.shape.empty() || x.shape[0] != y.shape[0])
    throw DataError("npy files '" + inputs_path + "' and '" + targets_path +
                    "' must hold the same number of samples along the first axis");
  if (y.shape.size() != 1) throw DataError("npy file '" + targets_path + "': targets must be 1-D");
  Samples s;
  s.n = x.shape[0];
  s.sample_shape.assign(x.shape.begin() + 1, x.shape.end());
  auto xv = npy_values(x);
  s.inputs.assign(xv.begin(), xv.end());
  s.inputs_dtype = x.dtype == DType::kFloat64 ? DType::kFloat32 : x.dtype;
  set_targets(&s, npy_values(y));
  return s;
}

Samples synth_classification(std::int64_t n, const std::vector<std::int64_t>& shape, int classes, double noise,
                             std::uint64_t seed) {
  Rng rng(seed);
  const std::int64_t f = product(shape);
  std::vector<double> centers(static_cast<std::size_t>(classes * f));
  for (auto& c : centers) c = rng.normal();
  Samples s;
  s.n = n;
  s.sample_shape = shape;
  s.inputs.resize(static_cast<std::size_t>(n * f));
  s.class_targets.resize(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const auto c = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(classes)));
    s.class_targets[i] = c;
    for (std::int64_t j = 0; j < f; ++j)
      s.inputs[i * f + j] = static_cast<float>(centers[c * f + j] + noise * rng.normal());
  }
  return s;
}

Samples synth_regression(std::int64_t n, const std::vector<std::int64_t>& shape, double noise, std::uint64_t seed) {
  Rng rng(seed);
  const std::int64_t f = product(shape);
  std::vector<double> w(static_cast<std::size_t>(f));
  for (auto& x : w) x = rng.normal() / std::sqrt(static_cast<double>(f));
  Samples s;
  s.n = n;
  s.sample_shape = shape;
  s.int_targets = false;
  s.inputs.resize(static_cast<std::size_t>(n * f));
  s.float_targets.resize(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    double y = 0;
    for (std::int64_t j = 0; j < f; ++j) {
      const double x = rng.normal();
      s.inputs[i * f + j] = static_cast<float>(x);
      y += w[j] * x;
    }
    s.float_targets[i] = static_cast<float>(y + noise * rng.normal());
  }
  return s;
}

std::vector<std::int64_t> synth_tokens(std::int64_t n, int vocab, std::uint64_t seed) {
  Rng rng(seed);
  constexpr int kNext = 4;  // likely successors per token
  std::vector<std::int64_t> next(static_cast<std::size_t>(vocab * kNext));
  for (auto& t : next) t = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(vocab)));
  std::vector<std::int64_t> out(static_cast<std::size_t>(n));
  std::int64_t t = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    out[i] = t;
    // 90%: one of the token's successors (skewed towards the first); 10%: any token.
    const double u = rng.uniform();
    if (u < 0.9) {
      const int k = u < 0.5 ? 0 : u < 0.7 ? 1 : u < 0.82 ? 2 : 3;
      t = next[t * kNext + k];
    } else {
      t = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(vocab)));
    }
  }
  return out;
}

namespace {
std::string shard_name(const std::string& dir, int i) {
  char name[32];
  std::snprintf(name, sizeof(name), "shard-%05d.h5", i);
  return (fs::path(dir) / name).string();
}
}  // namespace

std::vector<std::string> write_shards(const Samples& s, const std::vector<std::int64_t>& order, std::int64_t begin,
                                      std::int64_t end, const std::string& dir, int shards, const WriteOptions& o,
                                      const std::string& inputs_key, const std::string& targets_key) {
  fs::create_directories(dir);
  const std::int64_t f = product(s.sample_shape);
  const std::int64_t total = end - begin;
  if (shards < 1 || shards > total)
    throw ConfigError("--shards " + std::to_string(shards) + ": expected 1 to " + std::to_string(total) +
                      " (the number of samples)");
  std::vector<std::string> files;
  for (int k = 0; k < shards; ++k) {
    const auto [a, b] = even_split(total, k, shards);
    const std::int64_t rows = b - a;
    std::vector<float> x(static_cast<std::size_t>(rows * f)), yf;
    std::vector<std::int64_t> yi;
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t src = order.empty() ? begin + a + r : order[begin + a + r];
      std::copy_n(s.inputs.data() + src * f, f, x.data() + r * f);
      if (s.int_targets) yi.push_back(s.class_targets[src]);
      else yf.push_back(s.float_targets[src]);
    }
    std::vector<std::int64_t> shape = {rows};
    shape.insert(shape.end(), s.sample_shape.begin(), s.sample_shape.end());
    files.push_back(shard_name(dir, k));
    ShardWriter w(files.back());
    w.create(inputs_key, s.inputs_dtype, shape, o);
    w.write_rows(inputs_key, 0, rows, x.data());
    w.create(targets_key, s.int_targets ? DType::kInt64 : DType::kFloat32, {rows}, o);
    if (s.int_targets) w.write_rows(targets_key, 0, rows, yi.data());
    else w.write_rows(targets_key, 0, rows, yf.data());
    w.close();
  }
  return files;
}

std::vector<std::string> write_token_shards(const std::vector<std::int64_t>& tokens, DType dtype,
                                            const std::string& dir, int shards, const WriteOptions& o,
                                            const std::string& key) {
  fs::create_directories(dir);
  std::vector<std::string> files;
  const std::int64_t n = static_cast<std::int64_t>(tokens.size());
  for (int k = 0; k < shards; ++k) {
    const auto [a, b] = even_split(n, k, shards);
    files.push_back(shard_name(dir, k));
    ShardWriter w(files.back());
    w.create(key, dtype, {b - a}, o);
    w.write_rows(key, 0, b - a, tokens.data() + a);
    w.close();
  }
  return files;
}

}  // namespace hpctrain::data
