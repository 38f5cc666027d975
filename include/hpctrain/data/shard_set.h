// ShardSet: the HDF5 files of one data set (train, eval or test), each checked on open, with
// the facts the reader needs (shapes, dtypes, layout, raw file offsets).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hpctrain/core/dtype.h"
#include "hpctrain/data/data_arguments.h"

namespace hpctrain::dist {
class Environment;
}

namespace hpctrain::data {

/// One numeric HDF5 dataset of a shard, as found on open.
struct DatasetMeta {
  std::string key;
  bool is_float = false;
  bool is_signed = true;
  int elem_size = 0;                ///< bytes per element in the file
  std::vector<std::int64_t> shape;  ///< full shape; shape[0] counts samples (or tokens)
  /// Byte offset of the data in the file when it can be read with plain pread (contiguous, no
  /// filters, little-endian standard type); -1 when it must be read through HDF5.
  std::int64_t raw_offset = -1;
  std::string layout;  ///< "contiguous", "chunked" (+ filters), "compact"

  std::string dtype_name() const;  ///< "float32", "uint8", ... ("float16" for a type hpctrain has no DType for)
  std::optional<DType> dtype() const { return dtype_of_storage(is_float, is_signed, elem_size); }
  std::int64_t row_elems() const;  ///< elements per sample: product of shape[1:]
};

struct Shard {
  std::string file;
  std::int64_t file_bytes = 0;    ///< the file's size when the set was opened (a reader checks it)
  std::int64_t num_samples = 0;   ///< samples (format=samples) or windows (format=tokens)
  std::int64_t first_sample = 0;  ///< global index of its first sample
  DatasetMeta inputs;             ///< format=samples
  DatasetMeta targets;            ///< format=samples
  DatasetMeta tokens;             ///< format=tokens
};

/// Turns a data-set spec (a glob, a directory, or a comma-separated list of either or of files)
/// into files in natural order ("shard-2" before "shard-10"). `what` names the setting in errors
/// (e.g. "[data] train"). Throws DataError when something names nothing.
std::vector<std::string> resolve_files(const std::string& spec, const std::string& what);

/// The most classes a run infers from the largest label when [model] num_classes is not set:
/// beyond it, one damaged label (2^60) is likelier than a real task, and would build a head of
/// as many outputs. Larger real tasks set num_classes.
constexpr std::int64_t kMaxInferredClasses = 65536;

class ShardSet {
 public:
  ShardSet() = default;

  /// Opens and checks every file (on this process alone). Throws DataError naming the file, the
  /// key and what was expected.
  /// With `targets_optional` (data to predict), files may lack the targets dataset (all or none).
  static ShardSet scan(const std::vector<std::string>& files, const DataArguments& args, const std::string& what,
                       bool targets_optional = false);

  /// Collective: rank 0 resolves and scans, every rank gets the same table (or the same
  /// CollectiveError), so N ranks do not open N x files' metadata at once.
  static ShardSet open(const dist::Environment& env, const std::string& spec, const DataArguments& args,
                       const std::string& what, bool targets_optional = false);

  std::string serialize() const;
  static ShardSet deserialize(const std::string& bytes);

  bool tokens() const { return tokens_; }
  /// False only for a set opened with targets_optional whose files have no targets.
  bool has_targets() const { return has_targets_; }
  std::int64_t seq_len() const { return seq_len_; }
  std::int64_t size() const { return size_; }
  const std::vector<Shard>& shards() const { return shards_; }
  const std::string& what() const { return what_; }

  /// Per-sample input shape (tokens: {seq_len}).
  std::vector<std::int64_t> input_shape() const;
  /// Per-sample target shape ({} for one scalar per sample; tokens: {seq_len}).
  std::vector<std::int64_t> target_shape() const;
  /// Integer targets (class labels, token ids) rather than float (regression).
  bool integer_targets() const;
  /// Integer inputs (token ids) rather than float features.
  bool integer_inputs() const { return tokens_; }

  /// Smallest and largest integer target (format=samples with integer targets; read on open).
  std::int64_t target_min() const { return target_min_; }
  std::int64_t target_max() const { return target_max_; }
  /// "data file '<file>': '<targets_key>' sample <i>": the first sample holding target_max().
  std::string target_max_where() const;
  /// The class count of a classifier of this set: `num_classes` when set (> 0), checked against
  /// every label; else 1 + the largest label, up to kMaxInferredClasses. DataError naming the
  /// file and sample of the label otherwise.
  std::int64_t classes(std::int64_t num_classes) const;

  /// The shard holding global sample `index` and the sample's index inside it.
  std::size_t locate(std::int64_t index, std::int64_t* local) const;

 private:
  std::string what_;
  bool tokens_ = false;
  bool has_targets_ = true;
  std::int64_t seq_len_ = 0;
  std::int64_t size_ = 0;
  std::int64_t target_min_ = 0, target_max_ = -1;
  std::int64_t target_max_sample_ = -1;  ///< global index of the first sample with target_max_
  std::vector<Shard> shards_;
};

}  // namespace hpctrain::data
