// segue-bench encode: the delivery path's speed. The frames of a video are cut into chunks and
// encoded by two workers at once with the code the workers run (EncodeChunkFile, one encoder
// thread each), then concatenated by stream copy (AssembleOutput); the baseline is one `ffmpeg`
// command encoding the same frames with the same settings, run in the same invocation.
#pragma once

#include <nlohmann/json.hpp>

namespace segue {

struct EncodeBenchOptions {
  int width = 640, height = 360;
  int frames = 768;  // 32 s at 24 fps: 8 chunks, an even share for 2 workers
  int chunk_frames = 96;
  int workers = 2;
  std::string preset = "medium";
  int crf = 18;
};

nlohmann::json BenchEncode(const EncodeBenchOptions& options);

}  // namespace segue
