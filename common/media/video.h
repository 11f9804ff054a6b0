// Video encoding and final assembly with libavcodec/libavformat.
//
// A chunk is a run of frames encoded by one encoder into a self-contained MP4 that starts on a
// key frame. The output is the chunks' packets concatenated without re-encoding (stream copy),
// the song muxed beside them (trimmed or padded with silence to the picture's exact length),
// written to a temporary file and renamed into place: a reader never sees half an output.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/manifest/manifest.h"
#include "common/status/status.h"

namespace segue {

struct VideoSettings {
  int width = 0;
  int height = 0;
  Rational fps;
  std::string codec = "h264";
  int crf = 18;
  std::string preset = "medium";
  int threads = 1;  // encoder threads; one per worker core keeps workers from fighting
};

// Encodes `frames` RGB24 frames (each height*width*3 bytes, rows top to bottom) to `path`.
Status EncodeChunkFile(const std::string& path, const VideoSettings& settings, const uint8_t* rgb,
                       int64_t frames);

struct AssembleSpec {
  std::vector<std::string> chunk_files;  // in order; chunk k starts at frame chunk_starts[k]
  std::vector<int64_t> chunk_starts;
  int64_t frames = 0;  // N
  Rational fps;
  std::string audio_file;   // empty: no audio
  std::string output_path;  // written atomically
};

Status AssembleOutput(const AssembleSpec& spec);

// Decodes the first video stream of `path` and calls on_frame(index, rgb, width, height) for
// every frame in presentation order (RGB24, rows top to bottom).
Status ReadVideoFrames(const std::string& path,
                       const std::function<void(int64_t, const uint8_t*, int, int)>& on_frame);

}  // namespace segue
