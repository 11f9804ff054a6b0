// The coordinator crashed at every sync point of a scripted job (after LevelDB's
// fault_injection_test). A FaultEnv counts every sync the coordinator makes (its store's log and
// folders, RocksDB's files, value files); the script runs once without a fault to count them,
// then once per sync point, crashing the machine just before that sync (one task fails once on
// the way, so an assignment also waits for a sync): everything not synced is
// dropped, the coordinator restarts on what is left, the workers come back (re-sending what the
// dead coordinator never heard) and the job is finished. Every run must:
//   - never lose a finished segment: what was durable before the crash is DONE after it;
//   - never reuse an attempt number: no two assignments of a task carry the same one;
//   - end DONE with the fault-free run's latents and output, bit for bit.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <tuple>

#include "coordinator/journal.h"
#include "tests/support/core_harness.h"
#include "tests/support/fake_worker.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

namespace fs = std::filesystem;

struct Outcome {
  bool crashed = false;
  std::string state;                          // the job's at the end
  std::vector<std::string> latents;           // every segment's, as stored
  std::map<std::string, std::string> output;  // the output folder's files
  uint64_t sync_points = 0;                   // of the first life
};

class Script {
 public:
  explicit Script(const std::string& strategy)
      : options_(TestOptions(dir_.path())), manifest_(TestManifest("crash", 64, 16, 4, strategy)) {
    fs::create_directories(dir_ / "scratch");
  }

