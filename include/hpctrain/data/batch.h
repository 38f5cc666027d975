// Batch: the samples of one micro-batch as flat host buffers, ready to wrap as tensors.
#pragma once

#include <cstdint>
#include <vector>

#include "hpctrain/data/sampler.h"

namespace hpctrain::data {

struct Batch {
  std::vector<std::int64_t> indices;       ///< global sample indices, in batch order
  std::vector<std::int64_t> input_shape;   ///< per sample (without the batch dimension)
  std::vector<std::int64_t> target_shape;  ///< per sample; {} for one scalar per sample
  std::vector<float> inputs;               ///< float features (format=samples)
  std::vector<std::int64_t> input_ids;     ///< token ids (format=tokens)
  std::vector<std::int64_t> class_targets; ///< integer targets (class labels, next tokens)
  std::vector<float> float_targets;        ///< float targets (regression)
  MicroBatch plan;                         ///< where it stands in the plan (epoch, micro-batch, state after)

  std::int64_t size() const { return static_cast<std::int64_t>(indices.size()); }
};

}  // namespace hpctrain::data
