// Example: register your own model and train it with the hpctrain Trainer from C++.
//   mpirun -np 2 build/tools/custom_model_example --config jobs/mlp-digits.ini --model.name linear
// Any hpctrain configuration works; the model named "linear" is the one defined here.
#include <torch/nn/modules/linear.h>

#include <iostream>

#include "hpctrain/core/error.h"
#include "hpctrain/core/log.h"
#include "hpctrain/dist/environment.h"
#include "hpctrain/dist/failure.h"
#include "hpctrain/models/model.h"
#include "hpctrain/train/trainer.h"

namespace {

// Multinomial logistic regression: one Linear layer over the flattened inputs.
class Linear : public hpctrain::models::Model {
 public:
  Linear(std::int64_t in, std::int64_t classes) : fc_(register_module("fc", torch::nn::Linear(in, classes))) {}
  torch::Tensor forward(const torch::Tensor& x) override { return fc_->forward(x.flatten(1)); }
  hpctrain::models::Task task() const override { return hpctrain::models::Task::kClassification; }
  std::string describe() const override { return "linear " + std::to_string(fc_->options.in_features()) + "-" +
                                                  std::to_string(fc_->options.out_features()); }

 private:
  torch::nn::Linear fc_;
};

// A callback of our own: print the best accuracy when training ends.
class Report : public hpctrain::train::TrainerCallback {
 public:
  void on_train_end(const hpctrain::train::TrainingArguments&, hpctrain::train::TrainerState& s,
                    hpctrain::train::TrainerControl&) override {
    if (s.is_world_process_zero) std::cout << "best eval accuracy: " << (s.has_best ? s.best_metric : -1) << std::endl;
  }
};

}  // namespace

int main(int argc, char** argv) {
  using namespace hpctrain;
  dist::Environment env(&argc, &argv);
  log::init({env.rank(), env.size(), log::Level::info, log::Level::warning, nullptr});
  return dist::run_guarded(env, [&] {
    config::Config cfg = config::parse_command_line(argc, argv).config;  // argv[1]: train
    models::Registry registry = models::builtin_models();
    registry.add(
        "linear",
        [](const models::ModelArguments&, const models::DataSpec& data) {
          std::int64_t in = 1;
          for (auto d : data.input_shape) in *= d;
          if (!data.integer_targets) throw ConfigError("model linear is a classifier: the targets must be labels");
          return std::make_shared<Linear>(in, data.num_classes);
        },
        "multinomial logistic regression");
    train::Trainer trainer(env, cfg, registry, {std::make_shared<Report>()});
    trainer.train();
    return 0;
  });
}
