// Unit tests of the checkpoint pieces that need no second process: checksums, the ownership plan
// of a snapshot, Young/Daly intervals, the elastic rule, and a reader that refuses what is not a
// checkpoint it can trust (files written here with the HDF5 C API).
#include <gtest/gtest.h>
#include <hdf5.h>
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <numeric>

#include "ckpt/snapshot.h"
#include "common/subprocess.h"
#include "hpctrain/ckpt/format.h"
#include "hpctrain/ckpt/interval.h"
#include "hpctrain/ckpt/manager.h"
#include "hpctrain/core/error.h"

namespace hpctrain::ckpt {
namespace {

namespace fs = std::filesystem;

TEST(Checksum, CombiningTheChecksumsOfPartsGivesTheChecksumOfTheWhole) {
  std::vector<unsigned char> data(3 * kAlignment + 12345);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i * 2654435761u >> 13);
  const std::uint32_t whole = static_cast<std::uint32_t>(::crc32(0, data.data(), static_cast<uInt>(data.size())));
  EXPECT_EQ(crc32(data.data(), data.size()), whole);
  const std::size_t cut = kAlignment;
  const std::uint32_t a = crc32(data.data(), cut), b = crc32(data.data() + cut, data.size() - cut);
  EXPECT_EQ(crc32_combine(a, b, data.size() - cut), whole);
  EXPECT_EQ(crc32(data.data() + cut, data.size() - cut, a), whole);
}

TEST(Snapshot, RanksShareLargeTensorsAtAlignedCutsAndSmallOnesWhole) {
  const int world = 3;
  std::vector<float> large(2 * kAlignment / 4 + 100), small(1000), tiny(1);
  std::vector<std::size_t> written(world, 0);
  for (int rank = 0; rank < world; ++rank) {
    Arena arena;
    Snapshot s(rank, world, arena);
    s.begin_piece("p");
    s.tensor("large", DType::kFloat32, {static_cast<std::int64_t>(large.size())}, large.data());
    s.tensor("small", DType::kFloat32, {1000}, small.data());
    s.tensor("tiny", DType::kFloat32, {1}, tiny.data());
    s.tensor("other", DType::kFloat32, {1000}, small.data());
    const auto& t = s.tensors();
    // The large tensor: consecutive ranges that cover it once, cut at multiples of the alignment.
    std::size_t next = 0;
    for (int r = 0; r < world; ++r) {
      const auto [lo, hi] = s.range(t[0], r);
      EXPECT_EQ(lo, next);
      EXPECT_TRUE(lo % kAlignment == 0 || lo == t[0].bytes);
      next = hi;
    }
    EXPECT_EQ(next, t[0].bytes);
    // Small tensors go whole to the least loaded rank: here rank 2, whose share of the large one
    // is its last 400 bytes.
    EXPECT_EQ(t[1].owner, 2);
    EXPECT_EQ(t[2].owner, 2);
    EXPECT_EQ(t[3].owner, 2);
    written[static_cast<std::size_t>(rank)] = s.bytes_mine();
    EXPECT_EQ(s.bytes_total(), (large.size() + 2001) * 4);
  }
  EXPECT_EQ(std::accumulate(written.begin(), written.end(), std::size_t{0}), (large.size() + 2001) * 4);
  // Without a large tensor, equal small ones go round the ranks.
  Arena arena;
  Snapshot s(0, world, arena);
  s.begin_piece("p");
  for (int i = 0; i < 4; ++i) s.tensor("s" + std::to_string(i), DType::kFloat32, {1000}, small.data());
  EXPECT_EQ(s.tensors()[0].owner, 0);
  EXPECT_EQ(s.tensors()[1].owner, 1);
  EXPECT_EQ(s.tensors()[2].owner, 2);
  EXPECT_EQ(s.tensors()[3].owner, 0);
  EXPECT_EQ(s.bytes_mine(), 8000u);
}

TEST(Snapshot, AShardedTensorIsWrittenByTheRanksHoldingItsPartsAndItsBoundsAreInTheLayout) {
  const int world = 3;
  std::vector<float> part(250, 1.5f);  // 1000 bytes: as large as any rank's part
  const std::vector<std::size_t> bounds = {0, 400, 400, 1000};  // rank 1 holds nothing of it
  std::uint64_t hash = 0;
  for (int rank = 0; rank < world; ++rank) {
    Arena arena;
    Snapshot s(rank, world, arena, /*copy_live=*/false);
    s.begin_piece("optimizer");
    s.sharded_tensor("w/exp_avg", DType::kFloat32, {10, 25}, bounds, part.data(), /*live=*/true);
    const auto& t = s.tensors()[0];
    EXPECT_EQ(t.owner, -2);
    EXPECT_EQ(s.range(t, rank), std::make_pair(bounds[rank], bounds[rank + 1]));
    EXPECT_EQ(s.bytes_mine(), bounds[rank + 1] - bounds[rank]);
    // In place when live and the save is synchronous: no copy of the part.
    if (rank != 1) EXPECT_EQ(t.mine, reinterpret_cast<const char*>(part.data()));
    if (rank == 0) hash = s.layout_hash();
    else EXPECT_EQ(s.layout_hash(), hash);  // the ranks agree on the plan
  }
  // Other bounds are another layout, which the ranks' comparison at a save refuses.
  Arena arena;
  Snapshot other(0, world, arena);
  other.begin_piece("optimizer");
  other.sharded_tensor("w/exp_avg", DType::kFloat32, {10, 25}, {0, 500, 500, 1000}, part.data(), true);
  EXPECT_NE(other.layout_hash(), hash);
  // Bounds that do not run from 0 to the tensor's size in nondecreasing steps are refused.
  for (const auto& bad : std::vector<std::vector<std::size_t>>{{0, 400, 1000}, {0, 600, 400, 1000}, {0, 400, 400, 999}, {4, 400, 400, 1000}})
    EXPECT_THROW(other.sharded_tensor("x", DType::kFloat32, {10, 25}, bad, part.data(), true), Error);
}

TEST(Snapshot, RefusesBadNamesAndTwoPiecesWithOneKey) {
  Arena arena;
  Snapshot s(0, 1, arena);
  float x = 0;
  EXPECT_THROW(s.tensor("a", DType::kFloat32, {1}, &x), Error);  // outside a piece
  s.begin_piece("p");
  EXPECT_THROW(s.tensor("", DType::kFloat32, {1}, &x), Error);
  EXPECT_THROW(s.tensor("a/../b", DType::kFloat32, {1}, &x), Error);
  EXPECT_THROW(s.tensor("a//b", DType::kFloat32, {1}, &x), Error);
  EXPECT_THROW(s.document("../x.json", Json::object()), Error);
  EXPECT_THROW(s.begin_piece("p"), Error);
}

TEST(AutoInterval, FollowsYoungDalyAndTheMeasuredCosts) {
  EXPECT_DOUBLE_EQ(young_daly_seconds(2, 3600), std::sqrt(2.0 * 2 * 3600));
  AutoInterval a(3600);
  a.estimate(200'000'000, 1, /*background=*/false);  // 200 MB at 200 MB/s: 1 s
  EXPECT_EQ(a.steps(), 0);                            // no step timed yet
  a.step(0.5, false);
  EXPECT_EQ(a.steps(), static_cast<std::int64_t>(std::ceil(std::sqrt(2.0 * 1 * 3600) / 0.5)));
  EXPECT_FALSE(a.take_change());  // the first steps are slow: no line before 20 are timed
  for (int i = 0; i < 19; ++i) a.step(0.5, false);
  EXPECT_TRUE(a.take_change());
  EXPECT_FALSE(a.take_change());
  // A measured save of 4 s doubles the interval.
  SaveStats s;
  s.blocked_seconds = 4;
  a.saved(s);
  EXPECT_EQ(a.steps(), static_cast<std::int64_t>(std::ceil(std::sqrt(2.0 * 4 * 3600) / 0.5)));
  EXPECT_TRUE(a.take_change());
  // A background save costs what it blocked plus how much slower the steps ran meanwhile; the
  // next save does not start before this one could finish.
  AutoInterval b(3600);
  b.step(1.0, false);
  for (int i = 0; i < 10; ++i) b.step(1.2, true);
  SaveStats bg;
  bg.background = true;
  bg.blocked_seconds = 0.1;
  bg.copy_seconds = 0.1;
  bg.write_seconds = 500;
  b.saved(bg);
  EXPECT_NEAR(b.cost_seconds(), 0.1 + (1.2 - 1.0) * 10, 1e-9);
  EXPECT_GE(b.steps(), 750);
  EXPECT_NE(b.describe().find("steps"), std::string::npos);
}

TEST(Elastic, KeepsTheGlobalBatchOrNamesThePerDeviceSizesThatWould) {
  EXPECT_EQ(elastic_accumulation(64, 4, 16, 2, "x"), 2);
  EXPECT_EQ(elastic_accumulation(64, 2, 8, 8, "x"), 1);
  try {
    elastic_accumulation(64, 4, 24, 2, "checkpoint 'c'");
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("per_device_train_batch_size must divide it evenly: one of 1, 2, 4, 8, 16, 32"),
              std::string::npos)
        << e.what();
  }
}

