// Causal scaled dot-product attention: torch 2.x's fused kernel where it exists, the textbook
// form on 1.13. The one place models differ between the two libtorch versions.
#pragma once

#include <torch/types.h>
#include <torch/version.h>

#include <cmath>
#include <limits>

#if TORCH_VERSION_MAJOR >= 2
#include <ATen/ops/scaled_dot_product_attention.h>
#endif

namespace hpctrain::models {

/// q, k, v: [batch, heads, seq, head_dim] -> [batch, heads, seq, head_dim], each position
/// attending to itself and earlier positions only.
inline torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      double dropout, bool training) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/training ? dropout : 0.0,
                                          /*is_causal=*/true);
#else
  const auto T = q.size(-2);
  torch::Tensor scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(-1)));
  torch::Tensor mask = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).triu(1);
  scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
  torch::Tensor p = torch::softmax(scores, -1);
  if (training && dropout > 0) p = torch::dropout(p, dropout, /*train=*/true);
  return torch::matmul(p, v);
#endif
}

}  // namespace hpctrain::models
