// The element types hpctrain moves between ranks, stores in checkpoints and writes to data shards:
// one vocabulary for the communicators, the flight recorder, the checkpoint format and the data
// layer (the words are NumPy's and h5py's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace hpctrain {

enum class DType { kFloat32, kFloat64, kInt8, kInt16, kInt32, kInt64, kUInt8, kUInt16, kUInt32, kUInt64 };

/// Bytes per element.
std::size_t dtype_size(DType t);
/// "float32", "float64", "int8" ... "int64", "uint8" ... "uint64" (the words of checkpoints, flight
/// records and data tools).
const char* dtype_name(DType t);
/// The DType named `name` (as dtype_name writes it), if any.
std::optional<DType> dtype_named(const std::string& name);
/// Every name, comma-separated (for messages that say what is expected).
std::string dtype_names();
/// Whether it is float32 or float64.
bool dtype_is_float(DType t);
/// The DType of a number stored in `bytes` bytes, a float or a signed or unsigned integer, when
/// there is one (a file's float16 has none).
std::optional<DType> dtype_of_storage(bool is_float, bool is_signed, int bytes);

/// The DType of a C++ element type; a type without one does not compile.
template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::kFloat32; }
template <>
constexpr DType dtype_of<double>() { return DType::kFloat64; }
template <>
constexpr DType dtype_of<std::int8_t>() { return DType::kInt8; }
template <>
constexpr DType dtype_of<std::int16_t>() { return DType::kInt16; }
template <>
constexpr DType dtype_of<std::int32_t>() { return DType::kInt32; }
template <>
constexpr DType dtype_of<std::int64_t>() { return DType::kInt64; }
template <>
constexpr DType dtype_of<std::uint8_t>() { return DType::kUInt8; }
template <>
constexpr DType dtype_of<std::uint16_t>() { return DType::kUInt16; }
template <>
constexpr DType dtype_of<std::uint32_t>() { return DType::kUInt32; }
template <>
constexpr DType dtype_of<std::uint64_t>() { return DType::kUInt64; }

/// Calls f with a value of `t`'s C++ type (float{}, std::int8_t{}, ...): the one switch for code
/// that works on any element type (reading a file's elements, converting an array).
template <class F>
void visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::kFloat32: return f(float{});
    case DType::kFloat64: return f(double{});
    case DType::kInt8: return f(std::int8_t{});
    case DType::kInt16: return f(std::int16_t{});
    case DType::kInt32: return f(std::int32_t{});
    case DType::kInt64: return f(std::int64_t{});
    case DType::kUInt8: return f(std::uint8_t{});
    case DType::kUInt16: return f(std::uint16_t{});
    case DType::kUInt32: return f(std::uint32_t{});
    case DType::kUInt64: return f(std::uint64_t{});
  }
}

}  // namespace hpctrain
