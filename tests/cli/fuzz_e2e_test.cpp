// Fuzzing with the real binaries, fixed seeds: damaged checkpoints (state.h5, its meta data,
// trainer_state.json, latest, the directory) and damaged data shards (contiguous and gzip, written
// by h5py). Every case runs verify or inspect and then a real resume or training run, and ends in
// one of: a clean error (a nonzero exit code of ours and a message naming the file), a recovery
// (`auto` passed over the damaged checkpoint to an older one), or accepted (the damage was in
// bytes nothing reads, or made other valid values, and the run went on). A crash (a signal), a
// hang (past the time limit), a checkpoint that verifies but does not load, or one that does not
// verify but loads fails the test. Each test prints its counts.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>

#include "cli/e2e_data.h"
#include "common/subprocess.h"
#include "hpctrain/core/error.h"
#include "hpctrain/core/json.h"

namespace hpctrain {
namespace {

namespace fs = std::filesystem;
using testing::run;
using testing::RunResult;

// The outcome counts of one fuzz test; crashes, hangs and broken promises are its failures.
struct Tally {
  std::string kind;
  int cases = 0, clean = 0, recovered = 0, accepted = 0, refused_as_other_run = 0, crashes = 0, hangs = 0, broken = 0;
  std::vector<std::string> failures;

  // A crash or hang of any command of a case; true when it was one.
  bool bad_end(const std::string& name, const std::string& what, const RunResult& r) {
    if (r.timed_out) {
      ++hangs;
      failures.push_back(name + ": " + what + " hung (" + std::to_string(r.seconds) + " s)\n" + r.all().substr(0, 2000));
      return true;
    }
    // A signal, or a sanitizer's report (tools/sanitize/run.sh sets their exit codes to 97-99).
    if (r.exit_code < 0 || r.exit_code >= 128 || r.err.find("Sanitizer") != std::string::npos) {
      ++crashes;
      failures.push_back(name + ": " + what + " crashed (exit " + std::to_string(r.exit_code) + ")\n" + r.all().substr(0, 2000));
      return true;
    }
    return false;
  }
  void fail(const std::string& name, const std::string& why, const RunResult& r) {
    ++broken;
    failures.push_back(name + ": " + why + "\n" + r.all().substr(0, 3000));
  }
  void report() const {
    std::cout << kind << " fuzz: " << cases << " cases: " << clean << " clean errors, " << recovered << " recoveries, "
              << accepted << " accepted, " << refused_as_other_run << " refused as another run's, " << crashes
              << " crashes, " << hangs << " hangs, " << broken << " broken promises\n";
    for (const auto& f : failures) ADD_FAILURE() << f;
  }
};

std::uint32_t crc(const std::string& s) {
  return static_cast<std::uint32_t>(::crc32(0, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size())));
}

// ---- an independent writer of state.h5's meta data (the HDF5 C API and zlib) ----

std::string read_meta(const std::string& file) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  EXPECT_GE(f, 0) << file;
  const hid_t ds = H5Dopen2(f, "/meta", H5P_DEFAULT);
  const hid_t space = H5Dget_space(ds);
  std::string text(static_cast<std::size_t>(H5Sget_simple_extent_npoints(space)), '\0');
  EXPECT_GE(H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, text.data()), 0);
  H5Sclose(space);
  H5Dclose(ds);
  H5Fclose(f);
  return text;
}

// Replaces /meta with `text` and its correct crc32: damage the checksum cannot see.
void write_meta(const std::string& file, const std::string& text) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0) << file;
  ASSERT_GE(H5Ldelete(f, "/meta", H5P_DEFAULT), 0);
  const hsize_t n = text.size();
  const hid_t space = H5Screate_simple(1, &n, nullptr);
  const hid_t ds = H5Dcreate2(f, "/meta", H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, text.data()), 0);
  const hid_t scalar = H5Screate(H5S_SCALAR);
  const hid_t attr = H5Acreate2(ds, "crc32", H5T_STD_U32LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
  const std::uint32_t c = crc(text);
  ASSERT_GE(H5Awrite(attr, H5T_NATIVE_UINT32, &c), 0);
  H5Aclose(attr);
  H5Sclose(scalar);
  H5Dclose(ds);
  H5Sclose(space);
  ASSERT_GE(H5Fclose(f), 0);
}

