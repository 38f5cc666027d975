// run_guarded: turns an exception on one rank into a prompt, logged end of the whole job.
#include "hpctrain/dist/failure.h"

#include <exception>

#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/dist/flight_recorder.h"

namespace hpctrain::dist {

namespace {

const Environment* g_env = nullptr;  // read by the terminate handler only

[[noreturn]] void fail(const Environment& env, const char* what, int code) {
  HPCT_LOG(critical) << "fatal error on rank " << env.rank() << "/" << env.size() << " (" << env.host()
                     << "): " << what << "; aborting the job (exit code " << code << ")";
  // The failing rank's last collectives, for hpctrain-flight (the others are ended by the abort).
  if (FlightRecorder* r = FlightRecorder::active()) r->dump_before_abort(std::string("abort: ") + what, 10);
  env.abort(code);
}

[[noreturn]] void on_terminate() {
  const char* what = "std::terminate called without an active exception";
  std::string text;
  if (auto ep = std::current_exception()) {
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      text = std::string("uncaught exception (in a thread?): ") + e.what();
      what = text.c_str();
    } catch (...) {
      what = "uncaught non-standard exception (in a thread?)";
    }
  }
  if (g_env) fail(*g_env, what, exit_code::kFatal);
  std::abort();
}

}  // namespace

int run_guarded(const Environment& env, const std::function<int()>& body) {
  g_env = &env;
  std::set_terminate(on_terminate);
  try {
    return body();
  } catch (const CollectiveError& e) {
    // Every rank is here with the same error: report it once and let all ranks exit together.
    if (env.rank() == 0) {
      HPCT_LOG(critical) << e.what();
    }
    return e.exit_code();
  } catch (const Error& e) {
    fail(env, e.what(), e.exit_code());
  } catch (const std::exception& e) {
    fail(env, e.what(), exit_code::kFatal);
  } catch (...) {
    fail(env, "unknown exception", exit_code::kFatal);
  }
}

}  // namespace hpctrain::dist