TEST(Rotation, KeepsTheNewestUpToTheCommittedOneAndLeavesLaterOnesAlone) {
  const std::string out = testing::temp_dir("hpct-rotate");
  for (int step : {10, 20, 30, 50, 100}) fs::create_directories(out + "/checkpoint-" + std::to_string(step));
  fs::create_directories(out + "/checkpoint-99999999999999999999");  // not a step: left alone
  // Just committed: 50 (this run resumed from 30; 100 is an earlier run's). Keep 2, protect 10.
  rotate(out, 2, 50, out + "/checkpoint-10");
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(out)) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"checkpoint-10", "checkpoint-100", "checkpoint-30", "checkpoint-50",
                                            "checkpoint-99999999999999999999"}));
}

TEST(Latest, NamesOnlyACheckpointDirectoryOfItsOwnOutputDir) {
  const std::string out = testing::temp_dir("hpct-latest"), other = testing::temp_dir("hpct-latest-other");
  fs::create_directories(out + "/checkpoint-8");
  fs::create_directories(other + "/checkpoint-9");
  fs::create_directory_symlink(other + "/checkpoint-9", out + "/checkpoint-9");
  auto names = [&](const std::string& text, std::string* name = nullptr) {
    testing::write_file(out + "/latest", text);
    std::string n;
    const bool ok = latest_checkpoint(out, n);
    if (name) *name = n;
    return ok;
  };
  std::string name;
  EXPECT_TRUE(names("checkpoint-8\n", &name));
  EXPECT_EQ(name, "checkpoint-8");
  EXPECT_TRUE(names("checkpoint-12\n")) << "absent: the caller finds that and falls back";
  EXPECT_FALSE(names(other + "/checkpoint-9\n", &name));
  EXPECT_EQ(name, other + "/checkpoint-9") << "what it names, for the warning";
  EXPECT_FALSE(names("../checkpoint-8"));
  EXPECT_FALSE(names("checkpoint-9")) << "a link out of the output_dir";
  EXPECT_FALSE(names("checkpoint-8/../checkpoint-8"));
  EXPECT_FALSE(names("state.h5"));
  EXPECT_FALSE(names("", &name));
  EXPECT_EQ(name, "");
  EXPECT_FALSE(names(std::string(1 << 20, 'a'), &name));
  EXPECT_EQ(name.size(), 4096u) << "read up to 4 KiB";
}

