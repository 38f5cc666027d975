// [model] section of the configuration: which model to build and its shape (plain data).
#pragma once

#include <cstdint>
#include <string>

#include "hpctrain/core/enum_names.h"

namespace hpctrain::models {

enum class Activation { kRelu, kGelu, kTanh };

struct ModelArguments {
  std::string name;                    ///< registered model name; required for train/evaluate/predict
  std::string hidden_sizes = "256,256";  ///< mlp: widths of the hidden layers
  std::string channels = "32,64";      ///< cnn: channels of the residual stages
  Activation activation = Activation::kRelu;
  double dropout = 0.0;                ///< dropout probability after each hidden layer
  std::int64_t num_classes = 0;        ///< classification: 0 = 1 + the largest target in the training data
  std::int64_t n_layer = 4;            ///< gpt: transformer blocks
  std::int64_t n_head = 4;             ///< gpt: attention heads
  std::int64_t d_model = 256;          ///< gpt: width
  std::int64_t vocab_size = 0;         ///< gpt: token ids are in [0, vocab_size); required
  bool tie_word_embeddings = true;     ///< gpt: the output layer reuses the token embedding
  std::string task;                    ///< torchscript models: classification, regression or language_modeling
};

}  // namespace hpctrain::models

namespace hpctrain {
template <>
struct EnumNames<models::Activation> {
  static constexpr std::pair<models::Activation, const char*> list[] = {
      {models::Activation::kRelu, "relu"}, {models::Activation::kGelu, "gelu"}, {models::Activation::kTanh, "tanh"}};
};
}  // namespace hpctrain
