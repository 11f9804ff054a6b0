// Manifest parsing: every rejection rule names FILE:LINE:COLUMN and the field.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/manifest/manifest.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

const char* kGood = R"(version: 1
name: the-hardest-part
video: {width: 512, height: 288, fps: 24, duration: 40s}
model: {name: zoom, steps: 30}
segments: {length: 48, overlap: 12, strategy: independent, blend: linear}
camera: {motion: zoom-in, speed: 0.15}
seed: 42
priority: 50
timeline:
  - {at: 0s, prompt: "two teenagers meet at a high-school dance"}
  - {at: 12s, prompt: "their wedding in a backyard, golden hour", transition: 2s}
output: {path: out/the_hardest_part.mp4, codec: h264, crf: 18}
)";

Result<Manifest> Parse(const std::string& text) {
  return ParseManifest(text, "job.yaml", ManifestParseOptions{});
}

// Replaces the first occurrence of `from` in kGood.
std::string Good(const std::string& from, const std::string& to) {
  std::string s = kGood;
  auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

void ExpectError(const std::string& text, int line, int column, const std::string& field,
                 const std::string& words) {
  auto m = Parse(text);
  ASSERT_FALSE(m.ok()) << "accepted:\n" << text;
  const std::string prefix =
      "job.yaml:" + std::to_string(line) + ":" + std::to_string(column) + ": ";
  EXPECT_EQ(m.message().rfind(prefix, 0), 0u) << m.message();
  EXPECT_NE(m.message().find(field), std::string::npos) << m.message();
  EXPECT_NE(m.message().find(words), std::string::npos) << m.message();
}

TEST(Manifest, AcceptsTheDocumentedShape) {
  auto m = Parse(kGood);
  ASSERT_TRUE(m.ok()) << m.message();
  EXPECT_EQ(m->name, "the-hardest-part");
  EXPECT_EQ(m->width, 512);
  EXPECT_EQ(m->height, 288);
  EXPECT_EQ(m->fps.num, 24);
  EXPECT_EQ(m->frames, 960);
  EXPECT_EQ(m->steps, 30);
  EXPECT_EQ(m->segment_length, 48);
  EXPECT_EQ(m->segment_overlap, 12);
  EXPECT_EQ(m->seed, 42u);
  ASSERT_EQ(m->timeline.size(), 2u);
  EXPECT_EQ(m->timeline[1].frame, 288);
  EXPECT_EQ(m->timeline[1].transition_frames, 48);
  EXPECT_EQ(m->output_path, "out/the_hardest_part.mp4");
}

TEST(Manifest, DefaultsWhereOptional) {
  auto m = Parse(
      "version: 1\nvideo: {width: 64, height: 64, fps: 12, frames: 30}\ntimeline: [{at: 0, prompt: "
      "x}]\n");
  ASSERT_TRUE(m.ok()) << m.message();
  EXPECT_EQ(m->name, "job");  // from the file name
  EXPECT_EQ(m->model_name, "zoom");
  EXPECT_EQ(m->steps, 30);
  EXPECT_EQ(m->strategy, Strategy::kIndependent);
  EXPECT_EQ(m->blend, "linear");
  EXPECT_EQ(m->priority, 50);
  EXPECT_EQ(m->output_path, "out/job.mp4");
  EXPECT_EQ(m->frames, 30);
}

TEST(Manifest, DurationForms) {
  for (auto [text, seconds] : std::vector<std::pair<std::string, double>>{{"40s", 40},
                                                                          {"40", 40},
                                                                          {"40.5", 40.5},
                                                                          {"00:00:40.000", 40},
                                                                          {"01:02", 62},
                                                                          {"1m30s", 90},
                                                                          {"1500ms", 1.5},
                                                                          {"1h", 3600}}) {
    auto d = ParseDuration(text);
    ASSERT_TRUE(d.ok()) << text << ": " << d.message();
    EXPECT_DOUBLE_EQ(*d, seconds) << text;
  }
  for (const char* bad : {"", "abc", "40x", "1:75", "s"})
    EXPECT_FALSE(ParseDuration(bad).ok()) << bad;
}

TEST(Manifest, FrameRateForms) {
  auto ntsc = ParseFps("24000/1001");
  ASSERT_TRUE(ntsc.ok());
  EXPECT_EQ(ntsc->num, 24000);
  EXPECT_EQ(ntsc->den, 1001);
  auto dec = ParseFps("29.97");
  ASSERT_TRUE(dec.ok());
  EXPECT_EQ(dec->num, 2997);
  EXPECT_EQ(dec->den, 100);
  auto m = Parse(Good("fps: 24,", "fps: \"24000/1001\","));
  ASSERT_TRUE(m.ok()) << m.message();
  EXPECT_EQ(m->frames, 959);  // 40 s at 23.976 fps, rounded to the nearest frame
}

// metadata: free-form strings a pipeline keeps with the job; names are plain, values text.
TEST(Manifest, MetadataIsAMapOfStrings) {
  auto m = Parse(Good("priority: 50",
                      "priority: 50\nmetadata: {show: hardest, shot: 010, "
                      "artist: \"Zoë\", take: 3}"));
  ASSERT_TRUE(m.ok()) << m.message();
  EXPECT_EQ(m->metadata.size(), 4u);
  EXPECT_EQ(m->metadata.at("shot"), "010");  // as written: a string, not the number 10
  EXPECT_EQ(m->metadata.at("artist"), "Zoë");
  EXPECT_EQ(m->metadata.at("take"), "3");
  EXPECT_TRUE(Parse(kGood)->metadata.empty());
  ExpectError(Good("priority: 50", "priority: 50\nmetadata: [a, b]"), 9, 11, "metadata",
              "expected a mapping of names to strings");
  ExpectError(Good("priority: 50", "priority: 50\nmetadata: {\"a b\": 1}"), 9, 12, "metadata.a b",
              "a key is 1 to 64 letters, digits");
  ExpectError(Good("priority: 50", "priority: 50\nmetadata: {shot: [1]}"), 9, 18, "metadata.shot",
              "expected a string");
  ExpectError(Good("priority: 50", "priority: 50\nmetadata: {shot: \"a\\0b\"}"), 9, 18,
              "metadata.shot", "holds a NUL character");
  ExpectError(
      Good("priority: 50", "priority: 50\nmetadata: {note: " + std::string(1025, 'x') + "}"), 9, 18,
      "metadata.note", "longer than 1024 bytes");
}

// webhooks: http:// receivers told of the job's state changes.
TEST(Manifest, WebhooksArePlainHttpUrls) {
  auto m = Parse(Good("priority: 50", "priority: 50\nwebhooks: [\"http://hooks:8081/segue\"]"));
  ASSERT_TRUE(m.ok()) << m.message();
  EXPECT_EQ(m->webhooks, std::vector<std::string>{"http://hooks:8081/segue"});
  ExpectError(Good("priority: 50", "priority: 50\nwebhooks: http://x/"), 9, 11, "webhooks",
              "expected a list of http:// URLs");
  ExpectError(Good("priority: 50", "priority: 50\nwebhooks: [\"https://x/\"]"), 9, 12,
              "webhooks[0]", "plain http://");
  ExpectError(Good("priority: 50", "priority: 50\nwebhooks: [\"http://x/\", \"http://x:0/\"]"), 9,
              25, "webhooks[1]", "a port from 1 to 65535");
  std::string nine = "priority: 50\nwebhooks: [";
  for (int i = 0; i < 9; ++i)
    nine += std::string(i ? ", " : "") + "\"http://x/" + std::to_string(i) + "\"";
  ExpectError(Good("priority: 50", nine + "]"), 9, 11, "webhooks", "more than 8 URLs");
}

TEST(ManifestRejects, UnknownKeyWithSuggestion) {
  ExpectError(Good("seed: 42", "sed: 42"), 7, 1, "sed", "did you mean 'seed'?");
  ExpectError(Good("width: 512", "widht: 512"), 3, 9, "video.widht", "did you mean 'width'?");
}

TEST(ManifestRejects, DuplicateKey) {
  ExpectError(Good("priority: 50", "priority: 50\nseed: 1"), 9, 1, "seed", "duplicate key");
}

TEST(ManifestRejects, WrongTypes) {
  ExpectError(Good("width: 512", "width: wide"), 3, 16, "video.width",
              "expected an integer, got 'wide'");
  // An integer too large for any integer type is named as what it is, not as a non-integer.
  ExpectError(Good("width: 512", "width: 99999999999999999999"), 3, 16, "video.width",
              "'99999999999999999999' is far outside the allowed range");
  ExpectError(Good("seed: 42", "seed: [1, 2]"), 7, 7, "seed", "expected a non-negative integer");
  ExpectError(Good("model: {name: zoom, steps: 30}", "model: zoom"), 4, 8, "model",
              "expected a mapping");
  ExpectError(Good("speed: 0.15", "speed: fast"), 6, 34, "camera.speed", "expected a number");
}

TEST(ManifestRejects, MissingRequiredFields) {
  ExpectError(
      "video: {width: 64, height: 64, fps: 12, frames: 30}\ntimeline: [{at: 0, prompt: x}]\n", 1, 1,
      "version", "missing required field 'version'");
  ExpectError("version: 1\ntimeline: [{at: 0, prompt: x}]\n", 1, 1, "video",
              "missing required field 'video'");
  ExpectError(
      "version: 1\nvideo: {width: 64, height: 64, fps: 12}\ntimeline: [{at: 0, prompt: x}]\n", 2, 8,
      "video.duration", "missing");
  ExpectError(
      "version: 1\nvideo: {width: 64, height: 64, fps: 12, frames: 3}\ntimeline: [{at: 0}]\n", 3,
      12, "timeline[0].prompt", "missing required field 'prompt'");
}

TEST(ManifestRejects, NonPositiveValues) {
  ExpectError(Good("width: 512", "width: 0"), 3, 16, "video.width", "must be positive");
  ExpectError(Good("height: 288", "height: -8"), 3, 29, "video.height", "must be positive");
  ExpectError(Good("fps: 24", "fps: 0"), 3, 39, "video.fps", "must be positive");
  ExpectError(Good("steps: 30", "steps: 0"), 4, 28, "model.steps", "must be positive");
  ExpectError(Good("length: 48", "length: 0"), 5, 20, "segments.length", "must be positive");
  ExpectError(Good("duration: 40s", "duration: 0s"), 3, 53, "video.duration", "must be positive");
}

TEST(ManifestRejects, SizesNotMultipleOfEight) {
  ExpectError(Good("width: 512", "width: 500"), 3, 16, "video.width", "multiple of 8");
  ExpectError(Good("height: 288", "height: 290"), 3, 29, "video.height", "multiple of 8");
}

TEST(ManifestRejects, OverlapNotBelowLength) {
  ExpectError(Good("overlap: 12", "overlap: 48"), 5, 33, "segments.overlap",
              "must be smaller than length");
}

// Explicit noise levels and LTX-Video's shift by token count (euler only); the levels decide
// the number of steps.
TEST(Manifest, SigmasAndShiftByTokens) {
  auto m = Parse(Good("model: {name: zoom, steps: 30}",
                      "model: {name: zoom, sigmas: [1.0, 0.9, 0.5, 0.1], shift: auto}"));
  ASSERT_TRUE(m.ok()) << m.message();
  EXPECT_EQ(m->sigmas, (std::vector<double>{1.0, 0.9, 0.5, 0.1}));
  EXPECT_EQ(m->steps, 4);
  EXPECT_TRUE(m->shift_from_tokens);
  EXPECT_FALSE(Parse(kGood)->shift_from_tokens);
  EXPECT_TRUE(Parse(kGood)->sigmas.empty());
  ExpectError(Good("steps: 30", "sigmas: [1.0, 0.5, 0.6]"), 4, 40, "model.sigmas[2]",
              "must decrease");
  ExpectError(Good("steps: 30", "sigmas: [1.5]"), 4, 30, "model.sigmas[0]", "(0, 1]");
  ExpectError(Good("steps: 30", "sigmas: []"), 4, 29, "model.sigmas", "expected a list");
  ExpectError(Good("steps: 30", "steps: 3, sigmas: [1.0, 0.5]"), 4, 28, "model.steps",
              "3 steps but 2 sigmas");
  ExpectError(Good("steps: 30", "sampler: ddim, sigmas: [1.0, 0.5]"), 4, 44, "model.sigmas",
              "flow-matching samplers only (euler, unipc)");
  auto unipc = Parse(Good("steps: 30", "sampler: unipc, sigmas: [0.9, 0.5], shift: 5"));
  ASSERT_TRUE(unipc.ok()) << unipc.message();
  EXPECT_EQ(unipc->sampler, "unipc");
  ExpectError(Good("steps: 30", "sampler: dpm"), 4, 30, "model.sampler", "unipc");
  ExpectError(Good("steps: 30", "shift: fast"), 4, 28, "model.shift", "expected a number");
}

TEST(ManifestRejects, TimelineOrder) {
  ExpectError(Good("at: 0s", "at: -1s"), 10, 10, "timeline[0].at", "at or after 0s");
  ExpectError(Good("at: 12s", "at: 0s"), 11, 10, "timeline[1].at", "increasing order");
  ExpectError(Good("at: 12s", "at: 41s"), 11, 10, "timeline[1].at", "past the end");
  ExpectError(Good("at: 12s", "at: 40s"), 11, 10, "timeline[1].at", "past the end");
}

TEST(ManifestRejects, EmptyPrompt) {
  ExpectError(Good("prompt: \"two teenagers meet at a high-school dance\"", "prompt: \"  \""), 10,
              22, "timeline[0].prompt", "prompt is empty");
  ExpectError(
      Good("timeline:\n  - {at: 0s, prompt: \"two teenagers meet at a high-school dance\"}\n  - "
           "{at: 12s, prompt: \"their wedding in a backyard, golden hour\", transition: 2s}",
           "timeline: []"),
      9, 11, "timeline", "at least one entry");
}

TEST(ManifestRejects, UnsupportedVersionAndStrategy) {
  ExpectError(Good("version: 1", "version: 2"), 1, 10, "version", "unsupported manifest version 2");
  ExpectError(Good("strategy: independent", "strategy: magic"), 5, 47, "segments.strategy",
              "unsupported strategy 'magic'");
  ExpectError(Good("blend: linear", "blend: smooth"), 5, 67, "segments.blend", "unsupported blend");
  ExpectError(Good("codec: h264", "codec: vp9"), 12, 49, "output.codec", "unsupported codec");
}

TEST(ManifestRejects, BrokenYaml) {
  auto m = Parse("version: 1\nvideo: {width: 512\n");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.message().rfind("job.yaml:3:", 0), 0u) << m.message();
  EXPECT_NE(m.message().find("broken YAML"), std::string::npos) << m.message();
  ExpectError("", 1, 1, "manifest", "empty");
  ExpectError("- just\n- a list\n", 1, 1, "manifest", "expected a mapping");
}

