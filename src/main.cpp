// hpctrain: parse and validate the configuration on every rank, then run the subcommand under
// the job's failure policy (an error anywhere ends the whole job with a nonzero exit).
#include <iostream>

#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "hpctrain/core/signals.h"
#include "hpctrain/dist/communicator.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/dist/failure.h"
#include "hpctrain/models/model.h"
#include "hpctrain/slurm/requeue.h"
#include "hpctrain/slurm/run_lock.h"
#include "hpctrain/train/config.h"
#include "hpctrain/train/env_report.h"
#include "hpctrain/train/sweep.h"
#include "hpctrain/train/torch_runtime.h"
#include "hpctrain/train/trainer.h"
#include "hpctrain/version.h"

namespace {

using namespace hpctrain;

log::Level level_or(const std::string& name, log::Level fallback) {
  if (name == "passive") return fallback;
  return log::parse_level(name).value_or(fallback);
}

// A sweep point registers its space in the sweep directory; every rank agrees on the outcome.
void claim_sweep_dir(const dist::Environment& env, const train::Config& config) {
  std::string error;
  if (env.rank() == 0) {
    try {
      train::claim_sweep_dir(config.sweep);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  error = env.broadcast_string(error, 0);
  if (!error.empty()) throw CollectiveError(error, exit_code::kConfig);
}

// train: takes the run directory (its lock and run_status.json), trains, and after a checkpoint
// made for a signal or the time limit, requeues the job.
int train_command(const dist::Environment& env, const train::Config& config, const models::Registry& registry) {
  const auto& a = config.args;
  if (config.sweep.index >= 0) {
    claim_sweep_dir(env, config);
    if (env.rank() == 0) {
      std::string values;
      for (const auto& [k, v] : config.sweep.params) values += (values.empty() ? "" : ", ") + k + "=" + v;
      HPCT_LOG(info) << "sweep " << config.sweep.name << ": point " << config.sweep.index << " of " << config.sweep.points
                     << " (" << values << ") in " << a.output_dir;
    }
  }
  // From here a preemption signal sets the flag the training loop reads: one that comes while the
  // data sets open or the model is built makes the job checkpoint after its first step.
  signals::install(a.preemption_signals);
  slurm::RunLock lock(env, a.output_dir);
  lock.set_status("running");
  try {
    train::Trainer trainer(env, config, registry);
    const train::TrainOutput out = trainer.train();
    if (out.preempted_by || out.time_limit) {
      const std::string reason = out.time_limit ? "the job's time limit" : "signal " + std::to_string(out.preempted_by);
      lock.set_status("preempted", reason);
      return slurm::after_preemption(env, a.requeue, reason);
    }
    if (!config.data.test.empty()) trainer.predict();
    lock.set_status("finished");
  } catch (const std::exception& e) {
    lock.set_status("failed", e.what());
    throw;
  }
  if (env.rank() == 0) {
    HPCT_LOG(info) << "done: metrics in " << a.output_dir << "/metrics.jsonl, state in " << a.output_dir
                   << "/trainer_state.json";
  }
  return exit_code::kOk;
}

int run_command(const dist::Environment& env, const train::Config& config) {
  const auto& a = config.args;
  log::init({env.rank(), env.size(), level_or(a.log_level, log::Level::info),
             level_or(a.log_level_replica, log::Level::warning), nullptr});
  const int threads = a.torch_threads > 0 ? static_cast<int>(a.torch_threads) : env.default_threads();
  train::set_torch_threads(threads);

  if (config.command == "env") {
    train::print_env_report(env);
    return exit_code::kOk;
  }

  HPCT_LOG(info) << "hpctrain " << HPCTRAIN_VERSION << " " << config.command << ": " << env.size()
                 << " ranks on " << env.node_count() << " nodes, device " << env.device().str() << ", "
                 << threads << " torch threads per rank";
  if (env.slurm().present) {
    HPCT_LOG(info) << "slurm: " << env.slurm().describe();
  }
  const models::Registry registry = models::builtin_models();
  if (config.command == "train") return train_command(env, config, registry);
  train::Trainer trainer(env, config, registry);
  // evaluate / predict: the model of a checkpoint (resume_from_checkpoint, or the newest in output_dir).
  if (trainer.load_model_from_checkpoint().empty() && env.rank() == 0) {
    HPCT_LOG(warning) << "no checkpoint found in " << a.output_dir << ": " << config.command << " runs on the initial model";
  }
  if (config.command == "evaluate") trainer.evaluate();
  else trainer.predict();
  return exit_code::kOk;
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<dist::Environment> env;
  try {
    env = std::make_unique<dist::Environment>(&argc, &argv);
  } catch (const std::exception& e) {
    std::cerr << "hpctrain: error: cannot start: " << e.what() << std::endl;
    return exit_code::kFatal;
  }
  log::init({env->rank(), env->size(), log::Level::info, log::Level::warning, nullptr});

  // Every rank parses and validates the same input; they agree on the outcome so that a bad
  // configuration stops all ranks together, cleanly, and is reported once.
  train::ParseResult parsed;
  std::string error;
  try {
    parsed = train::parse_command_line(argc, argv);
    if (parsed.action == train::Action::kRun) {
      train::validate(parsed.config);
      train::finalize(parsed.config);
    }
  } catch (const ConfigError& e) {
    error = e.what();
  }
  const int bad = env->first_failing_rank(!error.empty());
  if (bad >= 0) {
    if (env->rank() == bad) std::cerr << "hpctrain: error: " << error << std::endl;
    return exit_code::kConfig;
  }
  if (parsed.action != train::Action::kRun) {
    if (env->rank() == 0) {
      if (parsed.action == train::Action::kHelp) std::cout << parsed.help;
      if (parsed.action == train::Action::kVersion) std::cout << "hpctrain " << HPCTRAIN_VERSION << "\n";
      if (parsed.action == train::Action::kPrintConfig) std::cout << train::to_ini(parsed.config);
    }
    return exit_code::kOk;
  }
  return dist::run_guarded(*env, [&] { return run_command(*env, parsed.config); });
}
