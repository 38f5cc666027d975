// TorchScript models: any module scripted with PyTorch (torch.jit.script / trace, saved with
// .save) is trained as it is. Its parameters and buffers are registered with the wrapper under
// their own tensors, so the optimizer, the flat gradient buffer and .to(device) reach the scripted
// module directly.
#include <torch/script.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "hpctrain/core/error.h"
#include "hpctrain/core/files.h"
#include "hpctrain/models/model.h"

namespace hpctrain::models {
namespace {

std::string flat_name(std::string name) {
  for (auto& c : name)
    if (c == '.') c = '_';
  return name;
}

class ScriptedModel : public Model {
 public:
  ScriptedModel(const ModelArguments& args, const DataSpec& data) : path_(args.name.substr(std::string("torchscript:").size())) {
    const std::string key = "model.name=" + args.name;
    try {
      module_ = torch::jit::load(path_);
    } catch (const c10::Error& e) {
      throw ConfigError(key + ": cannot load the TorchScript file '" + path_ + "': " + e.what_without_backtrace());
    }
    if (args.task == "classification") task_ = Task::kClassification;
    else if (args.task == "regression") task_ = Task::kRegression;
    else if (args.task == "language_modeling") task_ = Task::kLanguageModeling;
    else throw ConfigError(key + ": set [model] task to classification, regression or language_modeling");
    if (task_ == Task::kClassification && !data.integer_targets)
      throw ConfigError(key + ": task=classification needs integer labels, the targets are floats");
    std::int64_t count = 0;
    for (const auto& p : module_.named_parameters(/*recurse=*/true)) {
      register_parameter(flat_name(p.name), p.value, p.value.requires_grad());
      count += p.value.numel();
    }
    for (const auto& b : module_.named_buffers(/*recurse=*/true)) register_buffer(flat_name(b.name), b.value);

    // A dry run on two samples: the output must fit the task and the data.
    std::vector<std::int64_t> shape = {2};
    shape.insert(shape.end(), data.input_shape.begin(), data.input_shape.end());
    torch::Tensor probe = data.integer_inputs ? torch::zeros(shape, torch::kLong) : torch::zeros(shape);
    torch::Tensor out;
    try {
      torch::NoGradGuard no_grad;
      module_.eval();
      out = forward(probe);
      module_.train();
    } catch (const std::exception& e) {  // c10::Error, or the interpreter's JITException
      std::string what = e.what();
      const auto cut = what.find("RuntimeError: ");
      if (cut != std::string::npos) what = what.substr(cut + 14);
      throw ConfigError(key + ": the module fails on a batch of inputs of shape " + shape_text(shape) + ": " + what);
    }
    const std::int64_t classes = args.num_classes > 0 ? args.num_classes : data.num_classes;
    if (task_ == Task::kClassification && (out.dim() != 2 || out.size(1) < classes))
      throw ConfigError(key + ": for classification the output must be [batch, classes >= " + std::to_string(classes) +
                        "], got " + shape_text(out.sizes().vec()));
    if (task_ == Task::kLanguageModeling && out.dim() != 3)
      throw ConfigError(key + ": for language modeling the output must be [batch, seq, vocab], got " + shape_text(out.sizes().vec()));
    std::ostringstream os;
    os << "torchscript " << path_ << " (" << count << " parameters in " << module_.named_parameters().size()
       << " tensors, " << task_name(task_) << ")";
    describe_ = os.str();
  }

  torch::Tensor forward(const torch::Tensor& inputs) override { return module_.forward({inputs}).toTensor(); }
  void train(bool on) override {
    Model::train(on);
    module_.train(on);
  }
  Task task() const override { return task_; }
  std::string describe() const override { return describe_; }
  // The scripted class, not the file's path: a moved file is the same model. Python's scripting
  // mangles a class scripted twice in one process ("___torch_mangle_3."): not part of its identity.
  std::string architecture() const override {
    std::string name = module_.type()->name()->qualifiedName();
    for (std::size_t at; (at = name.find("___torch_mangle_")) != std::string::npos;) {
      const std::size_t dot = name.find('.', at);
      name.erase(at, dot == std::string::npos ? std::string::npos : dot - at + 1);
    }
    return "torchscript " + name;
  }
  bool save_torchscript(const std::string& path) override {
    // Complete or absent: written beside, flushed, then renamed over the old one.
    const std::string tmp = path + ".partial";
    try {
      module_.save(tmp);
    } catch (const c10::Error& e) {
      std::remove(tmp.c_str());
      throw WriteError("cannot write the TorchScript module '" + path + "': " + e.what_without_backtrace());
    }
    files::fsync_path(tmp);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
      const std::string why = std::strerror(errno);
      std::remove(tmp.c_str());
      throw WriteError("cannot write the TorchScript module '" + path + "': " + why);
    }
    return true;
  }

 private:
  static std::string shape_text(const std::vector<std::int64_t>& s) {
    std::string t = "[";
    for (std::size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
    return t + "]";
  }
  std::string path_;
  torch::jit::Module module_;
  Task task_ = Task::kClassification;
  std::string describe_;
};

}  // namespace

std::shared_ptr<Model> make_torchscript(const ModelArguments& args, const DataSpec& data) {
  return std::make_shared<ScriptedModel>(args, data);
}

}  // namespace hpctrain::models
