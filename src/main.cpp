// hpctrain: parse and validate the configuration on every rank, then run the subcommand under
// the job's failure policy (an error anywhere ends the whole job with a nonzero exit).
#include <sys/prctl.h>

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
#include "hpctrain/slurm/stop_guard.h"
#include "hpctrain/slurm/time_limit.h"
#include "hpctrain/config/config.h"
#include "hpctrain/train/env_report.h"
#include "hpctrain/config/sweep.h"
#include "hpctrain/train/torch_runtime.h"
#include "hpctrain/train/trainer.h"
#include "hpctrain/version.h"

// The first code of hpctrain-main to run: from the executable's preinit array, before any shared
// library initialises (libtorch's operator registry and MPI take about a second), a preemption
// signal sets the flag instead of ending the process. The signals were blocked by the hpctrain
// launcher (launcher.c) before this executable's dynamic loader ran. The process keeps the name
// users know (ps, top, pkill).
extern "C" void hpctrain_preinit(int, char**, char** envp) {
  hpctrain::signals::install_early(envp);
  ::prctl(PR_SET_NAME, "hpctrain", 0, 0, 0);
}
__attribute__((section(".preinit_array"), used)) static void (*const hpctrain_preinit_entry)(int, char**, char**) =
    hpctrain_preinit;

