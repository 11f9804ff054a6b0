// Iterating like a director (coordinator/results.h): after one prompt in the middle of a
// 20-segment job is edited, the edited job renders only the segments the edit reaches, which
// depends on the strategy, takes every other segment from the first job's stored results, and
// comes out with latents bit-identical to the edited manifest rendered from scratch. `segue plan
// --against` says beforehand exactly which segments will render, and why.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "tests/support/test_util.h"
#include "tools/cli/client.h"

namespace segue {
namespace {

using namespace std::chrono_literals;

// 20 segments of 8 frames sharing 2: 122 frames at 12 fps. Keyframes at 0 s, 4 s (frame 48: the
// one edited) and 6 s (frame 72). 128x64: x264 does not encode pictures of 4x2 macroblocks
// (64x32) the same way every time in a process that runs libtorch between encodes (it reads
// memory it did not write), so a comparison of encoded files needs a little more picture.
std::string Manifest(const TempDir& dir, const std::string& name, const std::string& strategy,
                     const std::string& middle) {
  const std::string path = dir / (name + ".yaml");
  std::ofstream(path) << "version: 1\nname: " << name
                      << "\nvideo: {width: 128, height: 64, fps: 12, frames: 122}\n"
                      << "model: {name: zoom, steps: 2}\n"
                      << "segments: {length: 8, overlap: 2, strategy: " << strategy << "}\n"
                      << "seed: 11\noutput: {path: " << name << ".mp4, overwrite: true}\n"
                      << "timeline:\n  - {at: 0s, prompt: \"dawn over the harbour\"}\n"
                      << "  - {at: 4s, prompt: \"" << middle << "\"}\n"
                      << "  - {at: 6s, prompt: \"dusk on the pier\"}\n";
  return path;
}

uint64_t SubmitAndWait(const LocalFarm& farm, const std::string& manifest) {
  std::string out;
  EXPECT_EQ(
      RunCommand(Cli("submit '" + manifest + "' --coordinator " + farm.endpoint()), &out, true), 0)
      << out;
  const uint64_t id = std::stoull(SubmittedJobId(out));
  Client client(farm.endpoint(), 5000);
  for (int i = 0; i < 2400; ++i) {
    auto st = client.Status(id);
    if (st.ok() && st->Finished()) {
      EXPECT_EQ(st->state, "DONE") << st->error;
      return id;
    }
    std::this_thread::sleep_for(50ms);
  }
  ADD_FAILURE() << "job " << id << " did not finish";
  return id;
}

class Iterate : public ::testing::TestWithParam<const char*> {};

TEST_P(Iterate, AnEditedPromptRendersOnlyWhatItReachesAndTheSameBitsAsFromScratch) {
  const std::string strategy = GetParam();
  TempDir dir;
  const std::string first = Manifest(dir, "first", strategy, "a kiss in the rain");
  const std::string edited = Manifest(dir, "edited", strategy, "a kiss in the snow");
  uint64_t first_id = 0, edited_id = 0;
  nlohmann::json plan;
  std::set<int> rendered;  // segments of the edited job its workers rendered
  {
    LocalFarm farm(dir / "farm", 2);
    ASSERT_TRUE(farm.ok());
    ASSERT_TRUE(farm.WaitForWorkers());
    first_id = SubmitAndWait(farm, first);
    std::string out;
    ASSERT_EQ(RunCommand(Cli("plan '" + edited + "' --json --against " + std::to_string(first_id) +
                             " --coordinator " + farm.endpoint()),
                         &out),
              0)
        << out;
    plan = nlohmann::json::parse(out);
    edited_id = SubmitAndWait(farm, edited);
    Client client(farm.endpoint());
    auto logs = client.Logs(edited_id);
    ASSERT_TRUE(logs.ok()) << logs.message();
    const DoneSegments done = SegmentsDone(*logs);
    const std::set<int>& reused = done.reused;
    rendered = done.rendered;
    for (int s : reused) EXPECT_FALSE(rendered.count(s)) << s;
    EXPECT_EQ(reused.size() + rendered.size(), 20u);
    if (strategy == "independent") {
      // The cache lists both jobs. Planning the first manifest again reuses everything: the
      // segments the edit did not reach from either job, the others from the first.
      const std::string against_edited =
          Cli("plan '" + first + "' --json --against " + std::to_string(edited_id) +
              " --coordinator " + farm.endpoint());
      ASSERT_EQ(RunCommand(against_edited, &out), 0) << out;
      EXPECT_EQ(nlohmann::json::parse(out)["render"], 0) << out;
      ASSERT_EQ(RunCommand(Cli("cache ls --json --coordinator " + farm.endpoint()), &out), 0);
      auto cache = nlohmann::json::parse(out);
      ASSERT_EQ(cache["jobs"].size(), 2u) << out;
      EXPECT_EQ(cache["hits"], reused.size());
      // Room for one job's results evicts the least recently used: the first job's own (the
      // edited job's were made, or reused, no earlier than the first's were reused).
      ASSERT_EQ(cache["jobs"][1]["id"], std::to_string(edited_id)) << out;
      const std::string room = cache["jobs"][1]["bytes"];
      ASSERT_EQ(
          RunCommand(Cli("cache prune --to " + room + " --json --coordinator " + farm.endpoint()),
                     &out),
          0);
      cache = nlohmann::json::parse(out);
      // Only the first job's results the edit replaced go: the others both jobs hold, and the
      // cache counts (and keeps) them once.
      EXPECT_EQ(cache["evicted_segments"], rendered.size()) << out;
      ASSERT_EQ(cache["jobs"].size(), 2u) << out;
      EXPECT_EQ(cache["jobs"][1]["id"], std::to_string(edited_id));
      EXPECT_EQ(cache["bytes"], room) << out;
      // Now the first manifest's own segments must render again.
      ASSERT_EQ(RunCommand(against_edited, &out), 0) << out;
      EXPECT_EQ(nlohmann::json::parse(out)["render"], rendered.size()) << out;
    }
  }
  ASSERT_EQ(plan["segments"].size(), 20u);
  // The plan said beforehand what would render.
  std::set<int> planned;
  for (const auto& s : plan["segments"])
    if (s["action"] == "render") planned.insert(s["index"].get<int>());
  EXPECT_EQ(planned, rendered);
  EXPECT_EQ(plan["render"], rendered.size());

  // What the strategy makes the edit reach.
  ASSERT_FALSE(rendered.empty());
  const int first_touched = *rendered.begin(), last_touched = *rendered.rbegin();
  const auto& reasons = [&](int s) { return plan["segments"][s]["reasons"].dump(); };
  if (strategy == "independent") {
    // The segments whose frames the edited keyframe (frames 48 to 72) reaches, and no others:
    // a run in the middle, its own prompts changed.
    EXPECT_GT(first_touched, 0);
    EXPECT_LT(last_touched, 19);
    EXPECT_EQ(static_cast<int>(rendered.size()), last_touched - first_touched + 1);
    EXPECT_LT(rendered.size(), 8u);
    for (int s : rendered) EXPECT_NE(reasons(s).find("its prompts changed"), std::string::npos);
  } else if (strategy == "chained") {
    // From the first segment the edit reaches to the end: each later one's guide changes.
    EXPECT_GT(first_touched, 0);
    EXPECT_EQ(last_touched, 19);
    EXPECT_EQ(static_cast<int>(rendered.size()), 20 - first_touched);
    EXPECT_NE(reasons(first_touched).find("its prompts changed"), std::string::npos);
    EXPECT_NE(reasons(19).find("its guide, segment 18, changes"), std::string::npos);
  } else {
    // Co-denoised: every segment depends on every other at each step.
    EXPECT_EQ(rendered.size(), 20u);
    EXPECT_NE(reasons(0).find("co-denoised with segments that change"), std::string::npos);
  }

  // The same bits as the edited manifest rendered from scratch.
  std::string log;
  ASSERT_EQ(RunCommand(Cli("render '" + edited + "' --workers 2 --output '" + dir / "scratch.mp4" +
                           "' --state-dir '" + dir / "scratch" + "' --preset veryfast"),
                       &log, true),
            0)
      << log;
  const auto scratch = StoredLatents(dir / "scratch/store", 1);
  ASSERT_EQ(scratch.size(), 20u);
  EXPECT_TRUE(StoredLatents(dir / "farm/state", edited_id) == scratch);
  // And the same output: the farm's chunks, reused or encoded again, are the scratch render's.
  EXPECT_EQ(Probe(dir / "farm/root/edited.mp4").frames, 122);
  EXPECT_EQ(DecodedMd5(dir / "farm/root/edited.mp4"), DecodedMd5(dir / "scratch.mp4"));
}

INSTANTIATE_TEST_SUITE_P(AllStrategies, Iterate,
                         ::testing::Values("independent", "chained", "codenoise"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace segue
