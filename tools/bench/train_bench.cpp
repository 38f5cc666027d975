// Training benchmark, one model and world size per run (tools/bench/train_bench.sh runs the grid
// and the PyTorch DDP peer): hpctrain's Trainer step time beside a bare libtorch loop of the same
// model, data order and optimizer (the floor: data in memory, a flat gradient buffer, one
// MPI_Allreduce), hpctrain's gradient allreduce beside a raw MPI_Allreduce of the same bytes, and a
// check that the Trainer's loss curve equals the floor's for the same seed.
// The Trainer and the floor alternate --rounds times (default 3), each round swapping which goes
// first; step times are medians, the overhead the median of the rounds' ratios. Minor page faults
// per step are reported for both (0 means host memory is reused, not returned to the kernel).
//   mpirun -np N train_bench --model mlp|gpt [--steps S] [--warmup W] [--rounds R] [--dir DIR]
//                            [--path replicated|buckets|zero1]
// --path (tools/bench/dp_bench.sh) picks the data-parallel path: one allreduce after the backward
// pass, 4 MiB buckets overlapped with it, or ZeRO-1; the Trainer then logs every W steps, and the
// line adds its optimizer state and peak RSS (the largest rank's, taken by the first run in the
// process, before any floor) and the step's exposed reduction and optimizer times.
// Prints one line "RESULT key=value ..." on rank 0; exits 1 when the loss curves differ.
#include <torch/nn/functional/loss.h>
#include <torch/optim/adamw.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "hpctrain/data/convert.h"
#include "hpctrain/data/reader.h"
#include "hpctrain/dist/communicator.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/dist/failure.h"
#include "hpctrain/dist/mpi_check.h"
#include "hpctrain/models/model.h"
#include "hpctrain/train/torch_runtime.h"
#include "hpctrain/train/trainer.h"

using namespace hpctrain;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct Setup {
  train::Config config;
  std::int64_t samples = 0;
};

