// Helpers shared by the error types and CHECK macros.
#include "hpctrain/core/error.h"

#include <unistd.h>

#include <climits>

namespace hpctrain::detail {

std::string located(const std::string& what, const char* file, int line) {
  std::string f(file);
  // Keep the path from src/ or include/ on: build directories differ between machines.
  for (const char* root : {"/src/", "/include/", "/tests/", "/tools/"}) {
    auto pos = f.rfind(root);
    if (pos != std::string::npos) {
      f = f.substr(pos + 1);
      break;
    }
  }
  return what + " (" + f + ":" + std::to_string(line) + ")";
}

const std::string& host_name() {
  static const std::string name = [] {
    char buf[HOST_NAME_MAX + 1] = {0};
    if (gethostname(buf, sizeof(buf) - 1) != 0) return std::string("unknown-host");
    return std::string(buf);
  }();
  return name;
}

}  // namespace hpctrain::detail
