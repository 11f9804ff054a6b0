// FFmpeg output: chunks encode on their own and concatenate exactly; audio fits the picture.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/media/audio.h"
#include "common/media/video.h"
#include "tests/test_util.h"

namespace segue {
namespace {

std::vector<uint8_t> Frames(int w, int h, int n, int first) {
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3 * n);
  for (int f = 0; f < n; ++f)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        uint8_t* p = &rgb[((static_cast<size_t>(f) * h + y) * w + x) * 3];
        p[0] = static_cast<uint8_t>((x * 4 + (first + f) * 9) & 255);
        p[1] = static_cast<uint8_t>(y * 4);
        p[2] = static_cast<uint8_t>((first + f) * 20);
      }
  return rgb;
}

VideoSettings Settings() {
  VideoSettings v;
  v.width = 64, v.height = 48, v.fps = Rational{24, 1}, v.crf = 20, v.preset = "veryfast";
  return v;
}

TEST(Media, ChunksConcatenateToExactlyNFramesWithPaddedAudio) {
  TempDir dir;
  const int counts[] = {10, 7, 13};
  AssembleSpec spec;
  int start = 0;
  for (int c = 0; c < 3; ++c) {
    std::string f = dir / ("c" + std::to_string(c) + ".mp4");
    auto rgb = Frames(64, 48, counts[c], start);
    ASSERT_TRUE(EncodeChunkFile(f, Settings(), rgb.data(), counts[c]).ok());
    EXPECT_EQ(Probe(f).frames, counts[c]);  // a chunk decodes on its own
    spec.chunk_files.push_back(f);
    spec.chunk_starts.push_back(start);
    start += counts[c];
  }
  spec.frames = start;  // 30 frames = 1.25 s
  spec.fps = Rational{24, 1};
  MakeTone(dir / "short.wav", 0.5);  // shorter than the picture: padded
  spec.audio_file = dir / "short.wav";
  spec.output_path = dir / "out/final.mp4";
  Status s = AssembleOutput(spec);
  ASSERT_TRUE(s.ok()) << s.message();
  ProbeInfo p = Probe(spec.output_path);
  EXPECT_EQ(p.video_codec, "h264");
  EXPECT_EQ(p.frames, 30);
  EXPECT_EQ(p.width, 64);
  EXPECT_EQ(p.frame_rate, "24/1");
  ASSERT_TRUE(p.has_audio);
  EXPECT_EQ(p.audio_codec, "aac");
  EXPECT_NEAR(p.audio_duration, 1.25, 1.0 / 24);
  EXPECT_NEAR(p.video_duration, 1.25, 1.0 / 24);
  // No temporary file is left beside the output.
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir / "out")) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(Media, LongAudioIsTrimmedToThePicture) {
  TempDir dir;
  auto rgb = Frames(64, 48, 12, 0);
  ASSERT_TRUE(EncodeChunkFile(dir / "c.mp4", Settings(), rgb.data(), 12).ok());
  MakeTone(dir / "long.wav", 3.0);
  AssembleSpec spec{{dir / "c.mp4"}, {0}, 12, Rational{24, 1}, dir / "long.wav", dir / "o.mp4"};
  ASSERT_TRUE(AssembleOutput(spec).ok());
  ProbeInfo p = Probe(dir / "o.mp4");
  EXPECT_EQ(p.frames, 12);
  EXPECT_NEAR(p.audio_duration, 0.5, 1.0 / 24);
}

TEST(Media, FailureLeavesNoOutput) {
  TempDir dir;
  std::ofstream(dir / "bad.mp4") << "not a video";
  AssembleSpec spec{{dir / "bad.mp4"}, {0}, 12, Rational{24, 1}, "", dir / "o.mp4"};
  EXPECT_FALSE(AssembleOutput(spec).ok());
  EXPECT_FALSE(std::filesystem::exists(dir / "o.mp4"));
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);  // only bad.mp4
}

TEST(Media, ProbeAudio) {
  TempDir dir;
  MakeTone(dir / "a.wav", 0.2);
  EXPECT_TRUE(ProbeAudioFile(dir / "a.wav").ok());
  std::ofstream(dir / "b.wav") << "RIFF nonsense";
  EXPECT_FALSE(ProbeAudioFile(dir / "b.wav").ok());
  EXPECT_FALSE(ProbeAudioFile(dir / "missing.wav").ok());
}

}  // namespace
}  // namespace segue