TEST(ManifestRejects, BinaryInput) {
  std::string bin = "version: 1\nname: x\x01\x02\xff\n";
  ExpectError(bin, 2, 8, "manifest", "not a YAML text file");
  ExpectError(std::string("\x89PNG\r\n\x1a\n", 8), 1, 1, "manifest", "not a YAML text file");
}

// A 400-digit number made std::stod throw out of the parser (the coordinator aborted on such a
// Submit, and so did segue plan); 60,000 digits overflowed the stack inside std::regex. Both
// are refused with the field's place, and the message does not echo the whole input.
TEST(ManifestRejects, HugeNumbersWithoutCrashing) {
  const std::string d400(400, '7'), d60k(60000, '7');
  for (const std::string& t : {d400, d400 + "s", d400 + ":00:00", "00:" + d400, "1h" + d400 + "m",
                               d60k, d60k + "s", d60k + ":00", std::string(65, ' ') + "1s"}) {
    auto d = ParseDuration(t);
    ASSERT_FALSE(d.ok()) << t.size();
    EXPECT_LT(d.message().size(), 200u) << d.message();
  }
  EXPECT_NE(ParseDuration(d400 + "s").message().find("longer than 64 characters"),
            std::string::npos);
  for (const std::string& t : {d400 + "GB", d400, d60k, d60k + "MiB"})
    EXPECT_FALSE(ParseBytes(t).ok()) << t.size();
  EXPECT_NE(ParseBytes(std::string(30, '9') + "TiB").message().find("too large"),
            std::string::npos);
  ExpectError(Good("at: 12s", "at: " + d400 + "s"), 11, 10, "timeline[1].at", "longer than 64");
  ExpectError(Good("at: 12s", "at: " + d60k), 11, 10, "timeline[1].at", "longer than 64");
  ExpectError(Good("at: 12s", "at: " + std::string(60, '9') + "h"), 11, 10, "timeline[1].at",
              "past the end");
  ExpectError(Good("fps: 24", "fps: 1e308"), 3, 39, "video.fps", "at most 240");
}

