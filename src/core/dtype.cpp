// The element types' sizes and names.
#include "hpctrain/core/dtype.h"

namespace hpctrain {

namespace {
constexpr DType kAll[] = {DType::kFloat32, DType::kFloat64, DType::kInt8,   DType::kInt16,  DType::kInt32,
                          DType::kInt64,   DType::kUInt8,   DType::kUInt16, DType::kUInt32, DType::kUInt64};
}  // namespace

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::kInt8:
    case DType::kUInt8: return 1;
    case DType::kInt16:
    case DType::kUInt16: return 2;
    case DType::kFloat32:
    case DType::kInt32:
    case DType::kUInt32: return 4;
    case DType::kFloat64:
    case DType::kInt64:
    case DType::kUInt64: return 8;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kInt8: return "int8";
    case DType::kInt16: return "int16";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kUInt8: return "uint8";
    case DType::kUInt16: return "uint16";
    case DType::kUInt32: return "uint32";
    case DType::kUInt64: return "uint64";
  }
  return "?";
}

std::optional<DType> dtype_named(const std::string& name) {
  for (DType t : kAll)
    if (name == dtype_name(t)) return t;
  return std::nullopt;
}

std::string dtype_names() {
  std::string all;
  for (DType t : kAll) all += (all.empty() ? "" : ", ") + std::string(dtype_name(t));
  return all;
}

bool dtype_is_float(DType t) { return t == DType::kFloat32 || t == DType::kFloat64; }

std::optional<DType> dtype_of_storage(bool is_float, bool is_signed, int bytes) {
  for (DType t : kAll)
    if (dtype_is_float(t) == is_float && static_cast<int>(dtype_size(t)) == bytes &&
        (is_float || (dtype_name(t)[0] == 'i') == is_signed))
      return t;
  return std::nullopt;
}

}  // namespace hpctrain
