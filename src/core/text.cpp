// Small text helpers: trimming and exact, short number formatting.
#include "hpctrain/core/text.h"

#include <cstdio>
#include <cstdlib>

namespace hpctrain {

std::string trim(const std::string& s) {
  constexpr const char* kSpace = " \t\r\n";
  const auto b = s.find_first_not_of(kSpace);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(kSpace) - b + 1);
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = s.find(',', start);
    out.push_back(trim(s.substr(start, end == std::string::npos ? std::string::npos : end - start)));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

std::string format_g(double v, int precision) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
  return buf;
}

std::string format_shortest(double v) {
  for (int p = 1; p < 17; ++p) {
    std::string t = format_g(v, p);
    if (std::strtod(t.c_str(), nullptr) == v) return t;
  }
  return format_g(v, 17);  // 17 significant digits always read back to the same double
}

}  // namespace hpctrain
