// hpctrain-ckpt: look into, check and export hpctrain checkpoints.
//   hpctrain-ckpt inspect DIR          meta data; each piece of state: what its load checks, and
//                                      every entry (tensor, per-rank row, document) with its checksum verdict
//   hpctrain-ckpt verify DIR           every checksum, the manifest, and what a resume checks of the
//                                      trainer's state; exit code 0 when a load gets past them, 1 when not
//   hpctrain-ckpt export DIR --out F   model weights alone to a plain HDF5 file (/<param> datasets)
#include <filesystem>
#include <iostream>
#include <sstream>

#include "hpctrain/ckpt/format.h"
#include "hpctrain/ckpt/manager.h"
#include "hpctrain/core/error.h"
#include "hpctrain/train/saved_state.h"

using namespace hpctrain;
namespace fs = std::filesystem;

namespace {

const char* kUsage =
    "Usage: hpctrain-ckpt inspect DIR | verify DIR | export DIR --out FILE.h5\n"
    "DIR is a checkpoint directory (output_dir/checkpoint-<step>) or an output_dir (its latest checkpoint).\n";

std::string resolve(const std::string& dir) {
  if (fs::exists(fs::path(dir) / "state.h5")) return dir;
  std::string name;
  if (ckpt::latest_checkpoint(dir, name)) return (fs::path(dir) / name).string();
  if (!name.empty())
    throw DataError("'" + dir + "/latest' names '" + name.substr(0, 200) +
                    "', which is not a checkpoint-<step> directory of that output_dir; name the checkpoint directory itself");
  throw ConfigError("'" + dir + "' is neither a checkpoint directory (no state.h5) nor an output_dir with a latest file");
}

std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string t = "(";
  for (std::size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + ")";
}

// What each built-in piece's load compares with the run (the rest of its info is shown as data).
const char* checks_of(const std::string& key) {
  if (key == "model") return "fingerprint: task, architecture, every parameter's and buffer's name, dtype and shape";
  if (key == "optimizer") return "kind must equal the run's optim";
  if (key == "sampler") return "data_seed, shuffle, shuffle_block, samples and shards must equal the run's "
                               "(unless resume_allow_data_change)";
  if (key == "rng") return "one CPU generator state per saving rank; new ranks derive theirs from seed, step, rank";
  if (key == "scheduler") return "a changed schedule is allowed and logged";
  if (key == "trainer_state") return "step must match; global_batch is kept (elastic resume sets gradient accumulation)";
  if (key.rfind("callbacks/", 0) == 0) return "the callback reads its own state; absent state: it starts fresh";
  return "(a piece of a user's own)";
}

// One line: the result of reading `check` (its checksum verdict).
template <class F>
std::string verdict(F&& check) {
  try {
    check();
    return "crc32 ok";
  } catch (const std::exception& e) {
    return std::string("FAILED: ") + e.what();
  }
}

int inspect(const std::string& dir) {
  ckpt::FileReader r(dir);
  std::cout << "checkpoint " << dir << "\n";
  for (const auto& [k, v] : r.meta().items())
    if (k != "pieces") std::cout << "  " << k << ": " << json::dump(v) << "\n";
  std::int64_t total_bytes = 0;
  bool ok = true;
  for (const auto& [key, m] : r.pieces()) {
    std::cout << "state '" << key << "': checks " << checks_of(key) << "\n";
    for (const auto& [k, v] : m.info.items()) {
      std::string text = json::dump(v);
      if (text.size() > 160) text = text.substr(0, 157) + "...";
      std::cout << "  info " << k << ": " << text << "\n";
    }
    auto piece = r.piece(key);
    for (const auto& t : m.tensors) {
      total_bytes += static_cast<std::int64_t>(t.bytes);
      const std::string v = verdict([&] { r.check_tensor(key, t); });
      ok = ok && v == "crc32 ok";
      std::cout << "  tensor /" << key << "/" << t.name << " " << ckpt::dtype_name(t.type) << " " << shape_text(t.shape)
                << ": " << v << "\n";
    }
    for (const auto& e : m.per_rank) {
      const std::string v = verdict([&] { r.check_rows(key, e); });
      ok = ok && v == "crc32 ok";
      std::cout << "  per-rank /" << key << "/" << e.name << " " << r.world_size() << " x " << e.bytes << " bytes: " << v
                << "\n";
    }
    for (const auto& d : m.documents) {
      const std::string v = verdict([&] { piece->document(d.file); });
      ok = ok && v == "crc32 ok";
      std::cout << "  document " << d.file << " (" << d.bytes << " bytes): " << v << "\n";
    }
  }
  std::cout << "tensors: " << total_bytes / 1e6 << " MB\n";
  if (ok) {
    // What a resume checks of the values (after the checksums, which it needs to trust them).
    const std::string v = verdict([&] { train::saved::check_saved_state(r); });
    ok = v == "crc32 ok";
    std::cout << "trainer state values: " << (ok ? "ok" : v) << "\n";
  }
  if (auto ts = r.piece("trainer_state")) {
    try {
      const Json st = ts->document("trainer_state.json");
      if (const Json* hist = json::find(st, "log_history"); hist && hist->is_array()) {
        const Json& items = *hist;
        std::cout << "last logs:\n";
        for (std::size_t i = items.size() > 3 ? items.size() - 3 : 0; i < items.size(); ++i)
          std::cout << "  " << json::dump(items[i]) << "\n";
      }
    } catch (const std::exception&) {
    }
  }
  std::cout << (ok ? "all checksums match\n" : "DAMAGED: see FAILED above\n");
  return ok ? 0 : 1;
}

int export_model(const std::string& dir, const std::string& out) {
  ckpt::FileReader r(dir);
  auto model = r.piece("model");
  if (!model) throw DataError(r.where() + " holds no model");
  h5::Lock lock;
  h5::Handle file(HPCT_H5_CHECK(H5Fcreate(out.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "creating '" << out << "'"),
                  H5Fclose);
  int count = 0;
  for (const auto& t : r.pieces().at("model").tensors) {
    if (t.type != ckpt::DType::kFloat32) continue;
    r.check_tensor("model", t);  // its storage is in the file before memory is sized from it
    std::vector<float> buf(t.bytes / sizeof(float));
    model->read(t.name, t.type, buf.data());
    std::vector<hsize_t> dims(t.shape.begin(), t.shape.end());
    h5::Handle space(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                     H5Sclose);
    h5::Handle ds(HPCT_H5_CHECK(H5Dcreate2(file.get(), t.name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                                           H5P_DEFAULT),
                                "creating " << t.name << " in '" << out << "'"),
                  H5Dclose);
    HPCT_H5_CHECK(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), "writing " << t.name);
    ++count;
  }
  HPCT_H5_CHECK(H5Fflush(file.get(), H5F_SCOPE_LOCAL), "flushing '" << out << "'");
  std::cout << "exported " << count << " model tensors to " << out << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string cmd = argv[1];
  try {
    const std::string dir = resolve(argv[2]);
    if (cmd == "inspect") return inspect(dir);
    if (cmd == "verify") {
      const std::string why = train::saved::verify(dir);
      if (why.empty()) {
        std::cout << dir << ": valid\n";
        return 0;
      }
      std::cout << dir << ": INVALID: " << why << "\n";
      return 1;
    }
    if (cmd == "export") {
      if (argc < 5 || std::string(argv[3]) != "--out") {
        std::cerr << kUsage;
        return 2;
      }
      return export_model(dir, argv[4]);
    }
    std::cerr << "hpctrain-ckpt: unknown command '" << cmd << "'\n" << kUsage;
    return 2;
  } catch (const Error& e) {
    std::cerr << "hpctrain-ckpt " << cmd << ": error: " << e.what() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {  // a bug, but never an abort over a damaged file
    std::cerr << "hpctrain-ckpt " << cmd << ": error: " << e.what() << "\n";
    return 1;
  }
}
