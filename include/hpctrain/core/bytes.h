// A small binary encoder/decoder for broadcasting plain structures (shard tables, states)
// between ranks. Fixed little-endian layout of the host; both sides are the same build.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "hpctrain/core/error.h"

namespace hpctrain {

class ByteWriter {
 public:
  template <class T, class = std::enable_if_t<std::is_arithmetic_v<T>>>
  void put(T v) {
    const auto* p = reinterpret_cast<const char*>(&v);
    buf_.append(p, sizeof(T));
  }
  void put(const std::string& s) {
    put<std::uint64_t>(s.size());
    buf_.append(s);
  }
  template <class T>
  void put(const std::vector<T>& v) {
    put<std::uint64_t>(v.size());
    for (const auto& x : v) put(x);
  }
  const std::string& bytes() const { return buf_; }

 private:
  std::string buf_;
};

class ByteReader {
 public:
  explicit ByteReader(const std::string& bytes) : buf_(bytes) {}
  template <class T, class = std::enable_if_t<std::is_arithmetic_v<T>>>
  T get() {
    HPCT_CHECK(pos_ + sizeof(T) <= buf_.size(), "ByteReader: truncated input");
    T v;
    std::memcpy(&v, buf_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string get_string() {
    auto n = get<std::uint64_t>();
    HPCT_CHECK(pos_ + n <= buf_.size(), "ByteReader: truncated string");
    std::string s = buf_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  template <class T>
  std::vector<T> get_vector() {
    auto n = get<std::uint64_t>();
    std::vector<T> v;
    v.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) v.push_back(get<T>());
    return v;
  }
  bool done() const { return pos_ == buf_.size(); }

 private:
  const std::string& buf_;
  std::size_t pos_ = 0;
};

}  // namespace hpctrain
