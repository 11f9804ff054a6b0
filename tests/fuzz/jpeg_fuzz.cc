// A thumbnail as a peer sends it (a worker to the coordinator, the coordinator to `segue takes`),
// decoded on any bytes: an error or a whole picture of the size it says, never a crash.
#include <cstdlib>
#include <vector>

#include "common/media/video.h"
#include "tests/fuzz/fuzz.h"

std::vector<std::string> SegueFuzzSeeds() {
  std::vector<std::string> seeds;
  // Our own encoder's (4:2:0, even sizes); the corpus adds other encoders' layouts.
  for (auto [w, h] : {std::pair{64, 32}, std::pair{192, 108}, std::pair{17, 9}}) {
    std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
    for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 7 % 251);
    auto jpeg = segue::EncodeThumbnailJpeg(rgb.data(), w, h);
    if (!jpeg.ok()) abort();
    seeds.push_back(*jpeg);
    // Cut short, with the end marker put back: the header promises more than there is.
    seeds.push_back(jpeg->substr(0, jpeg->size() / 2) + "\xff\xd9");
  }
  return seeds;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto picture = segue::DecodeJpeg(std::string_view(reinterpret_cast<const char*>(data), size));
  if (picture.ok() &&
      (picture->width <= 0 || picture->height <= 0 || picture->width > segue::kMaxJpegSide ||
       picture->height > segue::kMaxJpegSide))
    abort();
  return 0;
}
