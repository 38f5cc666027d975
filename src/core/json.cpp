// JSON writing and parsing for hpctrain's state and metrics files.
#include "hpctrain/core/json.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "hpctrain/core/error.h"
#include "hpctrain/core/text.h"

namespace hpctrain {

Json& Json::set(const std::string& key, Json value) {
  auto& o = std::get<Object>(v_);
  for (auto& kv : o)
    if (kv.first == key) {
      kv.second = std::move(value);
      return *this;
    }
  o.emplace_back(key, std::move(value));
  return *this;
}

Json& Json::push(Json value) {
  std::get<Array>(v_).push_back(std::move(value));
  return *this;
}

const Json* Json::find(const std::string& key) const {
  if (!std::holds_alternative<Object>(v_)) return nullptr;
  for (const auto& kv : std::get<Object>(v_))
    if (kv.first == key) return &kv.second;
  return nullptr;
}

const Json& Json::at(const std::string& key) const {
  if (const Json* v = find(key)) return *v;
  throw std::out_of_range("JSON: no key '" + key + "'" + (is_object() ? "" : " (not an object)"));
}

double Json::number() const {
  if (std::holds_alternative<double>(v_)) return std::get<double>(v_);
  return static_cast<double>(std::get<std::int64_t>(v_));
}

namespace {
void escape(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}
}  // namespace

void Json::write(std::string& out, int indent, int depth) const {
  auto newline = [&](int d) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<std::size_t>(indent * d), ' ');
  };
  if (std::holds_alternative<std::nullptr_t>(v_)) {
    out += "null";
  } else if (auto* b = std::get_if<bool>(&v_)) {
    out += *b ? "true" : "false";
  } else if (auto* i = std::get_if<std::int64_t>(&v_)) {
    out += std::to_string(*i);
  } else if (auto* d = std::get_if<double>(&v_)) {
    if (!std::isfinite(*d)) {
      out += std::isnan(*d) ? "NaN" : (*d > 0 ? "Infinity" : "-Infinity");  // as Python's json writes them
    } else {
      const std::string t = format_shortest(*d);
      out += t;
      if (t.find_first_of(".eEn") == std::string::npos) out += ".0";  // a double stays a double when read back
    }
  } else if (auto* s = std::get_if<std::string>(&v_)) {
    escape(out, *s);
  } else if (auto* a = std::get_if<Array>(&v_)) {
    out += '[';
    for (std::size_t k = 0; k < a->size(); ++k) {
      if (k) out += indent < 0 ? ", " : ",";
      newline(depth + 1);
      (*a)[k].write(out, indent, depth + 1);
    }
    if (!a->empty()) newline(depth);
    out += ']';
  } else {
    const auto& o = std::get<Object>(v_);
    out += '{';
    for (std::size_t k = 0; k < o.size(); ++k) {
      if (k) out += indent < 0 ? ", " : ",";
      newline(depth + 1);
      escape(out, o[k].first);
      out += ": ";
      o[k].second.write(out, indent, depth + 1);
    }
    if (!o.empty()) newline(depth);
    out += '}';
  }
}

std::string Json::dump(int indent) const {
  std::string out;
  write(out, indent, 0);
  return out;
}

