// The configuration types the Trainer's interface takes (TrainerCallback's arguments, the
// Trainer's Config), named in the train namespace too. They belong to the config component
// (include/hpctrain/config/), which does not depend on training.
#pragma once

#include "hpctrain/config/config.h"
#include "hpctrain/config/training_arguments.h"

namespace hpctrain::train {

using config::AutoBool;
using config::Config;
using config::DdpBackend;
using config::EvalStrategy;
using config::find_metric;
using config::Optimizer;
using config::PredictOutput;
using config::SaveFailure;
using config::SaveStrategy;
using config::SchedulerType;
using config::TrainingArguments;

}  // namespace hpctrain::train
