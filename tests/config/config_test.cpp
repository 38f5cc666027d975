// Tests of configuration parsing: INI file, command-line overrides, errors naming source and key,
// and the --print_config round trip.
#include <gtest/gtest.h>

#include "common/subprocess.h"
#include "hpctrain/core/error.h"
#include "hpctrain/config/config.h"

namespace hpctrain::config {
namespace {

ParseResult parse(std::vector<std::string> args) {
  args.insert(args.begin(), "hpctrain");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

std::string ini(const std::string& text) {
  const std::string path = testing::temp_dir("hpct-cfg") + "/run.ini";
  testing::write_file(path, text);
  return path;
}

std::string error_of(const std::vector<std::string>& args) {
  try {
    parse(args);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Config, DefaultsFollowHuggingFace) {
  auto r = parse({"train"});
  EXPECT_EQ(r.action, Action::kRun);
  EXPECT_EQ(r.config.command, "train");
  EXPECT_DOUBLE_EQ(r.config.args.learning_rate, 5e-5);
  EXPECT_EQ(r.config.args.per_device_train_batch_size, 8);
  EXPECT_STREQ(to_name(r.config.args.lr_scheduler_type), "linear");
  EXPECT_STREQ(to_name(r.config.args.save_strategy), "steps");
  EXPECT_STREQ(to_name(r.config.args.eval_strategy), "no");
  // Checkpoints: save_steps=auto (Young/Daly), written in the background where that is safe.
  EXPECT_EQ(r.config.args.save_steps, 0);
  EXPECT_STREQ(to_name(r.config.args.save_async), "auto");
  EXPECT_DOUBLE_EQ(r.config.args.mtbf_hours, 24);
}

TEST(Config, ReadsTopLevelKeysAndSectionsFromIni) {
  auto path = ini("learning_rate = 0.001\nmax_steps = 100\nbf16 = yes\n# a comment\n"
                  "[model]\nname = mlp\n[data]\ntrain = /data/train/*.h5\neval = /data/eval\n");
  auto r = parse({"train", "--config", path});
  EXPECT_EQ(r.config.config_file, path);
  EXPECT_DOUBLE_EQ(r.config.args.learning_rate, 1e-3);
  EXPECT_EQ(r.config.args.max_steps, 100);
  EXPECT_TRUE(r.config.args.bf16);
  EXPECT_EQ(r.config.model.name, "mlp");
  EXPECT_EQ(r.config.data.train, "/data/train/*.h5");
  EXPECT_EQ(r.config.data.eval, "/data/eval");
}

TEST(Config, CommandLineOverridesTheFile) {
  auto path = ini("learning_rate = 0.001\nseed = 1\n[model]\nname = mlp\n");
  auto r = parse({"train", "--config=" + path, "--learning_rate", "0.5", "--model.name=cnn", "--bf16"});
  EXPECT_DOUBLE_EQ(r.config.args.learning_rate, 0.5);
  EXPECT_EQ(r.config.args.seed, 1);  // untouched keys keep the file's value
  EXPECT_EQ(r.config.model.name, "cnn");
  EXPECT_TRUE(r.config.args.bf16);
}

TEST(Config, LastCommandLineValueWins) {
  auto r = parse({"train", "--seed", "1", "--seed", "7"});
  EXPECT_EQ(r.config.args.seed, 7);
}

TEST(Config, UnknownKeyInFileNamesFileSectionAndSuggestion) {
  auto path = ini("learning_rat = 0.1\n");
  auto e = error_of({"train", "--config", path});
  EXPECT_NE(e.find("unknown key 'learning_rat'"), std::string::npos) << e;
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'learning_rate'"), std::string::npos) << e;

  auto path2 = ini("[model]\nnmae = mlp\n");
  e = error_of({"train", "--config", path2});
  EXPECT_NE(e.find("unknown key 'nmae' in section [model]"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'model.name'"), std::string::npos) << e;
}

TEST(Config, UnknownOptionOnCommandLine) {
  auto e = error_of({"train", "--max_step", "10"});
  EXPECT_NE(e.find("unknown option '--max_step' on the command line"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'max_steps'"), std::string::npos) << e;
}

TEST(Config, TypeErrorsNameKeyValueSourceAndExpectation) {
  auto path = ini("learning_rate = fast\n");
  auto e = error_of({"train", "--config", path});
  EXPECT_NE(e.find("invalid value for 'learning_rate' in config file '" + path + "': 'fast' (expected a finite number)"),
            std::string::npos)
      << e;
  e = error_of({"train", "--max_steps", "1.5"});
  EXPECT_NE(e.find("invalid value for 'max_steps' in the command line: '1.5' (expected an integer)"), std::string::npos) << e;
  e = error_of({"train", "--bf16=maybe"});
  EXPECT_NE(e.find("'maybe' (expected true or false)"), std::string::npos) << e;
  e = error_of({"train", "--learning_rate", "nan"});
  EXPECT_NE(e.find("expected a finite number"), std::string::npos) << e;
  e = error_of({"train", "--save_steps", "0"});
  EXPECT_NE(e.find("'0' (expected auto or an integer >= 1)"), std::string::npos) << e;
  EXPECT_EQ(parse({"train", "--save_steps", "AUTO"}).config.args.save_steps, 0);
  EXPECT_EQ(parse({"train", "--save_steps", "250"}).config.args.save_steps, 250);
}

TEST(Config, UnknownEnumValueListsTheValidOnes) {
  auto e = error_of({"train", "--eval_strategy", "sometimes"});
  EXPECT_NE(e.find("invalid value for 'eval_strategy'"), std::string::npos) << e;
  EXPECT_NE(e.find("expected one of: no, steps, epoch"), std::string::npos) << e;
  e = error_of({"train", "--lr_scheduler_type", "exp"});
  EXPECT_NE(e.find("expected one of: constant, constant_with_warmup, linear, cosine"), std::string::npos) << e;
  e = error_of({"train", "--log_level", "verbose"});
  EXPECT_NE(e.find("expected one of: passive, debug, info, warning, error, critical"), std::string::npos) << e;
  e = error_of({"train", "--model.activation", "swish"});
  EXPECT_NE(e.find("expected one of: relu, gelu, tanh"), std::string::npos) << e;
  e = error_of({"train", "--data.format", "token"});
  EXPECT_NE(e.find("expected one of: samples, tokens"), std::string::npos) << e;
}

// Every word setting is parsed once into its enum and written back as the same word.
TEST(Config, WordSettingsAreParsedOnceIntoTheirEnums) {
  const auto r = parse({"train", "--log_level", "debug", "--log_level_replica", "error", "--model.activation", "gelu",
                        "--data.format", "tokens", "--optim", "sgd"});
  EXPECT_EQ(r.config.args.log_level, LogLevel::kDebug);
  EXPECT_EQ(r.config.args.log_level_replica, LogLevel::kError);
  EXPECT_EQ(r.config.model.activation, models::Activation::kGelu);
  EXPECT_EQ(r.config.data.format, data::DataFormat::kTokens);
  EXPECT_EQ(r.config.args.optim, Optimizer::kSgd);
  const std::string ini = to_ini(r.config);
  for (const char* line : {"log_level = debug", "log_level_replica = error", "activation = gelu", "format = tokens", "optim = sgd"})
    EXPECT_NE(ini.find(line), std::string::npos) << line << " in\n" << ini;
}

TEST(Config, MissingOrBadCommand) {
  EXPECT_NE(error_of({}).find("missing command"), std::string::npos);
  auto e = error_of({"fit"});
  EXPECT_NE(e.find("unknown command 'fit'; expected one of: train, evaluate, predict, env"), std::string::npos) << e;
  e = error_of({"train", "stray"});
  EXPECT_NE(e.find("unexpected argument 'stray'"), std::string::npos) << e;
}

TEST(Config, MissingConfigFileIsNamed) {
  auto e = error_of({"train", "--config", "/no/such/run.ini"});
  EXPECT_NE(e.find("config file '/no/such/run.ini' cannot be opened"), std::string::npos) << e;
}

TEST(Config, KeySetTwiceInFileIsAnError) {
  auto path = ini("seed = 1\nseed = 2\n");
  auto e = error_of({"train", "--config", path});
  EXPECT_NE(e.find("key 'seed' is set twice"), std::string::npos) << e;
}

TEST(Config, MalformedLineNamesTheFile) {
  auto path = ini("this line has no equals sign\n");
  auto e = error_of({"train", "--config", path});
  EXPECT_NE(e.find("config file '" + path + "'"), std::string::npos) << e;
}

TEST(Config, HelpListsEveryKeyWithItsDefault) {
  auto r = parse({"--help"});
  EXPECT_EQ(r.action, Action::kHelp);
  Config c;
  for (const auto& o : option_table(c)) EXPECT_NE(r.help.find("--" + o.key + " "), std::string::npos) << o.key;
  EXPECT_NE(r.help.find("--learning_rate float (=5e-05)"), std::string::npos);
  EXPECT_NE(r.help.find("Evaluation:"), std::string::npos);
  EXPECT_EQ(parse({"train", "--help"}).action, Action::kHelp);
}

TEST(Config, PrintConfigRoundTripsThroughTheIniReader) {
  auto r = parse({"train", "--print_config", "--learning_rate", "0.00031", "--model.name", "mlp", "--data.train",
                  "/d/*.h5", "--run_name", "", "--warmup_ratio", "0.1", "--bf16"});
  EXPECT_EQ(r.action, Action::kPrintConfig);
  const std::string text = to_ini(r.config);
  auto back = parse({"train", "--config", ini(text)}).config;
  Config a = r.config, b = back;
  auto ta = option_table(a), tb = option_table(b);
  ASSERT_EQ(ta.size(), tb.size());
  for (std::size_t i = 0; i < ta.size(); ++i) EXPECT_EQ(ta[i].get(), tb[i].get()) << ta[i].key;
  EXPECT_DOUBLE_EQ(back.args.learning_rate, 0.00031);
  EXPECT_EQ(back.model.name, "mlp");
  EXPECT_NE(text.find("[model]\nname = mlp"), std::string::npos) << text;
}

}  // namespace
}  // namespace hpctrain::config