namespace {
struct Parser {
  const std::string& s;
  const std::string& what;
  std::size_t i = 0;
  int depth = 0;  // nesting of objects and arrays: bounded, so damaged input cannot exhaust the stack
  struct Nest {
    Parser& p;
    explicit Nest(Parser& parser) : p(parser) {
      if (++p.depth > 256) p.fail("nested deeper than 256 levels");
    }
    ~Nest() { --p.depth; }
  };
  [[noreturn]] void fail(const std::string& msg) {
    throw Error(what + ": invalid JSON at byte " + std::to_string(i) + ": " + msg);
  }
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) ++i;
  }
  bool lit(const char* w) {
    std::size_t n = std::strlen(w);
    if (s.compare(i, n, w) == 0) {
      i += n;
      return true;
    }
    return false;
  }
  // Four hex digits of a \u escape.
  unsigned hex4() {
    if (i + 4 > s.size()) fail("a \\u escape needs four hex digits");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s[i++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else fail("a \\u escape needs four hex digits");
    }
    return v;
  }
  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  // A string as RFC 8259 spells it: the eight escapes, \u escapes as UTF-8 (a surrogate pair as
  // one code point), no raw control characters.
  std::string string() {
    if (s[i] != '"') fail("expected a string");
    ++i;
    std::string out;
    while (i < s.size() && s[i] != '"') {
      const char c = s[i++];
      if (static_cast<unsigned char>(c) < 0x20) {
        --i;
        fail("a control character inside a string (it must be escaped)");
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i >= s.size()) fail("bad escape");
      switch (const char e = s[i++]) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail("a low surrogate without a high one before it");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s.compare(i, 2, "\\u") != 0) fail("a high surrogate without a low one after it");
            i += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("a high surrogate without a low one after it");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          utf8(out, cp);
          break;
        }
        default:
          --i;
          fail(std::string("unknown escape \\") + e);
      }
    }
    if (i >= s.size()) fail("unterminated string");
    ++i;
    return out;
  }
  Json value() {
    ws();
    if (i >= s.size()) fail("unexpected end");
    const char c = s[i];
    if (c == '{') {
      Nest nest(*this);
      ++i;
      Json o = Json::object();
      ws();
      if (s[i] == '}') return ++i, o;
      for (;;) {
        ws();
        std::string k = string();
        ws();
        if (s[i++] != ':') fail("expected ':'");
        o.set(k, value());
        ws();
        if (s[i] == ',') { ++i; continue; }
        if (s[i] == '}') { ++i; return o; }
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      Nest nest(*this);
      ++i;
      Json a = Json::array();
      ws();
      if (s[i] == ']') return ++i, a;
      for (;;) {
        a.push(value());
        ws();
        if (s[i] == ',') { ++i; continue; }
        if (s[i] == ']') { ++i; return a; }
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') return Json(string());
    if (lit("true")) return Json(true);
    if (lit("false")) return Json(false);
    if (lit("null")) return Json(nullptr);
    if (lit("NaN")) return Json(std::nan(""));
    if (lit("Infinity")) return Json(HUGE_VAL);
    if (lit("-Infinity")) return Json(-HUGE_VAL);
    // A number as JSON spells it (strtod alone would also take "inf", "nan" and hex).
    const std::size_t start = i;
    auto digits = [&] {
      const std::size_t from = i;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
      return i > from;
    };
    if (i < s.size() && s[i] == '-') ++i;
    if (!digits()) fail("unexpected character");
    bool integral = true;
    if (i < s.size() && s[i] == '.') {
      ++i;
      integral = false;
      if (!digits()) fail("expected a digit after '.'");
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      integral = false;
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      if (!digits()) fail("expected a digit in the exponent");
    }
    const std::string num = s.substr(start, i - start);
    if (integral) {
      errno = 0;
      const long long v = std::strtoll(num.c_str(), nullptr, 10);
      if (errno != ERANGE) return Json(static_cast<std::int64_t>(v));
      // Beyond 64 bits: a number, as Python reads it, that no integer setting accepts.
    }
    return Json(std::strtod(num.c_str(), nullptr));
  }
};
}  // namespace

Json Json::parse_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error("'" + path + "' is missing or cannot be read");
  std::stringstream text;
  text << f.rdbuf();
  return parse(text.str(), "'" + path + "'");
}

Json Json::parse(const std::string& text, const std::string& what) {
  Parser p{text, what};
  Json v = p.value();
  p.ws();
  if (p.i != text.size()) p.fail("trailing characters");
  return v;
}

}  // namespace hpctrain