// The benchmark's workloads (issue 6): MLP 784-1024-1024-10 at 128 samples per rank; GPT with 4
// layers, d_model 256, 4 heads, seq 128, vocab 256 at 8 windows per rank.
Setup setup(const dist::Environment& env, const std::string& model, const std::string& dir, std::int64_t steps,
            const std::string& path, std::int64_t warmup) {
  Setup s;
  train::Config& c = s.config;
  if (path == "buckets") c.args.ddp_bucket_cap_mb = "4";
  else if (path == "zero1") c.args.optimizer_sharding = config::OptimizerSharding::kZero1;
  else c.args.ddp_bucket_cap_mb = "0";
  c.command = "train";
  c.args.output_dir = dir + "/run-" + model + "-" + std::to_string(env.size());
  c.args.learning_rate = 1e-3;
  c.args.weight_decay = 0;
  c.args.max_grad_norm = 0;
  c.args.lr_scheduler_type = train::SchedulerType::kConstant;
  c.args.save_strategy = train::SaveStrategy::kNo;
  c.args.max_steps = steps;
  c.args.logging_steps = path.empty() ? 1000000 : warmup;  // windows of W steps: the first is the warm-up
  c.args.log_level = config::LogLevel::kWarning;
  c.data.shuffle = true;
  const std::string data = dir + "/data-" + model;
  if (model == "mlp") {
    c.model.name = "mlp";
    c.model.hidden_sizes = "1024,1024";
    c.args.per_device_train_batch_size = 128;
    s.samples = 128 * 2 * steps + 1;
    if (env.rank() == 0 && !fs::exists(data)) {
      auto d = data::synth_classification(s.samples, {784}, 10, 1.0, 1);
      data::write_shards(d, {}, 0, d.n, data, 2, {});
    }
  } else {
    c.model.name = "gpt";
    c.model.n_layer = 4;
    c.model.d_model = 256;
    c.model.n_head = 4;
    c.model.vocab_size = 256;
    c.data.format = data::DataFormat::kTokens;
    c.data.seq_len = 128;
    c.args.per_device_train_batch_size = 8;
    s.samples = 8 * 2 * steps + 1;
    if (env.rank() == 0 && !fs::exists(data)) {
      auto t = data::synth_tokens(s.samples * 128 + 1, 256, 1);
      data::write_token_shards(t, DType::kUInt16, data, 2, {});
    }
  }
  c.data.train = data;
  MPI_Barrier(env.comm());
  return s;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

class StepTimer : public train::TrainerCallback {
 public:
  std::vector<Clock::time_point> ends;
  std::vector<long> faults;
  void on_step_end(const train::TrainingArguments&, train::TrainerState&, train::TrainerControl&) override {
    ends.push_back(Clock::now());
    faults.push_back(minor_faults());
  }
};

// The floor: the same model (same seed, so the same initial weights), the same samples per step
// (TrainPlan), data already in memory, AdamW, gradients in one flat buffer, one MPI_Allreduce.
struct Floor {
  std::vector<double> losses;
  double step_seconds = 0, faults_per_step = 0;
};

Floor run_floor(const dist::Environment& env, const train::Config& c, std::int64_t steps, std::int64_t warmup,
                bool record_losses) {
  auto set = std::make_shared<data::ShardSet>(data::ShardSet::open(env, c.data.train, c.data, "bench"));
  data::Reader reader(set, c.data);
  data::Batch all;
  std::vector<std::int64_t> every(static_cast<std::size_t>(set->size()));
  for (std::int64_t i = 0; i < set->size(); ++i) every[i] = i;
  reader.read(every, &all);
  std::vector<std::int64_t> shape = {set->size()};
  shape.insert(shape.end(), all.input_shape.begin(), all.input_shape.end());
  torch::Tensor X = all.input_ids.empty() ? torch::from_blob(all.inputs.data(), shape, torch::kFloat).clone()
                                          : torch::from_blob(all.input_ids.data(), shape, torch::kLong).clone();
  std::vector<std::int64_t> tshape = {set->size()};
  tshape.insert(tshape.end(), all.target_shape.begin(), all.target_shape.end());
  torch::Tensor Y = torch::from_blob(all.class_targets.data(), tshape, torch::kLong).clone();

  models::DataSpec spec{set->input_shape(), set->target_shape(), set->integer_inputs(), set->integer_targets(),
                        set->integer_targets() && !set->tokens() ? set->target_max() + 1 : 0};
  torch::manual_seed(static_cast<std::uint64_t>(c.args.seed));
  auto model = models::builtin_models().create(c.model, spec);
  model->train();
  std::vector<torch::Tensor> params = model->parameters();
  std::int64_t total = 0;
  for (auto& p : params) total += p.numel();
  torch::Tensor grads = torch::zeros({total});
  std::int64_t off = 0;
  for (auto& p : params) {
    p.mutable_grad() = grads.narrow(0, off, p.numel()).view_as(p);
    off += p.numel();
  }
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(c.args.learning_rate)
                                      .betas({c.args.adam_beta1, c.args.adam_beta2})
                                      .eps(c.args.adam_epsilon)
                                      .weight_decay(0));
  data::TrainPlan plan(data::Sampler(set->size(), static_cast<std::uint64_t>(c.args.seed), true), env.rank(), env.size(),
                       c.args.per_device_train_batch_size, 1, false);
  Floor f;
  Clock::time_point t0;
  long f0 = 0;
  namespace F = torch::nn::functional;
  for (std::int64_t s = 0; s < steps; ++s) {
    if (s == warmup) {
      t0 = Clock::now();
      f0 = minor_faults();
    }
    data::MicroBatch mb = plan.next();
    torch::Tensor idx = torch::tensor(mb.indices, torch::kLong);
    torch::Tensor out = model->forward(X.index_select(0, idx));
    torch::Tensor loss = F::cross_entropy(out.reshape({-1, out.size(-1)}), Y.index_select(0, idx).reshape({-1}),
                                          F::CrossEntropyFuncOptions().reduction(torch::kSum));
    const double per = static_cast<double>(mb.step_samples * (set->tokens() ? set->seq_len() : 1));
    (loss / per).backward();
    HPCT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, grads.data_ptr<float>(), static_cast<int>(total), MPI_FLOAT, MPI_SUM, env.comm()));
    opt.step();
    grads.zero_();
    if (record_losses) {
      double sums[2] = {loss.item<double>(), static_cast<double>(mb.indices.size()) * (set->tokens() ? set->seq_len() : 1)};
      MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, env.comm());
      f.losses.push_back(sums[0] / sums[1]);
    }
  }
  f.step_seconds = std::chrono::duration<double>(Clock::now() - t0).count() / static_cast<double>(steps - warmup);
  f.faults_per_step = static_cast<double>(minor_faults() - f0) / static_cast<double>(steps - warmup);
  return f;
}

