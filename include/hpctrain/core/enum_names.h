// Settings that take one of a few words are enums in the code and words in files and on the
// command line: each enum lists its words once (a specialisation of EnumNames), and the option
// table, validation messages and the resolved config all go through these functions.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace hpctrain {

/// Specialise with `static constexpr std::pair<E, const char*> list[] = {{E::kX, "x"}, ...};`.
template <class E>
struct EnumNames;

/// The word for `e` ("?" for a value outside the list, which no parsed setting holds).
template <class E>
const char* to_name(E e) {
  for (const auto& [value, name] : EnumNames<E>::list)
    if (value == e) return name;
  return "?";
}

/// The value whose word is `s` (exactly, as the option table has always compared), if any.
template <class E>
std::optional<E> from_name(const std::string& s) {
  for (const auto& [value, name] : EnumNames<E>::list)
    if (s == name) return value;
  return std::nullopt;
}

/// Every word, in the list's order.
template <class E>
std::vector<std::string> all_names() {
  std::vector<std::string> out;
  for (const auto& entry : EnumNames<E>::list) out.emplace_back(entry.second);
  return out;
}

}  // namespace hpctrain
