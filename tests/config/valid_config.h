// A configuration that validate() accepts: the base the validation and fuzz tests vary.
#pragma once

#include "hpctrain/config/config.h"

namespace hpctrain::config::testing {

inline Config valid_config() {
  Config c;
  c.command = "train";
  c.model.name = "mlp";
  c.data.train = "/data/train";
  c.args.output_dir = "/tmp/hpct-validate-run";
  return c;
}

}  // namespace hpctrain::config::testing
