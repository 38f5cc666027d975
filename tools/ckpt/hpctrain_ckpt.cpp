// hpctrain-ckpt: look into, check and export hpctrain checkpoints.
//   hpctrain-ckpt inspect DIR          meta, tensors (shapes, dtypes), step, best metric, last logs
//   hpctrain-ckpt verify DIR           checksums and completeness; exit code 0 when valid, 1 when not
//   hpctrain-ckpt export DIR --out F   model weights alone to a plain HDF5 file (/<param> datasets)
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "hpctrain/ckpt/checkpoint.h"
#include "hpctrain/core/error.h"

using namespace hpctrain;
namespace fs = std::filesystem;

namespace {

const char* kUsage =
    "Usage: hpctrain-ckpt inspect DIR | verify DIR | export DIR --out FILE.h5\n"
    "DIR is a checkpoint directory (output_dir/checkpoint-<step>) or an output_dir (its latest checkpoint).\n";

std::string resolve(const std::string& dir) {
  if (fs::exists(fs::path(dir) / "state.h5")) return dir;
  std::ifstream latest(fs::path(dir) / "latest");
  std::string name;
  if (latest >> name) return (fs::path(dir) / name).string();
  throw ConfigError("'" + dir + "' is neither a checkpoint directory (no state.h5) nor an output_dir with a latest file");
}

const char* type_name(ckpt::DType t) {
  switch (t) {
    case ckpt::DType::kFloat32: return "float32";
    case ckpt::DType::kFloat64: return "float64";
    case ckpt::DType::kInt64: return "int64";
    case ckpt::DType::kUInt8: return "uint8";
  }
  return "?";
}

std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string t = "(";
  for (std::size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + ")";
}

int inspect(const std::string& dir) {
  ckpt::Reader r(dir + "/state.h5");
  Json meta = r.meta();
  std::cout << "checkpoint " << dir << "\n";
  for (const auto& [k, v] : meta.fields())
    if (k != "model_config") std::cout << "  " << k << ": " << (v.is_number() ? v.dump() : v.dump()) << "\n";
  std::int64_t total_bytes = 0;
  std::cout << "tensors:\n";
  for (const auto& t : r.tensors()) {
    auto s = r.shape(t);
    auto type = r.stored_type(t);
    std::int64_t n = 1;
    for (auto d : s) n *= d;
    total_bytes += n * static_cast<std::int64_t>(ckpt::dtype_size(type));
    std::cout << "  " << t << " " << type_name(type) << " " << shape_text(s) << "\n";
  }
  std::cout << "state: " << total_bytes / 1e6 << " MB in " << r.tensors().size() << " datasets\n";
  Json st = Json::parse_file(dir + "/trainer_state.json");
  std::cout << "trainer state: global_step " << st.find("global_step")->dump() << ", epoch " << st.find("epoch")->dump()
            << ", best_metric " << st.find("best_metric")->dump() << "\n";
  const auto& hist = st.find("log_history")->items();
  for (std::size_t i = hist.size() > 3 ? hist.size() - 3 : 0; i < hist.size(); ++i) std::cout << "  " << hist[i].dump() << "\n";
  return 0;
}

int export_model(const std::string& dir, const std::string& out) {
  ckpt::Reader r(dir + "/state.h5");
  h5::Lock lock;
  h5::Handle file(HPCT_H5_CHECK(H5Fcreate(out.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "creating '" << out << "'"),
                  H5Fclose);
  int count = 0;
  for (const auto& t : r.tensors()) {
    if (t.rfind("/model/", 0) != 0) continue;
    auto s = r.shape(t);
    std::int64_t n = 1;
    for (auto d : s) n *= d;
    std::vector<float> buf(static_cast<std::size_t>(n));
    if (r.stored_type(t) != ckpt::DType::kFloat32) continue;
    r.read(t, ckpt::DType::kFloat32, buf.data());
    std::vector<hsize_t> dims(s.begin(), s.end());
    h5::Handle space(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                     H5Sclose);
    const std::string name = t.substr(7);
    h5::Handle ds(HPCT_H5_CHECK(H5Dcreate2(file.get(), name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                                           H5P_DEFAULT),
                                "creating " << name << " in '" << out << "'"),
                  H5Dclose);
    HPCT_H5_CHECK(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), "writing " << name);
    ++count;
  }
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
      const std::string why = ckpt::verify(dir);
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
  }
}
