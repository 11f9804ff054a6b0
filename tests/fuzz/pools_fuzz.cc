// The coordinator's pools config on any bytes: FILE:LINE:COLUMN errors, never a crash.
#include "coordinator/pools.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)segue::ParsePoolsConfig(std::string(reinterpret_cast<const char*>(data), size),
                                "fuzz.yaml");
  return 0;
}
