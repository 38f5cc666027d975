// Multi-rank tests of the CheckpointManager with a piece of state of its own: every entry kind
// saved and loaded back (synchronously and in the background), background equal to synchronous
// bitwise, checksums confirmed by an independent reader (the HDF5 C API and zlib), every flipped
// byte caught by verify, rotation, model-only checkpoints, ranks that disagree.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "common/h5_datasets.h"
#include "common/mpi_env.h"
#include "common/subprocess.h"
#include "hpctrain/ckpt/format.h"
#include "hpctrain/ckpt/manager.h"
#include "hpctrain/core/error.h"

namespace hpctrain::ckpt {
namespace {

namespace fs = std::filesystem;
using testing::env;

// A piece of every entry kind: a tensor that ranks split (4 MB, not a multiple of the alignment),
// a small one, an int64 scalar, an empty one, a per-rank row that differs by rank, facts and a
// document. load() checks everything against what this piece holds now.
class Toy : public Stateful {
 public:
  explicit Toy(float base, std::string key = "toy") : key_(std::move(key)) {
    big.resize(1000003);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = base + static_cast<float>(i % 977) * 0.5f;
    small = {base, base + 1, base + 2};
    counter = static_cast<std::int64_t>(base) * 1000 + 7;
  }
  std::string key() const override { return key_; }
  void save(StateWriter& w) const override {
    w.live_tensor("weights/big", DType::kFloat32, {1000003}, big.data());
    w.tensor("weights/small", DType::kFloat32, {3}, small.data());
    w.tensor("counter", DType::kInt64, {}, &counter);
    w.tensor("empty", DType::kFloat64, {0, 4}, nullptr);
    std::vector<std::uint8_t> mine(37, static_cast<std::uint8_t>(env().rank() * 3 + 1));
    w.per_rank("mine", mine);
    w.info()["base"] = static_cast<double>(small[0]);
    w.document(key_ + ".json", Json::object({{"counter", counter}}));
  }
  void load(const StateReader& r) override {
    std::vector<float> b(big.size()), s(3);
    std::int64_t c = 0;
    r.read("weights/big", DType::kFloat32, b.data());
    r.read("weights/small", DType::kFloat32, s.data());
    r.read("counter", DType::kInt64, &c);
    loaded_ok = b == big && s == small && c == counter && r.shape("empty") == std::vector<std::int64_t>{0, 4} &&
                r.per_rank("mine", env().rank()) == std::vector<std::uint8_t>(37, static_cast<std::uint8_t>(env().rank() * 3 + 1)) &&
                r.info().at("base").get<double>() == small[0] && r.document(key_ + ".json").at("counter").get<std::int64_t>() == counter;
  }
  std::vector<float> big, small;
  std::int64_t counter;
  bool loaded_ok = false;