TEST(ManifestRejects, LimitsAgainstTypos) {
  ExpectError(Good("duration: 40s", "duration: 8760h"), 3, 53, "video.duration",
              "limit of 12 hours");
  ExpectError(Good("width: 512", "width: 15360"), 3, 16, "video.width", "between 1 and 7680");
  ExpectError(Good("height: 288", "height: 8640"), 3, 29, "video.height", "between 1 and 4320");
  ExpectError(Good("fps: 24", "fps: 1000"), 3, 39, "video.fps", "at most 240");
  ExpectError(Good("steps: 30", "steps: 100000"), 4, 28, "model.steps", "between 1 and 1000");
  ExpectError(Good("priority: 50", "priority: 101"), 8, 11, "priority", "between 0 and 100");
}

TEST(ManifestRejects, AudioThatCannotBeRead) {
  TempDir dir;
  const std::string text = std::string(kGood) + "audio: {path: song.wav}\n";
  ManifestParseOptions o;
  o.base_dir = dir.path();
  auto missing = ParseManifest(text, "job.yaml", o);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.message().rfind("job.yaml:13:15: audio.path: cannot read audio file", 0), 0u)
      << missing.message();
  std::ofstream(dir.path() + "/song.wav") << "this is not audio at all";
  auto garbage = ParseManifest(text, "job.yaml", o);
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.message().rfind("job.yaml:13:15: audio.path: cannot read audio file", 0), 0u)
      << garbage.message();
}

