// The element types' sizes, names and kinds: one table.
#include "hpctrain/core/dtype.h"

namespace hpctrain {

namespace {
struct Info {
  DType type;
  const char* name;
  int size;
  bool is_float, is_signed;
};
// In the enum's order: kInfo[static_cast<int>(t)] is t's row.
constexpr Info kInfo[] = {
    {DType::kFloat32, "float32", 4, true, true}, {DType::kFloat64, "float64", 8, true, true},
    {DType::kInt8, "int8", 1, false, true},      {DType::kInt16, "int16", 2, false, true},
    {DType::kInt32, "int32", 4, false, true},    {DType::kInt64, "int64", 8, false, true},
    {DType::kUInt8, "uint8", 1, false, false},   {DType::kUInt16, "uint16", 2, false, false},
    {DType::kUInt32, "uint32", 4, false, false}, {DType::kUInt64, "uint64", 8, false, false}};
constexpr bool in_enum_order() {
  for (int i = 0; i < static_cast<int>(sizeof(kInfo) / sizeof(kInfo[0])); ++i)
    if (static_cast<int>(kInfo[i].type) != i) return false;
  return true;
}
static_assert(in_enum_order(), "kInfo lists the DTypes in the enum's order");

const Info& info(DType t) { return kInfo[static_cast<int>(t)]; }
}  // namespace

std::size_t dtype_size(DType t) { return static_cast<std::size_t>(info(t).size); }

const char* dtype_name(DType t) { return info(t).name; }

bool dtype_is_float(DType t) { return info(t).is_float; }

std::optional<DType> dtype_named(const std::string& name) {
  for (const Info& i : kInfo)
    if (name == i.name) return i.type;
  return std::nullopt;
}

std::string dtype_names() {
  std::string all;
  for (const Info& i : kInfo) all += (all.empty() ? "" : ", ") + std::string(i.name);
  return all;
}

std::optional<DType> dtype_of_storage(bool is_float, bool is_signed, int bytes) {
  for (const Info& i : kInfo)
    if (i.is_float == is_float && i.size == bytes && (is_float || i.is_signed == is_signed)) return i.type;
  return std::nullopt;
}

}  // namespace hpctrain
