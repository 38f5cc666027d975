// End-to-end training with the real binaries: the MLP on scikit-learn's digits (real data) reaches
// >= 95% eval accuracy on 2 ranks; a model registered through the C++ API trains; bad model and
// data settings stop all ranks with their message.
#include <gtest/gtest.h>

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <type_traits>

#include "common/subprocess.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/json.h"

namespace hpctrain {
namespace {

using testing::mpiexec;
using testing::run;

const std::string& digits() {
  static const std::string dir = [] {
    const std::string d = testing::temp_dir("hpct-digits");
    auto r = run({HPCTRAIN_DATA_BINARY, "convert", "--from", "digits", "--out", d, "--eval_fraction", "0.2", "--shards", "2"}, 120);
    EXPECT_EQ(r.exit_code, 0) << r.all();
    return d;
  }();
  return dir;
}

std::vector<Json> metrics(const std::string& out) { return testing::read_metrics(out); }

double last_eval_accuracy(const std::vector<Json>& m) {
  double acc = -1;
  for (const auto& e : m)
    if (const Json* a = json::find(e, "eval_accuracy")) acc = json::number(*a);
  return acc;
}

TEST(TrainE2E, MlpLearnsDigitsOnTwoRanks) {
  const std::string out = testing::temp_dir("hpct-run");
  auto r = run(mpiexec(2, {HPCTRAIN_BINARY, "train", "--config", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/mlp-digits.ini",
                           "--output_dir", out, "--data.train", digits() + "/train", "--data.eval", digits() + "/eval"}),
               300);
  ASSERT_EQ(r.exit_code, 0) << r.all();
  auto m = metrics(out);
  ASSERT_GT(m.size(), 5u);
  EXPECT_GE(last_eval_accuracy(m), 0.95) << r.err;
  // HF's keys in metrics.jsonl and trainer_state.json.
  const Json& train_log = *std::find_if(m.begin(), m.end(), [](const Json& e) { return e.contains("loss"); });
  EXPECT_TRUE(train_log.contains("learning_rate") && train_log.contains("grad_norm") && train_log.contains("epoch") &&
              train_log.contains("step"));
  Json state = json::parse(testing::read_file(out + "/trainer_state.json"), "trainer_state.json");
  EXPECT_EQ(state.at("log_history").size(), m.size());
  EXPECT_GE(state.at("best_metric").get<double>(), 0.95);
  EXPECT_GT(state.at("global_step").get<double>(), 0);
  EXPECT_NE(testing::read_file(out + "/config.ini").find("[model]\nname = mlp"), std::string::npos);

  // The plot tool turns the metrics into a PNG.
  auto p = run({std::string(HPCTRAIN_SOURCE_DIR) + "/tools/hpctrain-plot", out, "-o", out + "/plot.png"}, 120);
  ASSERT_EQ(p.exit_code, 0) << p.all();
  EXPECT_EQ(testing::read_file(out + "/plot.png").substr(1, 3), "PNG");
  testing::write_file(out + "/bad.jsonl", "{\"loss\": 1, \"step\": 1}\nnot json\n");
  auto bad = run({std::string(HPCTRAIN_SOURCE_DIR) + "/tools/hpctrain-plot", out + "/bad.jsonl"}, 120);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("bad.jsonl, line 2: not JSON"), std::string::npos) << bad.err;
}

TEST(TrainE2E, ARegisteredModelTrainsThroughTheCppApi) {
  const std::string out = testing::temp_dir("hpct-run");
  auto r = run(mpiexec(2, {HPCTRAIN_EXAMPLE_BINARY, "train", "--config", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/mlp-digits.ini",
                           "--model.name", "linear", "--output_dir", out, "--data.train", digits() + "/train",
                           "--data.eval", digits() + "/eval"}),
               300);
  ASSERT_EQ(r.exit_code, 0) << r.all();
  EXPECT_NE(r.err.find("model: linear 64-10"), std::string::npos) << r.err;
  const auto at = r.out.find("best eval accuracy: ");
  ASSERT_NE(at, std::string::npos) << r.out;
  EXPECT_GE(std::stod(r.out.substr(at + 20)), 0.9) << r.out;  // logistic regression on digits
}

// Unigram entropy (nats) of the token streams in `dir`, read with the HDF5 C API.
double unigram_entropy(const std::string& dir, int vocab) {
  std::vector<double> counts(static_cast<std::size_t>(vocab), 0);
  double n = 0;
  for (int s = 0;; ++s) {
    char name[64];
    std::snprintf(name, sizeof(name), "/shard-%05d.h5", s);
    if (!std::ifstream(dir + name)) break;
    hid_t f = H5Fopen((dir + name).c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "tokens", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t len = 0;
    H5Sget_simple_extent_dims(sp, &len, nullptr);
    std::vector<std::int64_t> t(len);
    H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data());
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    for (auto x : t) counts[static_cast<std::size_t>(x)] += 1;
    n += static_cast<double>(len);
  }
  double h = 0;
  for (double c : counts)
    if (c > 0) h -= c / n * std::log(c / n);
  return h;
}

TEST(TrainE2E, GptLearnsTheTokenStreamWellBelowItsUnigramEntropy) {
  const std::string d = testing::temp_dir("hpct-lm");
  auto g = run({HPCTRAIN_DATA_BINARY, "synth", "--kind", "tokens", "--tokens", "80000", "--vocab", "32", "--out", d,
                "--eval_fraction", "0.1", "--seed", "3"},
               120);
  ASSERT_EQ(g.exit_code, 0) << g.all();
  const std::string out = testing::temp_dir("hpct-run");
  auto r = run(mpiexec(2, {HPCTRAIN_BINARY, "train", "--config", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/gpt-tokens.ini",
                           "--output_dir", out, "--data.train", d + "/train", "--data.eval", d + "/eval",
                           "--model.vocab_size", "32", "--model.d_model", "32", "--data.seq_len", "32",
                           "--max_steps", "150", "--eval_steps", "50", "--seed", "7"}),
               300);
  ASSERT_EQ(r.exit_code, 0) << r.all();
  const double entropy = unigram_entropy(d + "/train", 32);
  double eval_loss = -1, perplexity = -1;
  for (const auto& e : metrics(out))
    if (const Json* l = json::find(e, "eval_loss")) {
      eval_loss = json::number(*l);
      perplexity = e.at("eval_perplexity").get<double>();
    }
  EXPECT_GT(entropy, 3.0);
  EXPECT_LT(eval_loss, 0.6 * entropy) << "unigram entropy " << entropy;
  EXPECT_NEAR(perplexity, std::exp(eval_loss), 1e-6 * perplexity);
}

TEST(TrainE2E, TokenIdsOutsideTheVocabularyAreNamed) {
  const std::string d = testing::temp_dir("hpct-lm");
  ASSERT_EQ(run({HPCTRAIN_DATA_BINARY, "synth", "--kind", "tokens", "--tokens", "20000", "--vocab", "64", "--out", d}, 120).exit_code, 0);
  auto r = run(mpiexec(2, {HPCTRAIN_BINARY, "train", "--config", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/gpt-tokens.ini",
                           "--output_dir", testing::temp_dir("hpct-run"), "--data.train", d + "/train", "--data.eval",
                           d + "/eval", "--model.vocab_size", "16", "--max_steps", "5"}),
               120);
  EXPECT_EQ(r.exit_code, exit_code::kConfig) << r.all();
  EXPECT_NE(r.err.find("is outside the vocabulary [0, 16); set [model] vocab_size"), std::string::npos) << r.err;
}

// A whole dataset of `path` as int64 or float (HDF5 C API), with its shape.
template <class T>
std::vector<T> read_all(const std::string& path, const std::string& key, std::vector<hsize_t>* shape) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, key.c_str(), H5P_DEFAULT);
  hid_t sp = H5Dget_space(d);
  shape->assign(static_cast<std::size_t>(H5Sget_simple_extent_ndims(sp)), 0);
  H5Sget_simple_extent_dims(sp, shape->data(), nullptr);
  std::size_t n = 1;
  for (auto x : *shape) n *= x;
  std::vector<T> v(n);
  H5Dread(d, std::is_same_v<T, float> ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
  H5Sclose(sp);
  H5Dclose(d);
  H5Fclose(f);
  return v;
}

