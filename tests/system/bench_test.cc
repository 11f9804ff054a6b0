// segue-bench runs and reports what it measured (the figures themselves are for
// docs/PERFORMANCE.md, not for tests: nothing here depends on the machine's speed).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"

namespace segue {
namespace {

TEST(Bench, FarmReportsDispatchAndEfficiency) {
  TempDir dir;
  std::string out;
  ASSERT_EQ(
      RunCommand("'" + BinDir() +
                     "/segue-bench' farm --tasks 300 --dispatch-workers 8 --workers 4 "
                     "--segments 10 --task-ms 20 --rounds 3 --paced-workers 16 --paced-rate 4000 "
                     "--json '" +
                     dir / "farm.json" + "'",
                 &out, true),
      0)
      << out;
  EXPECT_NE(out.find("tasks/s"), std::string::npos) << out;
  std::ifstream in(dir / "farm.json");
  auto results = nlohmann::json::parse(in);
  ASSERT_EQ(results.size(), 1u);
  const auto& farm = results[0];
  EXPECT_EQ(farm["bench"], "farm");
  EXPECT_EQ(farm["dispatch"]["tasks"], 300);
  EXPECT_GT(farm["dispatch"]["tasks_per_second"].get<double>(), 0);
  EXPECT_GT(farm["dispatch"]["baseline_echo_tasks_per_second"].get<double>(), 0);
  EXPECT_LE(farm["dispatch"]["latency_ms_p50"].get<double>(),
            farm["dispatch"]["latency_ms_p99"].get<double>());
  // Each figure is the median of the rounds' (every round kept).
  EXPECT_EQ(farm["rounds"], 3);
  for (const char* key : {"rounds_tasks_per_second", "rounds_latency_ms_p99"}) {
    auto v = farm["dispatch"][key].get<std::vector<double>>();
    ASSERT_EQ(v.size(), 3u) << key;
    std::sort(v.begin(), v.end());
    EXPECT_DOUBLE_EQ(v[1], farm["dispatch"][std::string(key).substr(7)].get<double>()) << key;
  }
  EXPECT_EQ(farm["efficiency"]["rounds_efficiency"].size(), 3u);
  // The paced run: offered the asked rate by the asked workers, every task served.
  const auto& paced = farm["dispatch_paced"];
  EXPECT_EQ(paced["workers"], 16);
  EXPECT_EQ(paced["offered_tasks_per_second"], 4000);
  EXPECT_GT(paced["tasks_per_second"].get<double>(), 0);
  // Never faster than offered, but for each worker's first task, asked for before the job came.
  EXPECT_LE(paced["tasks_per_second"].get<double>(), 4000.0 * 300 / (300 - 16));
  EXPECT_LE(paced["latency_ms_p50"].get<double>(), paced["latency_ms_p99"].get<double>());
  EXPECT_GT(paced["baseline_echo_latency_ms_p99"].get<double>(), 0);
  EXPECT_EQ(paced["rounds_latency_ms_p99"].size(), 3u);
  // 10 segments of 20 ms on 4 workers: 3 rounds, so the ideal is 60 ms, and no run beats it.
  EXPECT_DOUBLE_EQ(farm["efficiency"]["ideal_seconds"].get<double>(), 0.06);
  EXPECT_GT(farm["efficiency"]["efficiency"].get<double>(), 0);
  EXPECT_LE(farm["efficiency"]["efficiency"].get<double>(), 1.0);
  // Bad input is refused with exit code 2.
  EXPECT_EQ(RunCommand("'" + BinDir() + "/segue-bench' farm --workers 0", &out, true), 2) << out;
}

TEST(Bench, EncodeReportsChunkedAgainstOneFfmpeg) {
  TempDir dir;
  std::string out;
  ASSERT_EQ(RunCommand("'" + BinDir() +
                           "/segue-bench' encode --width 64 --height 48 --frames 48 "
                           "--chunk-frames 16 --preset veryfast --json '" +
                           dir / "encode.json" + "'",
                       &out, true),
            0)
      << out;
  std::ifstream in(dir / "encode.json");
  auto e = nlohmann::json::parse(in)[0];
  EXPECT_EQ(e["bench"], "encode");
  EXPECT_EQ(e["chunks"], 3);
  EXPECT_GT(e["segue_seconds"].get<double>(), e["concat_seconds"].get<double>());
  EXPECT_GT(e["ffmpeg_same_settings_seconds"].get<double>(), 0);
  EXPECT_NEAR(e["ratio_same_settings"].get<double>(),
              e["ffmpeg_same_settings_seconds"].get<double>() / e["segue_seconds"].get<double>(),
              1e-9);
}

TEST(Bench, StoreRecoveryAndCodenoiseReportTheirFigures) {
  TempDir dir;
  std::string out;
  ASSERT_EQ(RunCommand("'" + BinDir() + "/segue-bench' store --blobs 5 --json '" +
                           dir / "store.json" + "'",
                       &out, true),
            0)
      << out;
  auto store = nlohmann::json::parse(std::ifstream(dir / "store.json"))[0];
  EXPECT_EQ(store["blobs"], 5);
  EXPECT_GT(store["rocksdb_mb_per_s"].get<double>(), 0);
  EXPECT_GT(store["files_mb_per_s"].get<double>(), 0);
  ASSERT_EQ(RunCommand("'" + BinDir() + "/segue-bench' recovery --segments 300 --json '" +
                           dir / "recovery.json" + "'",
                       &out, true),
            0)
      << out;
  auto recovery = nlohmann::json::parse(std::ifstream(dir / "recovery.json"))[0];
  EXPECT_EQ(recovery["segments"], 300);
  EXPECT_GT(recovery["seconds"].get<double>(), 0);
  ASSERT_EQ(RunCommand("'" + BinDir() +
                           "/segue-bench' codenoise --segments 8 --workers 2 "
                           "--steps 2 --json '" +
                           dir / "codenoise.json" + "'",
                       &out, true),
            0)
      << out;
  auto gang = nlohmann::json::parse(std::ifstream(dir / "codenoise.json"))[0];
  EXPECT_EQ(gang["workers"], 2);
  EXPECT_GT(gang["slices"].get<int>(), 0);  // the two groups share a join's frames
  EXPECT_GT(gang["step_ms"].get<double>(), 0);
}

// One denoise call through a real model host (tinywan) against the same call inside the host's
// Python: both are measured, and the round trip holds the call.
// The director's loop: the example's full render with its preview, then an edit of its last
// keyframe, which renders what it reaches (read from the edited job's log) and takes the rest.
TEST(Bench, IterateReportsThePreviewTheFullRenderAndWhatAnEditRenders) {
  TempDir dir;
  std::string out;
  const std::string bench = "'" + BinDir() + "/segue-bench' iterate --manifest '" + SourceDir() +
                            "/configs/examples/the_hardest_part.yaml'";
  ASSERT_EQ(
      RunCommand(bench + " --quick --edit 7 --json '" + dir / "iterate.json" + "'", &out, true), 0)
      << out;
  EXPECT_NE(out.find("keyframe 7 of 7 edited"), std::string::npos) << out;
  std::ifstream in(dir / "iterate.json");
  auto results = nlohmann::json::parse(in);
  ASSERT_EQ(results.size(), 1u);
  const auto& it = results[0];
  EXPECT_EQ(it["bench"], "iterate");
  EXPECT_EQ(it["segments"], 27);
  EXPECT_EQ(it["chunks"], 10);
  EXPECT_GT(it["preview_seconds"].get<double>(), 0);
  EXPECT_GT(it["full_seconds"].get<double>(), 0);
  ASSERT_EQ(it["edits"].size(), 1u);
  const auto& edit = it["edits"][0];
  EXPECT_EQ(edit["keyframe"], 7);
  // The last keyframe (36-40 s) reaches the last few segments and chunks, not all.
  EXPECT_GT(edit["segments_rendered"].get<int>(), 0);
  EXPECT_LT(edit["segments_rendered"].get<int>(), 8);
  EXPECT_GT(edit["chunks_encoded"].get<int>(), 0);
  EXPECT_LT(edit["chunks_encoded"].get<int>(), 4);
  EXPECT_DOUBLE_EQ(edit["edit_fraction"].get<double>(),
                   edit["edit_seconds"].get<double>() / it["full_seconds"].get<double>());
  // Bad input is refused with exit code 2.
  EXPECT_EQ(RunCommand(bench + " --edit 8", &out, true), 2) << out;
  EXPECT_NE(out.find("1-7"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(bench + " --edit first", &out, true), 2) << out;
  EXPECT_EQ(
      RunCommand("'" + BinDir() + "/segue-bench' iterate --manifest '" + dir / "none.yaml" + "'",
                 &out, true),
      2)
      << out;
}

TEST(Bench, HostReportsWhatTheCrossingCosts) {
  TempDir dir;
  std::string out;
  ASSERT_EQ(RunCommand("'" + BinDir() + "/segue-bench' host --shape 1x16x3x8x8 --calls 2 --json '" +
                           dir / "host.json" + "'",
                       &out, true),
            0)
      << out;
  auto host = nlohmann::json::parse(std::ifstream(dir / "host.json"))[0];
  EXPECT_EQ(host["latents"], "1x16x3x8x8");
  EXPECT_EQ(host["latent_bytes"], 16 * 3 * 8 * 8 * 4);
  EXPECT_GT(host["in_python_s"].get<double>(), 0);
  EXPECT_GE(host["round_trip_s"].get<double>(), host["in_python_s"].get<double>());
  EXPECT_EQ(host["host_overhead_ms_each"].size(), 2u);
  EXPECT_EQ(RunCommand("'" + BinDir() + "/segue-bench' host --shape 1x16x3", &out, true), 2) << out;
}

}  // namespace
}  // namespace segue