 private:
  std::string key_;
};

std::string shared_dir(const std::string& prefix) {
  std::string d = env().rank() == 0 ? testing::temp_dir(prefix) : "";
  return env().broadcast_string(d, 0);
}

CheckpointManager::Options options(const std::string& dir, bool background, std::int64_t keep = 0,
                                   bool in_place = false) {
  CheckpointManager::Options o;
  o.output_dir = dir;
  o.background = background;
  o.in_place = in_place;
  o.save_total_limit = keep;
  o.timeout_seconds = 120;
  return o;
}

using testing::read_datasets;

TEST(CheckpointManager, SavesAndLoadsEveryEntryInTheBackgroundAndSynchronously) {
  const std::string dir = shared_dir("hpct-mgr");
  for (bool background : {false, true}) {
    Toy saved(background ? 3.f : 1.f);
    CheckpointManager m(env(), options(dir, background));
    m.add(saved, CheckpointManager::Scope::kTraining);
    m.save({background ? 2 : 1, false, false, ""});
    // Training may change the state at once: the checkpoint holds the values of the save.
    std::fill(saved.big.begin(), saved.big.end(), -1.f);
    m.wait();
    EXPECT_FALSE(m.in_flight());
    EXPECT_EQ(m.last().background, background && env().thread_level() == MPI_THREAD_MULTIPLE);
    // A piece holding the saved values finds them all; one holding others does not.
    Toy same(background ? 3.f : 1.f), other(9.f);
    for (Toy* loaded : {&same, &other}) {
      CheckpointManager reader(env(), options(dir, false));
      reader.add(*loaded, CheckpointManager::Scope::kTraining);
      reader.load(m.dir_for(background ? 2 : 1), false);
    }
    EXPECT_TRUE(same.loaded_ok) << (background ? "background" : "synchronous");
    EXPECT_FALSE(other.loaded_ok);
  }
  if (env().rank() == 0) {
    std::string latest;
    std::ifstream(dir + "/latest") >> latest;
    EXPECT_EQ(latest, "checkpoint-2");
    EXPECT_FALSE(fs::exists(dir + "/checkpoint-2.partial"));
  }
}

TEST(CheckpointManager, BackgroundCopiedAndInPlaceSavesAreBitwiseEqual) {
  const std::string sync_dir = shared_dir("hpct-sync"), bg_dir = shared_dir("hpct-bg"), place_dir = shared_dir("hpct-place");
  Toy piece(5.f);
  struct Mode {
    std::string dir;
    bool background, in_place;
  };
  for (const Mode& mode : {Mode{sync_dir, false, false}, Mode{bg_dir, true, false}, Mode{place_dir, false, true}}) {
    CheckpointManager m(env(), options(mode.dir, mode.background, 0, mode.in_place));
    m.add(piece, CheckpointManager::Scope::kTraining);
    m.save({10, false, false, ""});
    m.wait();
  }
  if (env().rank() != 0) return;
  auto a = read_datasets(sync_dir + "/checkpoint-10/state.h5");
  ASSERT_EQ(a.size(), 6u);  // 4 tensors, 1 per-rank entry and /meta
  for (const std::string& other : {bg_dir, place_dir}) {
    auto b = read_datasets(other + "/checkpoint-10/state.h5");
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [name, d] : a) {
      ASSERT_TRUE(b.count(name)) << name;
      EXPECT_TRUE(d.bytes == b[name].bytes) << other << " " << name;
      EXPECT_EQ(d.crc, b[name].crc) << other << " " << name;
    }
    EXPECT_EQ(testing::read_file(sync_dir + "/checkpoint-10/toy.json"), testing::read_file(other + "/checkpoint-10/toy.json"));
  }
}

TEST(CheckpointManager, AnIndependentReaderConfirmsEveryChecksum) {
  const std::string dir = shared_dir("hpct-crc");
  Toy piece(2.f);
  CheckpointManager m(env(), options(dir, true));
  m.add(piece, CheckpointManager::Scope::kTraining);
  m.save({3, false, true, ""});
  if (env().rank() != 0) return;
  const auto all = read_datasets(dir + "/checkpoint-3/state.h5");
  for (const auto& [name, d] : all) {
    if (name == "/toy/mine") {
      ASSERT_EQ(d.crc.size(), static_cast<std::size_t>(env().size()));
      const std::size_t row = d.bytes.size() / d.crc.size();
      for (std::size_t r = 0; r < d.crc.size(); ++r) {
        EXPECT_EQ(d.bytes[r * row], static_cast<char>(r * 3 + 1)) << "row " << r;
        EXPECT_EQ(::crc32(0, reinterpret_cast<const Bytef*>(d.bytes.data() + r * row), static_cast<uInt>(row)), d.crc[r]);
      }
    } else {
      ASSERT_EQ(d.crc.size(), 1u) << name;
      EXPECT_EQ(::crc32(0, reinterpret_cast<const Bytef*>(d.bytes.data()), static_cast<uInt>(d.bytes.size())), d.crc[0]) << name;
    }
  }
  // The tensor the ranks wrote in shares holds the saved values, and starts on the alignment.
  const auto& big = all.at("/toy/weights/big");
  ASSERT_EQ(big.bytes.size(), piece.big.size() * 4);
  EXPECT_EQ(std::memcmp(big.bytes.data(), piece.big.data(), big.bytes.size()), 0);
  EXPECT_EQ(big.offset % kAlignment, 0u);
  // The document's checksum in the manifest is its file's.
  const std::string doc = testing::read_file(dir + "/checkpoint-3/toy.json");
  FileReader r(dir + "/checkpoint-3");
  EXPECT_EQ(r.pieces().at("toy").documents.at(0).crc32,
            ::crc32(0, reinterpret_cast<const Bytef*>(doc.data()), static_cast<uInt>(doc.size())));
}

// Sharded state (ZeRO-1): each rank holds an uneven part of a vector (rank 1 none on 3 ranks and
// more), saved as its bytes of one dataset, beside the whole vector saved the usual way.
class Parts : public Stateful {
 public:
  Parts() : whole(1001) {
    for (std::size_t i = 0; i < whole.size(); ++i) whole[i] = 0.25f * static_cast<float>(i) - 7.0f;
    const int n = env().size();
    bounds.push_back(0);
    for (int r = 1; r < n; ++r) bounds.push_back(r == 2 ? bounds.back() : std::min<std::size_t>(1001, 300 * r + 17));
    bounds.push_back(1001);
    for (auto& b : bounds) b *= sizeof(float);
  }
  std::string key() const override { return "parts"; }
  void save(StateWriter& w) const override {
    const std::size_t lo = bounds[static_cast<std::size_t>(env().rank())];
    w.sharded_tensor("sharded", DType::kFloat32, {7, 143}, bounds, reinterpret_cast<const char*>(whole.data()) + lo, true);
    w.tensor("whole", DType::kFloat32, {7, 143}, whole.data());
  }
  void load(const StateReader& r) override {
    std::vector<float> a(1001), b(1001);
    r.read("sharded", DType::kFloat32, a.data());
    r.read("whole", DType::kFloat32, b.data());
    loaded_ok = a == whole && b == whole;
  }
  std::vector<float> whole;
  std::vector<std::size_t> bounds;
  bool loaded_ok = false;
};

TEST(CheckpointManager, AShardedTensorLandsInTheDatasetAWholeOneWouldFill) {
  for (const auto& [background, in_place] : {std::make_pair(false, false), std::make_pair(true, false), std::make_pair(false, true)}) {
    const std::string dir = shared_dir("hpct-parts");
    Parts piece;
    CheckpointManager m(env(), options(dir, background, 0, in_place));
    m.add(piece, CheckpointManager::Scope::kTraining);
    m.save({4, false, true, ""});
    m.wait();
    Parts back;
    CheckpointManager reader(env(), options(dir, false));
    reader.add(back, CheckpointManager::Scope::kTraining);
    reader.load(m.dir_for(4), false);
    EXPECT_TRUE(back.loaded_ok) << background << in_place;
    if (env().rank() == 0) {
      EXPECT_EQ(verify(m.dir_for(4)), "");
      // The HDF5 C API and zlib, not our reader: the same bytes and checksum in both datasets.
      const auto all = read_datasets(m.dir_for(4) + "/state.h5");
      const auto& a = all.at("/parts/sharded");
      const auto& b = all.at("/parts/whole");
      EXPECT_TRUE(a.bytes == b.bytes);
      ASSERT_EQ(a.crc.size(), 1u);
      EXPECT_EQ(::crc32(0, reinterpret_cast<const Bytef*>(a.bytes.data()), static_cast<uInt>(a.bytes.size())), a.crc[0]);
      EXPECT_EQ(a.crc, b.crc);
    }
  }
}

TEST(CheckpointManager, AFlippedByteAnywhereIsCaughtByVerify) {
  const std::string dir = shared_dir("hpct-flip");
  Toy piece(4.f);
  CheckpointManager m(env(), options(dir, false));
  m.add(piece, CheckpointManager::Scope::kTraining);
  m.save({1, false, true, ""});
  if (env().rank() != 0) return;
  const std::string good = dir + "/checkpoint-1";
  ASSERT_EQ(verify(good), "");
  int flipped = 0;
  for (const auto& [name, d] : read_datasets(good + "/state.h5")) {
    if (d.bytes.empty()) continue;
    const std::string copy = dir + "/flip" + std::to_string(flipped++);
    fs::copy(good, copy);
    testing::flip_byte(copy + "/state.h5", static_cast<long long>(d.offset + d.bytes.size() / 2), 0x10);
    const std::string why = verify(copy);
    EXPECT_NE(why.find(name == "/meta" ? "/meta fails its checksum" : name), std::string::npos) << name << ": " << why;
    EXPECT_NE(why.find("fails its checksum"), std::string::npos) << name << ": " << why;
  }
  EXPECT_EQ(flipped, 5);  // big, small, counter, mine, meta (the empty tensor has no bytes)
  // A document changed after the save.
  fs::copy(good, dir + "/doc");
  testing::write_file(dir + "/doc/toy.json", "{\"counter\": 1}\n");
  EXPECT_NE(verify(dir + "/doc").find("toy.json fails its checksum"), std::string::npos);
  // A truncated file.
  fs::copy(good, dir + "/short");
  fs::resize_file(dir + "/short/state.h5", fs::file_size(dir + "/short/state.h5") / 2);
  EXPECT_NE(verify(dir + "/short"), "");
}

TEST(CheckpointManager, RotationKeepsTheNewestAndTheProtectedOne) {
  const std::string dir = shared_dir("hpct-rot");
  Toy piece(1.f);
  CheckpointManager m(env(), options(dir, true, /*keep=*/2));
  m.add(piece, CheckpointManager::Scope::kTraining);
  for (int step = 1; step <= 5; ++step) m.save({step, false, false, m.dir_for(2)});
  m.wait();
  if (env().rank() != 0) return;
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir)) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"checkpoint-2", "checkpoint-4", "checkpoint-5", "latest"}));
}

