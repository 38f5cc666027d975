// What hpctrain's files need of JSON beyond nlohmann's ordered_json: errors that name the file,
// Python's non-finite numbers on read, bounded nesting, and null as NaN where a number is read.
#include "hpctrain/core/json.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

#include "hpctrain/core/error.h"

namespace hpctrain::json {
namespace {

// Python's json module writes non-finite floats as these bare words, which RFC 8259 (and
// nlohmann's parser) does not know. Outside strings they become marker strings that the parsed
// value then turns back into numbers; nothing a writer can put in a string starts with NUL
// followed by the marker's text by chance. In the text the NUL is the escape \u0000.
const std::string kMarker = std::string(1, '\0') + "hpctrain-non-finite:";
const std::string kMarkerText = "\\u0000" + kMarker.substr(1);

struct Word {
  const char* text;
  double value;
};
const Word kWords[] = {{"-Infinity", -std::numeric_limits<double>::infinity()},
                       {"Infinity", std::numeric_limits<double>::infinity()},
                       {"NaN", std::numeric_limits<double>::quiet_NaN()}};

// The text with each non-finite word outside strings replaced; `found` says whether any was.
std::string mark_non_finite(const std::string& text, bool& found) {
  found = false;
  if (text.find_first_of("NI") == std::string::npos) return text;
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) out += text[++i];
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    bool replaced = false;
    for (const Word& w : kWords) {
      if (text.compare(i, std::char_traits<char>::length(w.text), w.text) == 0) {
        out += "\"" + kMarkerText + w.text + "\"";
        i += std::char_traits<char>::length(w.text) - 1;
        replaced = found = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  return out;
}

// Turns the marker strings back into numbers, walking with an explicit stack.
void unmark_non_finite(Json& root) {
  std::vector<Json*> todo{&root};
  while (!todo.empty()) {
    Json* v = todo.back();
    todo.pop_back();
    if (v->is_string()) {
      const auto& s = v->get_ref<const std::string&>();
      if (s.compare(0, kMarker.size(), kMarker) != 0) continue;
      for (const Word& w : kWords) {
        if (s.compare(kMarker.size(), std::string::npos, w.text) == 0) {
          *v = w.value;  // `s` dies here
          break;
        }
      }
    } else if (v->is_structured()) {
      for (Json& child : *v) todo.push_back(&child);
    }
  }
}

}  // namespace

Json parse(const std::string& text, const std::string& what) {
  bool marked = false;
  const std::string& input = mark_non_finite(text, marked);
  // Depth is checked as the parser opens each object or array, before it goes deeper.
  const Json::parser_callback_t bounded = [&](int depth, nlohmann::json::parse_event_t event, Json&) {
    if ((event == nlohmann::json::parse_event_t::object_start || event == nlohmann::json::parse_event_t::array_start) &&
        depth >= kMaxDepth)
      throw Error(what + ": invalid JSON: nested deeper than " + std::to_string(kMaxDepth) + " levels");
    return true;
  };
  Json v;
  try {
    v = Json::parse(input, bounded);
  } catch (const Json::exception& e) {
    // nlohmann's message names the byte; it counts the text as read, which differs from the
    // file's only after a non-finite word.
    std::string msg = e.what();
    if (const auto at = msg.find("] "); msg.rfind("[json.exception.", 0) == 0 && at != std::string::npos) msg = msg.substr(at + 2);
    throw Error(what + ": invalid JSON: " + msg);
  }
  if (marked) unmark_non_finite(v);
  return v;
}

Json parse_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error("'" + path + "' is missing or cannot be read");
  std::stringstream text;
  text << f.rdbuf();
  if (f.bad()) throw Error("'" + path + "' cannot be read");
  return parse(text.str(), "'" + path + "'");
}

double number(const Json& v) {
  if (v.is_null()) return std::numeric_limits<double>::quiet_NaN();
  return v.get<double>();
}

std::string dump(const Json& v, int indent) { return v.dump(indent, ' ', false, Json::error_handler_t::replace); }

std::string shown(const Json& v, std::size_t max) {
  std::string t = dump(v);
  return t.size() > max ? t.substr(0, max - 3) + "..." : t;
}

}  // namespace hpctrain::json
