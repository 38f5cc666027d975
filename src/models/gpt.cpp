// The built-in GPT: a decoder-only transformer language model (pre-norm blocks, causal
// self-attention, GELU MLP, learned positions, optional weight tying), GPT-2 initialisation.
#include <torch/nn/init.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cmath>
#include <sstream>

#include "hpctrain/core/error.h"
#include "hpctrain/models/attention.h"
#include "hpctrain/models/model.h"

namespace hpctrain::models {
namespace {

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  CausalSelfAttentionImpl(std::int64_t d, std::int64_t heads, double dropout)
      : qkv(register_module("qkv", torch::nn::Linear(d, 3 * d))),
        proj(register_module("proj", torch::nn::Linear(d, d))),
        heads_(heads),
        dropout_(dropout) {}
  torch::Tensor forward(const torch::Tensor& x) {
    const auto B = x.size(0), T = x.size(1), C = x.size(2);
    auto parts = qkv->forward(x).split(C, 2);
    auto heads = [&](const torch::Tensor& t) { return t.view({B, T, heads_, C / heads_}).transpose(1, 2); };
    torch::Tensor y = causal_attention(heads(parts[0]), heads(parts[1]), heads(parts[2]), dropout_, is_training());
    y = y.transpose(1, 2).contiguous().view({B, T, C});
    return torch::dropout(proj->forward(y), /*p=*/dropout_, /*train=*/is_training());
  }
  torch::nn::Linear qkv, proj;

 private:
  std::int64_t heads_;
  double dropout_;
};
TORCH_MODULE(CausalSelfAttention);

class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(std::int64_t d, std::int64_t heads, double dropout)
      : ln1(register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})))),
        attn(register_module("attn", CausalSelfAttention(d, heads, dropout))),
        ln2(register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})))),
        fc(register_module("fc", torch::nn::Linear(d, 4 * d))),
        proj(register_module("proj", torch::nn::Linear(4 * d, d))),
        dropout_(dropout) {}
  torch::Tensor forward(torch::Tensor x) {
    x = x + attn->forward(ln1->forward(x));
    torch::Tensor h = proj->forward(torch::gelu(fc->forward(ln2->forward(x))));
    return x + torch::dropout(h, /*p=*/dropout_, /*train=*/is_training());
  }
  torch::nn::LayerNorm ln1;
  CausalSelfAttention attn;
  torch::nn::LayerNorm ln2;
  torch::nn::Linear fc, proj;

 private:
  double dropout_;
};
TORCH_MODULE(Block);

class Gpt : public Model {
 public:
  Gpt(const ModelArguments& a, const DataSpec& data) : dropout_(a.dropout), tied_(a.tie_word_embeddings) {
    if (!data.integer_inputs || data.input_shape.size() != 1)
      throw ConfigError("model.name=gpt trains on token windows (data.format=tokens); the data have float inputs");
    if (a.vocab_size < 2) throw ConfigError("model.vocab_size=" + std::to_string(a.vocab_size) + ": gpt needs the vocabulary size");
    if (a.d_model % a.n_head != 0)
      throw ConfigError("model.d_model=" + std::to_string(a.d_model) + " is not a multiple of model.n_head=" + std::to_string(a.n_head));
    seq_len_ = data.input_shape[0];
    vocab_ = a.vocab_size;
    wte = register_module("wte", torch::nn::Embedding(a.vocab_size, a.d_model));
    wpe = register_module("wpe", torch::nn::Embedding(seq_len_, a.d_model));
    for (std::int64_t i = 0; i < a.n_layer; ++i) blocks->push_back(Block(a.d_model, a.n_head, a.dropout));
    register_module("blocks", blocks);
    ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({a.d_model})));
    if (!tied_) lm_head = register_module("lm_head", torch::nn::Linear(torch::nn::LinearOptions(a.d_model, a.vocab_size).bias(false)));
    // GPT-2: N(0, 0.02) weights, zero biases, residual projections scaled by 1/sqrt(2 n_layer).
    torch::NoGradGuard no_grad;
    for (auto& item : named_parameters()) {
      const std::string& name = item.key();
      torch::Tensor& p = item.value();
      if (name.find("bias") != std::string::npos) p.zero_();
      else if (name.find("ln") != std::string::npos) p.fill_(1.0);
      else if (name.find("proj.weight") != std::string::npos) p.normal_(0.0, 0.02 / std::sqrt(2.0 * a.n_layer));
      else p.normal_(0.0, 0.02);
    }
    std::ostringstream os;
    os << "gpt " << a.n_layer << " layers, d_model " << a.d_model << ", " << a.n_head << " heads, seq " << seq_len_
       << ", vocab " << a.vocab_size << (tied_ ? ", tied embeddings" : "") << ", dropout " << a.dropout;
    describe_ = os.str();
  }

  torch::Tensor forward(const torch::Tensor& ids) override {
    const auto T = ids.size(1);
    torch::Tensor pos = torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(ids.device()));
    torch::Tensor x = torch::dropout(wte->forward(ids) + wpe->forward(pos), /*p=*/dropout_, /*train=*/is_training());
    for (const auto& b : *blocks) x = b->as<BlockImpl>()->forward(x);
    x = ln_f->forward(x);
    return tied_ ? torch::matmul(x, wte->weight.t()) : lm_head->forward(x);
  }
  Task task() const override { return Task::kLanguageModeling; }
  std::string describe() const override { return describe_; }
  std::string architecture() const override { return "gpt"; }
  std::int64_t vocab_size() const { return vocab_; }

  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList blocks;
  torch::nn::LayerNorm ln_f{nullptr};
  torch::nn::Linear lm_head{nullptr};

 private:
  double dropout_;
  bool tied_;
  std::int64_t seq_len_ = 0, vocab_ = 0;
  std::string describe_;
};

}  // namespace

std::shared_ptr<Model> make_gpt(const ModelArguments& args, const DataSpec& data) {
  return std::make_shared<Gpt>(args, data);
}

}  // namespace hpctrain::models