TEST(CheckpointManager, FindSkipsDamagedAndModelOnlyCheckpointsAndIgnoresPartialOnes) {
  const std::string dir = shared_dir("hpct-find");
  Toy model(1.f, "model"), rest(2.f);
  CheckpointManager m(env(), options(dir, true));
  m.add(model, CheckpointManager::Scope::kModel);
  m.add(rest, CheckpointManager::Scope::kTraining);
  m.save({1, false, false, ""});
  m.save({2, /*model_only=*/true, true, ""});
  if (env().rank() == 0) {
    fs::create_directories(dir + "/checkpoint-9.partial");
    testing::write_file(dir + "/checkpoint-9.partial/state.h5", "half");
  }
  MPI_Barrier(env().comm());
  EXPECT_EQ(m.find("auto", /*need_training_state=*/true).value_or(""), m.dir_for(1));
  EXPECT_EQ(m.find("auto", /*need_training_state=*/false).value_or(""), m.dir_for(2));
  EXPECT_FALSE(m.find("none", true).has_value());
  try {
    m.find(m.dir_for(2), true);
    ADD_FAILURE() << "a model-only checkpoint was accepted for training";
  } catch (const CollectiveError& e) {
    EXPECT_NE(std::string(e.what()).find("save_only_model=true"), std::string::npos) << e.what();
  }
  // A model-only load of a full checkpoint reads only the model.
  Toy fresh(0.f, "model");
  fresh.big = model.big, fresh.small = model.small, fresh.counter = model.counter;
  CheckpointManager reader(env(), options(dir, false));
  reader.add(fresh, CheckpointManager::Scope::kModel);
  reader.load(m.dir_for(2), /*model_only=*/true);
  EXPECT_TRUE(fresh.loaded_ok);
}

