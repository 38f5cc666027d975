// The element types' sizes and names.
#include "hpctrain/core/dtype.h"

namespace hpctrain {

namespace {
constexpr DType kAll[] = {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64, DType::kUInt8};
}  // namespace

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32: return 4;
    case DType::kFloat64: return 8;
    case DType::kInt32: return 4;
    case DType::kInt64: return 8;
    case DType::kUInt8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kUInt8: return "uint8";
  }
  return "?";
}

std::optional<DType> dtype_named(const std::string& name) {
  for (DType t : kAll)
    if (name == dtype_name(t)) return t;
  return std::nullopt;
}

}  // namespace hpctrain
