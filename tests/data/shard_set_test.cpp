// Tests of ShardSet and Reader on files written independently (HDF5 C API, h5py): layouts,
// dtypes, token windows, and every bad input with its message.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <numeric>

#include "common/subprocess.h"
#include "data/h5_fixture.h"
#include "hpctrain/core/error.h"
#include "hpctrain/data/reader.h"
#include "hpctrain/data/shard_set.h"

namespace hpctrain::data {
namespace {

using testing::DsetSpec;
using testing::write_h5;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::shared_ptr<ShardSet> open_set(const std::string& spec, const DataArguments& a = {}) {
  return std::make_shared<ShardSet>(ShardSet::scan(resolve_files(spec, "[data] train"), a, "[data] train"));
}

Batch read(const std::shared_ptr<ShardSet>& set, const std::vector<std::int64_t>& idx, const DataArguments& a = {}) {
  Reader r(set, a);
  Batch b;
  r.read(idx, &b);
  return b;
}

class ShardSetTest : public ::testing::Test {
 protected:
  void SetUp() override { dir = testing::temp_dir("hpct-data"); }
  std::string path(const std::string& name) const { return dir + "/" + name; }

  // n samples of 3 doubles: x[i][j] = i * 10 + j; targets i % 4 as int32.
  void write_simple(const std::string& name, int n, int first = 0, hsize_t chunk = 0, int gzip = 0) {
    std::vector<double> x(static_cast<std::size_t>(n * 3));
    std::vector<std::int32_t> y(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < 3; ++j) x[i * 3 + j] = (first + i) * 10.0 + j;
      y[i] = (first + i) % 4;
    }
    write_h5(path(name), {{"inputs", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {hsize_t(n), 3}, x.data(), chunk, gzip},
                          {"targets", H5T_STD_I32LE, H5T_NATIVE_INT32, {hsize_t(n)}, y.data(), chunk, gzip}});
  }
  std::string dir;
};

TEST_F(ShardSetTest, ReadsContiguousShardsInNaturalOrder) {
  write_simple("part-10.h5", 5, 6);
  write_simple("part-2.h5", 6, 0);
  auto set = open_set(dir);
  ASSERT_EQ(set->shards().size(), 2u);
  EXPECT_EQ(set->shards()[0].file, path("part-2.h5"));  // 2 before 10
  EXPECT_EQ(set->size(), 11);
  EXPECT_EQ(set->input_shape(), (std::vector<std::int64_t>{3}));
  EXPECT_TRUE(set->target_shape().empty());
  EXPECT_TRUE(set->integer_targets());
  EXPECT_GE(set->shards()[0].inputs.raw_offset, 0);  // the pread path
  auto b = read(set, {10, 0, 5, 6, 3});
  ASSERT_EQ(b.inputs.size(), 15u);
  const std::vector<std::int64_t> expect = {10, 0, 5, 6, 3};
  for (int k = 0; k < 5; ++k) {
    for (int j = 0; j < 3; ++j) EXPECT_FLOAT_EQ(b.inputs[k * 3 + j], expect[k] * 10.0f + j) << k;
    EXPECT_EQ(b.class_targets[k], expect[k] % 4);
  }
}

TEST_F(ShardSetTest, ChunkedCompressedNestedKeysWithScale) {
  const int n = 50;
  std::vector<std::uint8_t> x(n * 4);
  std::vector<float> y(n);
  for (int i = 0; i < n * 4; ++i) x[i] = static_cast<std::uint8_t>(i % 251);
  for (int i = 0; i < n; ++i) y[i] = 0.5f * i;
  DsetSpec xs{"/data/features", H5T_STD_U8LE, H5T_NATIVE_UINT8, {hsize_t(n), 2, 2}, x.data(), 7, 6, true};
  DsetSpec ys{"/data/labels", H5T_IEEE_F32BE, H5T_NATIVE_FLOAT, {hsize_t(n)}, y.data(), 7, 6, false};
  write_h5(path("c.h5"), {xs, ys});
  DataArguments a;
  a.inputs_key = "/data/features";
  a.targets_key = "data/labels";
  a.inputs_scale = 1.0 / 255;
  a.inputs_offset = -0.5;
  auto set = open_set(path("c.h5"), a);
  EXPECT_EQ(set->shards()[0].inputs.raw_offset, -1);  // through HDF5
  EXPECT_FALSE(set->integer_targets());
  EXPECT_EQ(set->input_shape(), (std::vector<std::int64_t>{2, 2}));
  auto b = read(set, {49, 3, 4, 5, 20}, a);
  const std::vector<int> idx = {49, 3, 4, 5, 20};
  for (int k = 0; k < 5; ++k) {
    for (int j = 0; j < 4; ++j) EXPECT_NEAR(b.inputs[k * 4 + j], ((idx[k] * 4 + j) % 251) / 255.0 - 0.5, 1e-6);
    EXPECT_FLOAT_EQ(b.float_targets[k], 0.5f * idx[k]);  // big-endian float converted by HDF5
  }
}

TEST_F(ShardSetTest, EveryIntegerAndFloatDtypeConverts) {
  const std::vector<std::pair<hid_t, std::string>> types = {
      {H5T_STD_I8LE, "int8"},   {H5T_STD_I16LE, "int16"},  {H5T_STD_I32LE, "int32"},  {H5T_STD_I64LE, "int64"},
      {H5T_STD_U8LE, "uint8"},  {H5T_STD_U16LE, "uint16"}, {H5T_STD_U32LE, "uint32"}, {H5T_STD_U64LE, "uint64"},
      {H5T_IEEE_F32LE, "float32"}, {H5T_IEEE_F64LE, "float64"}, {H5T_STD_I16BE, "int16"}};
  std::vector<std::int64_t> x = {0, 1, 2, 3, 100, 5}, y = {1, 0, 1};
  int k = 0;
  for (const auto& [t, name] : types) {
    const std::string f = path("t" + std::to_string(k++) + ".h5");
    write_h5(f, {{"inputs", t, H5T_NATIVE_INT64, {3, 2}, x.data()}, {"targets", t, H5T_NATIVE_INT64, {3}, y.data()}});
    auto set = open_set(f);
    EXPECT_EQ(set->shards()[0].inputs.dtype_name(), name);
    auto b = read(set, {2, 0});
    EXPECT_FLOAT_EQ(b.inputs[0], 100.0f) << name;
    EXPECT_FLOAT_EQ(b.inputs[1], 5.0f) << name;
    EXPECT_FLOAT_EQ(b.inputs[2], 0.0f) << name;
    if (set->integer_targets()) EXPECT_EQ(b.class_targets[0], 1) << name;
    else EXPECT_FLOAT_EQ(b.float_targets[0], 1.0f) << name;
  }
}

TEST_F(ShardSetTest, TokenWindowsAreShiftedAndStayInsideTheirFile) {
  std::vector<std::int32_t> a(23), b(10);
  std::iota(a.begin(), a.end(), 0);
  std::iota(b.begin(), b.end(), 1000);
  write_h5(path("a.h5"), {{"tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, {23}, a.data()}});
  write_h5(path("b.h5"), {{"tokens", H5T_STD_U16LE, H5T_NATIVE_INT32, {10}, b.data(), 4, 1}});
  DataArguments args;
  args.format = DataFormat::kTokens;
  args.seq_len = 5;
  auto set = open_set(path("a.h5") + "," + path("b.h5"), args);
  EXPECT_EQ(set->shards()[0].num_samples, 4);  // (23 - 1) / 5
  EXPECT_EQ(set->shards()[1].num_samples, 1);  // (10 - 1) / 5
  auto batch = read(set, {3, 4, 0, 1}, args);
  ASSERT_EQ(batch.input_ids.size(), 20u);
  const std::vector<std::int64_t> w3 = {15, 16, 17, 18, 19}, t3 = {16, 17, 18, 19, 20};
  EXPECT_EQ(std::vector<std::int64_t>(batch.input_ids.begin(), batch.input_ids.begin() + 5), w3);
  EXPECT_EQ(std::vector<std::int64_t>(batch.class_targets.begin(), batch.class_targets.begin() + 5), t3);
  const std::vector<std::int64_t> w4 = {1000, 1001, 1002, 1003, 1004}, t4 = {1001, 1002, 1003, 1004, 1005};
  EXPECT_EQ(std::vector<std::int64_t>(batch.input_ids.begin() + 5, batch.input_ids.begin() + 10), w4);
  EXPECT_EQ(std::vector<std::int64_t>(batch.class_targets.begin() + 5, batch.class_targets.begin() + 10), t4);
  EXPECT_EQ(batch.input_ids[10], 0);
  EXPECT_EQ(batch.input_ids[15], 5);
}

TEST_F(ShardSetTest, FilesWrittenByH5pyAreRead) {
  const std::string script = path("make.py");
  testing::write_file(script,
                      "import h5py, numpy as np, sys\n"
                      "d = sys.argv[1]\n"
                      "x = np.arange(40*6, dtype=np.float32).reshape(40, 2, 3)\n"
                      "y = (np.arange(40) % 7).astype(np.int16)\n"
                      "with h5py.File(d + '/h5py-0.h5', 'w') as f:\n"
                      "    f.create_dataset('inputs', data=x)\n"
                      "    f.create_dataset('targets', data=y)\n"
                      "with h5py.File(d + '/h5py-1.h5', 'w') as f:\n"
                      "    f.create_dataset('inputs', data=x.astype('>f8') + 1000, chunks=(8, 2, 3), compression='gzip', shuffle=True)\n"
                      "    f.create_dataset('targets', data=y, chunks=(5,), compression='lzf' if 'lzf' in h5py.filters.encode else 'gzip')\n");
  auto r = testing::run({"/usr/bin/python3", script, dir}, 60);
  if (r.exit_code != 0 && r.err.find("No module named 'h5py'") != std::string::npos) GTEST_SKIP() << "no h5py";
  ASSERT_EQ(r.exit_code, 0) << r.all();
  auto set = open_set(dir);
  if (set->shards()[1].inputs.layout.find("filters") == std::string::npos) FAIL() << "expected filters";
  EXPECT_EQ(set->size(), 80);
  auto b = read(set, {79, 0, 41});
  EXPECT_FLOAT_EQ(b.inputs[0], 39 * 6 + 1000.0f);
  EXPECT_FLOAT_EQ(b.inputs[5], 39 * 6 + 5 + 1000.0f);
  EXPECT_FLOAT_EQ(b.inputs[6], 0.0f);
  EXPECT_FLOAT_EQ(b.inputs[12], 6 + 1000.0f);
  EXPECT_EQ(b.class_targets[0], 39 % 7);
  EXPECT_EQ(b.class_targets[2], 1);
}

// ---- bad inputs: each names the file, the key and what was expected ----

TEST_F(ShardSetTest, NotAnHdf5File) {
  testing::write_file(path("notes.h5"), "just text, not HDF5\n");
  auto e = error_of([&] { open_set(path("notes.h5")); });
  EXPECT_NE(e.find("data file '" + path("notes.h5") + "': is not an HDF5 file"), std::string::npos) << e;
}

TEST_F(ShardSetTest, TruncatedFile) {
  write_simple("full.h5", 500);
  const auto size = std::filesystem::file_size(path("full.h5"));
  std::filesystem::copy_file(path("full.h5"), path("cut.h5"));
  std::filesystem::resize_file(path("cut.h5"), size / 2);
  auto e = error_of([&] { open_set(path("cut.h5")); });
  EXPECT_NE(e.find("data file '" + path("cut.h5") + "'"), std::string::npos) << e;
  EXPECT_TRUE(e.find("truncated") != std::string::npos) << e;
}

TEST_F(ShardSetTest, MissingKeyAndMissingGroup) {
  write_simple("a.h5", 4);
  DataArguments a;
  a.inputs_key = "features";
  auto e = error_of([&] { open_set(path("a.h5"), a); });
  EXPECT_NE(e.find("data file '" + path("a.h5") + "', dataset 'features': not found"), std::string::npos) << e;
  a.inputs_key = "/group/x";
  e = error_of([&] { open_set(path("a.h5"), a); });
  EXPECT_NE(e.find("dataset '/group/x': not found (no '/group' in the file)"), std::string::npos) << e;
}

TEST_F(ShardSetTest, StringAndCompoundDtypesAreRefused) {
  hid_t str = H5Tcopy(H5T_C_S1);
  H5Tset_size(str, 4);
  const char text[] = "abcdefgh";
  std::vector<std::int64_t> y = {0, 1};
  write_h5(path("s.h5"), {{"inputs", str, str, {2}, text}, {"targets", H5T_STD_I64LE, H5T_NATIVE_INT64, {2}, y.data()}});
  auto e = error_of([&] { open_set(path("s.h5")); });
  EXPECT_NE(e.find("dataset 'inputs': has dtype class string; expected an integer or floating-point dtype"),
            std::string::npos) << e;
  hid_t cmp = H5Tcreate(H5T_COMPOUND, 8);
  H5Tinsert(cmp, "a", 0, H5T_NATIVE_INT32);
  H5Tinsert(cmp, "b", 4, H5T_NATIVE_FLOAT);
  std::vector<char> raw(16, 0);
  write_h5(path("c.h5"), {{"inputs", H5T_STD_I64LE, H5T_NATIVE_INT64, {2}, y.data()}, {"targets", cmp, cmp, {2}, raw.data()}});
  e = error_of([&] { open_set(path("c.h5")); });
  EXPECT_NE(e.find("dataset 'targets': has dtype class compound"), std::string::npos) << e;
  H5Tclose(str);
  H5Tclose(cmp);
}

TEST_F(ShardSetTest, LengthMismatchBetweenInputsAndTargets) {
  std::vector<float> x(10);
  std::vector<std::int64_t> y(4);
  write_h5(path("m.h5"), {{"inputs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {5, 2}, x.data()},
                          {"targets", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, y.data()}});
  auto e = error_of([&] { open_set(path("m.h5")); });
  EXPECT_NE(e.find("'inputs' has 5 samples but 'targets' has 4"), std::string::npos) << e;
}

TEST_F(ShardSetTest, ShardsMustAgreeOnShapeAndDtypeClass) {
  write_simple("a.h5", 4);
  std::vector<double> x(8);
  std::vector<std::int32_t> y(4);
  write_h5(path("b.h5"), {{"inputs", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {4, 2}, x.data()},
                          {"targets", H5T_STD_I32LE, H5T_NATIVE_INT32, {4}, y.data()}});
  auto e = error_of([&] { open_set(path("a.h5") + "," + path("b.h5")); });
  EXPECT_NE(e.find("data file '" + path("b.h5") + "', dataset 'inputs': has per-sample shape (2,) but"), std::string::npos) << e;
  std::vector<double> x3(12);
  std::vector<float> yf(4);
  write_h5(path("c.h5"), {{"inputs", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {4, 3}, x3.data()},
                          {"targets", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4}, yf.data()}});
  e = error_of([&] { open_set(path("a.h5") + "," + path("c.h5")); });
  EXPECT_NE(e.find("dataset 'targets': has dtype float32 but"), std::string::npos) << e;
}

TEST_F(ShardSetTest, EmptyAndScalarDatasets) {
  write_h5(path("e.h5"), {{"inputs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {0, 3}, nullptr},
                          {"targets", H5T_STD_I64LE, H5T_NATIVE_INT64, {0}, nullptr}});
  auto e = error_of([&] { open_set(path("e.h5")); });
  EXPECT_NE(e.find("dataset 'inputs': has no samples"), std::string::npos) << e;
  hid_t f = H5Fcreate(path("s.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t sp = H5Screate(H5S_SCALAR);
  H5Dclose(H5Dcreate2(f, "inputs", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  H5Sclose(sp);
  H5Fclose(f);
  e = error_of([&] { open_set(path("s.h5")); });
  EXPECT_NE(e.find("dataset 'inputs': is a scalar; expected samples along the first axis"), std::string::npos) << e;
}

TEST_F(ShardSetTest, SpecsThatNameNothing) {
  auto e = error_of([&] { resolve_files(dir + "/*.h5", "[data] train"); });
  EXPECT_NE(e.find("[data] train = " + dir + "/*.h5: no file matches"), std::string::npos) << e;
  e = error_of([&] { resolve_files(dir, "[data] eval"); });
  EXPECT_NE(e.find("holds no .h5/.hdf5 files"), std::string::npos) << e;
  e = error_of([&] { resolve_files(dir + "/nope.h5", "[data] eval"); });
  EXPECT_NE(e.find("'" + dir + "/nope.h5' does not exist"), std::string::npos) << e;
  write_simple("a.h5", 2);
  e = error_of([&] { resolve_files(path("a.h5") + "," + dir, "[data] train"); });
  EXPECT_NE(e.find("is listed twice"), std::string::npos) << e;
  e = error_of([&] { resolve_files(" , ", "[data] train"); });
  EXPECT_NE(e.find("[data] train is empty"), std::string::npos) << e;
}

TEST_F(ShardSetTest, BadTokenStreams) {
  std::vector<float> f(20);
  write_h5(path("f.h5"), {{"tokens", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {20}, f.data()}});
  DataArguments a;
  a.format = DataFormat::kTokens;
  a.seq_len = 4;
  auto e = error_of([&] { open_set(path("f.h5"), a); });
  EXPECT_NE(e.find("dataset 'tokens': has dtype float32; token ids must be integers"), std::string::npos) << e;
  std::vector<std::int32_t> t(20);
  write_h5(path("short.h5"), {{"tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, {4}, t.data()}});
  e = error_of([&] { open_set(path("short.h5"), a); });
  EXPECT_NE(e.find("has 4 tokens; one window needs seq_len + 1 = 5"), std::string::npos) << e;
  write_h5(path("2d.h5"), {{"tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, {4, 5}, t.data()}});
  e = error_of([&] { open_set(path("2d.h5"), a); });
  EXPECT_NE(e.find("has shape (4, 5); expected a 1-D token stream"), std::string::npos) << e;
}

TEST_F(ShardSetTest, NanInputsAreReportedWithTheSampleOnRead) {
  std::vector<float> x = {1, 2, 3, 4, NAN, 6, 7, 8};
  std::vector<std::int64_t> y = {0, 1, 0, 1};
  write_h5(path("n.h5"), {{"inputs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, x.data()},
                          {"targets", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, y.data()}});
  auto set = open_set(path("n.h5"));
  EXPECT_NO_THROW(read(set, {0, 1, 3}));
  auto e = error_of([&] { read(set, {3, 2}); });
  EXPECT_NE(e.find("data file '" + path("n.h5") + "', dataset 'inputs': sample 2 (global sample 2) holds NaN"),
            std::string::npos) << e;
  DataArguments off;
  off.check_finite = false;
  EXPECT_NO_THROW(read(set, {2}, off));
}

// The finite check rides on the copy (vector blocks of 16 floats and a scalar tail) for contiguous
// float32, and runs after the conversion for float64 and after HDF5 for chunked data, and after
// the scaling when inputs are scaled: a non-finite value anywhere in a row is found, and the
// largest finite values, denormals and -0 are not mistaken for one.
TEST_F(ShardSetTest, EveryNonFiniteValueIsFoundWhereverItSitsInARow) {
  constexpr hsize_t kRows = 6, kCols = 100;  // 6 blocks of 16 and a tail of 4
  std::vector<float> clean(kRows * kCols);
  for (std::size_t i = 0; i < clean.size(); ++i) clean[i] = static_cast<float>(i % 7) - 3.0f;
  clean[1] = std::numeric_limits<float>::max();
  clean[2] = -std::numeric_limits<float>::max();
  clean[3] = std::numeric_limits<float>::denorm_min();
  clean[4] = -0.0f;
  std::vector<std::int64_t> y(kRows, 1);
  const float bads[] = {NAN, -NAN, INFINITY, -INFINITY};
  int cases = 0;
  for (const hsize_t col : {hsize_t{0}, hsize_t{15}, hsize_t{16}, hsize_t{63}, hsize_t{95}, hsize_t{96}, hsize_t{99}}) {
    for (const float bad : bads) {
      for (const int layout : {0, 1, 2}) {  // contiguous float32, contiguous float64, chunked gzip float32
        std::vector<float> x = clean;
        x[4 * kCols + col] = bad;  // sample 4
        std::vector<double> xd(x.begin(), x.end());
        const std::string name = "nf" + std::to_string(cases++) + ".h5";
        if (layout == 1)
          write_h5(path(name), {{"inputs", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {kRows, kCols}, xd.data()},
                                {"targets", H5T_STD_I64LE, H5T_NATIVE_INT64, {kRows}, y.data()}});
        else
          write_h5(path(name), {{"inputs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {kRows, kCols}, x.data(), layout ? 2u : 0u,
                                 layout ? 1 : 0},
                                {"targets", H5T_STD_I64LE, H5T_NATIVE_INT64, {kRows}, y.data()}});
        auto set = open_set(path(name));
        EXPECT_NO_THROW(read(set, {5, 0, 3, 1, 2})) << name;
        const std::string e = error_of([&] { read(set, {5, 4, 0}); });
        const std::string want = std::string("sample 4 (global sample 4) holds ") + (std::isnan(bad) ? "NaN" : "Inf") +
                                 " at element " + std::to_string(col);
        EXPECT_NE(e.find(want), std::string::npos) << "layout " << layout << ": " << e;
      }
    }
  }
  // Scaled inputs are checked after the scaling: finite values that overflow are refused.
  write_h5(path("big.h5"), {{"inputs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {kRows, kCols}, clean.data()},
                            {"targets", H5T_STD_I64LE, H5T_NATIVE_INT64, {kRows}, y.data()}});
  auto set = open_set(path("big.h5"));
  EXPECT_NO_THROW(read(set, {0, 1, 2, 3, 4, 5}));
  DataArguments scaled;
  scaled.inputs_scale = 10.0;  // FLT_MAX x 10 is Inf
  EXPECT_NE(error_of([&] { read(set, {3, 0}, scaled); }).find("sample 0 (global sample 0) holds Inf at element 1"),
            std::string::npos);
  // Float targets are checked too.
  std::vector<float> ft(kRows, 0.5f);
  ft[2] = NAN;
  write_h5(path("ft.h5"), {{"inputs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {kRows, kCols}, clean.data()},
                           {"targets", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {kRows}, ft.data()}});
  auto fset = open_set(path("ft.h5"));
  EXPECT_NO_THROW(read(fset, {0, 1, 3}));
  EXPECT_NE(error_of([&] { read(fset, {1, 2}); }).find("dataset 'targets': sample 2 (global sample 2) holds NaN"),
            std::string::npos);
}

TEST_F(ShardSetTest, SerializeRoundTrip) {
  write_simple("a.h5", 3);
  write_simple("b.h5", 4, 3, 2, 1);
  auto set = open_set(dir);
  auto back = ShardSet::deserialize(set->serialize());
  EXPECT_EQ(back.size(), 7);
  EXPECT_EQ(back.shards()[1].file, path("b.h5"));
  EXPECT_EQ(back.shards()[1].inputs.layout, set->shards()[1].inputs.layout);
  EXPECT_EQ(back.shards()[0].inputs.raw_offset, set->shards()[0].inputs.raw_offset);
  std::int64_t local = -1;
  EXPECT_EQ(back.locate(5, &local), 1u);
  EXPECT_EQ(local, 2);
}

}  // namespace
}  // namespace hpctrain::data
