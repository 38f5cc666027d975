// Boost.Log setup for hpctrain: one synchronous text sink, lines tagged with time and [rank r/n].
#include "hpctrain/core/log.h"

#include <atomic>
#include <iostream>

#include <boost/core/null_deleter.hpp>
#include <boost/log/attributes/attribute_set.hpp>
#include <boost/log/attributes/clock.hpp>
#include <boost/log/attributes/constant.hpp>
#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/sources/record_ostream.hpp>
#include <boost/log/sources/severity_logger.hpp>
#include <boost/log/support/date_time.hpp>
#include <boost/shared_ptr.hpp>

namespace hpctrain::log {
namespace bl = boost::log;
namespace expr = boost::log::expressions;

namespace {

using Sink = bl::sinks::synchronous_sink<bl::sinks::text_ostream_backend>;

// The log is process-wide by nature (Boost.Log's core is); the threshold is kept beside it so
// that HPCT_LOG can skip formatting without touching Boost.Log.
std::atomic<int> g_threshold{static_cast<int>(Level::info)};

BOOST_LOG_ATTRIBUTE_KEYWORD(severity_kw, "Severity", Level)
BOOST_LOG_ATTRIBUTE_KEYWORD(rank_tag_kw, "RankTag", std::string)
BOOST_LOG_ATTRIBUTE_KEYWORD(time_kw, "TimeStamp", boost::posix_time::ptime)

bl::sources::severity_logger_mt<Level>& logger() {
  static bl::sources::severity_logger_mt<Level> lg;
  return lg;
}

}  // namespace

// Found by ADL when Boost.Log formats the Severity attribute.
std::ostream& operator<<(std::ostream& os, Level level) { return os << level_name(level); }

std::optional<Level> parse_level(const std::string& name) {
  for (Level l : {Level::debug, Level::info, Level::warning, Level::error, Level::critical})
    if (name == level_name(l)) return l;
  return std::nullopt;
}

const char* level_name(Level level) {
  switch (level) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warning: return "warning";
    case Level::error: return "error";
    case Level::critical: return "critical";
  }
  return "unknown";
}

void init(const Options& options) {
  auto core = bl::core::get();
  core->remove_all_sinks();
  auto backend = boost::make_shared<bl::sinks::text_ostream_backend>();
  std::ostream* os = options.stream ? options.stream : &std::cerr;
  backend->add_stream(boost::shared_ptr<std::ostream>(os, boost::null_deleter()));
  // A job that is killed must not lose its last lines.
  backend->auto_flush(true);
  auto sink = boost::make_shared<Sink>(backend);
  sink->set_formatter(expr::stream << expr::format_date_time(time_kw, "%Y-%m-%d %H:%M:%S.%f")
                                   << " " << rank_tag_kw << " " << severity_kw << ": "
                                   << expr::smessage);
  core->add_sink(sink);

  core->set_global_attributes(bl::attribute_set());
  core->add_global_attribute("TimeStamp", bl::attributes::local_clock());
  core->add_global_attribute(
      "RankTag", bl::attributes::constant<std::string>("[rank " + std::to_string(options.rank) + "/" +
                                                       std::to_string(options.size) + "]"));
  Level threshold = options.rank == 0 ? options.level : options.replica_level;
  g_threshold.store(static_cast<int>(threshold));
}

bool enabled(Level level) noexcept { return static_cast<int>(level) >= g_threshold.load(); }

void write(Level level, const std::string& message) {
  if (!enabled(level)) return;
  auto& lg = logger();
  BOOST_LOG_SEV(lg, level) << message;
}

}  // namespace hpctrain::log
