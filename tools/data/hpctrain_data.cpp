// hpctrain-data: make, convert, inspect and reshard HDF5 data sets for hpctrain.
//   hpctrain-data synth   --kind classification|regression|tokens --out DIR [...]
//   hpctrain-data convert --from csv|npy|digits --out DIR [...]
//   hpctrain-data inspect SPEC [--format tokens --seq_len L] [--inputs_key K ...] [--num_classes N]
//   hpctrain-data reshard SPEC --out DIR --shards N [...]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>

#include <boost/program_options.hpp>

#include "hpctrain/core/error.h"
#include "hpctrain/data/convert.h"
#include "hpctrain/data/reader.h"
#include "hpctrain/data/sampler.h"
#include "hpctrain/data/shard_set.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace hpctrain;
using namespace hpctrain::data;

namespace {

const char* kUsage =
    "Usage: hpctrain-data <command> [options]\n"
    "Commands:\n"
    "  synth    generate a data set (classification, regression or a token stream) as shards\n"
    "  convert  convert CSV, NumPy .npy or the scikit-learn digits data set into shards\n"
    "  inspect  print a data set's shards, keys, dtypes, shapes, counts and statistics\n"
    "  reshard  rewrite a data set into a different number of shards\n"
    "hpctrain-data <command> --help lists the command's options.\n";

std::vector<std::int64_t> parse_shape(const std::string& s) {
  std::vector<std::int64_t> out;
  std::stringstream ss(s);
  for (std::string d; std::getline(ss, d, ',');) {
    char* end = nullptr;
    long long v = std::strtoll(d.c_str(), &end, 10);
    if (d.empty() || *end || v < 1) throw ConfigError("--shape " + s + ": expected positive integers separated by commas");
    out.push_back(v);
  }
  if (out.empty()) throw ConfigError("--shape is empty");
  return out;
}

po::options_description write_options(WriteOptions* w, int* shards, std::string* out) {
  po::options_description d("Output");
  d.add_options()("out", po::value(out)->required(), "output directory")(
      "shards", po::value(shards)->default_value(*shards), "number of shard files")(
      "chunk", po::value(&w->chunk_rows)->default_value(0), "chunk rows (0: contiguous layout)")(
      "gzip", po::value(&w->gzip)->default_value(0), "deflate level 1-9 (needs --chunk)")(
      "shuffle_filter", po::bool_switch(&w->shuffle_filter), "HDF5 byte-shuffle filter before deflate");
  return d;
}

bool parse(po::options_description& desc, const std::vector<std::string>& args, const std::string& cmd,
           po::positional_options_description* pos = nullptr) {
  desc.add_options()("help,h", "this help");
  po::variables_map vm;
  auto parser = po::command_line_parser(args).options(desc);
  if (pos) parser.positional(*pos);
  po::store(parser.run(), vm);
  if (vm.count("help")) {
    std::cout << "hpctrain-data " << cmd << "\n" << desc << "\n";
    return false;
  }
  po::notify(vm);
  return true;
}

// Splits samples (shuffled by seed) into train and eval parts and writes both.
void write_split(const Samples& s, double eval_fraction, std::uint64_t seed, const std::string& out, int shards,
                 const WriteOptions& w) {
  if (eval_fraction < 0 || eval_fraction >= 1) throw ConfigError("--eval_fraction must be in [0, 1)");
  std::vector<std::int64_t> order(static_cast<std::size_t>(s.n));
  Permutation perm(static_cast<std::uint64_t>(s.n), seed);
  for (std::int64_t i = 0; i < s.n; ++i) order[i] = static_cast<std::int64_t>(perm(static_cast<std::uint64_t>(i)));
  const std::int64_t n_eval = static_cast<std::int64_t>(std::llround(eval_fraction * static_cast<double>(s.n)));
  const std::int64_t n_train = s.n - n_eval;
  auto files = write_shards(s, order, 0, n_train, (fs::path(out) / "train").string(), shards, w);
  std::cout << "wrote " << n_train << " training samples to " << files.size() << " shards in " << out << "/train\n";
  if (n_eval > 0) {
    files = write_shards(s, order, n_train, s.n, (fs::path(out) / "eval").string(), std::max(1, std::min<int>(shards, static_cast<int>(n_eval))), w);
    std::cout << "wrote " << n_eval << " evaluation samples to " << files.size() << " shards in " << out << "/eval\n";
  }
}

int synth(const std::vector<std::string>& args) {
  std::string kind = "classification", shape = "32", out, dtype = "float32";
  std::int64_t samples = 10000, tokens = 200000;
  int classes = 10, vocab = 256, shards = 2;
  double noise = 1.0, eval_fraction = 0.2;
  std::uint64_t seed = 1;
  WriteOptions w;
  po::options_description d("hpctrain-data synth");
  d.add_options()("kind", po::value(&kind)->default_value(kind), "classification, regression or tokens")(
      "samples", po::value(&samples)->default_value(samples), "samples in all (classification, regression)")(
      "shape", po::value(&shape)->default_value(shape), "per-sample input shape, e.g. 784 or 1,28,28")(
      "classes", po::value(&classes)->default_value(classes), "classes (classification)")(
      "noise", po::value(&noise)->default_value(noise), "noise level (stddev)")(
      "tokens", po::value(&tokens)->default_value(tokens), "tokens in all (tokens)")(
      "vocab", po::value(&vocab)->default_value(vocab), "vocabulary size (tokens)")(
      "dtype", po::value(&dtype)->default_value(dtype), "stored dtype of inputs (tokens: of the token ids)")(
      "eval_fraction", po::value(&eval_fraction)->default_value(eval_fraction), "share written to DIR/eval")(
      "seed", po::value(&seed)->default_value(seed), "random seed");
  d.add(write_options(&w, &shards, &out));
  if (!parse(d, args, "synth")) return 0;
  if (kind == "tokens") {
    if (vocab < 2) throw ConfigError("--vocab must be >= 2");
    auto t = synth_tokens(tokens, vocab, seed);
    const std::int64_t n_eval = static_cast<std::int64_t>(eval_fraction * static_cast<double>(tokens));
    std::vector<std::int64_t> train(t.begin(), t.end() - n_eval), eval(t.end() - n_eval, t.end());
    DType type = parse_dtype(dtype);
    if (type == DType::kFloat32) type = vocab <= 65536 ? DType::kUInt16 : DType::kInt32;  // the default: ids
    auto files = write_token_shards(train, type, (fs::path(out) / "train").string(), shards, w);
    std::cout << "wrote " << train.size() << " training tokens (vocab " << vocab << ") to " << files.size()
              << " shards in " << out << "/train\n";
    if (!eval.empty()) {
      files = write_token_shards(eval, type, (fs::path(out) / "eval").string(), 1, w);
      std::cout << "wrote " << eval.size() << " evaluation tokens to " << out << "/eval\n";
    }
    return 0;
  }
  Samples s;
  if (kind == "classification") s = synth_classification(samples, parse_shape(shape), classes, noise, seed);
  else if (kind == "regression") s = synth_regression(samples, parse_shape(shape), noise, seed);
  else throw ConfigError("--kind " + kind + ": expected classification, regression or tokens");
  s.inputs_dtype = parse_dtype(dtype);
  write_split(s, eval_fraction, seed + 1, out, shards, w);
  return 0;
}

int convert(const std::vector<std::string>& args) {
  std::string from, input, inputs, targets, out;
  int target_column = -1, shards = 1;
  double eval_fraction = 0.0;
  std::uint64_t seed = 1;
  WriteOptions w;
  po::options_description d("hpctrain-data convert");
  d.add_options()("from", po::value(&from)->required(), "csv, npy or digits (scikit-learn, needs python3-sklearn)")(
      "input", po::value(&input), "CSV file (--from csv)")(
      "target_column", po::value(&target_column)->default_value(target_column), "CSV column of the target (-1: last)")(
      "inputs", po::value(&inputs), ".npy file of the inputs (--from npy)")(
      "targets", po::value(&targets), ".npy file of the targets (--from npy)")(
      "eval_fraction", po::value(&eval_fraction)->default_value(eval_fraction),
      "share of samples (shuffled by --seed) written to DIR/eval; the rest go to DIR/train")(
      "seed", po::value(&seed)->default_value(seed), "seed of the train/eval split");
  d.add(write_options(&w, &shards, &out));
  if (!parse(d, args, "convert")) return 0;
  Samples s;
  if (from == "csv") {
    if (input.empty()) throw ConfigError("--from csv needs --input FILE.csv");
    s = load_csv(input, target_column);
  } else if (from == "npy") {
    if (inputs.empty() || targets.empty()) throw ConfigError("--from npy needs --inputs X.npy and --targets y.npy");
    s = load_npy(inputs, targets);
  } else if (from == "digits") {
    // The 1797 8x8 images of scikit-learn's digits (shipped with Debian's python3-sklearn).
    const std::string tmp = (fs::temp_directory_path() / ("hpctrain-digits-" + std::to_string(getpid()))).string();
    fs::create_directories(tmp);
    const std::string cmd = "/usr/bin/python3 -c \"import numpy as np; from sklearn.datasets import load_digits; "
                            "d = load_digits(); np.save('" + tmp + "/x.npy', d.images.astype(np.uint8)); "
                            "np.save('" + tmp + "/y.npy', d.target.astype(np.int64))\"";
    if (std::system(cmd.c_str()) != 0)
      throw Error("loading the digits data set failed: needs /usr/bin/python3 with python3-sklearn "
                  "(tools/install-deps.sh installs it)");
    s = load_npy(tmp + "/x.npy", tmp + "/y.npy");
    fs::remove_all(tmp);
  } else {
    throw ConfigError("--from " + from + ": expected csv, npy or digits");
  }
  write_split(s, eval_fraction, seed, out, shards, w);
  return 0;
}

int inspect(const std::vector<std::string>& args) {
  std::string spec;
  std::int64_t num_classes = 0;
  DataArguments a;
  std::string format = to_name(a.format);
  po::options_description d("hpctrain-data inspect SPEC");
  d.add_options()("spec", po::value(&spec)->required(), "data set: a glob, a directory or a comma list")(
      "format", po::value(&format)->default_value(format), "samples or tokens")(
      "inputs_key", po::value(&a.inputs_key)->default_value(a.inputs_key), "")(
      "targets_key", po::value(&a.targets_key)->default_value(a.targets_key), "")(
      "tokens_key", po::value(&a.tokens_key)->default_value(a.tokens_key), "")(
      "seq_len", po::value(&a.seq_len)->default_value(1), "window length (tokens)")(
      "num_classes", po::value(&num_classes)->default_value(0),
      "classes to check every label against, as [model] num_classes (0: inferred from the largest label, as a run does)");
  po::positional_options_description pos;
  pos.add("spec", 1);
  if (!parse(d, args, "inspect", &pos)) return 0;
  if (num_classes < 0) throw ConfigError("--num_classes " + std::to_string(num_classes) + ": expected 0 or a class count");
  if (const auto f = from_name<DataFormat>(format)) a.format = *f;
  else throw ConfigError("--format " + format + ": expected samples or tokens");
  a.check_finite = false;
  auto set = std::make_shared<ShardSet>(ShardSet::scan(resolve_files(spec, "data set"), a, "data set"));
  std::cout << set->shards().size() << " shards, " << set->size() << (set->tokens() ? " windows" : " samples") << "\n";
  for (const auto& s : set->shards()) {
    std::cout << "  " << s.file << ": " << s.num_samples << (set->tokens() ? " windows" : " samples");
    auto show = [](const DatasetMeta& m) {
      std::ostringstream os;
      os << m.key << " " << m.dtype_name() << " (";
      for (std::size_t i = 0; i < m.shape.size(); ++i) os << (i ? ", " : "") << m.shape[i];
      os << ") " << m.layout;
      return os.str();
    };
    if (set->tokens()) std::cout << "; " << show(s.tokens) << "\n";
    else std::cout << "; " << show(s.inputs) << "; " << show(s.targets) << "\n";
  }
  // The class count a run would use, from every label of every shard (read when the set opened).
  bool refused = false;
  if (!set->tokens() && set->has_targets() && set->integer_targets() && set->target_max() >= 0) {
    try {
      const std::int64_t n = set->classes(num_classes);
      std::cout << "classes: " << n
                << (num_classes > 0 ? " (--num_classes; every label is below it)"
                                    : " (1 + the largest label, in " + set->target_max_where() +
                                          "; a run infers this unless [model] num_classes is set)")
                << "\n";
    } catch (const DataError& e) {
      std::cout << "classes: REFUSED: " << e.what() << "\n";
      refused = true;
    }
  }
  // Statistics over up to 10000 samples spread over the set.
  Reader reader(set, a);
  const std::int64_t n = std::min<std::int64_t>(set->size(), 10000);
  std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) idx[i] = i * set->size() / n;
  Batch b;
  reader.read(idx, &b);
  auto stats = [](const auto& v, const char* name) {
    if (v.empty()) return;
    double lo = v[0], hi = v[0], sum = 0, sq = 0;
    for (auto x : v) {
      lo = std::min<double>(lo, x);
      hi = std::max<double>(hi, x);
      sum += x;
      sq += static_cast<double>(x) * x;
    }
    const double mean = sum / v.size();
    std::cout << "  " << name << ": min " << lo << ", max " << hi << ", mean " << mean << ", std "
              << std::sqrt(std::max(0.0, sq / v.size() - mean * mean)) << "\n";
  };
  std::cout << "statistics over " << n << " samples:\n";
  stats(b.inputs, "inputs");
  stats(b.input_ids, "input token ids");
  stats(b.float_targets, "targets");
  if (!b.class_targets.empty()) {
    std::map<std::int64_t, std::int64_t> hist;
    for (auto t : b.class_targets) ++hist[t];
    if (hist.size() <= 50 && !set->tokens()) {
      std::cout << "  targets: " << hist.size() << " distinct labels;";
      for (auto [k, c] : hist) std::cout << " " << k << ":" << c;
      std::cout << "\n";
    } else {
      stats(b.class_targets, "targets");
    }
  }
  return refused ? 1 : 0;
}

