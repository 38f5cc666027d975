// hpctrain-flight: the flight records a stalled or aborted job left, side by side.
//   hpctrain-flight DIR [--last N]    DIR: output_dir/flight (or an output_dir); N collectives (12)
// One line per collective, one column per rank (done, WAIT <seconds>, - not reached), then which
// ranks never reached the collective the others wait in. Exit 0 when records were read, 1 when none.
#include <filesystem>
#include <iostream>
#include <string>

#include "hpctrain/dist/flight_recorder.h"

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
    std::cerr << "Usage: hpctrain-flight DIR [--last N]\n"
                 "DIR is an output_dir's flight/ directory (or the output_dir): the records every live rank\n"
                 "wrote when a collective stalled past ddp_timeout or the job aborted.\n";
    return 2;
  }
  std::string dir = argv[1];
  if (std::filesystem::is_directory(std::filesystem::path(dir) / "flight")) dir = (std::filesystem::path(dir) / "flight").string();
  std::size_t last = 12;
  if (argc >= 4 && std::string(argv[2]) == "--last") {
    try {
      const long n = std::stol(argv[3]);
      if (n < 1 || n > 100000) throw std::out_of_range("range");
      last = static_cast<std::size_t>(n);
    } catch (const std::exception&) {
      std::cerr << "hpctrain-flight: --last " << argv[3] << ": expected a number of collectives in [1, 100000]\n";
      return 2;
    }
  }
  const std::string view = hpctrain::dist::aligned_flight_view(dir, last);
  std::cout << view << (view.empty() || view.back() != '\n' ? "\n" : "");
  return view.rfind("no flight records", 0) == 0 ? 1 : 0;
}
