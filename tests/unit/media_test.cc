// FFmpeg output: chunks encode on their own and concatenate exactly; audio fits the picture.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <tuple>

#include "common/media/audio.h"
#include "common/media/video.h"
#include "tests/support/test_util.h"

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

// An assembly of the one chunk `chunk` (48 frames at 24 fps) with `song` shifted by `offset`.
AssembleSpec OneChunk(const std::string& chunk, const std::string& song, double offset,
                      const std::string& output) {
  AssembleSpec spec;
  spec.chunk_files = {chunk};
  spec.chunk_starts = {0};
  spec.frames = 48;
  spec.fps = Rational{24, 1};
  spec.audio_file = song;
  spec.audio_offset_seconds = offset;
  spec.output_path = output;
  return spec;
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
  // What an assembly killed half-way by another process left: removed by this one.
  std::filesystem::create_directories(dir / "out/.final.mp4.old-4242");
  std::ofstream(dir / "out/.final.mp4.partial-4242.mp4") << "half a video";
  Status s = AssembleOutput(spec);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_FALSE(std::filesystem::exists(dir / "out/.final.mp4.partial-4242.mp4"));
  EXPECT_FALSE(std::filesystem::exists(dir / "out/.final.mp4.old-4242"));
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
  AssembleSpec spec;
  spec.chunk_files = {dir / "c.mp4"};
  spec.chunk_starts = {0};
  spec.frames = 12;
  spec.fps = Rational{24, 1};
  spec.audio_file = dir / "long.wav";
  spec.output_path = dir / "o.mp4";
  ASSERT_TRUE(AssembleOutput(spec).ok());
  ProbeInfo p = Probe(dir / "o.mp4");
  EXPECT_EQ(p.frames, 12);
  EXPECT_NEAR(p.audio_duration, 0.5, 1.0 / 24);
}

TEST(Media, FailureLeavesNoOutput) {
  TempDir dir;
  std::ofstream(dir / "bad.mp4") << "not a video";
  AssembleSpec spec;
  spec.chunk_files = {dir / "bad.mp4"};
  spec.chunk_starts = {0};
  spec.frames = 12;
  spec.fps = Rational{24, 1};
  spec.output_path = dir / "o.mp4";
  EXPECT_FALSE(AssembleOutput(spec).ok());
  EXPECT_FALSE(std::filesystem::exists(dir / "o.mp4"));
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);  // only bad.mp4
}