int reshard(const std::vector<std::string>& args) {
  std::string spec, out;
  int shards = 1;
  DataArguments a;
  WriteOptions w;
  po::options_description d("hpctrain-data reshard SPEC");
  d.add_options()("spec", po::value(&spec)->required(), "input data set (format=samples)")(
      "inputs_key", po::value(&a.inputs_key)->default_value(a.inputs_key), "")(
      "targets_key", po::value(&a.targets_key)->default_value(a.targets_key), "");
  d.add(write_options(&w, &shards, &out));
  po::positional_options_description pos;
  pos.add("spec", 1);
  if (!parse(d, args, "reshard", &pos)) return 0;
  a.check_finite = false;
  auto set = std::make_shared<ShardSet>(ShardSet::scan(resolve_files(spec, "data set"), a, "data set"));
  Reader reader(set, a);
  std::vector<std::int64_t> idx(static_cast<std::size_t>(set->size()));
  std::iota(idx.begin(), idx.end(), 0);
  Batch b;
  reader.read(idx, &b);
  Samples s;
  s.n = set->size();
  s.sample_shape = set->input_shape();
  s.inputs = std::move(b.inputs);
  const DatasetMeta& in = set->shards().front().inputs;
  if (!in.dtype()) throw ConfigError("inputs of dtype " + in.dtype_name() + " cannot be written back; expected one of: " + dtype_names());
  s.inputs_dtype = *in.dtype();
  s.int_targets = set->integer_targets();
  s.class_targets = std::move(b.class_targets);
  s.float_targets = std::move(b.float_targets);
  if (!set->target_shape().empty()) throw ConfigError("reshard: only one target value per sample is supported");
  auto files = write_shards(s, {}, 0, s.n, out, shards, w, a.inputs_key, a.targets_key);
  std::cout << "wrote " << s.n << " samples to " << files.size() << " shards in " << out << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (cmd == "synth") return synth(args);
    if (cmd == "convert") return convert(args);
    if (cmd == "inspect") return inspect(args);
    if (cmd == "reshard") return reshard(args);
    std::cerr << "hpctrain-data: unknown command '" << cmd << "'\n" << kUsage;
    return 2;
  } catch (const po::error& e) {
    std::cerr << "hpctrain-data " << cmd << ": " << e.what() << " (see hpctrain-data " << cmd << " --help)\n";
    return 2;
  } catch (const Error& e) {
    std::cerr << "hpctrain-data " << cmd << ": error: " << e.what() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {
    std::cerr << "hpctrain-data " << cmd << ": error: " << e.what() << "\n";
    return 1;
  }
}