// Replaces a text in /meta (the first occurrence; the case is void when there is none).
void edit_meta(const std::string& file, const std::string& from, const std::string& to) {
  std::string meta = read_meta(file);
  const auto at = meta.find(from);
  ASSERT_NE(at, std::string::npos) << "'" << from << "' is not in the meta data: " << meta;
  write_meta(file, meta.replace(at, from.size(), to));
}

// Replaces trainer_state.json with `text` and updates its size and crc32 in the manifest.
void replace_document(const std::string& ckpt, const std::string& text) {
  const std::string path = ckpt + "/trainer_state.json";
  const std::string old = testing::read_file(path);
  testing::write_file(path, text);
  const std::string a = "\"crc32\":" + std::to_string(crc(old)) + ",\"bytes\":" + std::to_string(old.size());
  const std::string b = "\"crc32\":" + std::to_string(crc(text)) + ",\"bytes\":" + std::to_string(text.size());
  edit_meta(ckpt + "/state.h5", a, b);
}

void overwrite(const std::string& path, long long offset, const std::string& bytes) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good()) << path;
  f.seekp(offset);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

void copy_tree(const std::string& from, const std::string& to) {
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
}

// ---- checkpoints ----

struct Case {
  std::string name;
  std::function<void(const std::string& out, const std::string& ckpt)> damage;
  bool auto_only = false;  ///< damage to latest or the directory's links: only `auto` reads them
};

// The run the checkpoints come from: an MLP on 4 classes, 2 ranks, a checkpoint at steps 4 and 8.
std::vector<std::string> run_args(const std::string& data, const std::string& out) {
  return {"--config", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/quickstart.ini", "--output_dir", out, "--data.train",
          data + "/train", "--data.eval", data + "/eval", "--eval_strategy", "no", "--metric_for_best_model", "",
          "--model.hidden_sizes", "32", "--logging_steps", "4", "--save_total_limit", "0", "--per_device_train_batch_size", "16"};
}

