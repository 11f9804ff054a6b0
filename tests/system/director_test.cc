// The director's loop (coordinator/family.h; docs/MANIFEST.md, "Iterating"), on a real farm: a
// manifest with a `preview:` and `takes:` of two sections renders its preview first, then the
// final, then each take, which renders only what its take changes; `segue takes` shows them and
// makes a contact sheet; `segue pick` assembles new outputs from the chosen takes, rendering only
// what the strategy requires, and they are the same bits as the picked manifest from scratch.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "common/media/video.h"
#include "tests/support/test_util.h"
#include "tools/cli/client.h"

namespace segue {
namespace {

using namespace std::chrono_literals;

// 20 segments of 8 frames sharing 2 (segment i is frames [6i, 6i + 8)): 122 frames at 12 fps.
// Sections: 0 (frames 0-48), 1 (48-72, three takes: segments 8-11 have their middle frame in
// it), 2 (72-122, two takes: segments 12-19). `takes` false: no takes or preview, but the
// sections' chosen takes `take1`, `take2` written in the manifest instead.
std::string Manifest(const TempDir& dir, const std::string& name, const std::string& strategy,
                     bool takes, int take1 = 1, int take2 = 1) {
  const std::string path = dir / (name + ".yaml");
  std::ofstream f(path);
  f << "version: 1\nname: " << name << "\nvideo: {width: 64, height: 32, fps: 12, frames: 122}\n"
    << "model: {name: zoom, steps: 2}\n"
    << "segments: {length: 8, overlap: 2, strategy: " << strategy << "}\n"
    << "seed: 5\noutput: {path: " << name << ".mp4, overwrite: true}\n"
    << "audio: {path: song.wav}\n"
    << (takes ? "preview: {steps: 1, scale: 0.5}\n" : "")
    << "timeline:\n  - {at: 0s, prompt: \"a harbour at dawn\"}\n"
    << "  - {at: 4s, prompt: \"a kiss in the rain\", "
    << (takes ? "takes: 3" : "take: " + std::to_string(take1)) << "}\n"
    << "  - {at: 6s, prompt: \"dusk on the pier\", "
    << (takes ? "takes: 2" : "take: " + std::to_string(take2)) << "}\n";
  return path;
}

std::set<int> Range(int first, int last) {
  std::set<int> s;
  for (int i = first; i <= last; ++i) s.insert(i);
  return s;
}

JobInfo WaitDone(Client& client, uint64_t id) {
  for (int i = 0; i < 2400; ++i) {
    auto st = client.Status(id);
    if (st.ok() && st->Finished()) {
      EXPECT_EQ(st->state, "DONE") << "job " << id << ": " << st->error;
      return *st;
    }
    std::this_thread::sleep_for(50ms);
  }
  ADD_FAILURE() << "job " << id << " did not finish";
  return {};
}

DoneSegments Done(Client& client, uint64_t id) {
  auto log = client.Logs(id);
  EXPECT_TRUE(log.ok()) << log.message();
  return log.ok() ? SegmentsDone(*log) : DoneSegments{};
}

// `segue pick` from `from`; the new job's id, once it is DONE.
uint64_t Pick(const LocalFarm& farm, uint64_t from, int section, int take) {
  std::string out;
  EXPECT_EQ(RunCommand(Cli("pick " + std::to_string(from) + " " + std::to_string(section) + " " +
                           std::to_string(take) + " --wait --coordinator " + farm.endpoint()),
                       &out, true),
            0)
      << out;
  EXPECT_NE(out.find("output: "), std::string::npos) << out;
  const std::string id = SubmittedJobId(out);
  return id.empty() ? 0 : std::stoull(id);
}

class Director : public ::testing::TestWithParam<const char*> {};

TEST_P(Director, PreviewFirstThenTakesThenPicksRenderOnlyWhatTheStrategyRequires) {
  const std::string strategy = GetParam();
  TempDir dir;
  MakeTone(dir / "song.wav", 11);
  const std::string manifest = Manifest(dir, "loop", strategy, true);
  uint64_t root = 0, double_pick = 0;
  std::map<std::pair<int, int>, uint64_t> take_jobs;  // (section, take) -> job
  {
    LocalFarm farm(dir / "farm", 2);
    ASSERT_TRUE(farm.ok());
    ASSERT_TRUE(farm.WaitForWorkers());
    std::string out;
    ASSERT_EQ(RunCommand(Cli("submit '" + manifest + "' --wait --coordinator " + farm.endpoint()),
                         &out, true),
              0)
        << out;
    root = std::stoull(SubmittedJobId(out));
    // The preview is said as soon as it is delivered, before the job's own output.
    const size_t said = out.find("preview: ");
    ASSERT_NE(said, std::string::npos) << out;
    Client client(farm.endpoint(), 5000);
    JobFilter filter;
    filter.family = root;
    auto family = client.Jobs(filter);
    ASSERT_TRUE(family.ok()) << family.message();
    ASSERT_EQ(family->size(), 5u);  // the final, its preview, takes 2 and 3 of 1, take 2 of 2
    uint64_t preview = 0;
    for (const JobInfo& j : *family) {
      if (j.id != root) {
        EXPECT_EQ(j.family.root, root);
      }
      if (j.family.role == "preview") preview = j.id;
      if (j.family.role == "take") take_jobs[{j.family.section, j.family.take}] = j.id;
    }
    ASSERT_NE(preview, 0u);
    ASSERT_EQ(take_jobs.size(), 3u);
    for (const auto& [st, id] : take_jobs) WaitDone(client, id);

    // The preview: the whole video at half the size, done before the final began.
    const JobInfo p = WaitDone(client, preview);
    const ProbeInfo pv = Probe(p.output);
    EXPECT_EQ(pv.width, 32);
    EXPECT_EQ(pv.height, 16);
    EXPECT_EQ(pv.frames, 122);
    EXPECT_EQ(pv.audio_codec, "opus");  // fast to encode, on the way to the first look
    EXPECT_NEAR(pv.audio_duration, 122 / 12.0, 1.0 / 12);
    EXPECT_EQ(out.substr(said + 9, p.output.size()), p.output);
    auto final_log = client.Logs(root);
    ASSERT_TRUE(final_log.ok());
    size_t scheduled = SIZE_MAX, first_done = SIZE_MAX;
    for (size_t i = 0; i < final_log->size(); ++i) {
      const std::string& line = (*final_log)[i];
      if (line.find("is finished: scheduled now") != std::string::npos) scheduled = i;
      if (first_done == SIZE_MAX && line.find("segment ") != std::string::npos &&
          line.find(" done") != std::string::npos)
        first_done = i;
    }
    EXPECT_LT(scheduled, first_done) << "the final rendered before its preview was delivered";
    EXPECT_EQ(Done(client, root).rendered, Range(0, 19));
    ASSERT_EQ(
        RunCommand(Cli("status " + std::to_string(root) + " --coordinator " + farm.endpoint()),
                   &out),
        0);
    EXPECT_NE(out.find("preview: job " + std::to_string(preview) + " DONE, " + p.output),
              std::string::npos)
        << out;

    // Each take renders what its section's new seeds reach, as the strategy makes them reach.
    const std::set<int> all = Range(0, 19);
    const std::map<std::string, std::set<int>> section1 = {
        {"independent", Range(8, 11)}, {"chained", Range(8, 19)}, {"codenoise", all}};
    const std::map<std::string, std::set<int>> section2 = {
        {"independent", Range(12, 19)}, {"chained", Range(12, 19)}, {"codenoise", all}};
    for (int take : {2, 3}) {
      EXPECT_EQ(Done(client, take_jobs[{1, take}]).rendered, section1.at(strategy)) << take;
      auto st = client.Status(take_jobs[{1, take}]);
      ASSERT_TRUE(st.ok());
      EXPECT_EQ(st->family.section_segments, (std::vector<uint32_t>{8, 9, 10, 11}));
      EXPECT_EQ(st->family.section_start, 48);
      EXPECT_EQ(st->family.section_end, 72);
    }
    EXPECT_EQ(Done(client, take_jobs[{2, 2}]).rendered, section2.at(strategy));

    // segue takes: a row per take, and the contact sheet: 5 rows of 6 frames of 64x32.
    ASSERT_EQ(RunCommand(Cli("takes " + std::to_string(root) + " --sheet '" + dir / "sheet.png" +
                             "' --coordinator " + farm.endpoint()),
                         &out),
              0)
        << out;
    EXPECT_NE(out.find("take 3   job " + std::to_string(take_jobs[{1, 3}])), std::string::npos)
        << out;
    EXPECT_NE(out.find("contact sheet: " + dir / "sheet.png"), std::string::npos) << out;
    const ProbeInfo sheet = Probe(dir / "sheet.png");
    EXPECT_EQ(sheet.width, 6 * 64 + 7 * 4);
    EXPECT_EQ(sheet.height, 5 * (32 + 4) + 4);

    // Where the outputs cannot be read here (the CLI on another machine than the farm's storage),
    // the sheet is made of the coordinator's thumbnails: a row per take, a cell per segment of
    // the section (section 2's 8 spread over 6 cells), each the segment's thumbnail as it is.
    const std::string root_output = client.Status(root)->output;
    std::filesystem::rename(root_output, root_output + ".away");
    ASSERT_EQ(RunCommand(Cli("takes " + std::to_string(root) + " --sheet '" + dir / "thumbs.png" +
                             "' --coordinator " + farm.endpoint()),
                         &out),
              0)
        << out;
    std::filesystem::rename(root_output + ".away", root_output);
    EXPECT_NE(out.find("contact sheet: " + dir / "thumbs.png" + " (" + root_output +
                       " cannot be read here: made of the coordinator's thumbnails"),
              std::string::npos)
        << out;
    const std::vector<std::pair<uint64_t, std::vector<uint32_t>>> rows = {
        {root, {8, 9, 10, 11}},
        {take_jobs[{1, 2}], {8, 9, 10, 11}},
        {take_jobs[{1, 3}], {8, 9, 10, 11}},
        {root, {12, 14, 15, 16, 18, 19}},
        {take_jobs[{2, 2}], {12, 14, 15, 16, 18, 19}}};
    std::vector<std::vector<RgbPicture>> thumbs;  // as the coordinator has them
    for (const auto& [job, segments] : rows) {
      auto jpegs = client.Thumbnails(job, segments);
      ASSERT_TRUE(jpegs.ok()) << jpegs.message();
      thumbs.emplace_back();
      for (const std::string& jpeg : *jpegs) {
        auto picture = DecodeJpeg(jpeg);
        ASSERT_TRUE(picture.ok()) << "job " << job << ": " << picture.message();
        ASSERT_EQ(picture->width, 64);
        ASSERT_EQ(picture->height, 32);
        thumbs.back().push_back(std::move(*picture));
      }
    }
    // A cell's pixels (row r, column c) of the sheet.
    auto cell = [](const RgbPicture& s, int r, int c) {
      std::vector<uint8_t> px;
      for (int y = 0; y < 32; ++y) {
        const uint8_t* row =
            &s.rgb[(static_cast<size_t>(4 + r * 36 + y) * s.width + 4 + c * 68) * 3];
        px.insert(px.end(), row, row + 64 * 3);
      }
      return px;
    };
    int pictures = 0;
    Status read = ReadVideoFrames(dir / "thumbs.png", [&](int64_t, const uint8_t* rgb, int w,
                                                          int h) {
      ++pictures;
      ASSERT_EQ(w, 6 * 64 + 7 * 4);
      ASSERT_EQ(h, 5 * (32 + 4) + 4);
      RgbPicture s{std::vector<uint8_t>(rgb, rgb + static_cast<size_t>(w) * h * 3), w, h};
      for (int r = 0; r < 5; ++r)
        for (int c = 0; c < 6; ++c) {
          const size_t n = rows[r].second.size();
          EXPECT_EQ(cell(s, r, c), c < static_cast<int>(n) ? thumbs[r][c].rgb
                                                           : std::vector<uint8_t>(64 * 32 * 3, 32))
              << "row " << r << " column " << c;
        }
      // The takes differ where their seeds do. (Not with chained: zoom's continuation of a guide
      // is its guide's world, whatever the seed, so its takes can be the same pictures.)
      if (strategy != "chained") {
        EXPECT_NE(cell(s, 1, 0), cell(s, 2, 0));
        EXPECT_NE(cell(s, 3, 0), cell(s, 4, 0));
      }
    });
    ASSERT_TRUE(read.ok()) << read.message();
    EXPECT_EQ(pictures, 1);

    // A pick of one take renders nothing, whatever the strategy: its take's job rendered it.
    const uint64_t single = Pick(farm, root, 1, 3);
    ASSERT_NE(single, 0u);
    EXPECT_TRUE(Done(client, single).rendered.empty());
    EXPECT_EQ(Done(client, single).reused, all);
    // On top of it, take 2 of section 2: nothing with independent; with chained, section 2's
    // segments (their guide is now take 3's); co-denoised, all.
    double_pick = Pick(farm, single, 2, 2);
    ASSERT_NE(double_pick, 0u);
    const std::map<std::string, std::set<int>> both = {
        {"independent", {}}, {"chained", Range(12, 19)}, {"codenoise", all}};
    EXPECT_EQ(Done(client, double_pick).rendered, both.at(strategy));
    auto st = client.Status(double_pick);
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->family.role, "pick");
    EXPECT_EQ(st->family.picks, (std::map<int, int>{{1, 3}, {2, 2}}));
    const ProbeInfo picked = Probe(st->output);
    EXPECT_EQ(picked.frames, 122);
    EXPECT_EQ(picked.audio_codec, "aac");
    EXPECT_NEAR(picked.audio_duration, 122 / 12.0, 1.0 / 12);
  }
  // The picked output's latents are the picked manifest's from scratch, and the takes' seeds
  // changed exactly their sections (independent: the rest is the final's).
  std::string log;
  ASSERT_EQ(RunCommand(Cli("render '" + Manifest(dir, "picked", strategy, false, 3, 2) +
                           "' --workers 2 --output '" + dir / "scratch.mp4" + "' --state-dir '" +
                           dir / "scratch" + "' --preset veryfast"),
                       &log, true),
            0)
      << log;
  const auto scratch = StoredLatents(dir / "scratch/store", 1);
  ASSERT_EQ(scratch.size(), 20u);
  EXPECT_TRUE(StoredLatents(dir / "farm/state", double_pick) == scratch);
  const auto final_latents = StoredLatents(dir / "farm/state", root);
  const auto take = StoredLatents(dir / "farm/state", take_jobs[{1, 2}]);
  ASSERT_EQ(final_latents.size(), 20u);
  ASSERT_EQ(take.size(), 20u);
  // The take changed its section: `zoom` picks among a few procedural worlds, so a new seed
  // may well pick the same world for one segment, but not for all four. What the strategy does
  // not reach is the final's bits (co-denoised: every segment is rendered again, and a change
  // spreads one neighbour per step, so nothing else is asserted).
  int changed = 0;
  for (int s = 8; s <= 11; ++s) changed += take[s] != final_latents[s] ? 1 : 0;
  EXPECT_GT(changed, 0);
  const int reach_end = strategy == "independent" ? 11 : 19;
  for (int s = 0; s < 20 && strategy != "codenoise"; ++s)
    if (s < 8 || s > reach_end) {
      EXPECT_TRUE(take[s] == final_latents[s]) << "segment " << s;
    }
}

INSTANTIATE_TEST_SUITE_P(AllStrategies, Director,
                         ::testing::Values("independent", "chained", "codenoise"),
                         [](const auto& info) { return std::string(info.param); });

// Cancelling a submitted job cancels the preview and takes that exist for it; a pick of a job
// that does not exist, a section its timeline lacks, or a take out of range is bad input.
TEST(DirectorFamily, CancelTakesItsFamilyAlongAndBadPicksAreRefused) {
  TempDir dir;
  MakeTone(dir / "song.wav", 11);
  LocalFarm farm(dir / "farm", 0);  // no workers: everything waits
  ASSERT_TRUE(farm.ok());
  std::string out;
  ASSERT_EQ(RunCommand(Cli("submit '" + Manifest(dir, "held", "independent", true) +
                           "' --coordinator " + farm.endpoint()),
                       &out, true),
            0)
      << out;
  const std::string root = SubmittedJobId(out);
  Client client(farm.endpoint(), 5000);
  auto st = client.Status(std::stoull(root));
  ASSERT_TRUE(st.ok());
  EXPECT_NE(st->family.preview_job, 0u);
  EXPECT_EQ(st->family.waiting_for, st->family.preview_job);
  for (const std::string& bad :
       std::vector<std::string>{"pick 999 1 2", "pick " + root + " 7 2", "pick " + root + " 1 0",
                                "pick " + root + " 1 17", "pick x 1 2"}) {
    EXPECT_EQ(RunCommand(Cli(bad + " --coordinator " + farm.endpoint()), &out, true), 2)
        << bad << ": " << out;
    EXPECT_FALSE(out.empty()) << bad;  // what was wrong (CLI11's words for a flag's range)
  }
  ASSERT_EQ(RunCommand(Cli("cancel " + root + " --coordinator " + farm.endpoint()), &out), 0)
      << out;
  JobFilter filter;
  filter.family = std::stoull(root);
  auto family = client.Jobs(filter);
  ASSERT_TRUE(family.ok());
  ASSERT_EQ(family->size(), 5u);
  uint64_t take = 0;
  for (const JobInfo& j : *family) {
    EXPECT_EQ(j.state, "CANCELLED") << j.id << " " << j.name;
    if (j.family.role == "take") take = j.id;
  }
  // A take retried while its job stays cancelled has nothing to take: it is cancelled again,
  // saying why, instead of waiting forever.
  ASSERT_NE(take, 0u);
  ASSERT_EQ(
      RunCommand(Cli("retry " + std::to_string(take) + " --coordinator " + farm.endpoint()), &out),
      0)
      << out;
  std::string state;
  for (int i = 0; i < 100 && state != "CANCELLED"; ++i) {
    std::this_thread::sleep_for(50ms);
    auto t = client.Status(take);
    ASSERT_TRUE(t.ok());
    state = t->state;
  }
  EXPECT_EQ(state, "CANCELLED");
  auto log = client.Logs(take);
  ASSERT_TRUE(log.ok());
  EXPECT_NE(log->back().find("is CANCELLED: cancelled with it"), std::string::npos) << log->back();
}

}  // namespace
}  // namespace segue
