// Tensors to and from the checkpoint pieces: a tensor handed to a StateWriter (host memory
// directly, a GPU tensor through byte-range copies), and one read back after its shape and type
// are checked against the run's. Shared by the state pieces.
#pragma once

#include <torch/torch.h>

#include <string>

#include "hpctrain/ckpt/state.h"

namespace hpctrain::train::tensor_io {

/// The checkpoint's element type of a tensor (float32, float64, int64, uint8; else Error).
ckpt::DType dtype_of(const torch::Tensor& t);
/// Hands `t` to the writer as `name`; `live`: it is the run's state itself, not a temporary.
void put(ckpt::StateWriter& w, const std::string& name, const torch::Tensor& t, bool live);
/// Reads `name` of the piece `key` into `target` after checking its shape and type (ConfigError
/// naming both when they differ).
void get(const ckpt::StateReader& r, const std::string& key, const std::string& name, torch::Tensor target);
/// A new tensor like `like`, read from `name`.
torch::Tensor read_like(const ckpt::StateReader& r, const std::string& key, const std::string& name, const torch::Tensor& like);

}  // namespace hpctrain::train::tensor_io
