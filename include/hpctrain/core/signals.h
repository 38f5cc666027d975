// Preemption signals: USR1, TERM (and the others a configuration may name) set a flag that the
// training loop reads at step boundaries. The handler is installed before any library code runs
// (from the executable's .preinit_array, before libtorch's and MPI's initialisers), so a signal at
// any instant after the dynamic loader is recorded, never fatal. Signal handlers are process-wide,
// so is the flag.
#pragma once

#include <string>

namespace hpctrain::signals {

/// Installs the flag-setting handler for every signal a preemption may use (USR1, USR2, TERM,
/// INT, HUP, XCPU). Idempotent; the hpctrain executable calls it from its .preinit_array. Then it
/// unblocks the signals listed in HPCT_UNBLOCK_SIGNALS of `envp` (default: environ; numbers,
/// comma-separated: what the static hpctrain launcher blocked before exec), so that one received
/// meanwhile is handled now.
void install_early(char** envp = nullptr);
/// After the configuration is read: only the signals named in `names` ("USR1,TERM") stay
/// preemption signals; the others get back the action they had before install_early (default,
/// or ignored under nohup), and one of them received meanwhile is raised again now. Throws ConfigError naming an unknown signal.
void configure(const std::string& names);
/// install_early() + configure(names).
void install(const std::string& names);
/// The signal number of a name (with or without SIG), or -1.
int number(const std::string& name);
/// The first preemption signal received since start (0 when none).
int received();
/// Seconds since that signal arrived (0 when none).
double seconds_since_received();
/// For tests: forget a received signal.
void reset();

/// The run has taken the stop in hand (it is checkpointing, or ending anyway): the stop guard
/// stands down. When the guard took it first (it is ending the process), this never returns.
void acknowledge();
bool acknowledged();
/// For the stop guard: takes the stop in hand unless the run already has. True: the guard ends
/// the process; the run's acknowledge() then waits for that.
bool claim_for_guard();
/// From here a repeated TERM/INT is one more request to stop, not an order to exit at once: the
/// checkpoint is written and the job is being requeued (SLURM's requeue sends every process TERM).
void hold_repeats();

/// A second TERM or INT that arrives at least this long after the first ends the process at once
/// (exit 128 + signal); closer ones are one signal delivered twice (a batch shell forwarding what
/// SLURM also sent the tasks).
constexpr double kRepeatSeconds = 1.0;

/// Tells the launcher that this process handles signals now: creates $HPCT_READY_DIR/rank-<r>
/// (r from SLURM_PROCID, OMPI_COMM_WORLD_RANK or PMI_RANK) when HPCT_READY_DIR is set. The
/// launchers (slurm/*.sbatch, tools/hpctrain-mpirun) hold a signal that comes earlier and pass
/// it on once every rank is ready.
void mark_ready();

}  // namespace hpctrain::signals
