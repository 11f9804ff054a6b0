// End to end through real processes on loopback: segue-coordinator, segue-worker and the segue
// CLI talk over ZeroMQ; the output is checked with ffprobe.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/util/process.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

namespace fs = std::filesystem;

// 2 s at 12 fps: 24 frames in 5 segments of 8 (overlap 3).
const char* kManifest = R"(version: 1
name: e2e
video: {width: 64, height: 48, fps: 12, duration: 2s}
model: {name: zoom, steps: 6}
segments: {length: 8, overlap: 3}
seed: 5
timeline:
  - {at: 0s, prompt: "a golden dance hall"}
  - {at: 1s, prompt: "blue night sea", transition: 0.5s}
audio: {path: song.wav}
output: {path: out/e2e.mp4}
)";

std::string WriteJob(const TempDir& dir) {
  std::ofstream(dir / "job.yaml") << kManifest;
  MakeTone(dir / "song.wav", 1.5);  // shorter than the picture
  return dir / "job.yaml";
}

void ExpectGoodOutput(const std::string& path) {
  ProbeInfo p = Probe(path);
  EXPECT_EQ(p.video_codec, "h264") << path;
  EXPECT_EQ(p.frames, 24);
  EXPECT_EQ(p.width, 64);
  EXPECT_EQ(p.height, 48);
  EXPECT_EQ(p.frame_rate, "12/1");
  ASSERT_TRUE(p.has_audio);
  EXPECT_NEAR(p.audio_duration, 2.0, 1.0 / 12);
}

TEST(EndToEnd, RenderRunsALocalFarm) {
  TempDir dir;
  std::string job = WriteJob(dir);
  std::string out;
  int code = RunCommand(
      Cli("render '" + job + "' --workers 2 --state-dir '" + dir / "state" + "' --preset veryfast"),
      &out, true);
  ASSERT_EQ(code, 0) << out;
  // The last line names the output; it lies where the manifest says, relative to its folder.
  EXPECT_NE(out.find("output: " + dir / "out/e2e.mp4"), std::string::npos) << out;
  ExpectGoodOutput(dir / "out/e2e.mp4");
  EXPECT_TRUE(fs::exists(dir / "state/store/CURRENT"));  // RocksDB state in the state dir
}