TEST(CheckpointFuzz, EveryDamagedCheckpointIsRefusedOrPassedOverAndNeverCrashes) {
  const std::string root = testing::temp_dir("hpct-ckpt-fuzz");
  const std::string data = root + "/data";
  auto made = run({HPCTRAIN_DATA_BINARY, "synth", "--samples", "1200", "--shape", "16", "--classes", "4", "--out", data,
                   "--eval_fraction", "0.1"},
                  120);
  ASSERT_EQ(made.exit_code, 0) << made.all();
  const std::string base = root + "/base";
  std::vector<std::string> train = {HPCTRAIN_BINARY, "train"};
  for (const auto& a : run_args(data, base)) train.push_back(a);
  for (const auto& a : {"--max_steps", "8", "--save_strategy", "steps", "--save_steps", "4"}) train.push_back(a);
  auto r = run(testing::mpiexec(2, train), 300);
  ASSERT_EQ(r.exit_code, 0) << r.all();
  ASSERT_TRUE(fs::exists(base + "/checkpoint-4/state.h5") && fs::exists(base + "/checkpoint-8/state.h5")) << r.all();
  const long long size = static_cast<long long>(fs::file_size(base + "/checkpoint-8/state.h5"));
  const std::string doc = testing::read_file(base + "/checkpoint-8/trainer_state.json");

  std::mt19937_64 rng(20261202);
  auto uniform = [&](long long lo, long long hi) { return std::uniform_int_distribution<long long>(lo, hi)(rng); };
  std::vector<Case> cases;
  const std::string h5 = "/state.h5";
  for (int i = 0; i < 40; ++i) {
    const long long at = uniform(0, size - 1);
    const unsigned char mask = static_cast<unsigned char>(1u << uniform(0, 7));
    cases.push_back({"state.h5 bit flip at " + std::to_string(at),
                     [=](const std::string&, const std::string& c) { testing::flip_byte(c + h5, at, mask); }});
  }
  for (int i = 0; i < 10; ++i) {
    const long long len = uniform(0, size - 1);
    cases.push_back({"state.h5 cut to " + std::to_string(len) + " bytes",
                     [=](const std::string&, const std::string& c) { fs::resize_file(c + h5, static_cast<std::uintmax_t>(len)); }});
  }
  for (int i = 0; i < 10; ++i) {
    const long long at = uniform(0, size - 512);
    std::string junk(512, '\0');
    for (auto& ch : junk) ch = static_cast<char>(uniform(0, 255));
    cases.push_back({"state.h5 512 random bytes at " + std::to_string(at),
                     [=](const std::string&, const std::string& c) { overwrite(c + h5, at, junk); }});
  }
  // trainer_state.json damaged, its checksum left as it was.
  for (int i = 0; i < 5; ++i) {
    const long long at = uniform(0, static_cast<long long>(doc.size()) - 1);
    cases.push_back({"trainer_state.json bit flip at " + std::to_string(at), [=](const std::string&, const std::string& c) {
                       testing::flip_byte(c + "/trainer_state.json", at, 0x04);
                     }});
  }
  cases.push_back({"trainer_state.json cut in half", [=](const std::string&, const std::string& c) {
                     fs::resize_file(c + "/trainer_state.json", doc.size() / 2);
                   }});
  // trainer_state.json rewritten, with its checksum made right: what the values themselves must pass.
  auto with = [&](const std::string& key, const std::string& value) {
    std::string d = doc;
    const std::string k = "\"" + key + "\": ";
    const auto at = d.find(k);
    EXPECT_NE(at, std::string::npos) << key << " in " << doc;
    const auto end = d.find_first_of(",\n", at + k.size());
    return d.replace(at + k.size(), end - at - k.size(), value);
  };
  auto without = [&](const std::string& key) {
    std::string d = doc;
    const auto at = d.find("\"" + key + "\": ");
    EXPECT_NE(at, std::string::npos) << key;
    const auto end = d.find('\n', at);
    return d.erase(at, end - at + 1);
  };
  std::vector<std::pair<std::string, std::string>> docs = {
      {"{}", "{}"},
      {"[ x 100000", std::string(100000, '[')},
      {"null", "null"},
      {"a list", "[1, 2, 3]"},
      {"epoch NaN", with("epoch", "NaN")},
      {"epoch Infinity", with("epoch", "Infinity")},
      {"epoch 1e400", with("epoch", "1e400")},
      {"epoch -1", with("epoch", "-1")},
      {"epoch a string", with("epoch", "\"x\"")},
      {"another global_step", with("global_step", "7")},
      {"a 20-digit global_step", with("global_step", "99999999999999999999")},
      {"log_history an object", [&] {
         Json j = json::parse(doc, "doc");
         j["log_history"] = Json::object();
         return json::dump(j, 2);
       }()},
      {"log_history entries numbers", [&] {
         Json j = json::parse(doc, "doc");
         j["log_history"] = Json::array({Json(1), Json(2)});
         return json::dump(j, 2);
       }()},
      {"best_metric NaN", with("best_metric", "NaN")},
      {"best_model_checkpoint a number", with("best_model_checkpoint", "5")},
      {"no epoch", without("epoch")},
      {"no global_step", without("global_step")},
      {"nesting 300 deep", with("trial_params", std::string(300, '[') + std::string(300, ']'))},
  };
  for (const auto& [what, text] : docs)
    cases.push_back({"trainer_state.json: " + what, [=](const std::string&, const std::string& c) { replace_document(c, text); }});
  // The meta data rewritten, its checksum made right.
  std::vector<std::tuple<std::string, std::string, std::string>> metas = {
      {"global_batch renamed glofal_batch", "\"global_batch\"", "\"glofal_batch\""},
      {"world_size 0", "\"world_size\":2", "\"world_size\":0"},
      {"world_size 2^30", "\"world_size\":2", "\"world_size\":1073741824"},
      {"world_size 3", "\"world_size\":2", "\"world_size\":3"},
      {"global_step -1", "\"global_step\":8", "\"global_step\":-1"},
      {"format_version 3", "\"format_version\":2", "\"format_version\":3"},
      {"pieces a list", "\"pieces\":{", "\"pieces\":[{"},
      {"model_only a number", "\"model_only\":false", "\"model_only\":0"},
      {"a tensor shape doubled", "\"shape\":[32,16]", "\"shape\":[64,16]"},
      {"a dtype float16", "\"dtype\":\"float32\"", "\"dtype\":\"float16\""},
      {"log_sums of 16 bytes", "\"name\":\"log_sums\",\"bytes\":32", "\"name\":\"log_sums\",\"bytes\":16"},
      {"sampler consumed beyond samples", "\"consumed\":", "\"consumed\":99999999,\"was\":"},
      {"sampler epoch -1", "\"epoch\":0,\"consumed\"", "\"epoch\":-1,\"consumed\""},
      {"sampler shuffle a string", "\"shuffle\":true", "\"shuffle\":\"yes\""},
      {"scheduler type a number", "\"type\":\"linear\"", "\"type\":5"},
      {"optimizer kind lbfgs", "\"kind\":\"adamw\"", "\"kind\":\"lbfgs\""},
      {"optimizer kind adam (not this run's)", "\"kind\":\"adamw\"", "\"kind\":\"adam\""},
      {"trainer_state epoch NaN", "\"global_batch\":32,\"epoch\":", "\"global_batch\":32,\"epoch\":NaN,\"x\":"},
      {"trainer_state global_batch 0", "\"global_batch\":32", "\"global_batch\":0"},
      {"a document named ../x", "\"file\":\"trainer_state.json\"", "\"file\":\"../x\""},
  };
  for (const auto& [what, from, to] : metas)
    cases.push_back({"meta: " + what, [=](const std::string&, const std::string& c) { edit_meta(c + h5, from, to); }});
  // latest: only `auto` follows it.
  std::vector<std::pair<std::string, std::string>> latests = {
      {"another run's checkpoint by absolute path", base + "/checkpoint-8\n"},
      {"../ out of the output_dir", "../base/checkpoint-8\n"},
      {"a checkpoint that is not there", "checkpoint-999\n"},
      {"empty", ""},
      {"binary", std::string("\x01\xff\x00\x7f garbage", 12)},
      {"a megabyte of a", std::string(1 << 20, 'a')},
      {"a path through another checkpoint", "checkpoint-4/../checkpoint-8\n"},
  };
  for (const auto& [what, text] : latests)
    cases.push_back({"latest: " + what, [=](const std::string& o, const std::string&) { testing::write_file(o + "/latest", text); },
                     true});
  cases.push_back({"checkpoint-8 a symbolic link to another run's", [=](const std::string&, const std::string& c) {
                     fs::remove_all(c);
                     fs::create_directory_symlink(base + "/checkpoint-8", c);
                   },
                   true});
  // The directory.
  cases.push_back({"no state.h5", [=](const std::string&, const std::string& c) { fs::remove(c + h5); }});
  cases.push_back({"state.h5 a directory", [=](const std::string&, const std::string& c) {
                     fs::remove(c + h5);
                     fs::create_directory(c + h5);
                   }});
  cases.push_back({"state.h5 a FIFO", [=](const std::string&, const std::string& c) {
                     fs::remove(c + h5);
                     ASSERT_EQ(mkfifo((c + h5).c_str(), 0600), 0);
                   }});
  cases.push_back({"state.h5 a link to /dev/zero", [=](const std::string&, const std::string& c) {
                     fs::remove(c + h5);
                     fs::create_symlink("/dev/zero", c + h5);
                   }});
  cases.push_back({"state.h5 empty", [=](const std::string&, const std::string& c) { fs::resize_file(c + h5, 0); }});
  cases.push_back({"state.h5 of checkpoint-4", [=](const std::string& o, const std::string& c) {
                     fs::copy_file(o + "/checkpoint-4" + h5, c + h5, fs::copy_options::overwrite_existing);
                   }});
  cases.push_back({"no trainer_state.json", [=](const std::string&, const std::string& c) { fs::remove(c + "/trainer_state.json"); }});
  cases.push_back({"trainer_state.json a directory", [=](const std::string&, const std::string& c) {
                     fs::remove(c + "/trainer_state.json");
                     fs::create_directory(c + "/trainer_state.json");
                   }});
  cases.push_back({"trainer_state.json of checkpoint-4", [=](const std::string& o, const std::string& c) {
                     fs::copy_file(o + "/checkpoint-4/trainer_state.json", c + "/trainer_state.json",
                                   fs::copy_options::overwrite_existing);
                   }});
  cases.push_back({"checkpoint-8 a file", [=](const std::string&, const std::string& c) {
                     fs::remove_all(c);
                     testing::write_file(c, "not a directory");
                   }});
  cases.push_back({"checkpoint-8 empty", [=](const std::string&, const std::string& c) {
                     fs::remove_all(c);
                     fs::create_directory(c);
                   }});

  Tally t{"checkpoint"};
  // HPCTRAIN_FUZZ_EVERY=k runs every k-th case (the sanitizer stage: a sanitized resume is slow).
  const char* every_env = std::getenv("HPCTRAIN_FUZZ_EVERY");
  const std::size_t every = every_env ? std::max(1, std::atoi(every_env)) : 1;
  for (std::size_t i = 0; i < cases.size(); i += every) {
    const Case& k = cases[i];
    const std::string out = root + "/case-" + std::to_string(i), ckpt = out + "/checkpoint-8";
    copy_tree(base, out);
    k.damage(out, ckpt);
    if (::testing::Test::HasFatalFailure()) return;
    ++t.cases;
    const std::string name = "case " + std::to_string(i) + " (" + k.name + ")";
    // Verify and inspect: never a crash or hang; inspect agrees with verify.
    const RunResult v = run({HPCTRAIN_CKPT_BINARY, "verify", ckpt}, 60);
    if (t.bad_end(name, "verify", v)) continue;
    const RunResult in = run({HPCTRAIN_CKPT_BINARY, "inspect", ckpt}, 60);
    if (t.bad_end(name, "inspect", in)) continue;
    const bool valid = v.exit_code == 0;
    if (valid != (in.exit_code == 0)) t.fail(name, "verify and inspect disagree", in);
    if (!valid && v.out.find("INVALID") == std::string::npos && v.err.find("error") == std::string::npos)
      t.fail(name, "verify failed without saying why", v);
    // A resume, on 1 rank (the checkpoints are of 2: the elastic path reads every rank's rows):
    // with auto every other case, by path the others; auto alone for damage to latest.
    const bool use_auto = k.auto_only || i % 2 == 1;
    std::vector<std::string> resume = {HPCTRAIN_BINARY, "train"};
    for (const auto& a : run_args(data, out)) resume.push_back(a);
    for (const auto& a : {"--max_steps", "9", "--save_strategy", "no"}) resume.push_back(a);
    resume.push_back("--resume_from_checkpoint");
    resume.push_back(use_auto ? "auto" : ckpt);
    const RunResult res = run(resume, 120);
    if (t.bad_end(name, "resume", res)) continue;
    const bool from8 = res.err.find("resumed from " + ckpt + " at step 8") != std::string::npos;
    const bool from4 = res.err.find("resumed from " + out + "/checkpoint-4 at step 4") != std::string::npos;
    if (k.auto_only) {
      // The checkpoint itself is whole: taken when latest named it, else found by the scan; a
      // link to another run's is neither, and checkpoint-4 is the newest of this run.
      const bool link = fs::is_symlink(ckpt);
      if (res.exit_code != 0 || (link ? !from4 : !from8))
        t.fail(name, "auto did not resume from this output_dir's newest checkpoint", res);
      else if (res.err.find("is not a checkpoint-<step> directory of this output_dir") == std::string::npos &&
               res.err.find("latest is missing or empty") == std::string::npos && res.err.find("skipping") == std::string::npos)
        t.fail(name, "a bad latest was followed without a warning", res);
      else ++t.recovered;
      continue;
    }
    if (valid) {
      if (res.exit_code == 0 && from8) ++t.accepted;
      else if (res.exit_code == exit_code::kConfig && res.err.find("this run") != std::string::npos) ++t.refused_as_other_run;
      else t.fail(name, "verify said valid, but the resume did not load it", res);
    } else if (use_auto) {
      if (res.exit_code == 0 && from4 && res.err.find("resume: skipping") != std::string::npos) ++t.recovered;
      else if (res.exit_code == 0 && from4 && !fs::is_directory(ckpt)) ++t.recovered;  // nothing there to skip
      else t.fail(name, "auto did not pass over the invalid checkpoint to checkpoint-4", res);
    } else {
      if (res.exit_code == exit_code::kConfig && res.err.find(ckpt) != std::string::npos) ++t.clean;
      else t.fail(name, "verify said invalid, but the resume did not refuse it with exit 2 naming it", res);
    }
  }
  t.report();
  EXPECT_GE(t.cases * static_cast<int>(every), 100);
}

