// The built-in MLP: flattened inputs, hidden Linear layers with an activation and dropout, and a
// head sized by the task (classes, or regression outputs).
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/dropout.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>

#include <sstream>

#include "hpctrain/core/error.h"
#include "hpctrain/models/model.h"

namespace hpctrain::models {

torch::Tensor activate(const torch::Tensor& x, Activation activation) {
  switch (activation) {
    case Activation::kGelu: return torch::gelu(x);
    case Activation::kTanh: return torch::tanh(x);
    case Activation::kRelu: break;
  }
  return torch::relu(x);
}

void check_dropout(const ModelArguments& args) {
  if (args.dropout < 0 || args.dropout >= 1)
    throw ConfigError("model.dropout=" + std::to_string(args.dropout) + ": expected a number in [0, 1)");
}

/// Classification needs integer targets and a class count; regression float targets.
Task task_for(const ModelArguments& args, const DataSpec& data, std::int64_t* outputs) {
  if (data.integer_inputs)
    throw ConfigError("model.name=" + args.name + " takes float features, but the data are token ids (data.format=tokens)");
  if (data.integer_targets) {
    if (!data.target_shape.empty())
      throw ConfigError("model.name=" + args.name + ": classification needs one label per sample, the targets have shape [" +
                        std::to_string(data.target_shape.size()) + " dims]");
    const std::int64_t classes = args.num_classes > 0 ? args.num_classes : data.num_classes;
    if (classes < 2)
      throw ConfigError("model.num_classes=" + std::to_string(classes) +
                        ": classification needs at least 2 classes (set [model] num_classes)");
    if (data.num_classes > classes)
      throw ConfigError("model.num_classes=" + std::to_string(classes) + " but the training targets go up to " +
                        std::to_string(data.num_classes - 1) + "; expected num_classes >= " + std::to_string(data.num_classes));
    *outputs = classes;
    return Task::kClassification;
  }
  std::int64_t n = 1;
  for (auto d : data.target_shape) n *= d;
  *outputs = n;
  return Task::kRegression;
}

class Mlp : public Model {
 public:
  Mlp(const ModelArguments& args, const DataSpec& data) : activation_(args.activation), dropout_(args.dropout) {
    check_dropout(args);
    std::int64_t in = 1;
    for (auto d : data.input_shape) in *= d;
    std::int64_t outputs = 0;
    task_ = task_for(args, data, &outputs);
    std::ostringstream os;
    os << "mlp " << in;
    for (auto h : parse_sizes(args.hidden_sizes, "model.hidden_sizes")) {
      layers_->push_back(torch::nn::Linear(in, h));
      os << "-" << h;
      in = h;
    }
    head_ = register_module("head", torch::nn::Linear(in, outputs));
    register_module("layers", layers_);
    os << "-" << outputs << " (" << to_name(activation_) << ", dropout " << dropout_ << ", " << task_name(task_) << ")";
    describe_ = os.str();
  }

  torch::Tensor forward(const torch::Tensor& inputs) override {
    torch::Tensor x = inputs.flatten(1);
    for (const auto& layer : *layers_) {
      x = activate(layer->as<torch::nn::Linear>()->forward(x), activation_);
      if (dropout_ > 0) x = torch::dropout(x, /*p=*/dropout_, /*train=*/is_training());
    }
    return head_->forward(x);
  }
  Task task() const override { return task_; }
  std::string describe() const override { return describe_; }
  std::string architecture() const override { return "mlp activation=" + std::string(to_name(activation_)); }

 private:
  Activation activation_;
  double dropout_;
  Task task_ = Task::kClassification;
  torch::nn::ModuleList layers_;
  torch::nn::Linear head_{nullptr};
  std::string describe_;
};

std::shared_ptr<Model> make_mlp(const ModelArguments& args, const DataSpec& data) {
  return std::make_shared<Mlp>(args, data);
}

}  // namespace hpctrain::models
