// JSON for the state, metrics and checkpoint files: nlohmann's ordered_json (keys keep the order
// they were set in), with the few things our files need on top, in namespace hpctrain::json.
//
// Non-finite numbers: nlohmann writes NaN and +-Infinity as null (strict JSON, what JavaScript
// and most readers expect; Python reads None). json::parse also takes the NaN, Infinity and
// -Infinity that Python's json module writes (trainer_state.json written by Hugging Face, our own
// files of earlier versions) and holds them as those numbers, so that a finite-number check
// refuses them by value instead of reading them as absent.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace hpctrain {

using Json = nlohmann::ordered_json;

namespace json {

/// Objects and arrays nested deeper than this are refused on read (printing or walking a deeper
/// value recurses once per level).
inline constexpr int kMaxDepth = 256;

/// Parses JSON text; throws hpctrain::Error naming `what` and the place on bad input.
Json parse(const std::string& text, const std::string& what);
/// Reads and parses a JSON file; throws hpctrain::Error naming the file when it cannot be read.
Json parse_file(const std::string& path);

/// The value of `key` when `obj` is an object that has it; nullptr otherwise.
inline const Json* find(const Json& obj, const std::string& key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

/// A whole number that fits int64 (JSON integers beyond it read as unsigned or as doubles).
inline bool is_int64(const Json& v) {
  return v.is_number_integer() && (!v.is_number_unsigned() || v.get<std::uint64_t>() <= INT64_MAX);
}

/// A number as a double; null (what a non-finite number is written as) reads as NaN.
double number(const Json& v);

/// The text of `v` (compact when indent < 0). Bytes that are not UTF-8 (a file name, a message
/// quoting damaged input) are written as U+FFFD instead of failing the write.
std::string dump(const Json& v, int indent = -1);

/// At most `max` characters of `v`'s compact text, for error messages.
std::string shown(const Json& v, std::size_t max = 80);

}  // namespace json
}  // namespace hpctrain
