// The manifest parser and its number parsers on any bytes: errors are values, never a crash, an
// escaped exception or a stack overflow (a 60,000-digit time once overflowed std::regex's).
#include "common/manifest/manifest.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)segue::ParseManifest(text, "fuzz.yaml", segue::ManifestParseOptions{"", false});
  if (size < 4096) {
    (void)segue::ParseDuration(text);
    (void)segue::ParseBytes(text);
    (void)segue::ParseFps(text);
  }
  return 0;
}
