// The model interface and registry: a model is a torch module that maps a batch of inputs to
// outputs and declares its task, which picks the loss and the evaluation metrics.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hpctrain/models/model_arguments.h"

namespace hpctrain::models {

enum class Task { kClassification, kRegression, kLanguageModeling };
const char* task_name(Task t);

/// What the data set offers the model, so a factory can size it and refuse what does not fit.
struct DataSpec {
  std::vector<std::int64_t> input_shape;   ///< per sample
  std::vector<std::int64_t> target_shape;  ///< per sample; {} for one value
  bool integer_inputs = false;             ///< token ids
  bool integer_targets = false;            ///< class labels / next tokens
  std::int64_t num_classes = 0;            ///< 1 + largest integer target seen (0 when unknown)
};

/// A model's identity for checkpoints: `entries` in order ("task classification",
/// "architecture act=relu", "param fc.weight float32 [64, 32]", "buffer ..."), `hash` their
/// 64-bit FNV-1a as 16 hex digits.
struct Fingerprint {
  std::string hash;
  std::vector<std::string> entries;
};

class Model : public torch::nn::Module {
 public:
  /// inputs [batch, input_shape...] -> outputs: logits [batch, classes] (classification),
  /// [batch, target values] (regression), [batch, seq, vocab] (language modeling).
  virtual torch::Tensor forward(const torch::Tensor& inputs) = 0;
  virtual Task task() const = 0;
  /// One line describing the architecture, for the log.
  virtual std::string describe() const = 0;
  /// Saves the model as TorchScript when it is one (torchscript:<file> models); false otherwise.
  virtual bool save_torchscript(const std::string& /*path*/) { return false; }
  /// What shapes the model's function but not its parameters' shapes (the activation, a scripted
  /// module's class); part of the fingerprint. "" when nothing does.
  virtual std::string architecture() const { return ""; }

  /// What a checkpoint must match to load into this model: the task, architecture() and every
  /// parameter's and buffer's name, dtype and shape. Every model has one, so registered and
  /// TorchScript models are checked like the built-in ones.
  Fingerprint fingerprint() const;
};

using ModelFactory = std::function<std::shared_ptr<Model>(const ModelArguments&, const DataSpec&)>;

/// Models by name. A value, not a singleton: main makes one with the built-ins and user code
/// adds its own before handing it to the Trainer.
class Registry {
 public:
  void add(const std::string& name, ModelFactory factory, const std::string& description);
  /// Builds `args.name`; ConfigError for an unknown name (listing the known ones) or a model that
  /// does not fit the data.
  std::shared_ptr<Model> create(const ModelArguments& args, const DataSpec& data) const;
  bool contains(const std::string& name) const { return entries_.count(name) > 0; }
  std::vector<std::string> names() const;

 private:
  struct Entry {
    ModelFactory factory;
    std::string description;
  };
  std::map<std::string, Entry> entries_;
};

/// A registry holding the built-in models: mlp, cnn, gpt; and torchscript:<file.pt> for any
/// scripted module.
Registry builtin_models();

/// "256,256" -> {256, 256}; ConfigError naming `key` otherwise.
std::vector<std::int64_t> parse_sizes(const std::string& text, const std::string& key);

}  // namespace hpctrain::models
