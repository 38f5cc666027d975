// TensorBoard event records and the protobuf wire encoding of the Event messages hpctrain writes
// (event.proto, summary.proto, and the HParams plugin's plugin_data.proto), by hand: the few
// fields used do not warrant a protobuf dependency.
#include "hpctrain/core/tfevents.h"

#include <array>
#include <cstring>

namespace hpctrain::tfevents {
namespace {

std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;  // Castagnoli, reflected
    t[i] = c;
  }
  return t;
}

// Protobuf wire format: a key is (field << 3) | wire type; 0 varint, 1 fixed64, 2 bytes, 5 fixed32.
void varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void key(std::string& out, int field, int wire) { varint(out, (static_cast<std::uint64_t>(field) << 3) | wire); }
template <class T>
void little_endian(std::string& out, T v) {
  unsigned char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // x86 and every platform hpctrain runs on are little-endian
  out.append(reinterpret_cast<const char*>(b), sizeof(T));
}
void bytes_field(std::string& out, int field, const std::string& bytes) {
  key(out, field, 2);
  varint(out, bytes.size());
  out += bytes;
}
void double_field(std::string& out, int field, double v) {
  key(out, field, 1);
  little_endian(out, v);
}
void varint_field(std::string& out, int field, std::uint64_t v) {
  key(out, field, 0);
  varint(out, v);
}

// Event: wall_time = 1 (double), step = 2 (int64), file_version = 3, summary = 5, session_log = 6.
std::string event(double wall_time, std::int64_t step) {
  std::string e;
  double_field(e, 1, wall_time);
  if (step != 0) varint_field(e, 2, static_cast<std::uint64_t>(step));
  return e;
}

// Summary.Value with tag = 1 and metadata = 9 { plugin_data = 1 { plugin_name = 1, content = 2 } }.
std::string plugin_value(const std::string& tag, const std::string& plugin, const std::string& content) {
  std::string plugin_data, metadata, value;
  bytes_field(plugin_data, 1, plugin);
  bytes_field(plugin_data, 2, content);
  bytes_field(metadata, 1, plugin_data);
  bytes_field(value, 1, tag);
  bytes_field(value, 9, metadata);
  return value;
}

std::string summary_event(double wall_time, std::int64_t step, const std::vector<std::string>& values) {
  std::string summary;
  for (const auto& v : values) bytes_field(summary, 1, v);  // Summary: repeated Value value = 1
  std::string e = event(wall_time, step);
  bytes_field(e, 5, summary);
  return e;
}

}  // namespace

std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc) {
  static const std::array<std::uint32_t, 256> table = make_table();
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

std::uint32_t masked_crc32c(const void* data, std::size_t n) {
  const std::uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string record(const std::string& payload) {
  std::string r;
  little_endian(r, static_cast<std::uint64_t>(payload.size()));
  little_endian(r, masked_crc32c(r.data(), 8));
  r += payload;
  little_endian(r, masked_crc32c(payload.data(), payload.size()));
  return r;
}

std::string file_version_event(double wall_time) {
  std::string e = event(wall_time, 0);
  bytes_field(e, 3, "brain.Event:2");
  return e;
}

std::string scalars_event(double wall_time, std::int64_t step, const std::vector<std::pair<std::string, float>>& values) {
  std::vector<std::string> encoded;
  encoded.reserve(values.size());
  for (const auto& [tag, x] : values) {
    std::string v;  // Summary.Value: tag = 1, simple_value = 2 (float)
    bytes_field(v, 1, tag);
    key(v, 2, 5);
    little_endian(v, x);
    encoded.push_back(std::move(v));
  }
  return summary_event(wall_time, step, encoded);
}

std::string session_start_event(double wall_time, std::int64_t step) {
  std::string log;  // SessionLog: status = 1 (START = 1)
  varint_field(log, 1, 1);
  std::string e = event(wall_time, step);
  bytes_field(e, 6, log);
  return e;
}

std::string hparams_start_event(double wall_time, const std::vector<std::pair<std::string, HParam>>& hparams,
                                const std::string& group_name) {
  // SessionStartInfo: map<string, google.protobuf.Value> hparams = 1, group_name = 4,
  // start_time_secs = 5. google.protobuf.Value: number_value = 2, string_value = 3, bool_value = 4.
  std::string info;
  for (const auto& [name, h] : hparams) {
    std::string value, entry;
    switch (h.kind) {
      case HParam::Kind::kNumber: double_field(value, 2, h.number); break;
      case HParam::Kind::kString: bytes_field(value, 3, h.text); break;
      case HParam::Kind::kBool: varint_field(value, 4, h.flag ? 1 : 0); break;
    }
    bytes_field(entry, 1, name);
    bytes_field(entry, 2, value);
    bytes_field(info, 1, entry);
  }
  if (!group_name.empty()) bytes_field(info, 4, group_name);
  double_field(info, 5, wall_time);
  std::string data;  // HParamsPluginData: version = 1 (0), session_start_info = 3
  bytes_field(data, 3, info);
  return summary_event(wall_time, 0, {plugin_value("_hparams_/session_start_info", "hparams", data)});
}

std::string hparams_end_event(double wall_time, int status) {
  std::string info;  // SessionEndInfo: status = 1, end_time_secs = 2
  varint_field(info, 1, static_cast<std::uint64_t>(status));
  double_field(info, 2, wall_time);
  std::string data;  // HParamsPluginData: session_end_info = 4
  bytes_field(data, 4, info);
  return summary_event(wall_time, 0, {plugin_value("_hparams_/session_end_info", "hparams", data)});
}

}  // namespace hpctrain::tfevents
