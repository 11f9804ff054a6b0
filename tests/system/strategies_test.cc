// Long-video strategies through real processes: each gives bitwise the same latents with 1, 2
// or 3 workers, and the seam report tells a hard cut from a chained continuation.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"

namespace segue {
namespace {

std::string Manifest(const TempDir& dir, const std::string& strategy, const std::string& size,
                     const std::string& segments, int steps, const std::string& duration,
                     bool transition, const std::string& model = "zoom") {
  std::string path = dir / (strategy.substr(0, strategy.find(',')) + ".yaml");
  // crf 10, near-lossless: codec noise where an encoded chunk starts must not read as a seam.
  std::ofstream(path) << "version: 1\nvideo: {" << size << ", fps: 24, duration: " << duration
                      << "}\nmodel: {name: " << model << ", steps: " << steps << "}\nsegments: {"
                      << segments << ", strategy: " << strategy << "}\nseed: 11\n"
                      << "output: {overwrite: true, crf: 10}\n"
                      << "timeline:\n  - {at: 0s, prompt: \"a golden dance hall\"}\n"
                      << (transition
                              ? "  - {at: 0.5s, prompt: \"blue night sea\", transition: 0.5s}\n"
                              : "");
  return path;
}

// Renders with `workers` local workers; returns the final latents of every segment.
std::vector<std::string> Render(const TempDir& dir, const std::string& manifest, int workers,
                                const std::string& out) {
  std::string log;
  const std::string state = dir / ("state-" + std::to_string(workers));
  int code = RunCommand(
      Cli("render '" + manifest + "' --workers " + std::to_string(workers) + " --output '" + out +
          "' --state-dir '" + state + "' --preset veryfast --chunk-frames 16"),
      &log, true);
  EXPECT_EQ(code, 0) << log;
  return StoredLatents(state + "/store", 1);
}

class Strategy : public ::testing::TestWithParam<const char*> {};

TEST_P(Strategy, SameFramesWithOneTwoOrThreeWorkers) {
  TempDir dir;
  std::string m =
      Manifest(dir, GetParam(), "width: 64, height: 48", "length: 8, overlap: 3", 6, "1.5s", true);
  auto one = Render(dir, m, 1, dir / "one.mp4");
  EXPECT_EQ(one.size(), 7u);  // 36 frames in segments of 8 with 3 of overlap
  EXPECT_TRUE(Render(dir, m, 2, dir / "two.mp4") == one);
  EXPECT_TRUE(Render(dir, m, 3, dir / "three.mp4") == one);
  EXPECT_EQ(Probe(dir / "three.mp4").frames, 36);
}

// The same on a model that compresses time 4x (zoom4): 36 frames are 10 latent frames, in
// segments of 9 frames (3 latent frames) sharing 4 (1), decoded in chunks with context.
TEST_P(Strategy, SameFramesWithOneTwoOrThreeWorkersWhenTimeIsCompressed) {
  TempDir dir;
  std::string m = Manifest(dir, GetParam(), "width: 64, height: 48", "length: 9, overlap: 4", 6,
                           "1.5s", true, "zoom4");
  auto one = Render(dir, m, 1, dir / "one.mp4");
  EXPECT_EQ(one.size(), 5u);
  EXPECT_TRUE(Render(dir, m, 2, dir / "two.mp4") == one);
  EXPECT_TRUE(Render(dir, m, 3, dir / "three.mp4") == one);
  EXPECT_EQ(Probe(dir / "three.mp4").frames, 36);
}

// The sampler's schedule travels from the manifest to the workers: explicit levels equal to the
// default spacing render bitwise the default's latents; LTX-Video's shift by token count others.
TEST(Schedule, ExplicitSigmasAndShiftByTokensReachTheWorkers) {
  TempDir dir;
  auto latents = [&](const std::string& model, const std::string& name) {
    const std::string path = dir / (name + ".yaml");
    std::ofstream(path) << "version: 1\nvideo: {width: 64, height: 48, fps: 24, frames: 20}\n"
                        << "model: {name: zoom, " << model << "}\n"
                        << "segments: {length: 12, overlap: 4}\nseed: 3\n"
                        << "timeline: [{at: 0s, prompt: \"a golden dance hall\"}]\n";
    std::string log;
    const std::string state = dir / ("state-" + name);
    EXPECT_EQ(RunCommand(Cli("render '" + path + "' --workers 2 --output '" + dir / name +
                             ".mp4' --state-dir '" + state + "' --preset veryfast"),
                         &log, true),
              0)
        << log;
    return StoredLatents(state + "/store", 1);
  };
  const auto plain = latents("steps: 4", "plain");
  ASSERT_EQ(plain.size(), 2u);
  EXPECT_TRUE(latents("sigmas: [1.0, 0.75, 0.5, 0.25]", "even") == plain);
  EXPECT_FALSE(latents("steps: 4, shift: auto", "auto") == plain);
}

INSTANTIATE_TEST_SUITE_P(AllStrategies, Strategy,
                         ::testing::Values("independent", "chained", "codenoise"),
                         [](const auto& info) { return std::string(info.param); });

struct Worst {
  double whole = -1;  // against the whole video's median change
  double local = -1;  // against each join's busier side
};

Worst WorstSeam(const TempDir& dir, const std::string& strategy) {
  // One prompt: a prompt transition changes frames quickly too, and would read as a seam.
  std::string m =
      Manifest(dir, strategy, "width: 512, height: 288", "length: 32, overlap: 8", 30, "4s", false);
  std::string video = dir / "seams.mp4";
  Render(dir, m, 2, video);
  std::string out;
  EXPECT_EQ(RunCommand(Cli("plan --json '" + m + "' > '" + dir / "plan.json" + "'")), 0);
  EXPECT_EQ(
      RunCommand(Cli("seams '" + video + "' --plan '" + dir / "plan.json" + "' --json"), &out), 0)
      << out;
  auto j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << out;
  if (j.is_discarded()) return {};
  return {j["worst_ratio"].get<double>(), j["worst_local_ratio"].get<double>()};
}

TEST(Seams, HardCutsShowAndChainedOrCodenoisedSegmentsDoNot) {
  TempDir dir;
  Worst none = WorstSeam(dir, "independent, blend: none");
  EXPECT_GE(none.whole, 3.0);
  EXPECT_GE(none.local, 3.0);
  Worst chained = WorstSeam(dir, "chained");
  EXPECT_GT(chained.whole, 0);
  EXPECT_LE(chained.whole, 1.5);
  EXPECT_LE(chained.local, 1.5);
  Worst codenoise = WorstSeam(dir, "codenoise");  // over the half-precision exchange
  EXPECT_GT(codenoise.whole, 0);
  EXPECT_LE(codenoise.whole, 1.5);
  EXPECT_LE(codenoise.local, 1.5);
}

}  // namespace
}  // namespace segue
