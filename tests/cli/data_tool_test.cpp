// End-to-end tests of hpctrain-data: synth, convert (CSV, .npy written by NumPy, digits), inspect,
// reshard, and bad arguments.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/subprocess.h"
#include "hpctrain/data/reader.h"
#include "hpctrain/data/shard_set.h"

namespace hpctrain {
namespace {

using testing::run;
namespace fs = std::filesystem;

testing::RunResult tool(std::vector<std::string> args) {
  args.insert(args.begin(), HPCTRAIN_DATA_BINARY);
  return run(args, 120);
}

TEST(DataTool, SynthThenInspect) {
  const std::string out = testing::temp_dir("hpct-tool") + "/cls";
  auto r = tool({"synth", "--out", out, "--samples", "1000", "--shape", "4,4", "--classes", "5", "--shards", "3",
                 "--eval_fraction", "0.1", "--chunk", "64", "--gzip", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.all();
  EXPECT_NE(r.out.find("wrote 900 training samples to 3 shards"), std::string::npos) << r.out;
  auto i = tool({"inspect", out + "/train"});
  ASSERT_EQ(i.exit_code, 0) << i.all();
  EXPECT_NE(i.out.find("3 shards, 900 samples"), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("inputs float32 (300, 4, 4) chunked"), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("targets: 5 distinct labels"), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("classes: 5 (1 + the largest label, in data file '"), std::string::npos) << i.out;
  // Checked against a class count as a run checks them: refused naming the file and sample.
  auto few = tool({"inspect", out + "/train", "--num_classes", "3"});
  EXPECT_EQ(few.exit_code, 1) << few.all();
  EXPECT_NE(few.out.find("classes: REFUSED: "), std::string::npos) << few.out;
  EXPECT_NE(few.out.find("' sample "), std::string::npos) << few.out;
  EXPECT_NE(few.out.find("but model.num_classes=3 (labels 0..2)"), std::string::npos) << few.out;
  auto e = tool({"inspect", out + "/eval"});
  EXPECT_NE(e.out.find("100 samples"), std::string::npos) << e.out;
}

TEST(DataTool, ConvertCsvAndNumpy) {
  const std::string dir = testing::temp_dir("hpct-tool");
  testing::write_file(dir + "/d.csv", "a,b,label\n1.5,2,0\n3,4.25,1\n5,6,1\n7,8,2\n");
  auto r = tool({"convert", "--from", "csv", "--input", dir + "/d.csv", "--out", dir + "/csv", "--shards", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.all();
  data::DataArguments a;
  auto set = std::make_shared<data::ShardSet>(data::ShardSet::scan(data::resolve_files(dir + "/csv/train", "x"), a, "x"));
  EXPECT_EQ(set->size(), 4);
  data::Reader reader(set, a);
  data::Batch b;
  reader.read({1, 0}, &b);  // shards keep the CSV's row order (split with eval_fraction 0 is a permutation)
  std::multiset<float> firsts = {b.inputs[0], b.inputs[2]};
  EXPECT_EQ(b.class_targets.size(), 2u);

  const std::string py =
      "import numpy as np, sys; d = sys.argv[1]\n"
      "np.save(d + '/x.npy', np.arange(60, dtype=np.int16).reshape(10, 3, 2))\n"
      "np.save(d + '/y.npy', np.linspace(0, 1, 10))\n";
  testing::write_file(dir + "/mk.py", py);
  ASSERT_EQ(run({"/usr/bin/python3", dir + "/mk.py", dir}, 60).exit_code, 0);
  r = tool({"convert", "--from", "npy", "--inputs", dir + "/x.npy", "--targets", dir + "/y.npy", "--out", dir + "/npy"});
  ASSERT_EQ(r.exit_code, 0) << r.all();
  auto i = tool({"inspect", dir + "/npy/train"});
  EXPECT_NE(i.out.find("inputs int16 (10, 3, 2)"), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("targets float32 (10)"), std::string::npos) << i.out;
}

TEST(DataTool, ConvertDigitsWithAnEvalSplitAndReshard) {
  const std::string dir = testing::temp_dir("hpct-tool");
  auto r = tool({"convert", "--from", "digits", "--out", dir + "/digits", "--eval_fraction", "0.2", "--shards", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.all();
  EXPECT_NE(r.out.find("wrote 1438 training samples"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wrote 359 evaluation samples"), std::string::npos) << r.out;
  auto s = tool({"reshard", dir + "/digits/train", "--out", dir + "/re", "--shards", "5", "--chunk", "32", "--gzip", "1"});
  ASSERT_EQ(s.exit_code, 0) << s.all();
  auto i = tool({"inspect", dir + "/re"});
  EXPECT_NE(i.out.find("5 shards, 1438 samples"), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("inputs uint8"), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("inputs: min 0, max 16"), std::string::npos) << i.out;
}

TEST(DataTool, BadArgumentsAreClearErrors) {
  auto r = tool({"synth", "--kind", "images", "--out", testing::temp_dir("hpct-tool")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--kind images: expected classification, regression or tokens"), std::string::npos) << r.err;
  r = tool({"synth"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("'--out' is required"), std::string::npos) << r.err;
  r = tool({"inspect", "/no/such/dir"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("'/no/such/dir' does not exist"), std::string::npos) << r.err;
  r = tool({"convert", "--from", "csv", "--input", "/no/x.csv", "--out", "/tmp/x"});
  EXPECT_NE(r.err.find("csv file '/no/x.csv' cannot be opened"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace hpctrain