// A file with /meta written by the HDF5 C API, as a damaged or foreign checkpoint would be.
void write_meta(const std::string& dir, const std::string& text, bool good_crc) {
  fs::create_directories(dir);
  hid_t f = H5Fcreate((dir + "/state.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t n = text.size();
  hid_t space = H5Screate_simple(1, &n, nullptr);
  hid_t d = H5Dcreate2(f, "/meta", H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, text.data());
  std::uint32_t c = static_cast<std::uint32_t>(::crc32(0, reinterpret_cast<const Bytef*>(text.data()), static_cast<uInt>(n)));
  if (!good_crc) c ^= 1;
  hid_t as = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(d, "crc32", H5T_STD_U32LE, as, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_UINT32, &c);
  H5Aclose(a);
  H5Sclose(as);
  H5Dclose(d);
  H5Sclose(space);
  H5Fclose(f);
}

TEST(FileReader, ReadsPerRankEntriesOfTwentyThousandRanks) {
  // A crc32 per row: 80 kB of attribute, past HDF5's compact limit.
  const std::string dir = testing::temp_dir("hpct-wide");
  Container c;
  c.world = 20000;
  c.per_rank.push_back({"/rng/cpu", 3, {}});
  for (int r = 0; r < c.world; ++r)
    for (int k = 0; k < 3; ++k) c.per_rank[0].rows.push_back(static_cast<std::uint8_t>(r * 7 + k));
  c.meta = json::parse(R"({"format_version": 2, "world_size": 20000, "global_step": 1, "model_only": false,
      "pieces": {"rng": {"info": {}, "tensors": [], "per_rank": [{"name": "cpu", "bytes": 3}], "documents": []}}})", "meta");
  create_container(dir + "/state.h5", c);
  EXPECT_EQ(verify(dir), "");
  FileReader r(dir);
  EXPECT_EQ(r.piece("rng")->per_rank("cpu", 19999), (std::vector<std::uint8_t>{
                                                         static_cast<std::uint8_t>(19999 * 7), static_cast<std::uint8_t>(19999 * 7 + 1),
                                                         static_cast<std::uint8_t>(19999 * 7 + 2)}));
}

TEST(FileReader, RefusesWhatIsNotACheckpointItCanTrust) {
  const std::string root = testing::temp_dir("hpct-reader");
  auto why = [](const std::string& dir) { return verify(dir); };
  EXPECT_NE(why(root + "/none").find("is not a directory"), std::string::npos);
  fs::create_directories(root + "/empty");
  EXPECT_NE(why(root + "/empty").find("has no state.h5"), std::string::npos);
  fs::create_directories(root + "/text");
  testing::write_file(root + "/text/state.h5", "not hdf5");
  EXPECT_NE(why(root + "/text").find("cannot be opened"), std::string::npos);
  const std::string good = R"({"format_version": 2, "world_size": 1, "global_step": 3, "model_only": false, "pieces": {}})";
  write_meta(root + "/ok", good, true);
  EXPECT_EQ(why(root + "/ok"), "");
  write_meta(root + "/crc", good, false);
  EXPECT_NE(why(root + "/crc").find("/meta fails its checksum"), std::string::npos);
  write_meta(root + "/v1", R"({"format_version": 1, "world_size": 1, "global_step": 3, "model_only": false, "pieces": {}})", true);
  EXPECT_NE(why(root + "/v1").find("has format version 1; this hpctrain reads version 2"), std::string::npos);
  write_meta(root + "/world", R"({"format_version": 2, "world_size": -4, "global_step": 3, "model_only": false, "pieces": {}})", true);
  EXPECT_NE(why(root + "/world").find("'world_size' is -4"), std::string::npos);
  // The manifest names a tensor the file does not have.
  write_meta(root + "/lack", R"({"format_version": 2, "world_size": 1, "global_step": 3, "model_only": false,
      "pieces": {"model": {"info": {}, "tensors": [{"name": "w", "dtype": "float32", "shape": [2]}], "per_rank": [],
      "documents": []}}})", true);
  EXPECT_NE(why(root + "/lack").find("lacks /model/w"), std::string::npos);
  write_meta(root + "/dots", R"({"format_version": 2, "world_size": 1, "global_step": 3, "model_only": false,
      "pieces": {"model": {"info": {}, "tensors": [{"name": "../w", "dtype": "float32", "shape": [2]}], "per_rank": [],
      "documents": []}}})", true);
  EXPECT_NE(why(root + "/dots").find("not a valid checkpoint entry name"), std::string::npos);
  write_meta(root + "/doc", R"({"format_version": 2, "world_size": 1, "global_step": 3, "model_only": false,
      "pieces": {"s": {"info": {}, "tensors": [], "per_rank": [], "documents": [{"file": "/etc/passwd", "crc32": 1, "bytes": 3}]}}})",
             true);
  EXPECT_NE(why(root + "/doc").find("is not a plain file name"), std::string::npos);
  // Meta data nested without end (with a valid checksum) is refused, not followed down the stack.
  write_meta(root + "/deep", std::string(100000, '['), true);
  EXPECT_NE(why(root + "/deep").find("nested deeper than 256 levels"), std::string::npos);
  // A tensor the manifest declares huge but whose storage the file does not hold.
  {
    const std::string d = root + "/huge";
    write_meta(d, R"({"format_version": 2, "world_size": 1, "global_step": 3, "model_only": false,
        "pieces": {"m": {"info": {}, "tensors": [{"name": "w", "dtype": "uint8", "shape": [1, 3000000000]}],
        "per_rank": [], "documents": []}}})", true);
    hid_t f = H5Fopen((d + "/state.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hsize_t dims[2] = {1, 3000000000ULL};
    hid_t space = H5Screate_simple(2, dims, nullptr);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(f, "/m/w", H5T_STD_U8LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    std::uint32_t c = 0;
    hid_t as = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(ds, "crc32", H5T_STD_U32LE, as, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_UINT32, &c);
    H5Aclose(a), H5Sclose(as), H5Dclose(ds), H5Pclose(lcpl), H5Sclose(space), H5Fclose(f);
    EXPECT_NE(why(d).find("/m/w has no complete storage in state.h5"), std::string::npos) << why(d);
  }
}

}  // namespace
}  // namespace hpctrain::ckpt
