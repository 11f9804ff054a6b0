#include "common/util/temp_dir.h"

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>

namespace segue {

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/segue-XXXXXX";
  if (!mkdtemp(pattern.data()))
    throw std::runtime_error("cannot create a scratch folder like " + pattern);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!getenv("SEGUE_KEEP_TEST_FILES")) std::filesystem::remove_all(path_, ec);
}

}  // namespace segue
