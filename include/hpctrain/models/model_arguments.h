// [model] section of the configuration: which model to build (plain data).
#pragma once

#include <string>

namespace hpctrain::models {

struct ModelArguments {
  std::string name;  ///< registered model name; required for train/evaluate/predict
};

}  // namespace hpctrain::models