TEST(TrainE2E, PredictionsAreWrittenInSampleOrderOnThreeRanks) {
  const std::string out = testing::temp_dir("hpct-run");
  auto r = run(mpiexec(3, {HPCTRAIN_BINARY, "train", "--config", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/mlp-digits.ini",
                           "--output_dir", out, "--data.train", digits() + "/train", "--data.eval", digits() + "/eval",
                           "--data.test", digits() + "/eval", "--num_train_epochs", "10"}),
               300);
  ASSERT_EQ(r.exit_code, 0) << r.all();
  std::vector<hsize_t> shape;
  auto pred = read_all<std::int64_t>(out + "/predictions.h5", "predictions", &shape);
  ASSERT_EQ(shape, (std::vector<hsize_t>{359}));
  std::vector<std::int64_t> labels;
  for (const char* s : {"/eval/shard-00000.h5", "/eval/shard-00001.h5"}) {
    auto part = read_all<std::int64_t>(digits() + s, "targets", &shape);
    labels.insert(labels.end(), part.begin(), part.end());
  }
  ASSERT_EQ(labels.size(), pred.size());
  double correct = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) correct += pred[i] == labels[i];
  double logged = -1;
  for (const auto& e : metrics(out))
    if (const Json* a = json::find(e, "test_accuracy")) logged = json::number(*a);
  EXPECT_NEAR(correct / pred.size(), logged, 1e-12);  // the file's order is the data set's order
  EXPECT_GT(logged, 0.9);
}