// A chunk's frames are counted from its bytes (what the coordinator does with an encode
// result), and assembly refuses chunks that hold more or fewer frames than their share, leaving
// no output: a worker that claims 48 frames and sends 10 cannot shorten a video.
TEST(Media, ChunkFramesAreCountedAndAssemblyRefusesAChunkOfTheWrongLength) {
  TempDir dir;
  const int counts[] = {10, 7};
  for (int c = 0; c < 2; ++c) {
    auto rgb = Frames(64, 48, counts[c], 0);
    ASSERT_TRUE(
        EncodeChunkFile(dir / ("c" + std::to_string(c) + ".mp4"), Settings(), rgb.data(), counts[c])
            .ok());
  }
  std::ifstream in(dir / "c0.mp4", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto n = CountChunkFrames(bytes);
  ASSERT_TRUE(n.ok()) << n.message();
  EXPECT_EQ(*n, 10);
  EXPECT_FALSE(CountChunkFrames("not a video at all").ok());
  EXPECT_FALSE(CountChunkFrames("").ok());
  EXPECT_FALSE(CountChunkFrames(bytes.substr(0, bytes.size() / 3)).ok() &&
               *CountChunkFrames(bytes.substr(0, bytes.size() / 3)) == 10);
  for (const auto& [starts, frames, words] :
       std::vector<std::tuple<std::vector<int64_t>, int64_t, std::string>>{
           {{0, 12}, 19, "chunk 0 holds 10 frames, expected 12"},  // the first is short
           {{0, 8}, 15, "chunk 0 holds more than its 8 frames"}}) {
    AssembleSpec spec;
    spec.chunk_files = {dir / "c0.mp4", dir / "c1.mp4"};
    spec.chunk_starts = starts;
    spec.frames = frames;
    spec.fps = Rational{24, 1};
    spec.output_path = dir / "out/o.mp4";
    Status s = AssembleOutput(spec);
    ASSERT_FALSE(s.ok()) << words;
    EXPECT_NE(s.message().find(words), std::string::npos) << s.message();
    EXPECT_FALSE(std::filesystem::exists(dir / "out/o.mp4"));
  }
}

// Every codec: chunks of stamped frames (each frame's index drawn into its pixels) concatenate
// to exactly N frames in order, none duplicated, dropped or reordered at the joins; colour tags,
// pixel formats and the audio's codec and length are what the codec promises.
struct CodecCase {
  std::string codec, output, audio_in, video_codec, pix_fmt, audio_codec;
};

void PrintTo(const CodecCase& c, std::ostream* os) { *os << c.codec << " in " << c.output; }

class Codecs : public ::testing::TestWithParam<CodecCase> {};

TEST_P(Codecs, StampedFramesSurviveChunkJoinsExactly) {
  const CodecCase& c = GetParam();
  TempDir dir;
  const int w = 160, h = 96, bars = 10;
  const int counts[] = {9, 14, 11};  // odd sizes: joins fall anywhere in a GOP
  VideoSettings v;
  v.width = w, v.height = h, v.fps = Rational{24, 1}, v.codec = c.codec, v.preset = "veryfast";
  v.crf = 20;
  AssembleSpec spec;
  spec.codec = c.codec;
  int start = 0;
  for (int k = 0; k < 3; ++k) {
    std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3 * counts[k]);
    for (int f = 0; f < counts[k]; ++f)
      DrawStamp(rgb.data() + static_cast<size_t>(f) * w * h * 3, w, h, start + f, bars);
    std::string file = dir / ("c" + std::to_string(k) + ChunkExtension(c.codec));
    Status s = EncodeChunkFile(file, v, rgb.data(), counts[k]);
    ASSERT_TRUE(s.ok()) << s.message();
    spec.chunk_files.push_back(file);
    spec.chunk_starts.push_back(start);
    start += counts[k];
  }
  spec.frames = start;  // 34 frames = 1.4167 s
  spec.fps = Rational{24, 1};
  MakeTone(dir / c.audio_in, 1.0);  // shorter than the picture: padded
  spec.audio_file = dir / c.audio_in;
  spec.output_path = dir / c.output;
  Status s = AssembleOutput(spec);
  ASSERT_TRUE(s.ok()) << s.message();
  const double seconds = 34.0 / 24;

  std::vector<int64_t> want(34);
  for (int f = 0; f < 34; ++f) want[static_cast<size_t>(f)] = f;
  if (c.codec == "png") {
    int pngs = 0;
    for (auto& e : std::filesystem::directory_iterator(dir / c.output))
      pngs += e.path().extension() == ".png";
    EXPECT_EQ(pngs, 34);
    EXPECT_EQ(ReadStamps(dir / c.output + "/frame_%06d.png", bars), want);
    ProbeInfo a = Probe(dir / c.output + "/audio.wav");
    EXPECT_EQ(a.audio_codec, "pcm_s16le");
    EXPECT_NEAR(a.audio_duration, seconds, 1.0 / 24);
  } else {
    ProbeInfo p = Probe(spec.output_path);
    EXPECT_EQ(p.video_codec, c.video_codec);
    EXPECT_EQ(p.frames, 34);
    EXPECT_EQ(p.pix_fmt, c.pix_fmt);
    EXPECT_EQ(p.color_primaries, "bt709");
    EXPECT_EQ(p.color_transfer, "bt709");
    EXPECT_EQ(p.color_space, "bt709");
    EXPECT_EQ(p.audio_codec, c.audio_codec);
    EXPECT_NEAR(p.video_duration, seconds, 1.0 / 24);
    EXPECT_NEAR(p.audio_duration, p.video_duration, 1.0 / 24);
    EXPECT_EQ(ReadStamps(spec.output_path, bars), want);
    if (c.codec == "prores") {
      EXPECT_EQ(p.profile, "HQ");
    }
  }
  // Nothing else is left beside the output.
  int entries = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path()))
    entries += e.path().filename().string()[0] == '.';
  EXPECT_EQ(entries, 0);
}

INSTANTIATE_TEST_SUITE_P(
    AllCodecs, Codecs,
    ::testing::Values(CodecCase{"h264", "o.mp4", "song.wav", "h264", "yuv420p", "aac"},
                      CodecCase{"hevc", "o.mp4", "song.flac", "hevc", "yuv420p", "aac"},
                      CodecCase{"prores", "o.mov", "song.mp3", "prores", "yuv422p10le",
                                "pcm_s16le"},
                      CodecCase{"h264", "o.mkv", "song.m4a", "h264", "yuv420p", "aac"},
                      CodecCase{"png", "frames", "song.wav", "png", "rgb24", ""}),
    [](const auto& info) {
      return info.param.codec + "_" + info.param.output.substr(info.param.output.find('.') + 1);
    });

