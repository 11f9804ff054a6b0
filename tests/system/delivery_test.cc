// Delivery through the whole farm: every codec, rendered by workers in chunks and concatenated by
// the coordinator, has exactly N frames in order. The built-in `stamp` model draws each frame's
// time into its pixels, so a frame duplicated, dropped or reordered at a chunk or segment join
// would show.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "common/media/video.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

struct Case {
  std::string codec, output, audio;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.codec << " to " << c.output; }

class Delivery : public ::testing::TestWithParam<Case> {};

// 3 s at 24 fps: 72 frames in segments of 16 (overlap 4) and chunks of 20, so chunk joins fall
// inside segments and inside overlaps.
TEST_P(Delivery, EveryFrameOnceInOrderWithTheSong) {
  const Case& c = GetParam();
  TempDir dir;
  MakeTone(dir / c.audio, 2.0);  // shorter than the picture: padded with silence
  const std::string manifest = dir / "job.yaml";
  std::ofstream(manifest) << "version: 1\nname: stamped\n"
                          << "video: {width: 160, height: 96, fps: 24, duration: 3s}\n"
                          << "model: {name: stamp, steps: 2}\n"
                          << "segments: {length: 16, overlap: 4}\n"
                          << "timeline: [{at: 0s, prompt: frames}]\n"
                          << "audio: {path: " << c.audio << "}\n"
                          << "output: {path: " << c.output << ", codec: " << c.codec << "}\n";
  std::string log;
  ASSERT_EQ(RunCommand(Cli("render '" + manifest +
                           "' --workers 2 --chunk-frames 20 --preset "
                           "veryfast --state-dir '" +
                           dir / "state" + "'"),
                       &log, true),
            0)
      << log;
  const std::string out = dir / c.output;
  EXPECT_NE(log.find("output: " + out), std::string::npos) << log;
  std::vector<int64_t> want;
  for (int f = 0; f < 72; ++f) want.push_back(std::llround(f * 1000.0 / 24));
  if (c.codec == "png") {
    EXPECT_EQ(ReadStamps(out + "/frame_%06d.png", 20), want);
    EXPECT_TRUE(std::filesystem::exists(out + "/frame_000071.png"));
    EXPECT_FALSE(std::filesystem::exists(out + "/frame_000072.png"));
    EXPECT_NEAR(Probe(out + "/audio.wav").audio_duration, 3.0, 1.0 / 24);
  } else {
    ProbeInfo p = Probe(out);
    EXPECT_EQ(p.frames, 72);
    EXPECT_NEAR(p.video_duration, 3.0, 1.0 / 24);
    EXPECT_NEAR(p.audio_duration, p.video_duration, 1.0 / 24);
    EXPECT_EQ(p.color_primaries, "bt709");
    EXPECT_EQ(ReadStamps(out, 20), want);
  }

  // Rendering again to the same place is refused, and the first output stays as it was.
  const auto before = std::filesystem::last_write_time(out);
  EXPECT_EQ(
      RunCommand(Cli("render '" + manifest + "' --workers 1 --state-dir '" + dir / "again" + "'"),
                 &log, true),
      2)
      << log;
  EXPECT_NE(log.find("output.path"), std::string::npos) << log;
  EXPECT_NE(log.find("output.overwrite: true"), std::string::npos) << log;
  EXPECT_EQ(std::filesystem::last_write_time(out), before);
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, Delivery,
                         ::testing::Values(Case{"h264", "out/v.mp4", "song.mp3"},
                                           Case{"hevc", "out/v.mp4", "song.wav"},
                                           Case{"prores", "out/v.mov", "song.flac"},
                                           Case{"png", "out/frames", "song.m4a"}),
                         [](const auto& info) { return info.param.codec; });

// Models that compress time (stamp4, stamp8: r = 4 and 8, causal like Wan's and LTX-Video's
// VAEs) through the whole farm: the plan is made in latent frames, chunks are decoded with a
// latent frame of context, and the 72 frames (not 1 + r k: padded to 73, trimmed) come out once
// each and in order across segment joins, chunk joins and the trim. Each model meets every
// strategy and every codec.
struct CompressedCase {
  std::string model, strategy, codec, output;
  int length, overlap;
};

void PrintTo(const CompressedCase& c, std::ostream* os) {
  *os << c.model << " " << c.strategy << " " << c.codec;
}

class CompressedTime : public ::testing::TestWithParam<CompressedCase> {};