TEST(TrainE2E, LogitsOfUnlabeledData) {
  const std::string dir = testing::temp_dir("hpct-unlabeled");
  std::vector<float> x(50 * 64, 0.5f);
  hid_t f = H5Fcreate((dir + "/u.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t dims[3] = {50, 8, 8};
  hid_t sp = H5Screate_simple(3, dims, nullptr);
  hid_t d = H5Dcreate2(f, "inputs", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x.data());
  H5Dclose(d);
  H5Sclose(sp);
  H5Fclose(f);
  const std::string out = testing::temp_dir("hpct-run");
  auto r = run(mpiexec(2, {HPCTRAIN_BINARY, "train", "--config", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/mlp-digits.ini",
                           "--output_dir", out, "--data.train", digits() + "/train", "--data.eval", digits() + "/eval",
                           "--data.test", dir, "--num_train_epochs", "1", "--predict_output", "logits"}),
               300);
  ASSERT_EQ(r.exit_code, 0) << r.all();
  std::vector<hsize_t> shape;
  auto logits = read_all<float>(out + "/predictions.h5", "predictions", &shape);
  EXPECT_EQ(shape, (std::vector<hsize_t>{50, 10}));
  for (int i = 1; i < 50; ++i) EXPECT_NEAR(logits[i * 10 + 3], logits[3], 1e-5);  // same input, same logits
  for (const auto& e : metrics(out)) EXPECT_FALSE(e.contains("test_loss"));  // no labels, no test metrics
}

TEST(TrainE2E, ScriptedModulesFromPyTorchTrainAndAreSavedBack) {
  const std::string dir = testing::temp_dir("hpct-script");
  const std::string scripts = std::string(HPCTRAIN_SOURCE_DIR) + "/tests/data/scripts/";
  auto made = run({"/usr/bin/python3", scripts + "make_scripted.py", dir}, 120);
  ASSERT_EQ(made.exit_code, 0) << made.all();
  for (const std::string name : {"mlp", "cnn"}) {
    const std::string out = testing::temp_dir("hpct-run");
    auto r = run(mpiexec(2, {HPCTRAIN_BINARY, "train", "--config", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/mlp-digits.ini",
                             "--model.name", "torchscript:" + dir + "/" + name + ".pt", "--model.task", "classification",
                             "--output_dir", out, "--data.train", digits() + "/train", "--data.eval", digits() + "/eval",
                             "--num_train_epochs", "8"}),
                 300);
    ASSERT_EQ(r.exit_code, 0) << r.all();
    EXPECT_NE(r.err.find("model: torchscript " + dir + "/" + name + ".pt"), std::string::npos) << r.err;
    std::vector<double> eval_losses;
    for (const auto& e : metrics(out))
      if (const Json* l = json::find(e, "eval_loss")) eval_losses.push_back(json::number(*l));
    ASSERT_GE(eval_losses.size(), 2u);
    EXPECT_LT(eval_losses.back(), 0.8 * eval_losses.front()) << name;  // it learns
    if (name == "mlp") EXPECT_GT(last_eval_accuracy(metrics(out)), 0.85);
    auto cmp = run({"/usr/bin/python3", scripts + "compare_scripted.py", dir + "/" + name + ".pt", out + "/model.pt"}, 120);
    ASSERT_EQ(cmp.exit_code, 0) << cmp.all();
    EXPECT_GT(std::stod(cmp.out), 1e-3) << "the saved module holds the trained parameters";
  }
}

TEST(TrainE2E, ACheckpointOfAnotherScriptedArchitectureUnderTheSameFileIsRefused) {
  const std::string dir = testing::temp_dir("hpct-script"), out = testing::temp_dir("hpct-run");
  const std::string make = std::string(HPCTRAIN_SOURCE_DIR) + "/tests/data/scripts/make_scripted.py";
  ASSERT_EQ(run({"/usr/bin/python3", make, dir}, 120).exit_code, 0);
  auto train = [&](const std::string& max_steps) {
    return run(mpiexec(2, {HPCTRAIN_BINARY, "train", "--config", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/mlp-digits.ini",
                           "--model.name", "torchscript:" + dir + "/mlp.pt", "--model.task", "classification",
                           "--output_dir", out, "--data.train", digits() + "/train", "--data.eval", digits() + "/eval",
                           "--max_steps", max_steps, "--resume_from_checkpoint", "auto"}),
               300);
  };
  auto r = train("20");
  ASSERT_EQ(r.exit_code, 0) << r.all();
  // The same file, scripted again with a hidden layer of 48: resuming from the checkpoint is refused.
  ASSERT_EQ(run({"/usr/bin/python3", make, dir, "48"}, 120).exit_code, 0);
  r = train("40");
  EXPECT_EQ(r.exit_code, exit_code::kConfig) << r.all();
  EXPECT_NE(r.err.find("holds another model than this run"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("checkpoint 'param fc1_weight Float [32, 64]', this model 'param fc1_weight Float [48, 64]'"),
            std::string::npos)
      << r.err;
  // The original architecture resumes.
  ASSERT_EQ(run({"/usr/bin/python3", make, dir}, 120).exit_code, 0);
  r = train("40");
  EXPECT_EQ(r.exit_code, 0) << r.all();
  EXPECT_NE(r.err.find("resumed from " + out + "/checkpoint-20"), std::string::npos) << r.err;
}

TEST(TrainE2E, ScriptedModuleThatDoesNotFitIsRefused) {
  const std::string dir = testing::temp_dir("hpct-script");
  ASSERT_EQ(run({"/usr/bin/python3", std::string(HPCTRAIN_SOURCE_DIR) + "/tests/data/scripts/make_scripted.py", dir}, 120).exit_code, 0);
  const std::string base = std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/quickstart.ini";
  // The quick-start data have 32 features; the scripted MLP expects 64.
  const std::string data = testing::temp_dir("hpct-qs");
  ASSERT_EQ(run({HPCTRAIN_DATA_BINARY, "synth", "--samples", "200", "--shape", "32", "--out", data}, 60).exit_code, 0);
  auto r = run(mpiexec(2, {HPCTRAIN_BINARY, "train", "--config", base, "--model.name", "torchscript:" + dir + "/mlp.pt",
                           "--model.task", "classification", "--data.train", data + "/train", "--data.eval", data + "/eval",
                           "--output_dir", testing::temp_dir("hpct-run")}),
               120);
  EXPECT_EQ(r.exit_code, exit_code::kConfig) << r.all();
  EXPECT_NE(r.err.find("the module fails on a batch of inputs of shape [2, 32]"), std::string::npos) << r.err;
  r = run({HPCTRAIN_BINARY, "train", "--config", base, "--model.name", "torchscript:/no/such.pt", "--model.task",
           "classification", "--data.train", data + "/train", "--data.eval", data + "/eval"},
          120);
  EXPECT_EQ(r.exit_code, exit_code::kConfig) << r.all();
  EXPECT_NE(r.err.find("cannot load the TorchScript file '/no/such.pt'"), std::string::npos) << r.err;
}

TEST(TrainE2E, ModelDataMismatchStopsAllRanksOnce) {
  auto r = run(mpiexec(2, {HPCTRAIN_BINARY, "train", "--config", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/mlp-digits.ini",
                           "--output_dir", testing::temp_dir("hpct-run"), "--data.train", digits() + "/train",
                           "--data.eval", digits() + "/eval", "--model.num_classes", "4"}),
               120);
  EXPECT_EQ(r.exit_code, exit_code::kConfig) << r.all();
  const std::string msg = "holds the label 9, but model.num_classes=4 (labels 0..3)";
  auto first = r.err.find(msg);
  ASSERT_NE(first, std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(msg, first + 1), std::string::npos) << "reported once:\n" << r.err;
  // Refused while the ranks start, not after ddp_timeout (1800 s): room for a loaded machine.
  EXPECT_LT(r.seconds, testing::scaled(100));
}

TEST(TrainE2E, MissingDataFilesStopAllRanksOnce) {
  auto r = run(mpiexec(2, {HPCTRAIN_BINARY, "train", "--config", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/quickstart.ini",
                           "--data.train", "/no/such/train/*.h5"}),
               120);
  EXPECT_EQ(r.exit_code, exit_code::kConfig) << r.all();
  EXPECT_NE(r.err.find("[data] train = /no/such/train/*.h5: no file matches"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace hpctrain
