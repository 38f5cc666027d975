// The HDF5 lock, error-stack capture and handle owner.
#include "hpctrain/core/h5.h"

#include <sstream>

namespace hpctrain::h5 {

std::recursive_mutex& mutex() {
  static std::recursive_mutex m;
  return m;
}

void quiet_errors() {
  static std::once_flag once;
  std::call_once(once, [] {
    Lock lock;
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  });
}

namespace {
herr_t collect(unsigned n, const H5E_error2_t* err, void* data) {
  auto* os = static_cast<std::ostringstream*>(data);
  // The innermost entries say what failed at the bottom ("unable to open file: name = ..."),
  // the outermost the API call; keep them all but briefly.
  if (n > 0) *os << "; ";
  *os << (err->func_name ? err->func_name : "?") << ": " << (err->desc ? err->desc : "");
  return 0;
}
}  // namespace

std::string take_error_stack() {
  Lock lock;
  hid_t stack = H5Eget_current_stack();
  if (stack < 0) return {};
  std::ostringstream os;
  H5Ewalk2(stack, H5E_WALK_DOWNWARD, collect, &os);
  H5Eclose_stack(stack);
  return os.str();
}

std::string missing_prefix(hid_t loc, const std::string& path) {
  std::string sofar;
  std::istringstream parts(path);
  for (std::string part; std::getline(parts, part, '/');) {
    if (part.empty()) continue;
    sofar += "/" + part;
    if (H5Lexists(loc, sofar.c_str(), H5P_DEFAULT) <= 0) {
      take_error_stack();
      return sofar;
    }
  }
  return "";
}

void Handle::reset() noexcept {
  if (id_ >= 0 && close_) {
    Lock lock;
    close_(id_);
  }
  id_ = H5I_INVALID_HID;
}

hid_t file_type(DType t) {
  switch (t) {
    case DType::kFloat32: return H5T_IEEE_F32LE;
    case DType::kFloat64: return H5T_IEEE_F64LE;
    case DType::kInt8: return H5T_STD_I8LE;
    case DType::kInt16: return H5T_STD_I16LE;
    case DType::kInt32: return H5T_STD_I32LE;
    case DType::kInt64: return H5T_STD_I64LE;
    case DType::kUInt8: return H5T_STD_U8LE;
    case DType::kUInt16: return H5T_STD_U16LE;
    case DType::kUInt32: return H5T_STD_U32LE;
    case DType::kUInt64: return H5T_STD_U64LE;
  }
  return H5T_STD_U8LE;
}

namespace detail {
void throw_h5_error(const char* call, const std::string& context, const char* file, int line) {
  std::string stack = take_error_stack();
  std::string msg = context + ": HDF5 call " + call + " failed";
  if (!stack.empty()) msg += " [" + stack + "]";
  msg += " on " + hpctrain::detail::host_name();
  throw Error(hpctrain::detail::located(msg, file, line));
}
}  // namespace detail

}  // namespace hpctrain::h5
