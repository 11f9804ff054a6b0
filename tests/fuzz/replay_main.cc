// Runs a fuzz target over files and folders of inputs, once each (tests/fuzz/fuzz.h): a crash
// ends the process, which fails the ctest test that runs it.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "tests/fuzz/fuzz.h"

__attribute__((weak)) std::vector<std::string> SegueFuzzSeeds() { return {}; }

namespace {
int RunFile(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  const std::string bytes = text.str();
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--write-seeds") {
    int n = 0;
    std::filesystem::create_directories(argv[2]);
    for (const std::string& seed : SegueFuzzSeeds())
      std::ofstream(std::filesystem::path(argv[2]) / ("seed-" + std::to_string(n++)),
                    std::ios::binary)
          << seed;
    std::cout << "wrote " << n << " seeds to " << argv[2] << "\n";
    return 0;
  }
  int inputs = 0;
  for (const std::string& seed : SegueFuzzSeeds()) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(seed.data()), seed.size());
    ++inputs;
  }
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path p(argv[i]);
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(p))
        if (e.is_regular_file()) inputs += RunFile(e.path());
    } else {
      inputs += RunFile(p);
    }
  }
  std::cout << "replayed " << inputs << " inputs\n";
  return inputs > 0 ? 0 : 1;
}