TEST(Media, AudioOffsetShiftsTheSong) {
  TempDir dir;
  auto rgb = Frames(64, 48, 48, 0);  // 2 s
  ASSERT_TRUE(EncodeChunkFile(dir / "c.mp4", Settings(), rgb.data(), 48).ok());
  // A song that is silent for its first second, then a tone.
  RunCommand(
      "ffmpeg -loglevel error -y -f lavfi -i "
      "\"aevalsrc=if(gt(t\\,1)\\,sin(2*PI*330*t)\\,0):d=3\" '" +
      dir / "late.wav" + "'");
  AssembleSpec spec;
  spec.chunk_files = {dir / "c.mp4"};
  spec.chunk_starts = {0};
  spec.frames = 48;
  spec.fps = Rational{24, 1};
  spec.audio_file = dir / "late.wav";
  // +0.5 s: the tone starts at 1.5 s.
  spec.audio_offset_seconds = 0.5;
  spec.output_path = dir / "later.mp4";
  ASSERT_TRUE(AssembleOutput(spec).ok());
  EXPECT_LT(MaxVolumeDb(spec.output_path, 0.0, 1.4), -60);
  EXPECT_GT(MaxVolumeDb(spec.output_path, 1.6, 2.0), -20);
  // -1 s: the silent second is cut, the tone starts at once.
  spec.audio_offset_seconds = -1.0;
  spec.output_path = dir / "sooner.mp4";
  ASSERT_TRUE(AssembleOutput(spec).ok());
  EXPECT_GT(MaxVolumeDb(spec.output_path, 0.1, 0.5), -20);
  ProbeInfo p = Probe(spec.output_path);
  EXPECT_NEAR(p.audio_duration, 2.0, 1.0 / 24);
}

// A song encoded once (EncodeAudioTrack) and copied into outputs gives the same bytes as encoding
// it in each assembly, in .mp4 and .mkv; a track made for another length is refused.
TEST(Media, AnEncodedAudioTrackIsCopiedIntoTheSameBytes) {
  TempDir dir;
  auto rgb = Frames(64, 48, 48, 0);  // 2 s
  ASSERT_TRUE(EncodeChunkFile(dir / "c.mp4", Settings(), rgb.data(), 48).ok());
  MakeTone(dir / "song.wav", 3.0);
  auto track = EncodeAudioTrack(dir / "song.wav", 48, Rational{24, 1}, 0.25);
  ASSERT_TRUE(track.ok()) << track.message();
  EXPECT_GT((*track)->packets.size(), 90u);  // 2 s of 1024-sample AAC frames at 48 kHz
  for (const char* ext : {".mp4", ".mkv"}) {
    AssembleSpec spec =
        OneChunk(dir / "c.mp4", dir / "song.wav", 0.25, dir / (std::string("encoded") + ext));
    ASSERT_TRUE(AssembleOutput(spec).ok());
    spec.audio_track = *track;
    spec.output_path = dir / (std::string("copied") + ext);
    Status s = AssembleOutput(spec);
    ASSERT_TRUE(s.ok()) << s.message();
    std::ifstream a(dir / (std::string("encoded") + ext), std::ios::binary),
        b(spec.output_path, std::ios::binary);
    const std::string encoded((std::istreambuf_iterator<char>(a)), {}),
        copied((std::istreambuf_iterator<char>(b)), {});
    EXPECT_FALSE(encoded.empty());
    // MP4 to the byte; Matroska writes a random segment id, so its streams' packets are compared.
    if (std::string(ext) == ".mp4") {
      EXPECT_TRUE(encoded == copied) << encoded.size() << " vs " << copied.size();
    }
    std::string hashes[2];
    for (int i = 0; i < 2; ++i)
      RunCommand("ffmpeg -v error -i '" +
                     dir / ((i ? std::string("copied") : std::string("encoded")) + ext) +
                     "' -map 0 -c copy -f streamhash -",
                 &hashes[i]);
    EXPECT_NE(hashes[0].find("1,a,"), std::string::npos) << hashes[0];
    EXPECT_EQ(hashes[0], hashes[1]) << ext;
    EXPECT_NEAR(Probe(spec.output_path).audio_duration, 2.0, 1.0 / 24) << ext;
  }
  // A preview's Opus, the same way.
  auto opus = EncodeAudioTrack(dir / "song.wav", 48, Rational{24, 1}, 0.25, "opus");
  ASSERT_TRUE(opus.ok()) << opus.message();
  AssembleSpec preview = OneChunk(dir / "c.mp4", dir / "song.wav", 0.25, dir / "opus-encoded.mp4");
  preview.audio_codec = "opus";
  Status ps = AssembleOutput(preview);
  ASSERT_TRUE(ps.ok()) << ps.message();
  preview.audio_track = *opus;
  preview.output_path = dir / "opus-copied.mp4";
  ps = AssembleOutput(preview);
  ASSERT_TRUE(ps.ok()) << ps.message();
  const ProbeInfo po = Probe(preview.output_path);
  EXPECT_EQ(po.audio_codec, "opus");
  EXPECT_NEAR(po.audio_duration, 2.0, 1.0 / 24);
  EXPECT_EQ(po.frames, 48);
  std::ifstream oa(dir / "opus-encoded.mp4", std::ios::binary),
      ob(preview.output_path, std::ios::binary);
  EXPECT_TRUE(std::string((std::istreambuf_iterator<char>(oa)), {}) ==
              std::string((std::istreambuf_iterator<char>(ob)), {}));
  // An AAC track is not an Opus output's.
  preview.audio_track = *track;
  preview.output_path = dir / "mismatch.mp4";
  EXPECT_FALSE(AssembleOutput(preview).ok());

  // Offset 0: not what the track was made for.
  AssembleSpec other = OneChunk(dir / "c.mp4", dir / "song.wav", 0, dir / "wrong.mp4");
  other.audio_track = *track;
  EXPECT_FALSE(AssembleOutput(other).ok());
  EXPECT_FALSE(std::filesystem::exists(dir / "wrong.mp4"));
}