double time_allreduce(const dist::Environment& env, std::int64_t n, bool raw, int reps) {
  std::vector<float> buf(static_cast<std::size_t>(n), 1.0f);
  auto comm = dist::make_communicator(env, {"mpi", 600});
  MPI_Barrier(env.comm());
  auto t = Clock::now();
  for (int i = 0; i < reps; ++i) {
    if (raw) MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, env.comm());
    else comm->allreduce(buf.data(), buf.size(), dist::ReduceOp::kSum);
  }
  return std::chrono::duration<double>(Clock::now() - t).count() / reps;
}

}  // namespace

int main(int argc, char** argv) {
  dist::Environment env(&argc, &argv);
  log::init({env.rank(), env.size(), log::Level::warning, log::Level::warning, nullptr});
  std::string model = "mlp", dir = (fs::temp_directory_path() / "hpctrain-train-bench").string(), path;
  std::int64_t steps = 60, warmup = 10;
  int rounds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model") model = v;
    else if (k == "--steps") steps = std::stoll(v);
    else if (k == "--warmup") warmup = std::stoll(v);
    else if (k == "--dir") dir = v;
    else if (k == "--rounds") rounds = std::stoi(v);
    else if (k == "--path") path = v;
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  if (!path.empty() && path != "replicated" && path != "buckets" && path != "zero1") {
    std::cerr << "--path " << path << ": expected replicated, buckets or zero1\n";
    return 2;
  }
  if (rounds < 1 || rounds > 20 || warmup < 1 || steps <= warmup) {
    std::cerr << "--rounds " << rounds << ", --steps " << steps << ", --warmup " << warmup
              << ": expected 1 to 20 rounds and steps > warmup >= 1 (the timing starts after the warm-up)\n";
    return 2;
  }
  return dist::run_guarded(env, [&] {
    if (env.rank() == 0) fs::create_directories(dir);
    train::set_torch_threads(1);
    const std::string allocator = train::tune_host_allocator();  // as hpctrain does
    if (env.rank() == 0) std::cerr << "train_bench: host allocator: " << allocator << "\n";
    Setup s = setup(env, model, dir, steps, path, warmup);
    const models::Registry registry = models::builtin_models();

    // 1. (--path) What the path holds and how long its reduction waits, from the first Trainer run:
    // the process's peak RSS is then the path's own. 2. Step times: the Trainer and the floor alternate, `rounds` times each (the first of a pair
    // swapped every round), so that a drift of the machine's speed falls on both alike; the
    // medians are reported, and the Trainer's overhead is the median of the per-round ratios.
    std::vector<double> trainer_steps, floor_steps, overs, trainer_fault_counts, floor_fault_counts;
    double state_mb = -1, rss_mb = -1, exposed_ms = -1, step_optimizer_ms = -1;
    std::int64_t n = 0, matmul_weights = 0;
    for (int round = 0; round < rounds; ++round) {
      double ts = 0, fs_ = 0;
      for (int half = 0; half < 2; ++half) {
        if ((half == 0) == (round % 2 == 0)) {
          auto timer = std::make_shared<StepTimer>();
          train::Trainer t2(env, s.config, registry, {timer});
          t2.train();
          if (!path.empty() && round == 0) {
            // Every log window after the first (the warm-up): its fractions times its step time.
            double reduce_ms = 0, optimizer_ms = 0;
            int windows = 0;
            for (const auto& e : t2.state().log_history) {
              const Json* f = json::find(e, "phase_allreduce");
              if (!f) continue;
              state_mb = json::number(e.at("optimizer_state_mb"));
              rss_mb = json::number(e.at("peak_rss_mb"));
              if (json::number(e.at("step")) <= static_cast<double>(warmup)) continue;
              reduce_ms += json::number(*f) * json::number(e.at("step_time")) * 1e3;
              optimizer_ms += json::number(e.at("phase_optimizer")) * json::number(e.at("step_time")) * 1e3;
              windows += 1;
            }
            exposed_ms = reduce_ms / std::max(windows, 1);
            step_optimizer_ms = optimizer_ms / std::max(windows, 1);
          }
          ts = std::chrono::duration<double>(timer->ends.back() - timer->ends[warmup - 1]).count() /
               static_cast<double>(steps - warmup);
          trainer_fault_counts.push_back(static_cast<double>(timer->faults.back() - timer->faults[warmup - 1]) /
                                         static_cast<double>(steps - warmup));
          n = 0;
          matmul_weights = 0;
          for (const auto& item : t2.model().named_parameters()) {
            n += item.value().numel();
            // The weights that take part in a matrix product: 2-D, less the GPT's position table
            // (looked up, never multiplied; the tied token table is also the output head).
            if (item.value().dim() == 2 && item.key().find("wpe") == std::string::npos) matmul_weights += item.value().numel();
          }
        } else {
          Floor f = run_floor(env, s.config, steps, warmup, false);
          fs_ = f.step_seconds;
          floor_fault_counts.push_back(f.faults_per_step);
        }
      }
      trainer_steps.push_back(ts);
      floor_steps.push_back(fs_);
      overs.push_back(ts / fs_ - 1);
    }
    const double trainer_step = median(trainer_steps), floor_step = median(floor_steps), over = median(overs);
    const double trainer_faults = median(trainer_fault_counts), floor_faults = median(floor_fault_counts);

    // 3. Loss curves: the Trainer (logging every step) against the floor, same seed, 10 steps.
    train::Config check = s.config;
    check.args.max_steps = 10;
    check.args.logging_steps = 1;
    train::Trainer t1(env, check, registry);
    t1.train();
    std::vector<double> trainer_losses;
    for (const auto& e : t1.state().log_history)
      if (const Json* l = json::find(e, "loss")) trainer_losses.push_back(json::number(*l));
    Floor ref = run_floor(env, check, 10, 0, true);
    double max_rel = 0;
    for (std::size_t i = 0; i < ref.losses.size() && i < trainer_losses.size(); ++i)
      max_rel = std::max(max_rel, std::fabs(trainer_losses[i] - ref.losses[i]) / std::fabs(ref.losses[i]));
    const bool same_curve = trainer_losses.size() == ref.losses.size() && max_rel < 1e-4;

    // 4. Gradient allreduce: hpctrain's communicator against raw MPI_Allreduce, same bytes.
    const int reps = env.size() > 1 ? 20 : 50;
    time_allreduce(env, n, true, 3);
    const double raw = time_allreduce(env, n, true, reps), ours = time_allreduce(env, n, false, reps);

    if (env.rank() == 0) {
      const std::int64_t per = s.config.args.per_device_train_batch_size;
      std::string rounds_list;  // every round's ratio, for a median over all of a cell's runs
      for (double o : overs) rounds_list += (rounds_list.empty() ? "" : ",") + std::to_string(o);
      std::printf("RESULT model=%s ranks=%d params=%lld matmul_weights=%lld trainer_step_ms=%.3f floor_step_ms=%.3f over_floor=%.4f "
                  "over_rounds=%s trainer_samples_s=%.1f floor_samples_s=%.1f allreduce_ms=%.3f raw_allreduce_ms=%.3f "
                  "loss_max_rel_diff=%.2e loss_match=%d trainer_faults_per_step=%.0f floor_faults_per_step=%.0f\n",
                  model.c_str(), env.size(), static_cast<long long>(n), static_cast<long long>(matmul_weights), trainer_step * 1e3, floor_step * 1e3, over,
                  rounds_list.c_str(), per * env.size() / trainer_step, per * env.size() / floor_step, ours * 1e3,
                  raw * 1e3, max_rel, same_curve ? 1 : 0, trainer_faults, floor_faults);
      if (!path.empty()) {
        std::printf("PATH model=%s ranks=%d path=%s optimizer_state_mb=%.3f peak_rss_mb=%.1f exposed_reduce_ms=%.3f "
                    "optimizer_ms=%.3f trainer_step_ms=%.3f floor_step_ms=%.3f over_floor=%.4f loss_match=%d\n",
                    model.c_str(), env.size(), path.c_str(), state_mb, rss_mb, exposed_ms, step_optimizer_ms,
                    trainer_step * 1e3, floor_step * 1e3, over, same_curve ? 1 : 0);
      }
      std::fflush(stdout);
      if (!same_curve) {
        std::cerr << "loss curves differ: trainer";
        for (double l : trainer_losses) std::cerr << " " << l;
        std::cerr << "\nfloor  ";
        for (double l : ref.losses) std::cerr << " " << l;
        std::cerr << "\n";
      }
    }
    return same_curve ? 0 : 1;
  });
}
