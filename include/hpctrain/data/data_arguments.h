// [data] section of the configuration: where the data sets are and how samples are read (plain data).
#pragma once

#include <cstdint>
#include <string>

#include "hpctrain/core/enum_names.h"

namespace hpctrain::data {

/// samples: inputs and targets datasets; tokens: a 1-D token stream cut into windows.
enum class DataFormat { kSamples, kTokens };

struct DataArguments {
  std::string train;  ///< training shards: a glob, a directory or a comma-separated list of files
  std::string eval;   ///< evaluation shards (same forms)
  std::string test;   ///< prediction shards (same forms)
  DataFormat format = DataFormat::kSamples;
  std::string inputs_key = "inputs";   ///< HDF5 path of the inputs, samples along the first axis
  std::string targets_key = "targets"; ///< HDF5 path of the targets, same first-axis length
  std::string tokens_key = "tokens";   ///< HDF5 path of the 1-D integer token stream (format=tokens)
  std::int64_t seq_len = 0;            ///< tokens per training window (format=tokens)
  double inputs_scale = 1.0;           ///< inputs become float32 x * inputs_scale + inputs_offset
  double inputs_offset = 0.0;
  bool shuffle = true;                 ///< shuffle the training order each epoch (false: file order)
  std::int64_t shuffle_block = 0;      ///< >0: shuffle blocks of this many consecutive samples, then within each block
  bool check_finite = true;            ///< fail on NaN/Inf in float inputs, naming the sample
};

}  // namespace hpctrain::data

namespace hpctrain {
template <>
struct EnumNames<data::DataFormat> {
  static constexpr std::pair<data::DataFormat, const char*> list[] = {{data::DataFormat::kSamples, "samples"},
                                                                       {data::DataFormat::kTokens, "tokens"}};
};
}  // namespace hpctrain
