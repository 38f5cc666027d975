// The element types hpctrain moves between ranks and stores in checkpoints: one vocabulary for
// the communicators, the flight recorder and the checkpoint format.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace hpctrain {

enum class DType { kFloat32, kFloat64, kInt32, kInt64, kUInt8 };

/// Bytes per element.
std::size_t dtype_size(DType t);
/// "float32", "float64", "int32", "int64", "uint8" (the words checkpoints and flight records hold).
const char* dtype_name(DType t);
/// The DType named `name` (as dtype_name writes it), if any.
std::optional<DType> dtype_named(const std::string& name);

/// The DType of a C++ element type; a type without one does not compile.
template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::kFloat32; }
template <>
constexpr DType dtype_of<double>() { return DType::kFloat64; }
template <>
constexpr DType dtype_of<std::int32_t>() { return DType::kInt32; }
template <>
constexpr DType dtype_of<std::int64_t>() { return DType::kInt64; }
template <>
constexpr DType dtype_of<std::uint8_t>() { return DType::kUInt8; }

}  // namespace hpctrain
