// Logging facade over Boost.Log: every line tagged with time and [rank r/n]; rank 0 logs at its
// level, the other ranks at the replica level. Boost.Log headers stay inside log.cpp.
#pragma once

#include <iosfwd>
#include <optional>
#include <sstream>
#include <string>

namespace hpctrain::log {

/// Hugging Face's log levels. `passive` means "keep the default" (info for rank 0, warning else).
enum class Level { debug = 0, info = 1, warning = 2, error = 3, critical = 4 };

/// Parses "debug|info|warning|error|critical"; nullopt for anything else.
std::optional<Level> parse_level(const std::string& name);
const char* level_name(Level level);

struct Options {
  int rank = 0;
  int size = 1;
  Level level = Level::info;            ///< threshold on rank 0
  Level replica_level = Level::warning;  ///< threshold on the other ranks
  std::ostream* stream = nullptr;        ///< where lines go; nullptr = std::cerr
};

/// (Re)configures the process's log sink. Safe to call again (tests do).
void init(const Options& options);

/// True when a line at `level` would be written on this rank.
bool enabled(Level level) noexcept;

/// Writes one line at `level` (thread-safe).
void write(Level level, const std::string& message);

/// One log line, written when it goes out of scope.
class Line {
 public:
  explicit Line(Level level) : level_(level) {}
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;
  ~Line() { write(level_, os_.str()); }
  std::ostream& stream() { return os_; }

 private:
  Level level_;
  std::ostringstream os_;
};

}  // namespace hpctrain::log

/// HPCT_LOG(info) << "step " << step;  The message is only formatted when the level is enabled.
#define HPCT_LOG(lvl)                                                   \
  if (!::hpctrain::log::enabled(::hpctrain::log::Level::lvl)) {         \
  } else                                                                \
    ::hpctrain::log::Line(::hpctrain::log::Level::lvl).stream()
