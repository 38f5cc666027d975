// Small text helpers shared by the readers of configuration, sweep spaces, data specs and JSON.
#pragma once

#include <string>
#include <vector>

namespace hpctrain {

/// `s` without leading and trailing spaces, tabs, carriage returns and newlines.
std::string trim(const std::string& s);

/// The items of a comma-separated list, each trimmed ("a, b" -> {"a", "b"}; "" -> {""}).
std::vector<std::string> split_list(const std::string& s);

/// printf's %g with `precision` significant digits.
std::string format_g(double v, int precision);

/// The shortest %g text that reads back (strtod) to exactly `v`: 0.1 stays "0.1", and no value
/// changes on a round trip through a file. Finite values only (the caller spells NaN and Inf).
std::string format_shortest(double v);

}  // namespace hpctrain
