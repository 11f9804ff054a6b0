// The coordinator's keys file on any bytes: FILE:LINE:COLUMN errors, never a crash.
#include "common/security/keyring.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto ring = segue::KeyRing::Parse(std::string(reinterpret_cast<const char*>(data), size),
                                    "/nonexistent/fuzz.yaml");
  if (ring.ok()) {
    for (const auto& [key, id] : ring->all()) (void)id.MayNameWorker("node7.0");
  }
  return 0;
}
