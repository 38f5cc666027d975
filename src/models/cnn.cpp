// The built-in CNN: a small ResNet-style image classifier. GroupNorm instead of BatchNorm keeps
// every sample's output independent of the batch, so data-parallel training equals one big batch.
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <numeric>
#include <sstream>

#include "hpctrain/core/error.h"
#include "hpctrain/models/model.h"

namespace hpctrain::models {

torch::Tensor activate(const torch::Tensor& x, Activation activation);
void check_dropout(const ModelArguments& args);
Task task_for(const ModelArguments& args, const DataSpec& data, std::int64_t* outputs);

namespace {

torch::nn::GroupNorm norm(std::int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(std::gcd<std::int64_t>(channels, 8), channels));
}

torch::nn::Conv2d conv3(std::int64_t in, std::int64_t out, std::int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

// Two 3x3 convolutions with a skip connection; the first may halve the resolution.
class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(std::int64_t in, std::int64_t out, std::int64_t stride, Activation activation)
      : c1(register_module("c1", conv3(in, out, stride))),
        n1(register_module("n1", norm(out))),
        c2(register_module("c2", conv3(out, out, 1))),
        n2(register_module("n2", norm(out))),
        activation_(activation) {
    if (in != out || stride != 1)
      skip = register_module("skip", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = activate(n1->forward(c1->forward(x)), activation_);
    y = n2->forward(c2->forward(y));
    return activate(y + (skip ? skip->forward(x) : x), activation_);
  }
  torch::nn::Conv2d c1, skip{nullptr};
  torch::nn::GroupNorm n1;
  torch::nn::Conv2d c2;
  torch::nn::GroupNorm n2;
  Activation activation_;
};
TORCH_MODULE(Block);

class Cnn : public Model {
 public:
  Cnn(const ModelArguments& args, const DataSpec& data) : activation_(args.activation) {
    check_dropout(args);
    const auto& s = data.input_shape;
    if (s.size() != 2 && s.size() != 3)
      throw ConfigError("model.name=cnn needs image inputs of shape [H, W] or [C, H, W] per sample, the data have " +
                        std::to_string(s.size()) + " dims");
    add_channel_ = s.size() == 2;
    const std::int64_t in_ch = add_channel_ ? 1 : s[0];
    std::int64_t outputs = 0;
    task_ = task_for(args, data, &outputs);
    if (task_ != Task::kClassification) throw ConfigError("model.name=cnn is a classifier: the targets must be integer labels");
    auto chans = parse_sizes(args.channels, "model.channels");
    std::ostringstream os;
    os << "cnn in " << in_ch << "x" << s[s.size() - 2] << "x" << s.back() << ", stages";
    stem_ = register_module("stem", conv3(in_ch, chans[0], 1));
    stem_norm_ = register_module("stem_norm", norm(chans[0]));
    std::int64_t prev = chans[0];
    for (std::size_t i = 0; i < chans.size(); ++i) {
      blocks_->push_back(Block(prev, chans[i], i == 0 ? 1 : 2, activation_));
      os << " " << chans[i];
      prev = chans[i];
    }
    register_module("blocks", blocks_);
    head_ = register_module("head", torch::nn::Linear(prev, outputs));
    os << ", " << outputs << " classes (GroupNorm, " << to_name(activation_) << ")";
    describe_ = os.str();
  }

  torch::Tensor forward(const torch::Tensor& inputs) override {
    torch::Tensor x = add_channel_ ? inputs.unsqueeze(1) : inputs;
    x = activate(stem_norm_->forward(stem_->forward(x)), activation_);
    for (const auto& b : *blocks_) x = b->as<BlockImpl>()->forward(x);
    return head_->forward(x.mean({2, 3}));
  }
  Task task() const override { return task_; }
  std::string describe() const override { return describe_; }
  std::string architecture() const override { return "cnn activation=" + std::string(to_name(activation_)); }

 private:
  Activation activation_;
  bool add_channel_ = false;
  Task task_ = Task::kClassification;
  torch::nn::Conv2d stem_{nullptr};
  torch::nn::GroupNorm stem_norm_{nullptr};
  torch::nn::ModuleList blocks_;
  torch::nn::Linear head_{nullptr};
  std::string describe_;
};

}  // namespace

std::shared_ptr<Model> make_cnn(const ModelArguments& args, const DataSpec& data) {
  return std::make_shared<Cnn>(args, data);
}

}  // namespace hpctrain::models