TEST(EndToEnd, SeparateProcessesAndTheSameFramesWhateverTheWorkers) {
  TempDir dir;
  std::string job = WriteJob(dir);
  // Reference: one worker, through `segue render`.
  std::string out;
  ASSERT_EQ(
      RunCommand(Cli("render '" + job + "' --workers 1 --output '" + dir / "one.mp4" +
                     "' --state-dir '" + dir / "s1" + "' --preset veryfast --chunk-frames 16"),
                 &out, true),
      0)
      << out;

  // A long-lived coordinator, workers started separately, a client that submits.
  LocalFarm farm(dir / "farm", 3, {"--chunk-frames", "16"});
  ASSERT_TRUE(farm.ok());
  const std::string endpoint = farm.endpoint();
  ASSERT_EQ(RunCommand(Cli("submit '" + job + "' --coordinator " + endpoint), &out, true), 0)
      << out;
  std::string id = SubmittedJobId(out);
  ASSERT_FALSE(id.empty());
  nlohmann::json status;
  for (int i = 0; i < 600; ++i) {
    // SEGUE_COORDINATOR stands in for --coordinator.
    ASSERT_EQ(
        RunCommand("SEGUE_COORDINATOR=" + endpoint + " " + Cli("status " + id + " --json"), &out),
        0)
        << out;
    status = nlohmann::json::parse(out);
    if (status["state"] == "DONE" || status["state"] == "FAILED") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(status["state"], "DONE") << status.dump();
  EXPECT_DOUBLE_EQ(status["progress"].get<double>(), 1.0);
  EXPECT_EQ(status["segments"]["done"], 5);
  EXPECT_EQ(status["segments"]["waiting"], 0);
  EXPECT_EQ(status["segments"]["states"], "#####");  // the per-segment strip, every one done
  const std::string output = status["output"];
  EXPECT_EQ(output,
            fs::canonical(dir / "farm/root").string() + "/out/e2e.mp4");  // under the output root
  ExpectGoodOutput(output);

  // `segue jobs` lists it; an unknown job is bad input.
  ASSERT_EQ(RunCommand(Cli("status " + id + " --coordinator " + endpoint), &out, true), 0) << out;
  EXPECT_NE(out.find("[#####]"), std::string::npos) << out;
  ASSERT_EQ(RunCommand(Cli("jobs --coordinator " + endpoint), &out, true), 0) << out;
  EXPECT_NE(out.find("e2e"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(Cli("status 999 --coordinator " + endpoint), &out, true), 2) << out;
  EXPECT_NE(out.find("no job 999"), std::string::npos) << out;

  // Output paths stay inside the output root.
  std::string escaping = std::string(kManifest);
  escaping.replace(escaping.find("out/e2e.mp4"), 11, "../../etc/e2e.mp4");
  std::ofstream(dir / "escape.yaml") << escaping;
  EXPECT_EQ(
      RunCommand(Cli("submit '" + dir / "escape.yaml" + "' --coordinator " + endpoint), &out, true),
      2)
      << out;
  EXPECT_NE(out.find("output.path"), std::string::npos) << out;
  EXPECT_NE(out.find("leaves the output root"), std::string::npos) << out;

  // Bitwise the same latents with 1 worker and 3.
  auto reference = StoredLatents(dir / "s1/store", 1);
  EXPECT_EQ(reference.size(), 5u);
  farm.coordinator().Stop();
  EXPECT_TRUE(StoredLatents(dir / "farm/state", 1) == reference);
}

TEST(EndToEnd, BadManifestIsRefusedWithItsLocation) {
  TempDir dir;
  std::string text = kManifest;
  text.replace(text.find("width: 64"), 9, "width: 65");
  std::ofstream(dir / "bad.yaml") << text;
  MakeTone(dir / "song.wav", 1.0);
  std::string out;
  for (const char* cmd : {"plan", "render", "submit --coordinator tcp://127.0.0.1:1"}) {
    EXPECT_EQ(RunCommand(Cli(std::string(cmd) + " '" + dir / "bad.yaml" + "'"), &out, true), 2)
        << cmd << ": " << out;
    EXPECT_NE(out.find(dir / "bad.yaml" + ":3:16: video.width: must be a multiple of 8"),
              std::string::npos)
        << out;
  }
  EXPECT_EQ(RunCommand(Cli("render --workers 0 '" + dir / "bad.yaml" + "'"), &out, true), 2);
  EXPECT_EQ(RunCommand(Cli("frobnicate"), &out, true), 2);
  EXPECT_FALSE(fs::exists(dir / "out"));  // nothing half-written
}

// An address that is not a ZeroMQ endpoint is bad input for every program (exit 2, saying what
// an endpoint looks like), not an abort from inside ZeroMQ.
TEST(EndToEnd, MalformedAddressesAreBadInputForEveryProgram) {
  TempDir dir;
  std::string out;
  for (const char* cmd : {"jobs", "status 1", "cancel 1", "workers", "pool ls"}) {
    EXPECT_EQ(RunCommand(Cli(std::string(cmd) + " --coordinator 127.0.0.1:7450"), &out, true), 2)
        << cmd << ": " << out;
    EXPECT_NE(out.find("--coordinator: '127.0.0.1:7450' is not a ZeroMQ endpoint (no tcp:// "
                       "before it): expected tcp://HOST:PORT"),
              std::string::npos)
        << out;
  }
  EXPECT_EQ(RunCommand("SEGUE_COORDINATOR=http://x:1 " + Cli("jobs"), &out, true), 2) << out;
  EXPECT_NE(out.find("SEGUE_COORDINATOR: 'http://x:1'"), std::string::npos) << out;
  EXPECT_EQ(
      RunCommand("'" + BinDir() + "/segue-worker' --coordinator tcp://127.0.0.1:77777", &out, true),
      2)
      << out;
  EXPECT_NE(out.find("--coordinator: 'tcp://127.0.0.1:77777' is not a ZeroMQ endpoint (the port"),
            std::string::npos)
      << out;
  EXPECT_EQ(RunCommand("'" + BinDir() + "/segue-coordinator' --listen bogus --state-dir '" +
                           dir / "state" + "'",
                       &out, true),
            2)
      << out;
  EXPECT_NE(out.find("--listen: 'bogus' is not a ZeroMQ endpoint"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir / "state"));  // refused before anything was made
}

TEST(EndToEnd, PlanJsonFollowsTheRule) {
  TempDir dir;
  std::string job = WriteJob(dir);
  std::string out;
  ASSERT_EQ(RunCommand(Cli("plan --json '" + job + "'"), &out), 0) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["schema_version"], 1);
  EXPECT_EQ(j["frames"], 24);
  EXPECT_EQ(j["fps"], 12.0);  // a number, the exact fraction beside it
  EXPECT_EQ(j["fps_fraction"], "12/1");
  ASSERT_TRUE(j["segments"][0]["seed"].is_string());  // 64-bit values are strings
  EXPECT_GT(std::stoull(j["segments"][0]["seed"].get<std::string>()), 0u);
  ASSERT_EQ(j["segments"].size(), 5u);  // ceil((24 - 3) / 5)
  for (const auto& s : j["segments"]) EXPECT_EQ(s["end"].get<int>() - s["start"].get<int>(), 8);
  EXPECT_EQ(j["segments"][4]["start"], 16);
  EXPECT_EQ(j["segments"][4]["end"], 24);
  EXPECT_EQ(j["segments"][0]["prompts"], nlohmann::json::array({"a golden dance hall"}));
}

// A model that compresses time, planned from its metadata (--model-info, what its workers would
// report): the plan is in latent frames and shows both ranges; lengths that do not fit are
// refused with their place and the nearest that fit.
TEST(EndToEnd, PlanJsonInLatentFramesForAModelThatCompressesTime) {
  TempDir dir;
  std::ofstream(dir / "wan.json")
      << R"({"temporal_compression": 4, "patch_size": 2, "latent_channels": 16,
             "native_frames": [81], "native_fps": 16, "decode_context_before": 1})";
  auto manifest = [&](int length) {
    std::ofstream(dir / "wan.yaml")
        << "version: 1\nvideo: {width: 64, height: 48, fps: 16, frames: 81}\n"
        << "model: {name: wan, steps: 6}\nsegments: {length: " << length << ", overlap: 8}\n"
        << "timeline: [{at: 0s, prompt: \"a golden dance hall\"}]\n";
    return dir / "wan.yaml";
  };
  const std::string info = " --model-info '" + dir / "wan.json" + "'";
  std::string out;
  ASSERT_EQ(RunCommand(Cli("plan --json '" + manifest(33) + "'" + info), &out), 0) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["frames"], 81);
  EXPECT_EQ(j["latents"], 21);
  EXPECT_EQ(j["temporal_compression"], 4);
  EXPECT_EQ(j["latent_length"], 9);
  EXPECT_EQ(j["latent_overlap"], 2);
  ASSERT_EQ(j["segments"].size(), 3u);
  const int want[3][4] = {{0, 9, 0, 33}, {7, 16, 25, 61}, {12, 21, 45, 81}};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(j["segments"][i]["latent_start"], want[i][0]) << i;
    EXPECT_EQ(j["segments"][i]["latent_end"], want[i][1]) << i;
    EXPECT_EQ(j["segments"][i]["start"], want[i][2]) << i;
    EXPECT_EQ(j["segments"][i]["end"], want[i][3]) << i;
  }
  EXPECT_EQ(RunCommand(Cli("plan '" + manifest(32) + "'" + info), &out, true), 2) << out;
  EXPECT_NE(out.find(dir / "wan.yaml" + ":4:20: segments.length: 32 frames is not 1 + 4 k frames"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("nearest: 29 or 33"), std::string::npos) << out;
  std::ofstream(dir / "bad.json") << R"({"temporal_compression": 3})";
  EXPECT_EQ(RunCommand(Cli("plan '" + manifest(33) + "' --model-info '" + dir / "bad.json" + "'"),
                       &out, true),
            2)
      << out;
  EXPECT_NE(out.find("temporal_compression must be 1, 4, 6 or 8"), std::string::npos) << out;
}

}  // namespace
}  // namespace segue