// A device or a song too large for a Submit message is named as what it is, before anything
// reads it whole (`segue submit` with a 600 MiB WAV aborted; /dev/zero was "no such file").
TEST(ManifestRejects, AudioThatIsNotAFileOrTooLarge) {
  TempDir dir;
  ManifestParseOptions o;
  o.base_dir = dir.path();
  auto device = ParseManifest(std::string(kGood) + "audio: {path: /dev/zero}\n", "job.yaml", o);
  ASSERT_FALSE(device.ok());
  EXPECT_NE(device.message().find("job.yaml:13:15: audio.path: audio file '/dev/zero' is not a "
                                  "regular file"),
            std::string::npos)
      << device.message();
  std::ofstream(dir.path() + "/huge.wav").put('R');
  std::filesystem::resize_file(dir.path() + "/huge.wav", uintmax_t{600} << 20);  // sparse
  auto huge = ParseManifest(std::string(kGood) + "audio: {path: huge.wav}\n", "job.yaml", o);
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.message().find("is 600 MiB, above the limit of 256 MiB"), std::string::npos)
      << huge.message();
}

// YAML escapes can put bytes in a prompt that the file could not hold (NUL, control
// characters), and byte patterns that look like UTF-8 can be overlong forms or surrogates.
// Prompts are text for a tokenizer: refused.
TEST(ManifestRejects, PromptsThatAreNotText) {
  const std::string prompt = "\"their wedding in a backyard, golden hour\"";
  for (const auto& [bad, why] : std::vector<std::pair<std::string, std::string>>{
           {"\"a\\0b\"", "NUL"},
           {"\"a\\x07b\"", "control character"},
           {"\"a\xED\xA0\x80z\"", "not valid UTF-8"},  // a surrogate, as raw bytes
           {"\"a\xC0\x80z\"", "not valid UTF-8"}}) {   // an overlong NUL
    ExpectError(Good(prompt, bad), 11, 23, "timeline[1].prompt", why);
  }
  ExpectError(std::string(kGood) + "negative_prompt: \"x\\0\"\n", 13, 18, "negative_prompt", "NUL");
  auto fine = Parse(Good(prompt, "\"caf\u00e9 \\u00e9t\u00e9, tab\\tand newline\\n\""));
  EXPECT_TRUE(fine.ok()) << fine.message();
}

