// The optimizer kinds a checkpoint knows (adamw, adam, sgd): how one parameter's optimizer state
// is handed over field by field and built back from its fields. One description serves the
// replicated and the sharded optimizer pieces and the count of a rank's optimizer-state bytes.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace hpctrain::train {

struct OptimizerKind {
  /// One field: `live` when the tensor is the optimizer's own state, not a temporary (the step).
  using Put = std::function<void(const std::string& field, const torch::Tensor&, bool live)>;
  using Has = std::function<bool(const std::string& field)>;
  /// A field's tensor, read like `like` (undefined `like`: shaped like the parameter).
  using Get = std::function<torch::Tensor(const std::string& field, const torch::Tensor& like)>;

  const char* name;
  std::vector<const char*> elementwise;  ///< the fields shaped like the parameter that a stepped state has
  bool step;                             ///< and then "step", an int64 scalar
  std::function<void(const torch::optim::OptimizerParamState&, const Put&)> save;
  /// nullptr when the checkpoint holds no state for the parameter.
  std::function<std::unique_ptr<torch::optim::OptimizerParamState>(const Has&, const Get&)> load;
};

/// The kind `name` names (the `optim` setting's words); ConfigError for any other.
const OptimizerKind& optimizer_kind(const std::string& name);

}  // namespace hpctrain::train
