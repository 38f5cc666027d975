// [data] section of the configuration: where the data sets are (plain data).
#pragma once

#include <string>

namespace hpctrain::data {

struct DataArguments {
  std::string train;  ///< training shards: a glob, a directory or a comma-separated list of files
  std::string eval;   ///< evaluation shards (same forms)
  std::string test;   ///< prediction shards (same forms)
};

}  // namespace hpctrain::data