TEST(CheckpointManager, RanksThatSaveDifferentStateAreRefusedOnEveryRank) {
  if (env().size() < 2) GTEST_SKIP() << "needs two ranks";
  const std::string dir = shared_dir("hpct-disagree");
  Toy piece(1.f), extra(2.f, "extra");
  CheckpointManager m(env(), options(dir, true));
  m.add(piece, CheckpointManager::Scope::kTraining);
  if (env().rank() == 1) m.add(extra, CheckpointManager::Scope::kTraining);
  m.save({1, false, false, ""});
  try {
    m.wait();
    ADD_FAILURE() << "the save succeeded";
  } catch (const CollectiveError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1 saved other state than rank 0"), std::string::npos) << e.what();
  }
  // A piece that fails to save on one rank fails the save on every rank, none waits.
  class Broken : public Stateful {
   public:
    std::string key() const override { return "broken"; }
    void save(StateWriter&) const override {
      if (env().rank() == env().size() - 1) throw Error("the device is gone");
    }
    void load(const StateReader&) override {}
  } broken;
  CheckpointManager m2(env(), options(dir, true));
  m2.add(broken, CheckpointManager::Scope::kTraining);
  m2.save({2, false, false, ""});
  try {
    m2.wait();
    ADD_FAILURE() << "the save succeeded";
  } catch (const CollectiveError& e) {
    EXPECT_NE(std::string(e.what()).find("rank " + std::to_string(env().size() - 1) + " on "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("the device is gone"), std::string::npos) << e.what();
  }
  if (env().rank() == 0) {
    EXPECT_FALSE(fs::exists(dir + "/checkpoint-1"));
    EXPECT_FALSE(fs::exists(dir + "/checkpoint-1.partial"));
    EXPECT_FALSE(fs::exists(dir + "/latest"));
  }
}

}  // namespace
}  // namespace hpctrain::ckpt
