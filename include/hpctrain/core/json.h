// A small JSON value for the state and metrics files (trainer_state.json, metrics.jsonl).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace hpctrain {

class Json {
 public:
  using Object = std::vector<std::pair<std::string, Json>>;  ///< keeps insertion order
  using Array = std::vector<Json>;

  Json() : v_(nullptr) {}
  Json(std::nullptr_t) : v_(nullptr) {}
  Json(bool b) : v_(b) {}
  Json(int i) : v_(static_cast<std::int64_t>(i)) {}
  Json(std::int64_t i) : v_(i) {}
  Json(double d) : v_(d) {}
  Json(const char* s) : v_(std::string(s)) {}
  Json(std::string s) : v_(std::move(s)) {}
  Json(Array a) : v_(std::move(a)) {}
  Json(Object o) : v_(std::move(o)) {}

  static Json object() { return Json(Object{}); }
  static Json array() { return Json(Array{}); }

  /// Sets (or replaces) a key of an object.
  Json& set(const std::string& key, Json value);
  /// Appends to an array.
  Json& push(Json value);
  /// The value of a key of an object (nullptr when absent).
  const Json* find(const std::string& key) const;
  /// The value of a key of an object; throws std::out_of_range naming the key when absent.
  const Json& at(const std::string& key) const;

  bool is_null() const { return std::holds_alternative<std::nullptr_t>(v_); }
  bool is_number() const { return std::holds_alternative<double>(v_) || std::holds_alternative<std::int64_t>(v_); }
  bool is_integer() const { return std::holds_alternative<std::int64_t>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  bool is_array() const { return std::holds_alternative<Array>(v_); }
  bool is_object() const { return std::holds_alternative<Object>(v_); }
  bool boolean() const { return std::get<bool>(v_); }
  std::int64_t integer() const { return std::get<std::int64_t>(v_); }
  double number() const;
  const std::string& str() const { return std::get<std::string>(v_); }
  const Array& items() const { return std::get<Array>(v_); }
  const Object& fields() const { return std::get<Object>(v_); }

  /// Compact one-line text (indent < 0) or indented text.
  std::string dump(int indent = -1) const;
  /// Parses JSON text; throws hpctrain::Error naming `what` on bad input.
  static Json parse(const std::string& text, const std::string& what);
  /// Reads and parses a JSON file; throws hpctrain::Error naming the file when it cannot be read.
  static Json parse_file(const std::string& path);

 private:
  void write(std::string& out, int indent, int depth) const;
  std::variant<std::nullptr_t, bool, std::int64_t, double, std::string, Array, Object> v_;
};

}  // namespace hpctrain