TEST(Media, AnExistingOutputIsKeptUnlessReplacing) {
  TempDir dir;
  auto rgb = Frames(64, 48, 12, 0);
  ASSERT_TRUE(EncodeChunkFile(dir / "c.mp4", Settings(), rgb.data(), 12).ok());
  std::ofstream(dir / "o.mp4") << "precious";
  AssembleSpec spec;
  spec.chunk_files = {dir / "c.mp4"};
  spec.chunk_starts = {0};
  spec.frames = 12;
  spec.fps = Rational{24, 1};
  spec.output_path = dir / "o.mp4";
  Status s = AssembleOutput(spec);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("output.overwrite"), std::string::npos) << s.message();
  std::ifstream in(dir / "o.mp4");
  std::string kept((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(kept, "precious");
  spec.replace = true;
  ASSERT_TRUE(AssembleOutput(spec).ok());
  EXPECT_EQ(Probe(dir / "o.mp4").frames, 12);
}

TEST(Media, ProbeAudio) {
  TempDir dir;
  MakeTone(dir / "a.wav", 0.2);
  EXPECT_TRUE(ProbeAudioFile(dir / "a.wav").ok());
  std::ofstream(dir / "b.wav") << "RIFF nonsense";
  EXPECT_FALSE(ProbeAudioFile(dir / "b.wav").ok());
  EXPECT_FALSE(ProbeAudioFile(dir / "missing.wav").ok());
}

// A segment's thumbnail decodes back to its picture (JPEG's loss aside), at the size it was made;
// bytes that are not a whole JPEG are refused, never decoded into a picture of the wrong size.
TEST(Media, AThumbnailDecodesBackToItsPictureAndBrokenOnesAreRefused) {
  const int w = 64, h = 32;
  const std::vector<uint8_t> rgb = Frames(w, h, 1, 3);
  auto jpeg = EncodeThumbnailJpeg(rgb.data(), w, h);
  ASSERT_TRUE(jpeg.ok()) << jpeg.message();
  auto picture = DecodeJpeg(*jpeg);
  ASSERT_TRUE(picture.ok()) << picture.message();
  ASSERT_EQ(picture->width, w);
  ASSERT_EQ(picture->height, h);
  ASSERT_EQ(picture->rgb.size(), rgb.size());
  double error = 0;
  for (size_t i = 0; i < rgb.size(); ++i) error += std::abs(int(rgb[i]) - int(picture->rgb[i]));
  EXPECT_LT(error / rgb.size(), 8.0) << "mean difference per channel";
  // A picture scaled down to the thumbnail's width keeps its aspect.
  const std::vector<uint8_t> wide = Frames(384, 96, 1, 0);
  auto small = DecodeJpeg(*EncodeThumbnailJpeg(wide.data(), 384, 96));
  ASSERT_TRUE(small.ok()) << small.message();
  EXPECT_EQ(small->width, 192);
  EXPECT_EQ(small->height, 48);

  for (const std::string& broken :
       {std::string(), std::string("\xff\xd8\xff\xd9"), std::string("not a picture at all"),
        jpeg->substr(0, 20) + "\xff\xd9", jpeg->substr(0, jpeg->size() - 2)})
    EXPECT_FALSE(DecodeJpeg(broken).ok()) << broken.size() << " bytes";
  // Cut in the middle of its pictures' data: an error, or a picture of the size its header says.
  auto cut = DecodeJpeg(jpeg->substr(0, jpeg->size() / 2) + "\xff\xd9");
  EXPECT_TRUE(!cut.ok() || (cut->width == w && cut->height == h));
  // A header that says 16000x16000 is refused from the header (the bytes are a 64x32 picture's).
  std::string huge = *jpeg;
  const size_t sof = huge.find("\xff\xc0");
  ASSERT_NE(sof, std::string::npos);
  huge.replace(sof + 5, 4, "\x3e\x80\x3e\x80");  // height, width: 16000 each, big-endian
  auto refused = DecodeJpeg(huge);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("cannot decode the JPEG picture"), std::string::npos)
      << refused.message();
}

