#include "tools/bench/bench_encode.h"

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <thread>

#include "common/media/video.h"
#include "common/plan/plan.h"
#include "common/util/temp_dir.h"
#include "tools/bench/bench_util.h"

namespace segue {
namespace {

using bench::ServingThread;

namespace fs = std::filesystem;
using bench::Clock;
using bench::Since;

// Moving soft waves with a little grain: content an encoder has to work for, like a render's.
std::vector<uint8_t> MakeFrames(int w, int h, int n) {
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3 * n);
  uint32_t grain = 12345;
  for (int f = 0; f < n; ++f) {
    const double t = f / 24.0;
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        const double u = x / static_cast<double>(w), v = y / static_cast<double>(h);
        const double a =
            std::sin(9 * u + 2 * t) + std::sin(7 * v - 1.3 * t) + std::sin(11 * (u + v) + 0.7 * t);
        grain = grain * 1664525u + 1013904223u;
        const int noise = static_cast<int>(grain >> 29) - 4;
        uint8_t* p = &rgb[((static_cast<size_t>(f) * h + y) * w + x) * 3];
        p[0] = static_cast<uint8_t>(std::clamp(128 + 40 * a + noise, 0.0, 255.0));
        p[1] = static_cast<uint8_t>(std::clamp(110 + 35 * std::cos(a + t) + noise, 0.0, 255.0));
        p[2] = static_cast<uint8_t>(std::clamp(90 + 50 * std::sin(a * 1.7) + noise, 0.0, 255.0));
      }
    }
  }
  return rgb;
}

// One ffmpeg command over the raw frames with `x264_params` ("" for its own threading).
double RunFfmpeg(const EncodeBenchOptions& o, const std::string& raw, const std::string& out,
                 const std::string& x264_params) {
  std::string cmd = "ffmpeg -loglevel error -y -f rawvideo -pix_fmt rgb24 -s " +
                    std::to_string(o.width) + "x" + std::to_string(o.height) + " -r 24 -i '" + raw +
                    "' -c:v libx264 -preset " + o.preset + " -crf " + std::to_string(o.crf) +
                    " -pix_fmt yuv420p";
  if (!x264_params.empty()) cmd += " -x264-params " + x264_params;
  cmd += " '" + out + "'";
  const auto t0 = Clock::now();
  if (std::system(cmd.c_str()) != 0)
    throw std::runtime_error("the baseline ffmpeg command failed: " + cmd);
  return Since(t0);
}

}  // namespace

nlohmann::json BenchEncode(const EncodeBenchOptions& o) {
  TempDir dir;
  const auto frames = MakeFrames(o.width, o.height, o.frames);
  const size_t frame_bytes = static_cast<size_t>(o.width) * o.height * 3;
  {
    std::ofstream raw(dir / "frames.rgb", std::ios::binary);
    raw.write(reinterpret_cast<const char*>(frames.data()),
              static_cast<std::streamsize>(frames.size()));
  }
  // The same settings as the workers: one encoder thread, pinned lookahead.
  const double same = RunFfmpeg(o, dir / "frames.rgb", dir / "ffmpeg-same.mp4",
                                "threads=1:lookahead-threads=1:sync-lookahead=0");
  // And ffmpeg as a studio would run it, with x264's own threads over every core.
  const double own = RunFfmpeg(o, dir / "frames.rgb", dir / "ffmpeg-threads.mp4", "");

  // Chunks over `workers` threads, each taking the next chunk, as idle workers do.
  const auto chunks = PlanChunks(o.frames, o.chunk_frames);
  VideoSettings v;
  v.width = o.width, v.height = o.height, v.fps = Rational{24, 1}, v.codec = "h264";
  v.crf = o.crf, v.preset = o.preset, v.threads = 1;
  std::vector<std::string> files(chunks.size());
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  const auto t0 = Clock::now();
  std::vector<std::thread> pool;
  for (int w = 0; w < o.workers; ++w) {
    pool.emplace_back([&] {
      for (size_t c; (c = next++) < chunks.size();) {
        files[c] = dir / ("chunk-" + std::to_string(c) + ".mp4");
        if (!EncodeChunkFile(files[c], v, frames.data() + chunks[c].start * frame_bytes,
                             chunks[c].end - chunks[c].start)
                 .ok())
          failed = true;
      }
    });
  }
  for (auto& t : pool) t.join();
  const double encode = Since(t0);
  if (failed) throw std::runtime_error("a chunk failed to encode");
  AssembleSpec spec;
  spec.chunk_files = files;
  for (const auto& c : chunks) spec.chunk_starts.push_back(c.start);
  spec.frames = o.frames;
  spec.fps = Rational{24, 1};
  spec.output_path = dir / "segue.mp4";
  const auto t1 = Clock::now();
  Status s = AssembleOutput(spec);
  const double concat = Since(t1);
  if (!s.ok()) throw std::runtime_error("concatenation failed: " + s.message());
  const double total = encode + concat;
  std::cout << "encode " << o.frames << " frames " << o.width << "x" << o.height << " (x264 "
            << o.preset << ", crf " << o.crf << "), " << chunks.size() << " chunks of "
            << o.chunk_frames << " on " << o.workers << " workers: " << total
            << " s (concatenation " << 100.0 * concat / total << "% of it); one ffmpeg command, "
            << "same settings: " << same << " s (ratio " << same / total
            << "); ffmpeg with its own threads: " << own << " s (ratio " << own / total
            << ") (targets: ratio >= 1.8 against the same settings, concatenation < 1%)\n";
  return {{"bench", "encode"},
          {"frames", o.frames},
          {"width", o.width},
          {"height", o.height},
          {"chunks", chunks.size()},
          {"workers", o.workers},
          {"segue_seconds", total},
          {"concat_seconds", concat},
          {"concat_share", concat / total},
          {"ffmpeg_same_settings_seconds", same},
          {"ratio_same_settings", same / total},
          {"ffmpeg_threaded_seconds", own},
          {"ratio_threaded", own / total},
          {"target_ratio", 1.8},
          {"target_concat_share", 0.01}};
}

}  // namespace segue
