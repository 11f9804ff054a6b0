// Long-video strategies through real processes: each gives bitwise the same latents with 1, 2
// or 3 workers, and the seam report tells a hard cut from a chained continuation.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace segue {
namespace {

std::string Manifest(const TempDir& dir, const std::string& strategy, const std::string& size,
                     const std::string& segments, int steps, const std::string& duration,
                     bool transition) {
  std::string path = dir / (strategy.substr(0, strategy.find(',')) + ".yaml");
  std::ofstream(path) << "version: 1\nvideo: {" << size << ", fps: 24, duration: " << duration
                      << "}\n"
                      << "model: {name: zoom, steps: " << steps << "}\n"
                      << "segments: {" << segments << ", strategy: " << strategy << "}\n"
                      << "seed: 11\noutput: {overwrite: true}\ntimeline:\n  - {at: 0s, prompt: \"a "
                         "golden dance hall\"}\n"
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

INSTANTIATE_TEST_SUITE_P(AllStrategies, Strategy,
                         ::testing::Values("independent", "chained", "codenoise"),
                         [](const auto& info) { return std::string(info.param); });

double WorstSeam(const TempDir& dir, const std::string& strategy) {
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
  return j.is_discarded() ? -1 : j["worst_ratio"].get<double>();
}

TEST(Seams, HardCutsShowAndChainedOrCodenoisedSegmentsDoNot) {
  TempDir dir;
  EXPECT_GE(WorstSeam(dir, "independent, blend: none"), 3.0);
  EXPECT_LE(WorstSeam(dir, "chained"), 1.5);
  EXPECT_LE(WorstSeam(dir, "codenoise"), 1.5);  // over the half-precision exchange
}

}  // namespace
}  // namespace segue