// JPEGs other encoders make (4:2:2, 4:4:4, odd sizes whose rows are not a whole number of SIMD
// blocks) decode to what FFmpeg's own command decodes them to, right edge included.
TEST(Media, JpegsOfEveryLayoutDecodeToTheirPictures) {
  TempDir dir;
  for (const auto& [size, format] :
       std::vector<std::pair<std::string, std::string>>{{"17x9", "yuvj420p"},
                                                        {"100x50", "yuvj420p"},
                                                        {"21x10", "yuvj422p"},
                                                        {"19x11", "yuvj444p"}}) {
    const std::string jpg = dir / (size + format + ".jpg");
    ASSERT_EQ(RunCommand("ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=128x64:rate=1 -vf "
                         "scale=" +
                         std::string(size).replace(size.find('x'), 1, ":") +
                         " -frames:v 1 -pix_fmt " + format + " -strict -1 '" + jpg + "'"),
              0)
        << size << " " << format;
    // What FFmpeg's command makes of it with the scaler flags each reader uses.
    std::string expected, expected_bicubic;
    for (auto [flags, out] : {std::pair{"neighbor", &expected}, {"bicubic", &expected_bicubic}})
      ASSERT_EQ(RunCommand("ffmpeg -loglevel error -i '" + jpg +
                               "' -f rawvideo -pix_fmt rgb24 -sws_flags " + flags + " -",
                           out),
                0);
    std::ifstream in(jpg, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto picture = DecodeJpeg(bytes);
    ASSERT_TRUE(picture.ok()) << size << " " << format << ": " << picture.message();
    const int w = std::stoi(size), h = std::stoi(size.substr(size.find('x') + 1));
    ASSERT_EQ(picture->width, w) << format;
    ASSERT_EQ(picture->height, h) << format;
    ASSERT_EQ(expected.size(), picture->rgb.size()) << size << " " << format;
    // Every pixel within FFmpeg's rounding of the same conversion, and the last column (the one
    // SIMD conversions leave out) as close as the rest.
    auto expect_near = [&](const std::string& expected, const uint8_t* rgb, const char* what) {
      int worst = 0, worst_last_column = 0;
      for (size_t i = 0; i < expected.size(); ++i) {
        const int d = std::abs(int(uint8_t(expected[i])) - int(rgb[i]));
        worst = std::max(worst, d);
        if ((i / 3) % w == static_cast<size_t>(w - 1))
          worst_last_column = std::max(worst_last_column, d);
      }
      EXPECT_LE(worst, 3) << what << " " << size << " " << format;
      EXPECT_LE(worst_last_column, 3) << what << " " << size << " " << format;
    };
    expect_near(expected, picture->rgb.data(), "DecodeJpeg");
    // ReadVideoFrames (contact sheets, seams) converts its frames the same way.
    int frames = 0;
    Status read = ReadVideoFrames(jpg, [&](int64_t, const uint8_t* rgb, int fw, int fh) {
      ++frames;
      ASSERT_EQ(fw, w);
      ASSERT_EQ(fh, h);
      expect_near(expected_bicubic, rgb, "ReadVideoFrames");
    });
    ASSERT_TRUE(read.ok()) << read.message();
    EXPECT_EQ(frames, 1);
  }
}

}  // namespace
}  // namespace segue
