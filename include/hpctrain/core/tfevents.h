// TensorBoard's event file format, written without protobuf: the records (length, masked CRC-32C,
// payload, masked CRC-32C) and the few Event messages a trainer writes (scalars, the file version,
// a session start that discards the steps a resumed run redoes, and the HParams plugin's records).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace hpctrain::tfevents {

/// CRC-32C (Castagnoli), continued from `crc` (0 to start).
std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc = 0);
/// TensorFlow's masked CRC: rotated right by 15 bits plus 0xa282ead8, so that a CRC of data that
/// holds CRCs is not trivially related to them.
std::uint32_t masked_crc32c(const void* data, std::size_t n);

/// One record of an event file: uint64 length, masked CRC of the length, the payload, masked CRC
/// of the payload (all little-endian).
std::string record(const std::string& payload);

/// An Event with file_version "brain.Event:2", the first record of every event file.
std::string file_version_event(double wall_time);

/// An Event of `step` with one scalar summary value (simple_value, float32) per (tag, value).
std::string scalars_event(double wall_time, std::int64_t step, const std::vector<std::pair<std::string, float>>& values);

/// An Event with SessionLog START at `step`: TensorBoard then discards every event of this run
/// with a step >= `step` read before it (the steps of an earlier run that a resumed one redoes).
std::string session_start_event(double wall_time, std::int64_t step);

/// A value of a hyperparameter: a number, a string or a bool (google.protobuf.Value).
struct HParam {
  enum class Kind { kNumber, kString, kBool } kind = Kind::kNumber;
  double number = 0;
  std::string text;
  bool flag = false;
};

/// The HParams plugin's session-start record ("_hparams_/session_start_info"): this run's
/// hyperparameters, so that TensorBoard's HParams dashboard compares the runs of a sweep by them
/// and by their scalars.
std::string hparams_start_event(double wall_time, const std::vector<std::pair<std::string, HParam>>& hparams,
                                const std::string& group_name);

/// The HParams plugin's session-end record ("_hparams_/session_end_info"): 1 success, 2 failure.
std::string hparams_end_event(double wall_time, int status);

}  // namespace hpctrain::tfevents