  // Runs the job, crashing at its sync point `crash_at` (0: never), then restarting once. The
  // sync points are counted from the submission on: creating a store is RocksDB's own affair
  // (40 syncs of its files for our column families, tests/unit/env_test.cc crashes there).
  Outcome Run(uint64_t crash_at) {
    Outcome out;
    uint64_t opened_at = 0;
    {
      CoreHarness h(&env_, options_);
      EXPECT_TRUE(h.ok()) << h.error();
      opened_at = env_.syncs();
      if (crash_at > 0) env_.CrashAtSync(opened_at + crash_at);
      job_ = h.Submit(manifest_);
      if (!env_.crashed()) Play(h, /*first_life=*/true);
    }
    out.sync_points = env_.syncs() - opened_at;
    out.crashed = env_.crashed();
    if (out.crashed) {
      EXPECT_TRUE(env_.DropUnsyncedData().ok());
      env_.Restart();
      CoreHarness h(&env_, options_);
      EXPECT_TRUE(h.ok()) << h.error();
      if (!h.ok()) return out;
      // A submission whose reply the crash cut off may have been stored all the same (as
      // `segue jobs` would show); one that was not is submitted again.
      if (job_ == 0 && !h.Status(1).state.empty()) job_ = 1;
      if (job_ == 0 || h.Status(job_).state.empty()) {
        EXPECT_TRUE(durable_done_.empty());
        job_ = h.Submit(manifest_);
      }
      const std::string states = h.Status(job_).segment_states;
      for (uint32_t s : durable_done_) {
        EXPECT_EQ(states.size() > s ? states[s] : '?', '#')
            << "segment " << s << " was durably done before the crash (" << states << ")";
      }
      // The workers come back and send what the dead coordinator never heard: stale now.
      Join(h);
      for (const auto& [worker, bytes] : lost_) h.Deliver(worker, bytes);
      Play(h, /*first_life=*/false);
    }
    auto journal = Journal::Open(options_.state_dir, &env_, std::chrono::microseconds(0),
                                 Syncer::Mode::kOnDemand);
    EXPECT_TRUE(journal.ok()) << journal.message();
    if (journal.ok()) {
      JobTable jobs;
      EXPECT_TRUE((*journal)->Load(jobs, 8).ok());
      if (jobs.count(job_)) {
        out.state = JobStateName(jobs.at(job_).state);
        for (uint32_t s = 0; s < jobs.at(job_).seg.size(); ++s) {
          auto t = (*journal)->Latents(job_, s);
          out.latents.push_back(t.ok() ? EncodeTensor(*t) : "missing: " + t.message());
        }
      }
    }
    const fs::path folder = fs::path(options_.output_root) / "out" / "crash";
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(folder, ec))
      out.output[entry.path().filename().string()] = *ReadFile(Env::Default(), entry.path());
    return out;
  }

 private:
  // The workers join (welcomed once the turn's writes are durable), then ask for work.
  void Join(CoreHarness& h) {
    for (const FakeWorker& w : workers_) h.Deliver(w.name(), w.Hello());
    h.Sync();
    for (const FakeWorker& w : workers_) h.Deliver(w.name(), FakeWorker::WorkRequest());
  }

  // Plays the workers until the job is DONE or the machine crashes.
  void Play(CoreHarness& h, bool first_life) {
    if (first_life) Join(h);
    for (int round = 0; round < 100 && !env_.crashed(); ++round) {
      for (const FakeWorker& w : workers_) {
        for (const std::string& message : h.Take(w.name())) {
          auto a = FakeWorker::AsAssignment(message);
          if (!a) continue;
          const auto key = std::make_tuple(a->job, static_cast<int>(a->kind), a->index, a->attempt);
          EXPECT_TRUE(handed_out_.insert(key).second)
              << "attempt " << a->attempt << " of task " << a->index << " handed out twice";
          std::string result;
          if (a->kind == wire::TaskKind::RENDER && w.name() == "w0" && !failed_once_) {
            // One transient failure: its retry is assigned before the failure is synced.
            failed_once_ = true;
            result = FakeWorker::Failure(*a, "transient");
          } else if (a->kind == wire::TaskKind::RENDER) {
            result = FakeWorker::RenderResult(*a, FakeLatents(*a));
          } else {
            auto chunk = FakeChunk(*a, dir_ / "scratch");
            EXPECT_TRUE(chunk.ok()) << chunk.message();
            result = FakeWorker::EncodeResult(*a, chunk.ok() ? *chunk : "", a->frame_count);
          }
          // As segue-worker does: it asks for the next task, then sends the result.
          h.Deliver(w.name(), FakeWorker::WorkRequest());
          const bool heard = !env_.crashed();
          h.Deliver(w.name(), result);
          if (!heard || env_.crashed()) {
            lost_.emplace_back(w.name(), result);
          } else if (first_life && FakeWorker::KindOf(result) == wire::Envelope::RENDER_RESULT) {
            delivered_done_.insert(a->index);
          }
        }
      }
      h.Sync();
      if (env_.crashed()) return;
      if (first_life) durable_done_ = delivered_done_;
      if (h.Status(job_).state == "DONE") return;
    }
    if (!env_.crashed()) ADD_FAILURE() << "the job did not finish: " << h.Status(job_).state;
  }

  TempDir dir_;
  FaultEnv env_;
  const CoordinatorOptions options_;
  const std::string manifest_;
  const std::vector<FakeWorker> workers_ = {FakeWorker("w0"), FakeWorker("w1")};
  uint64_t job_ = 0;
  bool failed_once_ = false;
  std::set<std::tuple<uint64_t, int, uint32_t, uint32_t>>
      handed_out_;                                         // (job, kind, task, attempt)
  std::set<uint32_t> delivered_done_, durable_done_;       // segments
  std::vector<std::pair<std::string, std::string>> lost_;  // (worker, message)
};

class CrashAtEverySyncPoint : public ::testing::TestWithParam<std::string> {};

TEST_P(CrashAtEverySyncPoint, LosesNothingReusesNoAttemptAndEndsBitIdentical) {
  const Outcome clean = Script(GetParam()).Run(0);
  ASSERT_FALSE(clean.crashed);
  ASSERT_EQ(clean.state, "DONE");
  ASSERT_EQ(clean.latents.size(), 5u);
  ASSERT_EQ(clean.output.size(), 64u);  // frame_000000.png ... frame_000063.png
  ASSERT_GT(clean.sync_points, 5u);
  for (uint64_t at = 1; at <= clean.sync_points; ++at) {
    SCOPED_TRACE("crash at sync point " + std::to_string(at) + " of " +
                 std::to_string(clean.sync_points));
    const Outcome run = Script(GetParam()).Run(at);
    ASSERT_TRUE(run.crashed);
    EXPECT_EQ(run.state, "DONE");
    EXPECT_EQ(run.latents, clean.latents);
    EXPECT_TRUE(run.output == clean.output) << run.output.size() << " output files";
    if (::testing::Test::HasFailure()) break;  // one crash point's story is enough to read
  }
}

INSTANTIATE_TEST_SUITE_P(Strategies, CrashAtEverySyncPoint,
                         ::testing::Values("independent", "chained"));

}  // namespace
}  // namespace segue