TEST(ManifestRejects, FileErrorsNameTheFile) {
  auto m = LoadManifestFile("/nonexistent/job.yaml");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.message().rfind("/nonexistent/job.yaml: cannot open manifest", 0), 0u) << m.message();
}

}  // namespace
}  // namespace segue

namespace segue {
namespace {

TEST(Manifest, Requirements) {
  auto m = Parse(
      Good("priority: 50",
           "priority: 50\nrequirements: {device: cuda, memory: 24GiB, tags: [a100, studio-b]}"));
  ASSERT_TRUE(m.ok()) << m.message();
  EXPECT_EQ(m->require_device, "cuda");
  EXPECT_EQ(m->require_memory, 24ull << 30);
  EXPECT_EQ(m->require_tags, (std::vector<std::string>{"a100", "studio-b"}));
  EXPECT_EQ(*ParseBytes("512MiB"), 512ull << 20);
  EXPECT_EQ(*ParseBytes("2GB"), 2000000000ull);
  EXPECT_EQ(*ParseBytes("1024"), 1024ull);
  EXPECT_FALSE(ParseBytes("lots").ok());
  ExpectError(Good("priority: 50", "priority: 50\nrequirements: {device: tpu}"), 9, 24,
              "requirements.device", "unsupported device 'tpu'");
  ExpectError(Good("priority: 50", "priority: 50\nrequirements: {memory: huge}"), 9, 24,
              "requirements.memory", "expected a size");
  ExpectError(Good("priority: 50", "priority: 50\nrequirements: {tags: gpu}"), 9, 22,
              "requirements.tags", "expected a list of tags");
}

TEST(Manifest, CheckpointOverride) {
  auto plain = Parse(Good("priority: 50", "priority: 50"));
  ASSERT_TRUE(plain.ok()) << plain.message();
  EXPECT_FALSE(plain->checkpoint_steps.has_value());
  EXPECT_FALSE(plain->checkpoint_seconds.has_value());
  auto m = Parse(Good("priority: 50", "priority: 50\ncheckpoint: {steps: 5, seconds: 2m}"));
  ASSERT_TRUE(m.ok()) << m.message();
  EXPECT_EQ(m->checkpoint_steps, 5);
  EXPECT_EQ(m->checkpoint_seconds, 120);
  auto off = Parse(Good("priority: 50", "priority: 50\ncheckpoint: {steps: 0}"));
  ASSERT_TRUE(off.ok()) << off.message();
  EXPECT_EQ(off->checkpoint_steps, 0);
  ExpectError(Good("priority: 50", "priority: 50\ncheckpoint: {steps: -1}"), 9, 21,
              "checkpoint.steps", "between 0 and 1000");
  ExpectError(Good("priority: 50", "priority: 50\ncheckpoint: {seconds: 2d}"), 9, 23,
              "checkpoint.seconds", "");
  ExpectError(Good("priority: 50", "priority: 50\ncheckpoint: {every: 3}"), 9, 14, "checkpoint",
              "every");
}

TEST(Manifest, TakesAndPreview) {
  auto plain = Parse(kGood);
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->preview.has_value());
  EXPECT_EQ(plain->timeline[1].takes, 1);
  EXPECT_EQ(plain->timeline[1].take, 1);
  auto m = Parse(Good("transition: 2s}", "transition: 2s, takes: 4}") +
                 "preview: {steps: 6, scale: 0.25}\n");
  ASSERT_TRUE(m.ok()) << m.message();
  EXPECT_EQ(m->timeline[1].takes, 4);
  EXPECT_EQ(m->timeline[1].take, 1);
  auto chosen = Parse(Good("transition: 2s}", "transition: 2s, take: 2}"));
  ASSERT_TRUE(chosen.ok()) << chosen.message();
  EXPECT_EQ(chosen->timeline[1].take, 2);
  // Takes are rendered beside the manifest's own: a chosen take goes with none.
  ExpectError(Good("transition: 2s}", "transition: 2s, takes: 3, take: 2}"), 11, 99,
              "timeline[1].take", "cannot be written with takes: 3");
  ASSERT_TRUE(m->preview.has_value());
  EXPECT_EQ(m->preview->steps, 6);
  EXPECT_DOUBLE_EQ(m->preview->scale, 0.25);
  // The defaults: a quarter of the steps (rounded), half the size.
  auto d = Parse(std::string(kGood) + "preview: {}\n");
  ASSERT_TRUE(d.ok()) << d.message();
  EXPECT_EQ(d->preview->steps, 8);
  EXPECT_DOUBLE_EQ(d->preview->scale, 0.5);
  ExpectError(Good("transition: 2s}", "transition: 2s, takes: 17}"), 11, 90, "timeline[1].takes",
              "between 1 and 16");
  ExpectError(Good("transition: 2s}", "transition: 2s, take: 0}"), 11, 89, "timeline[1].take",
              "must be positive");
  ExpectError(std::string(kGood) + "preview: {scale: 2}\n", 13, 18, "preview.scale",
              "between 0.0625 and 1");
  ExpectError(std::string(kGood) + "preview: {size: 2}\n", 13, 11, "preview", "size");
  ExpectError(Good("steps: 30}", "sigmas: [1.0, 0.5]}") + "preview: {steps: 1}\n", 13, 18,
              "preview.steps", "model.sigmas");
  // Each take beyond the first is a job: 32 of them in all at most.
  std::string many =
      "version: 1\nvideo: {width: 64, height: 64, fps: 24, frames: 240}\n"
      "timeline:\n";
  for (int i = 0; i < 3; ++i)
    many += "  - {at: " + std::to_string(i) + "s, prompt: p" + std::to_string(i) + ", takes: 12}\n";
  ExpectError(many, 6, 33, "timeline[2].takes", "more than 32 takes");
}

TEST(Manifest, OutputCodecsPathsAndOverwrite) {
  const std::string line = "output: {path: out/the_hardest_part.mp4, codec: h264, crf: 18}";
  auto h264 = Parse(kGood);
  ASSERT_TRUE(h264.ok());
  EXPECT_FALSE(h264->output_overwrite);
  auto prores =
      Parse(Good(line, "output: {path: o.mov, codec: prores, profile: lt, overwrite: true}"));
  ASSERT_TRUE(prores.ok()) << prores.message();
  EXPECT_EQ(prores->output_codec, "prores");
  EXPECT_EQ(prores->output_profile, "lt");
  EXPECT_TRUE(prores->output_overwrite);
  auto hevc = Parse(Good(line, "output: {codec: hevc}"));
  ASSERT_TRUE(hevc.ok()) << hevc.message();
  EXPECT_EQ(hevc->output_path, "out/the-hardest-part.mp4");  // defaults follow the codec
  EXPECT_EQ(hevc->output_crf, 22);
  auto png = Parse(Good(line, "output: {codec: png}"));
  ASSERT_TRUE(png.ok()) << png.message();
  EXPECT_EQ(png->output_path, "out/the-hardest-part");  // a folder
  EXPECT_EQ(Parse(Good(line, "output: {codec: prores}"))->output_path, "out/the-hardest-part.mov");
  // Line 12 of kGood; the column is the value's.
  ExpectError(Good(line, "output: {path: o.mp4, codec: prores}"), 12, 16, "output.path",
              "prores goes in a .mov file");
  ExpectError(Good(line, "output: {path: o.mp4, codec: png}"), 12, 16, "output.path",
              "folder of frames");
  ExpectError(Good(line, "output: {path: o.avi}"), 12, 16, "output.path", ".mp4, .mov or .mkv");
  ExpectError(Good(line, "output: {codec: prores, crf: 10}"), 12, 30, "output.crf",
              "h264 and hevc only");
  ExpectError(Good(line, "output: {codec: h264, profile: hq}"), 12, 32, "output.profile",
              "prores only");
  ExpectError(Good(line, "output: {codec: prores, profile: ultra}"), 12, 34, "output.profile",
              "unsupported prores profile 'ultra'");
  ExpectError(Good(line, "output: {codec: av1}"), 12, 17, "output.codec", "supported: h264, hevc");
  ExpectError(Good(line, "output: {overwrite: yes please}"), 12, 21, "output.overwrite",
              "true or false");
}

TEST(Manifest, AudioOffset) {
  // Parsed without a folder, so the file is not looked for.
  const std::string at = "output: {path: out/the_hardest_part.mp4, codec: h264, crf: 18}";
  auto later = Parse(Good(at, at + "\naudio: {path: song.mp3, offset: 1.5s}"));
  ASSERT_TRUE(later.ok()) << later.message();
  EXPECT_DOUBLE_EQ(later->audio_offset_seconds, 1.5);
  auto sooner = Parse(Good(at, at + "\naudio: {path: song.mp3, offset: -250ms}"));
  ASSERT_TRUE(sooner.ok()) << sooner.message();
  EXPECT_DOUBLE_EQ(sooner->audio_offset_seconds, -0.25);
  ExpectError(Good(at, at + "\naudio: {path: song.mp3, offset: 2h}"), 13, 33, "audio.offset",
              "within -1h and 1h");
  ExpectError(Good(at, at + "\naudio: {path: song.mp3, offset: soon}"), 13, 33, "audio.offset", "");
}

}  // namespace
}  // namespace segue
