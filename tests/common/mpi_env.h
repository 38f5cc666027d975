// The process's Environment in multi-rank tests (created by mpi_test_main.cpp).
#pragma once

#include "hpctrain/dist/environment.h"

namespace hpctrain::testing {
const dist::Environment& env();
}  // namespace hpctrain::testing
