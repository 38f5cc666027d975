// The model registry and the helpers the built-in factories share.
#include <cstdio>
#include <sstream>

#include "hpctrain/core/error.h"
#include "hpctrain/models/model.h"

namespace hpctrain::models {

std::shared_ptr<Model> make_mlp(const ModelArguments& args, const DataSpec& data);
std::shared_ptr<Model> make_cnn(const ModelArguments& args, const DataSpec& data);
std::shared_ptr<Model> make_gpt(const ModelArguments& args, const DataSpec& data);
std::shared_ptr<Model> make_torchscript(const ModelArguments& args, const DataSpec& data);

const char* task_name(Task t) {
  switch (t) {
    case Task::kClassification: return "classification";
    case Task::kRegression: return "regression";
    case Task::kLanguageModeling: return "language modeling";
  }
  return "?";
}

Fingerprint Model::fingerprint() const {
  Fingerprint f;
  f.entries.push_back(std::string("task ") + task_name(task()));
  if (!architecture().empty()) f.entries.push_back("architecture " + architecture());
  auto describe = [](const char* kind, const std::string& name, const torch::Tensor& t) {
    std::ostringstream os;
    os << kind << " " << name << " " << t.scalar_type() << " [";
    for (std::int64_t d = 0; d < t.dim(); ++d) os << (d ? ", " : "") << t.size(d);
    os << "]";
    return os.str();
  };
  for (const auto& p : named_parameters()) f.entries.push_back(describe("param", p.key(), p.value()));
  for (const auto& b : named_buffers()) f.entries.push_back(describe("buffer", b.key(), b.value()));
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (const auto& e : f.entries)
    for (const char c : e + "\n") h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  f.hash = hex;
  return f;
}

void Registry::add(const std::string& name, ModelFactory factory, const std::string& description) {
  entries_[name] = Entry{std::move(factory), description};
}

std::vector<std::string> Registry::names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : entries_) out.push_back(k);
  return out;
}

std::shared_ptr<Model> Registry::create(const ModelArguments& args, const DataSpec& data) const {
  if (args.name.rfind("torchscript:", 0) == 0) return make_torchscript(args, data);
  auto it = entries_.find(args.name);
  if (it == entries_.end()) {
    std::string known;
    for (const auto& n : names()) known += (known.empty() ? "" : ", ") + n;
    throw ConfigError("model.name=" + args.name + ": no such model; registered models: " + known +
                      " (or torchscript:<file.pt>)");
  }
  return it->second.factory(args, data);
}

Registry builtin_models() {
  Registry r;
  r.add("mlp", make_mlp, "multi-layer perceptron over flattened inputs (classification or regression)");
  r.add("cnn", make_cnn, "small residual convolutional image classifier over [C,] H, W inputs");
  r.add("gpt", make_gpt, "decoder-only transformer language model over token windows");
  return r;
}

std::vector<std::int64_t> parse_sizes(const std::string& text, const std::string& key) {
  std::vector<std::int64_t> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    char* end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end || v < 1)
      throw ConfigError(key + "=" + text + ": expected positive integers separated by commas, e.g. 256,256");
    out.push_back(v);
  }
  if (out.empty()) throw ConfigError(key + " is empty: expected positive integers separated by commas");
  return out;
}

}  // namespace hpctrain::models