// ---- data shards ----

// Sets element `index` (the first value of a sample) of dataset `key` in `file` to `value`, with
// the HDF5 C API (gzip chunks are compressed anew).
template <class T>
void set_value(const std::string& file, const char* key, hsize_t index, T value, hid_t mem_type) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0) << file;
  const hid_t ds = H5Dopen2(f, key, H5P_DEFAULT);
  const hid_t space = H5Dget_space(ds);
  const int nd = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> start(static_cast<std::size_t>(nd), 0), count(static_cast<std::size_t>(nd), 1);
  start[0] = index;
  H5Sselect_hyperslab(space, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
  const hsize_t one = 1;
  const hid_t mem = H5Screate_simple(1, &one, nullptr);
  ASSERT_GE(H5Dwrite(ds, mem_type, mem, space, H5P_DEFAULT, &value), 0) << file << " " << key;
  H5Sclose(mem);
  H5Sclose(space);
  H5Dclose(ds);
  ASSERT_GE(H5Fclose(f), 0);
}

TEST(DataFuzz, EveryDamagedShardIsRefusedNamingItOrTrainsAndNothingCrashes) {
  const std::string root = testing::temp_dir("hpct-data-fuzz");
  auto made = run({"/usr/bin/python3", std::string(HPCTRAIN_SOURCE_DIR) + "/tests/data/scripts/make_fuzz_shards.py", root},
                  120);
  if (made.exit_code != 0 && made.err.find("No module named 'h5py'") != std::string::npos) GTEST_SKIP() << "no h5py";
  ASSERT_EQ(made.exit_code, 0) << made.all();

  struct DataCase {
    std::string name, file;  // the shard damaged: contiguous.h5 or gzip.h5
    std::function<void(const std::string& path)> damage;
  };
  std::mt19937_64 rng(20261203);
  auto uniform = [&](long long lo, long long hi) { return std::uniform_int_distribution<long long>(lo, hi)(rng); };
  std::vector<DataCase> cases;
  for (const std::string file : {"contiguous.h5", "gzip.h5"}) {
    const long long size = static_cast<long long>(fs::file_size(root + "/" + file));
    for (int i = 0; i < 30; ++i) {
      const long long at = uniform(0, size - 1);
      const unsigned char mask = static_cast<unsigned char>(1u << uniform(0, 7));
      cases.push_back({"bit flip at " + std::to_string(at), file, [=](const std::string& p) { testing::flip_byte(p, at, mask); }});
    }
    for (int i = 0; i < 8; ++i) {
      const long long len = uniform(0, size - 1);
      cases.push_back({"cut to " + std::to_string(len) + " bytes", file,
                       [=](const std::string& p) { fs::resize_file(p, static_cast<std::uintmax_t>(len)); }});
    }
    for (int i = 0; i < 8; ++i) {
      const long long at = uniform(0, size - 512);
      std::string junk(512, '\0');
      for (auto& ch : junk) ch = static_cast<char>(uniform(0, 255));
      cases.push_back({"512 random bytes at " + std::to_string(at), file, [=](const std::string& p) { overwrite(p, at, junk); }});
    }
    // Values: labels a run must refuse naming the sample, and values it must refuse or may train on.
    const hsize_t k = static_cast<hsize_t>(uniform(0, 511));
    for (const std::int64_t label : {(std::int64_t{1} << 60) + 3, std::int64_t{33554433}, std::int64_t{1000000},
                                     std::int64_t{-1}, std::int64_t{4}})
      cases.push_back({"label " + std::to_string(label) + " at sample " + std::to_string(k), file,
                       [=](const std::string& p) { set_value(p, "targets", k, label, H5T_NATIVE_INT64); }});
    for (const float v : {std::nanf(""), HUGE_VALF, 1e30f})
      cases.push_back({"input " + std::to_string(v) + " at sample " + std::to_string(k), file,
                       [=](const std::string& p) { set_value(p, "inputs", k, v, H5T_NATIVE_FLOAT); }});
  }
  cases.push_back({"empty file", "gzip.h5", [](const std::string& p) { fs::resize_file(p, 0); }});
  cases.push_back({"text, not HDF5", "contiguous.h5", [](const std::string& p) { testing::write_file(p, "inputs,targets\n1,2\n"); }});
  cases.push_back({"no targets", "contiguous.h5", [](const std::string& p) {
                     const hid_t f = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
                     ASSERT_GE(H5Ldelete(f, "targets", H5P_DEFAULT), 0);
                     H5Fclose(f);
                   }});

  Tally t{"data"};
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const DataCase& c = cases[i];
    const std::string dir = root + "/case-" + std::to_string(i), path = dir + "/" + c.file;
    fs::create_directories(dir + "/train");
    for (const char* f : {"contiguous.h5", "gzip.h5"}) fs::copy_file(root + "/" + f, dir + "/train/" + f);
    c.damage(dir + "/train/" + c.file);
    if (::testing::Test::HasFatalFailure()) return;
    ++t.cases;
    const std::string name = "case " + std::to_string(i) + " (" + c.file + ": " + c.name + ")";
    const RunResult in = run({HPCTRAIN_DATA_BINARY, "inspect", dir + "/train"}, 60);
    if (t.bad_end(name, "inspect", in)) continue;
    const RunResult r = run({HPCTRAIN_BINARY, "train", "--config", std::string(HPCTRAIN_SOURCE_DIR) + "/jobs/quickstart.ini",
                             "--output_dir", dir + "/out", "--data.train", dir + "/train", "--data.eval", "",
                             "--eval_strategy", "no", "--metric_for_best_model", "", "--save_strategy", "no",
                             "--num_train_epochs", "1", "--per_device_train_batch_size", "64", "--logging_steps", "8",
                             "--model.hidden_sizes", "16"},
                            120);
    if (t.bad_end(name, "training", r)) continue;
    if (r.exit_code == 0) {
      ++t.accepted;
    } else if ((r.exit_code == exit_code::kConfig || r.exit_code == exit_code::kFatal) &&
               r.err.find(c.file) != std::string::npos) {
      ++t.clean;
    } else {
      t.fail(name, "training failed without naming the damaged file", r);
    }
    // What must be refused, whatever else the damage did.
    const bool label = c.name.rfind("label ", 0) == 0 && c.name.rfind("label 4 ", 0) != 0;
    if (label && (r.exit_code != exit_code::kConfig || r.err.find("sample") == std::string::npos))
      t.fail(name, "an out-of-range label was not refused naming its sample", r);
    if (c.name.rfind("input nan", 0) == 0 || c.name.rfind("input inf", 0) == 0)
      if (r.exit_code == 0) t.fail(name, "a non-finite input was trained on", r);
  }
  t.report();
  EXPECT_GE(t.cases, 100);
}

}  // namespace
}  // namespace hpctrain