TEST_P(CompressedTime, EveryFrameOnceInOrder) {
  const CompressedCase& c = GetParam();
  TempDir dir;
  const std::string manifest = dir / "job.yaml";
  std::ofstream(manifest) << "version: 1\nname: stamped\n"
                          << "video: {width: 160, height: 96, fps: 24, duration: 3s}\n"
                          << "model: {name: " << c.model << ", steps: 2}\n"
                          << "segments: {length: " << c.length << ", overlap: " << c.overlap
                          << ", strategy: " << c.strategy << "}\n"
                          << "timeline: [{at: 0s, prompt: frames}]\n"
                          << "output: {path: " << c.output << ", codec: " << c.codec << "}\n";
  std::string log;
  ASSERT_EQ(RunCommand(Cli("render '" + manifest +
                           "' --workers 2 --chunk-frames 20 --preset veryfast --state-dir '" +
                           dir / "state" + "'"),
                       &log, true),
            0)
      << log;
  // Which frame each delivered frame is: its time in ms at 24 fps. (Co-denoising exchanges
  // overlaps in half precision, so a stamped time may be a millisecond off; the frame it names
  // is not.)
  const std::string out = dir / c.output;
  std::vector<int64_t> ms;
  if (c.codec == "png") {
    ms = ReadStamps(out + "/frame_%06d.png", 20);
  } else {
    EXPECT_EQ(Probe(out).frames, 72);
    ms = ReadStamps(out, 20);
  }
  std::vector<int64_t> got, want;
  for (int64_t t : ms) got.push_back(std::llround(static_cast<double>(t) * 24 / 1000));
  for (int f = 0; f < 72; ++f) want.push_back(f);
  EXPECT_EQ(got, want);
}

INSTANTIATE_TEST_SUITE_P(
    EveryStrategyAndCodec, CompressedTime,
    ::testing::Values(CompressedCase{"stamp4", "independent", "h264", "v.mp4", 21, 8},
                      CompressedCase{"stamp4", "chained", "hevc", "v.mp4", 17, 4},
                      CompressedCase{"stamp4", "codenoise", "prores", "v.mov", 21, 8},
                      CompressedCase{"stamp4", "chained", "png", "frames", 21, 4},
                      CompressedCase{"stamp8", "chained", "h264", "v.mp4", 25, 8},
                      CompressedCase{"stamp8", "codenoise", "hevc", "v.mp4", 25, 16},
                      CompressedCase{"stamp8", "independent", "prores", "v.mov", 17, 8},
                      CompressedCase{"stamp8", "codenoise", "png", "frames", 25, 8}),
    [](const auto& info) {
      return info.param.model + "_" + info.param.strategy + "_" + info.param.codec;
    });

// The contact sheet puts the frames around each join where it says, for a person to look at.
TEST(ContactSheet, RowsShowTheFramesAroundEveryJoin) {
  TempDir dir;
  const int w = 160, h = 96, bars = 10, n = 60;
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3 * n);
  for (int f = 0; f < n; ++f)
    DrawStamp(rgb.data() + static_cast<size_t>(f) * w * h * 3, w, h, f, bars);
  VideoSettings v;
  v.width = w, v.height = h, v.fps = Rational{24, 1}, v.preset = "veryfast";
  ASSERT_TRUE(EncodeChunkFile(dir / "v.mp4", v, rgb.data(), n).ok());
  std::ofstream(dir / "plan.json")
      << R"({"segments": [{"start": 0, "end": 24}, {"start": 18, "end": 42}, {"start": 36, "end": 60}]})";
  std::string out;
  ASSERT_EQ(RunCommand(Cli("contact-sheet '" + dir / "v.mp4" + "' --plan '" + dir / "plan.json" +
                           "' -o '" + dir / "sheet.png" + "' --thumb-width 160"),
                       &out, true),
            0)
      << out;
  EXPECT_NE(out.find("row 2: join 1|2, frames 35 36 38 40 41 42"), std::string::npos) << out;
  const std::vector<std::vector<int64_t>> rows = {{17, 18, 20, 22, 23, 24},
                                                  {35, 36, 38, 40, 41, 42}};
  int pictures = 0;
  Status s = ReadVideoFrames(dir / "sheet.png", [&](int64_t, const uint8_t* sheet, int sw, int sh) {
    ++pictures;
    ASSERT_EQ(sw, 6 * w + 7 * 4);
    ASSERT_EQ(sh, 2 * (h + 4) + 4);
    for (int r = 0; r < 2; ++r) {
      for (int c = 0; c < 6; ++c) {
        const uint8_t* cell =
            sheet + (static_cast<size_t>(4 + r * (h + 4)) * sw + 4 + c * (w + 4)) * 3;
        EXPECT_EQ(ReadStamp(cell, sw, w, h, bars), rows[r][c]) << "row " << r << " column " << c;
      }
    }
  });
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(pictures, 1);
  // A plan that does not match the video is refused, and no sheet is written.
  std::ofstream(dir / "short.json")
      << R"({"segments": [{"start": 0, "end": 24}, {"start": 18, "end": 42}]})";
  EXPECT_EQ(RunCommand(Cli("contact-sheet '" + dir / "v.mp4" + "' --plan '" + dir / "short.json" +
                           "' -o '" + dir / "bad.png" + "'"),
                       &out, true),
            2)
      << out;
  EXPECT_NE(out.find("has 60 frames but the plan has 42"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.png"));
}

}  // namespace
}  // namespace segue
