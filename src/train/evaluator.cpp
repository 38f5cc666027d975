// The evaluator: exact passes over each rank's share of a data set, reduced metrics, predictions.
#include "evaluator.h"

#include <torch/nn/functional/loss.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "hpctrain/core/bytes.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/files.h"
#include "hpctrain/core/log.h"
#include "hpctrain/core/signals.h"
#include "hpctrain/data/writer.h"
#include "hpctrain/train/torch_compat.h"

namespace hpctrain::train {
namespace fs = std::filesystem;

// Token ids outside the vocabulary would index past the embedding: name the sample instead.
void BatchModel::check_tokens(const data::Batch& b) const {
  if (task_ != models::Task::kLanguageModeling || vocab_size_ <= 0) return;
  const std::int64_t per = b.input_ids.size() / std::max<std::int64_t>(1, b.size());
  for (std::size_t i = 0; i < b.input_ids.size(); ++i) {
    const std::int64_t t = std::max(b.input_ids[i], b.class_targets[i]);
    const std::int64_t lo = std::min(b.input_ids[i], b.class_targets[i]);
    if (t >= vocab_size_ || lo < 0)
      throw DataError("token id " + std::to_string(t >= vocab_size_ ? t : lo) + " in window " +
                      std::to_string(b.indices[i / per]) + " is outside the vocabulary [0, " + std::to_string(vocab_size_) +
                      "); set [model] vocab_size");
  }
}

namespace {
// One of a batch's buffers as a [batch, trailing...] tensor on `device`: the float one when the
// integer one is empty (a view of the buffer on the host; a copy on a GPU).
torch::Tensor batch_tensor(std::int64_t n, const std::vector<std::int64_t>& trailing, std::vector<float>& floats,
                           std::vector<std::int64_t>& integers, torch::Device device) {
  std::vector<std::int64_t> shape = {n};
  shape.insert(shape.end(), trailing.begin(), trailing.end());
  torch::Tensor t = integers.empty() ? torch::from_blob(floats.data(), shape, torch::kFloat)
                                     : torch::from_blob(integers.data(), shape, torch::kLong);
  return t.to(device);
}
}  // namespace

torch::Tensor BatchModel::inputs(data::Batch& b) const {
  check_tokens(b);
  return batch_tensor(b.size(), b.input_shape, b.inputs, b.input_ids, device_);
}

torch::Tensor BatchModel::targets(data::Batch& b) const {
  return batch_tensor(b.size(), b.target_shape, b.float_targets, b.class_targets, device_);
}

torch::Tensor BatchModel::forward(data::Batch& b) const {
  compat::AutocastGuard autocast(bf16_, device_.is_cuda());
  return model_->forward(inputs(b));
}

torch::Tensor BatchModel::loss(const torch::Tensor& out, const torch::Tensor& y, torch::Tensor* metric) const {
  namespace F = torch::nn::functional;
  if (task_ == models::Task::kRegression) {
    torch::Tensor pred = out.to(torch::kFloat).reshape(y.sizes());
    if (metric) *metric = (pred - y).abs().sum();
    return F::mse_loss(pred, y, F::MSELossFuncOptions().reduction(torch::kSum));
  }
  torch::Tensor logits = out.to(torch::kFloat).reshape({-1, out.size(-1)});
  torch::Tensor labels = y.reshape({-1});
  if (metric) *metric = (logits.argmax(1) == labels).sum();
  return F::cross_entropy(logits, labels, F::CrossEntropyFuncOptions().reduction(torch::kSum));
}

std::int64_t BatchModel::elements_per_sample(const data::ShardSet& set) const {
  std::int64_t n = 1;
  for (auto d : set.target_shape()) n *= d;
  return task_ == models::Task::kRegression ? 1 : n;  // per-token loss for sequences; per sample for regression
}

bool BatchModel::views_batch(const torch::Tensor& t, const data::Batch& b) {
  if (!t.defined() || !t.has_storage()) return false;
  const char* p = static_cast<const char*>(t.storage().data());
  auto within = [p](const auto& v) {
    const char* lo = reinterpret_cast<const char*>(v.data());
    return !v.empty() && p >= lo && p < lo + v.size() * sizeof(v[0]);
  };
  return within(b.inputs) || within(b.input_ids) || within(b.class_targets) || within(b.float_targets);
}

namespace {
// Every this many batches an evaluation or prediction asks all ranks (one tiny allreduce)
// whether a preemption signal came, so that a long evaluation gives way to the checkpoint.
constexpr std::int64_t kStopCheckBatches = 16;
}  // namespace

Evaluator::PassSums Evaluator::run_pass(const std::shared_ptr<data::ShardSet>& set, std::vector<torch::Tensor>* keep) {
  const int rank = comm_.rank(), world = comm_.size();
  models::Model& model = model_.model();
  model.eval();
  torch::NoGradGuard no_grad;
  const auto [begin, end] = data::eval_range(set->size(), rank, world);
  const std::int64_t per_batch = args_.per_device_eval_batch_size;
  // The checks must be the same collectives on every rank: only as many as the rank with the
  // fewest batches makes.
  std::int64_t common_batches = std::numeric_limits<std::int64_t>::max();
  for (int r = 0; r < world; ++r) {
    const auto [b0, e0] = data::eval_range(set->size(), r, world);
    common_batches = std::min(common_batches, (e0 - b0 + per_batch - 1) / per_batch);
  }
  data::Loader loader(set, data_, data::eval_source(begin, end, per_batch), static_cast<int>(args_.dataloader_prefetch));
  PassSums sums;
  data::Batch b;
  std::int64_t batches = 0;
  while (loader.next(&b)) {
    ++batches;
    if (b.size() > 0) {
      torch::Tensor out = model_.forward(b).to(torch::kFloat);
      if (keep) {
        // The loader reads a later batch into this batch's buffers: an output that is a view of
        // them (a model that returns its input, or a reshape of it) is copied out first.
        torch::Tensor host = out.cpu();
        keep->push_back(BatchModel::views_batch(host, b) ? host.clone() : host);
      }
      if (set->has_targets()) {
        torch::Tensor metric;
        const torch::Tensor l = model_.loss(out, model_.targets(b), &metric);
        sums.loss += l.item<double>();
        sums.metric += metric.item<double>();
        sums.count += static_cast<double>(b.size() * model_.elements_per_sample(*set));
      }
    }
    if (batches % kStopCheckBatches == 0 && batches <= common_batches) {
      const auto stop = comm_.allreduce({static_cast<double>(signals::received())}, dist::ReduceOp::kMax);
      if (stop[0] != 0) {
        signals::acknowledge();
        model.train();
        sums.stopped_by = static_cast<int>(stop[0]);
        if (rank == 0) {
          HPCT_LOG(warning) << "signal " << sums.stopped_by << " received: the " << set->what() << " pass stops after "
                            << batches << " batches to let the run stop";
        }
        return sums;
      }
    }
  }
  model.train();
  auto reduced = comm_.allreduce({sums.loss, sums.metric, sums.count}, dist::ReduceOp::kSum);
  return {reduced[0], reduced[1], reduced[2], 0};
}

Json Evaluator::metrics(const std::string& prefix, const PassSums& s) const {
  Json m = Json::object();
  m[prefix + "_loss"] = s.loss / s.count;
  if (model_.task() == models::Task::kRegression) m[prefix + "_mae"] = s.metric / s.count;
  else m[prefix + "_accuracy"] = s.metric / s.count;  // next-token accuracy for language models
  if (model_.task() == models::Task::kLanguageModeling) m[prefix + "_perplexity"] = std::exp(s.loss / s.count);
  return m;
}

Evaluator::PassSums Evaluator::predict(const std::shared_ptr<data::ShardSet>& set) {
  std::vector<torch::Tensor> outs;
  PassSums sums = run_pass(set, &outs);
  if (sums.stopped_by != 0) return sums;
  // classes: argmax over the last axis (per token for language models); regression: the values.
  const models::Task task = model_.task();
  const bool classes = task != models::Task::kRegression && args_.predict_output == config::PredictOutput::kClasses;
  torch::Tensor mine = outs.empty() ? torch::Tensor() : torch::cat(outs, 0);
  if (mine.defined() && classes) mine = mine.argmax(-1);
  if (mine.defined() && task == models::Task::kRegression) mine = mine.reshape({mine.size(0), -1});
  // Each rank sends its per-sample shape with its rows, so rank 0 needs no samples of its own.
  ByteWriter w;
  std::vector<std::int64_t> row_shape;
  if (mine.defined()) {
    mine = mine.contiguous();
    for (std::int64_t d = 1; d < mine.dim(); ++d) row_shape.push_back(mine.size(d));
  }
  w.put(row_shape);
  w.put(mine.defined() ? std::string(static_cast<const char*>(mine.data_ptr()), static_cast<std::size_t>(mine.nbytes()))
                       : std::string());
  auto all = env_.gather_to_root(w.bytes());
  if (comm_.rank() != 0) return sums;
  const std::string path = (fs::path(args_.output_dir) / "predictions.h5").string();
  std::vector<std::int64_t> shape = {set->size()};
  std::string joined;
  for (const auto& part : all) {
    ByteReader r(part);
    auto dims = r.get_vector<std::int64_t>();
    std::string rows = r.get_string();
    if (!rows.empty() && shape.size() == 1) shape.insert(shape.end(), dims.begin(), dims.end());
    joined += rows;
  }
  fs::create_directories(args_.output_dir);
  // Complete or absent: written beside, flushed, then renamed over an older one.
  const std::string partial = path + ".partial";
  try {
    data::ShardWriter out(partial);
    out.create("predictions", classes ? DType::kInt64 : DType::kFloat32, shape, {});
    if (classes) out.write_rows("predictions", 0, set->size(), reinterpret_cast<const std::int64_t*>(joined.data()));
    else out.write_rows("predictions", 0, set->size(), reinterpret_cast<const float*>(joined.data()));
    out.close();
    files::fsync_path(partial);
    fs::rename(partial, path);
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove(partial, ec);
    throw WriteError("cannot write the predictions '" + path + "': " + e.what());
  }
  HPCT_LOG(info) << "predictions of " << set->size() << " samples (" << (classes ? "classes" : "values/logits")
                 << ") written to " << path;
  return sums;
}

}  // namespace hpctrain::train
