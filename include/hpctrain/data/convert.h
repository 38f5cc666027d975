// Making data sets: in-memory samples from CSV, NumPy .npy or a synthetic generator, written out
// as HDF5 shards. The engine of the hpctrain-data tool.
#pragma once

#include <cstdint>
#include <string>

#include "hpctrain/core/dtype.h"
#include <vector>

#include "hpctrain/data/writer.h"

namespace hpctrain::data {

/// Samples held in memory: inputs as float32 (with the dtype to store them as), targets as int64
/// class labels or float32 values.
struct Samples {
  std::int64_t n = 0;
  std::vector<std::int64_t> sample_shape;  ///< per-sample input shape
  std::vector<float> inputs;
  DType inputs_dtype = DType::kFloat32;    ///< dtype written to the shards
  bool int_targets = true;
  std::vector<std::int64_t> class_targets;
  std::vector<float> float_targets;
};

/// A NumPy .npy array (version 1/2/3, C order, little-endian numeric dtypes).
struct NpyArray {
  DType dtype = DType::kFloat32;  ///< bool is read as uint8
  std::vector<std::int64_t> shape;
  std::vector<char> data;
};
NpyArray read_npy(const std::string& path);
std::vector<double> npy_values(const NpyArray& a);

/// Numeric CSV; the first line is skipped when it is not numeric (a header). `target_column` may
/// be negative (from the end). Integral targets become class labels.
Samples load_csv(const std::string& path, int target_column);
/// Inputs and targets from two .npy files with the same first dimension.
Samples load_npy(const std::string& inputs_path, const std::string& targets_path);

/// Gaussian class clusters: learnable, not trivially separable.
Samples synth_classification(std::int64_t n, const std::vector<std::int64_t>& shape, int classes, double noise,
                             std::uint64_t seed);
/// y = w . x + noise.
Samples synth_regression(std::int64_t n, const std::vector<std::int64_t>& shape, double noise, std::uint64_t seed);
/// A token stream from a sparse random Markov chain (each token has a few likely successors), so
/// a language model can get well below the unigram entropy.
std::vector<std::int64_t> synth_tokens(std::int64_t n, int vocab, std::uint64_t seed);

/// Writes samples [begin, end) of `s` (in `order` when given) as `shards` files
/// `dir/shard-00000.h5`, ... with datasets `inputs_key` and `targets_key`. Returns the file names.
std::vector<std::string> write_shards(const Samples& s, const std::vector<std::int64_t>& order, std::int64_t begin,
                                      std::int64_t end, const std::string& dir, int shards, const WriteOptions& o,
                                      const std::string& inputs_key = "inputs",
                                      const std::string& targets_key = "targets");
/// Writes a token stream as `shards` 1-D files of near-equal length.
std::vector<std::string> write_token_shards(const std::vector<std::int64_t>& tokens, DType dtype,
                                            const std::string& dir, int shards, const WriteOptions& o,
                                            const std::string& key = "tokens");

}  // namespace hpctrain::data