namespace {

using namespace hpctrain;

log::Level level_or(config::LogLevel level, log::Level fallback) {
  if (level == config::LogLevel::kPassive) return fallback;
  return log::parse_level(to_name(level)).value_or(fallback);
}

// A sweep point registers its space in the sweep directory; every rank agrees on the outcome.
void claim_sweep_dir(const dist::Environment& env, const config::Config& config) {
  std::string error;
  if (env.rank() == 0) {
    try {
      slurm::claim_sweep_dir(config.sweep.root, config.sweep.space_ini, config.sweep.space_file, config.sweep.metric());
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  error = env.broadcast_string(error, 0);
  if (!error.empty()) throw CollectiveError(error, exit_code::kConfig);
}

// A signal before the first step under SLURM with little time left: the job script's --signal
// offset (USR1@120 in slurm/train.sbatch) is probably as long as the job's --time, so that every
// run is signalled at its start and requeued again. Say so (rank 0).
void warn_if_signal_offset_too_long(const dist::Environment& env, double query_timeout_s) {
  if (env.rank() != 0 || !env.slurm().present) return;
  const auto left = slurm::job_seconds_left(env.slurm(), query_timeout_s);
  if (left && *left < 300) {
    HPCT_LOG(warning) << "signalled before the first step with " << static_cast<long long>(*left)
                      << " s left in the job: if the job script's --signal offset (USR1@120 in slurm/train.sbatch) "
                         "is as long as its --time, every run is signalled at its start and requeued again; ask for "
                         "more --time, or a smaller offset";
  }
}

// train: takes the run directory (its lock and run_status.json), trains, and after a checkpoint
// made for a signal or the time limit, requeues the job.
int train_command(const dist::Environment& env, const config::Config& config, const models::Registry& registry) {
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
  slurm::RunLock lock(env, a.output_dir);
  lock.set_status("running");
  // A signal that no step boundary takes in hand (start-up, a stuck loader) still ends the job
  // within preemption_timeout, requeued.
  slurm::StopGuard guard(env, a.preemption_timeout, to_name(a.requeue),
                         [&lock](const std::string& status, const std::string& detail) { lock.set_status(status, detail); });
  // Stopped: the status says so (cancelled when scancel ends the job, else preempted) and the job
  // is requeued when it should be.
  auto stop = [&](const std::string& reason, const std::string& detail) {
    signals::acknowledge();
    signals::hold_repeats();  // the checkpoint is written; SLURM's requeue will TERM every process
    lock.set_status("preempted", detail);
    const slurm::RequeueOutcome out = slurm::after_preemption(env, to_name(a.requeue), reason);
    if (out.cancelled) lock.set_status("cancelled", detail);
    return out.code;
  };
  try {
    // A signal during start-up (MPI, configuration, lock): nothing to save yet.
    if (env.first_failing_rank(signals::received() != 0) >= 0) {
      const int sig = static_cast<int>(env.max_over_ranks(signals::received()));
      warn_if_signal_offset_too_long(env, a.slurm_query_timeout);
      return stop("signal " + std::to_string(sig), "signal " + std::to_string(sig) + " before the first step: nothing to save");
    }
    train::Trainer trainer(env, config, registry);
    const train::TrainOutput out = trainer.train();
    if (out.preempted_by || out.time_limit) {
      const std::string reason = out.time_limit ? "the job's time limit" : "signal " + std::to_string(out.preempted_by);
      if (!out.checkpointed) warn_if_signal_offset_too_long(env, a.slurm_query_timeout);
      return stop(reason, reason + (out.checkpointed ? " (checkpoint at step " + std::to_string(out.global_step) + ")"
                                                     : " before the first step: nothing to save"));
    }
    if (!out.anomaly.empty()) {
      lock.set_status("failed", "on_anomaly=stop: " + out.anomaly + " (checkpoint of the last good state at step " +
                                    std::to_string(out.global_step) + ")");
      if (env.rank() == 0) {
        HPCT_LOG(error) << "on_anomaly=stop: " << out.anomaly << "; the last good state is checkpointed at step "
                        << out.global_step << " in " << a.output_dir;
      }
      return exit_code::kAnomaly;
    }
    if (!config.data.test.empty()) {
      const Json m = trainer.predict();
      if (const Json* sig = json::find(m, "stopped_by_signal")) {
        const std::string reason = "signal " + std::to_string(static_cast<int>(json::number(*sig)));
        return stop(reason, reason + " during the predictions after training (resuming predicts again)");
      }
    }
    if (!lock.set_status("finished"))
      throw WriteError("cannot record the finished run in " + a.output_dir + "/run_status.json");
  } catch (const CollectiveError& e) {
    lock.set_status("failed", e.what());
    throw;
  } catch (const std::exception& e) {
    // This rank alone: it records the failure, as the job ends with it.
    lock.set_status("failed", e.what(), /*any_rank=*/true);
    throw;
  }
  if (env.rank() == 0) {
    HPCT_LOG(info) << "done: metrics in " << a.output_dir << "/metrics.jsonl, state in " << a.output_dir
                   << "/trainer_state.json";
  }
  return exit_code::kOk;
}

int run_subcommand(const dist::Environment& env, const config::Config& config) {
  const auto& a = config.args;
  log::init({env.rank(), env.size(), level_or(a.log_level, log::Level::info),
             level_or(a.log_level_replica, log::Level::warning), nullptr});
  const int threads = a.torch_threads > 0 ? static_cast<int>(a.torch_threads) : env.default_threads();
  train::set_torch_threads(threads);
  const std::string allocator = train::tune_host_allocator();

  if (config.command == "env") {
    train::print_env_report(env);
    return exit_code::kOk;
  }

  HPCT_LOG(info) << "hpctrain " << HPCTRAIN_VERSION << " " << config.command << ": " << env.size()
                 << " ranks on " << env.node_count() << " nodes, device " << env.device().str() << ", "
                 << threads << " torch threads per rank, host allocator: " << allocator;
  if (env.slurm().present) {
    HPCT_LOG(info) << "slurm: " << env.slurm().describe();
  }
  const models::Registry registry = models::builtin_models();
  if (config.command == "train") return train_command(env, config, registry);
  slurm::StopGuard guard(env, a.preemption_timeout, "false", nullptr);  // evaluate/predict: never requeued
  train::Trainer trainer(env, config, registry);
  // evaluate / predict: the model of a checkpoint (resume_from_checkpoint, or the newest in output_dir).
  if (trainer.load_model_from_checkpoint().empty() && env.rank() == 0) {
    HPCT_LOG(warning) << "no checkpoint found in " << a.output_dir << ": " << config.command << " runs on the initial model";
  }
  const Json m = config.command == "evaluate" ? trainer.evaluate() : trainer.predict();
  signals::acknowledge();
  if (m.contains("stopped_by_signal")) return exit_code::kPreempted;
  return exit_code::kOk;
}

}  // namespace

int main(int argc, char** argv) {
  signals::install_early();  // already done by the preinit entry; here for any other way in
  ::unsetenv("HPCT_UNBLOCK_SIGNALS");  // the launcher's word to this process, not to those it starts
  signals::mark_ready();     // the launcher may pass on a signal it held
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
  config::ParseResult parsed;
  std::string error;
  try {
    parsed = config::parse_command_line(argc, argv);
    if (parsed.action == config::Action::kRun) {
      config::validate(parsed.config);
      config::finalize(parsed.config);
      signals::configure(parsed.config.args.preemption_signals);
    }
  } catch (const ConfigError& e) {
    error = e.what();
  }
  const int bad = env->first_failing_rank(!error.empty());
  if (bad >= 0) {
    if (env->rank() == bad) std::cerr << "hpctrain: error: " << error << std::endl;
    return exit_code::kConfig;
  }
  if (parsed.action != config::Action::kRun) {
    if (env->rank() == 0) {
      if (parsed.action == config::Action::kHelp) std::cout << parsed.help;
      if (parsed.action == config::Action::kVersion) std::cout << "hpctrain " << HPCTRAIN_VERSION << "\n";
      if (parsed.action == config::Action::kPrintConfig) std::cout << config::to_ini(parsed.config);
    }
    return exit_code::kOk;
  }
  return dist::run_guarded(*env, [&] { return run_subcommand(*env, parsed.config); });
}
