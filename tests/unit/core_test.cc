// The coordinator's core driven by hand: workers played with FakeWorker's messages, turns and
// syncs stepped by the test, the clock a FaultEnv's. Real store, no sockets, no sleeps.
#include "coordinator/core.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <limits>

#include "common/protocol/protocol.h"

#include "tests/support/core_harness.h"
#include "tests/support/fake_worker.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

// The assignments among `messages`.
std::vector<FakeAssignment> Assignments(const std::vector<std::string>& messages) {
  std::vector<FakeAssignment> out;
  for (const auto& m : messages) {
    if (auto a = FakeWorker::AsAssignment(m)) out.push_back(*a);
  }
  return out;
}

bool Has(const std::vector<std::string>& messages, wire::Envelope::Which kind) {
  for (const auto& m : messages) {
    if (FakeWorker::KindOf(m) == kind) return true;
  }
  return false;
}

// The text of an Error envelope ("" for other messages).
std::string ErrorText(const std::string& bytes) {
  auto in = Incoming::Parse(bytes.data(), bytes.size());
  if (!in.ok() || !(*in)->envelope().isError()) return "";
  return (*in)->envelope().getError().getMessage().cStr();
}

// A Wan-shaped model's metadata, as a worker serving it would report it.
model::ModelMetadata WanLike() {
  model::ModelMetadata m;
  m.name = "wan";
  m.temporal_compression = 4;
  m.latent_channels = 16;
  m.patch_size = 2;
  m.native_frames = {81};
  m.native_fps = 16;
  m.decode_context_before = 1;
  m.conditioning = model::ConditioningScope::kPerClip;
  return m;
}

// TestManifest's job for the model `model`.
std::string ManifestFor(const std::string& model, int frames, int length, int overlap) {
  std::string text = TestManifest("job", frames, length, overlap);
  return text.replace(text.find("name: zoom"), 10, "name: " + model);
}

class CoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void Open() {
    harness_.reset();
    harness_ = std::make_unique<CoreHarness>(&env_, options_);
    ASSERT_TRUE(harness_->ok()) << harness_->error();
  }
  // `w` joins and asks for a task.
  void Join(const FakeWorker& w) {
    harness_->Deliver(w.name(), w.Hello());
    harness_->Deliver(w.name(), FakeWorker::WorkRequest());
  }

  TempDir dir_;
  FaultEnv env_;
  CoordinatorOptions options_ = TestOptions(dir_.path());
  std::unique_ptr<CoreHarness> harness_;
};

TEST_F(CoreTest, OnlyTheHolderOfTheCurrentAttemptIsHeard) {
  const uint64_t job = harness_->Submit(TestManifest("job", 16, 16, 4));
  ASSERT_GT(job, 0u);
  FakeWorker w1("w1"), w2("w2");
  Join(w1);
  harness_->Deliver(w2.name(), w2.Hello());
  auto a = Assignments(harness_->Take("w1"));
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].attempt, 1u);
  FakeAssignment stale = a[0];
  stale.attempt = 0;
  harness_->Deliver("w1", FakeWorker::RenderResult(stale, FakeLatents(a[0])));
  harness_->Deliver("w2", FakeWorker::RenderResult(a[0], FakeLatents(a[0])));  // not its task
  EXPECT_EQ(harness_->core().fenced_results(), 2u);
  EXPECT_EQ(harness_->Status(job).segment_states, ">");
  harness_->Deliver("w1", FakeWorker::RenderResult(a[0], FakeLatents(a[0])));
  EXPECT_EQ(harness_->core().fenced_results(), 2u);
  EXPECT_EQ(harness_->Status(job).segment_states, "#");
}

TEST_F(CoreTest, ResultsThatDoNotFitTheirTaskFailIt) {
  options_.max_attempts = 10;
  Open();
  const uint64_t job = harness_->Submit(TestManifest("job", 16, 16, 4));
  FakeWorker w1("w1");
  Join(w1);
  auto a = Assignments(harness_->Take("w1"));
  ASSERT_EQ(a.size(), 1u);
  harness_->Deliver("w1", FakeWorker::RenderResult(a[0], Tensor::Zeros({2, 3, 2, 2})));
  JobInfo st = harness_->Status(job);
  EXPECT_EQ(st.segment_states, ".");
  EXPECT_EQ(st.segments_running, 0u);
  // Latents of the right shape holding NaN fail the task too.
  FakeWorker w2("w2");
  Join(w2);
  auto b = Assignments(harness_->Take("w2"));
  ASSERT_EQ(b.size(), 1u);
  Tensor nan = FakeLatents(b[0]);
  nan.data[1] = std::numeric_limits<float>::quiet_NaN();
  harness_->Deliver("w2", FakeWorker::RenderResult(b[0], nan));
  st = harness_->Status(job);
  EXPECT_EQ(st.segment_states, ".");
  EXPECT_EQ(st.segments_running, 0u);
  // The right frame count, but not what zoom makes of 64x32 ([4, T, 4, 8]): other channels, or
  // another latent size, fail it as well, and the log says what was expected.
  const std::vector<std::vector<int64_t>> wrong = {{16, 16, 4, 8}, {4, 16, 2, 2}, {4, 16, 8, 4}};
  for (size_t i = 0; i < wrong.size(); ++i) {
    FakeWorker w("bad" + std::to_string(i));
    Join(w);
    auto c = Assignments(harness_->Take(w.name()));
    ASSERT_EQ(c.size(), 1u);
    ASSERT_EQ(FakeLatents(c[0]).shape, (std::vector<int64_t>{4, 16, 4, 8}));
    harness_->Deliver(w.name(), FakeWorker::RenderResult(c[0], Tensor::Zeros(wrong[i])));
    EXPECT_EQ(harness_->Status(job).segment_states, ".");
  }
  capnp::MallocMessageBuilder logs;
  logs.initRoot<wire::Envelope>().initGetLogs().setJobId(job);
  logs.getRoot<wire::Envelope>().getGetLogs().setSegment(-1);
  const std::string reply = harness_->Call(Serialize(logs));
  auto in = Incoming::Parse(reply.data(), reply.size());
  ASSERT_TRUE(in.ok() && (*in)->envelope().isLogs());
  std::string all;
  for (auto line : (*in)->envelope().getLogs().getLines()) all += std::string(line.cStr()) + "\n";
  EXPECT_NE(all.find("latents of shape [16,16,4,8] do not fit a segment of 16 latent frames of "
                     "model zoom, [4,16,4,8]"),
            std::string::npos)
      << all;
  // A worker that returns what fits finishes it.
  FakeWorker good("good");
  Join(good);
  auto d = Assignments(harness_->Take("good"));
  ASSERT_EQ(d.size(), 1u);
  harness_->Deliver("good", FakeWorker::RenderResult(d[0], FakeLatents(d[0])));
  EXPECT_EQ(harness_->Status(job).segment_states, "#");
}

// An encode result is judged by the frames its container holds, not the count the worker
// claims: a chunk 3 frames short fails its task, and the job does not finish on it.
TEST_F(CoreTest, AChunkThatDoesNotHoldItsFramesFailsItsTask) {
  const uint64_t job = harness_->Submit(TestManifest("job", 16, 16, 4));
  FakeWorker w1("w1");
  Join(w1);
  auto a = Assignments(harness_->Take("w1"));
  ASSERT_EQ(a.size(), 1u);
  harness_->Deliver("w1", FakeWorker::WorkRequest());
  harness_->Deliver("w1", FakeWorker::RenderResult(a[0], FakeLatents(a[0])));
  auto e = Assignments(harness_->Take("w1"));
  ASSERT_EQ(e.size(), 1u);
  ASSERT_EQ(e[0].kind, wire::TaskKind::ENCODE);
  FakeAssignment shorter = e[0];
  shorter.frame_count = e[0].frame_count - 3;
  std::filesystem::create_directories(dir_ / "scratch");
  auto chunk = FakeChunk(shorter, dir_ / "scratch");
  ASSERT_TRUE(chunk.ok()) << chunk.message();
  harness_->Deliver("w1", FakeWorker::EncodeResult(e[0], *chunk, e[0].frame_count));
  JobInfo st = harness_->Status(job);
  EXPECT_EQ(st.chunks_done, 0u);
  EXPECT_NE(st.state, "DONE");
  // The right chunk, from the worker the task goes to next, finishes the job.
  FakeWorker w2("w2");
  Join(w2);
  auto again = Assignments(harness_->Take("w2"));
  ASSERT_EQ(again.size(), 1u);
  auto good = FakeChunk(again[0], dir_ / "scratch");
  ASSERT_TRUE(good.ok()) << good.message();
  harness_->Deliver("w2", FakeWorker::EncodeResult(again[0], *good, again[0].frame_count));
  harness_->Sync();
  EXPECT_EQ(harness_->Status(job).chunks_done, 1u);
}

// Liveness on the fake clock: a worker silent past the window is presumed dead, its task goes to
// another with the next attempt, and what it says when it wakes is fenced off.
TEST_F(CoreTest, ASilentWorkerIsPresumedDeadAndItsTaskMovesOn) {
  const uint64_t job = harness_->Submit(TestManifest("job", 16, 16, 4));
  FakeWorker w1("w1"), w2("w2");
  Join(w1);
  auto first = Assignments(harness_->Take("w1"));
  ASSERT_EQ(first.size(), 1u);
  Join(w2);
  EXPECT_TRUE(Assignments(harness_->Take("w2")).empty());
  env_.Advance(static_cast<uint64_t>(options_.liveness_ms) - 1);
  harness_->Deliver("w2", FakeWorker::Heartbeat());
  harness_->Tick();
  EXPECT_TRUE(Assignments(harness_->Take("w2")).empty());  // w1 is not late yet
  env_.Advance(2);
  harness_->Deliver("w2", FakeWorker::Heartbeat());
  harness_->Tick();
  auto second = Assignments(harness_->Take("w2"));
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].index, first[0].index);
  EXPECT_EQ(second[0].attempt, first[0].attempt + 1);
  harness_->Deliver("w1", FakeWorker::RenderResult(first[0], FakeLatents(first[0])));
  EXPECT_EQ(harness_->core().fenced_results(), 1u);
  harness_->Deliver("w1", FakeWorker::Heartbeat());  // it is a stranger now
  EXPECT_TRUE(Has(harness_->Take("w1"), wire::Envelope::ERROR));
  harness_->Deliver("w2", FakeWorker::RenderResult(second[0], FakeLatents(second[0])));
  EXPECT_EQ(harness_->Status(job).segments_done, 1u);
}

// A worker that heartbeats but never finishes (nor checkpoints) its task cannot hold a job
// forever: after the task timeout without progress the task goes to another worker, resumed from
// the last checkpoint, and the first worker's late result is fenced off. A checkpoint is
// progress: it restarts the clock.
TEST_F(CoreTest, ATaskWithoutProgressIsTakenBackAfterTheTaskTimeout) {
  options_.task_timeout_s = 60;
  Open();
  const uint64_t job = harness_->Submit(TestManifest("job", 16, 16, 4));
  FakeWorker w1("w1"), w2("w2");
  Join(w1);
  auto first = Assignments(harness_->Take("w1"));
  ASSERT_EQ(first.size(), 1u);
  Join(w2);
  // Both stay alive (heartbeats within the liveness window) while `seconds` pass.
  auto pass = [&](int seconds) {
    for (int i = 0; i < seconds; i += 5) {
      env_.Advance(5000);
      harness_->Deliver("w1", FakeWorker::Heartbeat());
      harness_->Deliver("w2", FakeWorker::Heartbeat());
      harness_->Tick();
    }
  };
  pass(40);
  harness_->Deliver("w1", FakeWorker::Checkpoint(first[0], 3, FakeLatents(first[0])));
  pass(55);  // 95 s since the task was given, 55 s since its checkpoint
  EXPECT_TRUE(Assignments(harness_->Take("w2")).empty());
  pass(10);
  auto second = Assignments(harness_->Take("w2"));
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].index, first[0].index);
  EXPECT_EQ(second[0].attempt, first[0].attempt + 1);
  EXPECT_EQ(second[0].resume_step, 3u);
  harness_->Deliver("w1", FakeWorker::RenderResult(first[0], FakeLatents(first[0])));
  EXPECT_EQ(harness_->core().fenced_results(), 1u);
  harness_->Deliver("w2", FakeWorker::RenderResult(second[0], FakeLatents(second[0])));
  EXPECT_EQ(harness_->Status(job).segments_done, 1u);
}

// Group commit: an assignment leaves at the end of its turn; a reply or an acknowledgement only
// once the turn's writes are durable.
TEST_F(CoreTest, AcknowledgementsWaitForTheirWritesAssignmentsDoNot) {
  harness_->Submit(TestManifest("job", 16, 16, 4));
  FakeWorker w1("w1");
  Join(w1);
  auto a = Assignments(harness_->Take("w1"));
  ASSERT_EQ(a.size(), 1u);  // no sync was needed for it
  harness_->Deliver("w1", FakeWorker::Checkpoint(a[0], 2, FakeLatents(a[0])));
  EXPECT_TRUE(harness_->Take("w1").empty());
  harness_->Sync();
  EXPECT_TRUE(Has(harness_->Take("w1"), wire::Envelope::CHECKPOINT_ACK));
}

// A restart: the worker holding an assignment the new coordinator cannot know of is fenced off,
// and the task resumes from its checkpoint under a new attempt number.
TEST_F(CoreTest, ARestartResumesFromTheCheckpointUnderANewAttempt) {
  const uint64_t job = harness_->Submit(TestManifest("job", 16, 16, 4));
  FakeWorker w1("w1");
  Join(w1);
  auto a = Assignments(harness_->Take("w1"));
  ASSERT_EQ(a.size(), 1u);
  harness_->Deliver("w1", FakeWorker::Checkpoint(a[0], 3, FakeLatents(a[0])));
  harness_->Sync();
  Open();
  Join(w1);
  auto again = Assignments(harness_->Take("w1"));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_GT(again[0].attempt, a[0].attempt);
  EXPECT_EQ(again[0].resume_step, 3u);
  harness_->Deliver("w1", FakeWorker::RenderResult(a[0], FakeLatents(a[0])));
  EXPECT_EQ(harness_->core().fenced_results(), 1u);
  harness_->Deliver("w1", FakeWorker::RenderResult(again[0], FakeLatents(again[0])));
  EXPECT_EQ(harness_->Status(job).segments_done, 1u);
}

TEST_F(CoreTest, AChainedSegmentCarriesItsPredecessorsLatentsAsItsGuide) {
  options_.chunk_frames = 96;  // one chunk: no encode before both segments are done
  Open();
  harness_->Submit(TestManifest("job", 28, 16, 4, "chained"));
  FakeWorker w1("w1");
  Join(w1);
  auto a = Assignments(harness_->Take("w1"));
  ASSERT_EQ(a.size(), 1u);
  EXPECT_FALSE(a[0].guide.has_value());
  const Tensor latents = FakeLatents(a[0]);
  harness_->Deliver("w1", FakeWorker::WorkRequest());
  harness_->Deliver("w1", FakeWorker::RenderResult(a[0], latents));
  auto b = Assignments(harness_->Take("w1"));
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].index, 1u);
  ASSERT_TRUE(b[0].guide.has_value());
  // The 4 frames they share, of zoom's 4 channels at 64x32 / 8.
  ASSERT_EQ(b[0].guide->shape, (std::vector<int64_t>{4, 4, 4, 8}));
  for (int64_t c = 0; c < 4; ++c) {
    for (int64_t f = 0; f < 4; ++f) {
      for (int64_t p = 0; p < 32; ++p) {
        EXPECT_EQ(b[0].guide->data[static_cast<size_t>((c * 4 + f) * 32 + p)],
                  latents.data[static_cast<size_t>((c * 16 + 12 + f) * 32 + p)]);
      }
    }
  }
}

TEST_F(CoreTest, AGangMembersDepartureStopsTheGangAndTheNextOneTakesANewAttempt) {
  const uint64_t job = harness_->Submit(TestManifest("job", 64, 16, 4, "codenoise"));
  FakeWorker w1("w1"), w2("w2");
  harness_->Deliver("w1", w1.Hello());
  harness_->Deliver("w2", w2.Hello());
  harness_->Deliver("w1", FakeWorker::WorkRequest());
  harness_->Deliver("w2", FakeWorker::WorkRequest());
  harness_->Sync();  // a gang's start is written: its tasks wait for the sync
  auto g1 = Assignments(harness_->Take("w1"));
  auto g2 = Assignments(harness_->Take("w2"));
  ASSERT_EQ(g1.size(), 1u);
  ASSERT_EQ(g2.size(), 1u);
  EXPECT_EQ(g1[0].kind, wire::TaskKind::CODENOISE);
  EXPECT_EQ(g1[0].attempt, g2[0].attempt);
  EXPECT_EQ(g1[0].segments, (std::vector<uint32_t>{0, 1, 2}));
  EXPECT_EQ(g2[0].segments, (std::vector<uint32_t>{3, 4}));
  EXPECT_EQ(harness_->Status(job).segment_states, ">>>>>");
  harness_->Deliver("w2", FakeWorker::Goodbye("drained"));
  harness_->Sync();
  EXPECT_TRUE(Has(harness_->Take("w1"), wire::Envelope::CANCEL));
  EXPECT_EQ(harness_->Status(job).segment_states, ".....");
  harness_->Deliver("w1", FakeWorker::WorkRequest());
  harness_->Sync();
  auto next = Assignments(harness_->Take("w1"));
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].attempt, g1[0].attempt + 1);
  EXPECT_EQ(next[0].segments.size(), 5u);
}

TEST_F(CoreTest, WhateverAPeerSendsIsCountedAndAnswered) {
  capnp::MallocMessageBuilder welcome;  // a coordinator's message: not one it takes
  welcome.initRoot<wire::Envelope>().initWelcome().setWorkerId("me");
  for (const std::string& bytes : {std::string(), std::string("garbage"), Serialize(welcome)}) {
    harness_->Deliver("peer", bytes);
    auto replies = harness_->Take("peer");
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(FakeWorker::KindOf(replies[0]), wire::Envelope::ERROR);
  }
  EXPECT_EQ(harness_->core().bad_messages(), 3u);
  harness_->Deliver("peer", FakeWorker::WorkRequest());  // before Hello
  EXPECT_TRUE(Has(harness_->Take("peer"), wire::Envelope::ERROR));
}

// A model that is not built in: its job waits unplanned until a worker reports the model's
// metadata, is then planned in the model's latent frames (r = 4: 81 frames are 21 latent frames;
// segments of 33 frames are 9, the overlap of 8 is 2), and keeps that plan over a restart. A
// worker that reports other metadata for the name is refused, before and after the restart.
TEST_F(CoreTest, AJobWaitsForItsModelsMetadataAndIsPlannedInItsLatentFrames) {
  const uint64_t job = harness_->Submit(ManifestFor("wan", 81, 33, 8));
  ASSERT_GT(job, 0u);
  EXPECT_EQ(harness_->Status(job).state, "QUEUED");
  EXPECT_EQ(harness_->Status(job).segments_total, 0u);
  FakeWorker plain("plain", {"wan"});  // names the model without its metadata: plans nothing
  Join(plain);
  EXPECT_EQ(harness_->Status(job).segments_total, 0u);
  EXPECT_TRUE(Assignments(harness_->Take("plain")).empty());

  FakeWorker w1("w1", {"wan"});
  w1.set_specs({WanLike()});
  Join(w1);
  EXPECT_EQ(harness_->Status(job).segments_total, 3u);  // stride 7 over 21: [0,9) [7,16) [12,21)
  EXPECT_EQ(harness_->Status(job).frames_total, 81);
  auto a = Assignments(harness_->Take("w1"));
  ASSERT_EQ(a.size(), 1u);
  EXPECT_TRUE(a[0].frame_start == 0 || a[0].frame_start == 7 || a[0].frame_start == 12)
      << a[0].frame_start;  // latent frames
  EXPECT_EQ(a[0].frame_count, 9u);

  model::ModelMetadata other = WanLike();
  other.temporal_compression = 8;
  other.native_frames = {81};
  FakeWorker w2("w2", {"wan"});
  w2.set_specs({other});
  harness_->Deliver("w2", w2.Hello());
  auto replies = harness_->Take("w2");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(ErrorText(replies[0]),
            "hello: model 'wan' of worker w2 differs from that of worker w1: "
            "temporal_compression 8 vs 4 (every worker must serve a model name with the same "
            "metadata)");

  harness_->Sync();
  Open();
  EXPECT_EQ(harness_->Status(job).segments_total, 3u);
  harness_->Deliver("w2", w2.Hello());
  replies = harness_->Take("w2");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_NE(ErrorText(replies[0])
                .find("differs from that of job " + std::to_string(job) +
                      "'s plan: temporal_compression 8 vs 4"),
            std::string::npos)
      << ErrorText(replies[0]);
  Join(w1);  // the same metadata: welcome, and the job goes on
  EXPECT_EQ(Assignments(harness_->Take("w1")).size(), 1u);
}

// A waiting job whose manifest does not fit the model that turns up fails, naming the field, its
// place in the manifest and the nearest lengths that fit; a built-in model's job is refused at
// submit the same way.
TEST_F(CoreTest, AManifestThatDoesNotFitItsModelIsRefusedWithTheFieldsPlace) {
  const uint64_t job = harness_->Submit(ManifestFor("wan", 81, 32, 8));
  ASSERT_GT(job, 0u);
  FakeWorker w1("w1", {"wan"});
  w1.set_specs({WanLike()});
  Join(w1);
  JobInfo st = harness_->Status(job);
  EXPECT_EQ(st.state, "FAILED");
  EXPECT_NE(
      st.error.find("job.yaml:5:20: segments.length: 32 frames is not 1 + 4 k frames (model 'wan'"),
      std::string::npos)
      << st.error;
  EXPECT_NE(st.error.find("nearest: 29 or 33"), std::string::npos) << st.error;
  // A retry plans it again (the model is known now), and it fails the same way.
  capnp::MallocMessageBuilder retry;
  auto action = retry.initRoot<wire::Envelope>().initJobAction();
  action.setJobId(job);
  action.setAction(wire::JobActionKind::RETRY);
  harness_->Call(Serialize(retry));
  EXPECT_EQ(harness_->Status(job).state, "FAILED");
  EXPECT_EQ(harness_->Status(job).error, st.error);

  std::string why;
  EXPECT_EQ(harness_->Submit(ManifestFor("stamp8", 81, 32, 8), &why), 0u);
  EXPECT_NE(why.find("segments.length: 32 frames is not 1 + 8 k frames (model 'stamp8'"),
            std::string::npos)
      << why;
  EXPECT_NE(why.find("nearest: 25 or 33"), std::string::npos) << why;
}

// After a restart a worker may be given the segment it was still rendering, under a new attempt;
// the old attempt's result, fenced off, must not make the coordinator think the worker free (it
// was then given a second task, which overwrote the first in the registry and left that segment
// RUNNING with nobody holding it: Farm.CoordinatorKilledAndRestartedResumes hung on it).
TEST_F(CoreTest, AStaleResultDoesNotFreeAWorkerHoldingANewerAttemptOfTheSameTask) {
  const uint64_t job = harness_->Submit(TestManifest("job", 28, 16, 4));
  FakeWorker w1("w1");
  Join(w1);
  auto first = Assignments(harness_->Take("w1"));
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(first[0].index, 0u);
  Open();  // the coordinator restarts; segment 0 goes back to the queue
  harness_->Deliver("w1", w1.Hello());
  harness_->Deliver("w1", FakeWorker::WorkRequest(2));  // credit for two tasks
  auto again = Assignments(harness_->Take("w1"));
  ASSERT_EQ(again.size(), 1u);
  ASSERT_EQ(again[0].index, 0u);
  ASSERT_GT(again[0].attempt, first[0].attempt);
  // The old attempt's result arrives: fenced off, and the worker still holds the new one.
  harness_->Deliver("w1", FakeWorker::RenderResult(first[0], FakeLatents(first[0])));
  EXPECT_TRUE(Assignments(harness_->Take("w1")).empty()) << "a second task while it holds one";
  EXPECT_EQ(harness_->Status(job).segment_states, ">.");
  // The new attempt's result is heard; the worker's other credit then gets it its next task.
  harness_->Deliver("w1", FakeWorker::RenderResult(again[0], FakeLatents(again[0])));
  EXPECT_EQ(Assignments(harness_->Take("w1")).size(), 1u);
  EXPECT_EQ(harness_->Status(job).segments_done, 1u);
}

// The limits that keep one job or one owner from filling the farm: a job planning more segments
// than --max-job-segments is refused before it is planned (or fails when a waiting job is
// planned), and an owner's unfinished jobs and their frames are capped.
TEST_F(CoreTest, JobsAndOwnersOverTheLimitsAreRefusedWithTheLimitNamed) {
  options_.max_job_segments = 3;
  options_.max_owner_jobs = 2;
  options_.max_owner_frames = 100;
  Open();
  std::string why;
  // 4 segments of 16 with 4 shared: 52 frames.
  EXPECT_EQ(harness_->Submit(TestManifest("big", 52, 16, 4), &why), 0u);
  EXPECT_NE(why.find("big: segments: the job plans 4 segments, above this coordinator's limit of "
                     "3 per job (--max-job-segments)"),
            std::string::npos)
      << why;
  // A job that waits for its model is held to the limit when it is planned.
  const uint64_t waiting = harness_->Submit(ManifestFor("wan", 100, 17, 4));
  ASSERT_GT(waiting, 0u);
  FakeWorker w1("w1", {"wan"});
  w1.set_specs({WanLike()});
  Join(w1);
  EXPECT_EQ(harness_->Status(waiting).state, "FAILED");
  EXPECT_NE(harness_->Status(waiting).error.find("--max-job-segments"), std::string::npos)
      << harness_->Status(waiting).error;
  // Owners: at most 2 unfinished jobs and 100 frames of them.
  const uint64_t first = harness_->Submit(TestManifest("a", 40, 16, 4));
  ASSERT_GT(first, 0u);
  EXPECT_EQ(harness_->Submit(TestManifest("b", 61, 32, 4), &why), 0u);
  EXPECT_NE(why.find("would bring 'local''s unfinished jobs to 101 frames, above this "
                     "coordinator's limit of 100 per owner (--max-owner-frames)"),
            std::string::npos)
      << why;
  EXPECT_GT(harness_->Submit(TestManifest("b", 30, 16, 4)), 0u);
  EXPECT_EQ(harness_->Submit(TestManifest("c", 10, 16, 4), &why), 0u);
  EXPECT_NE(why.find("'local' has 2 unfinished jobs, the most this coordinator queues per owner"),
            std::string::npos)
      << why;
  // A finished job no longer counts.
  capnp::MallocMessageBuilder cancel;
  auto action = cancel.initRoot<wire::Envelope>().initJobAction();
  action.setJobId(first);
  action.setAction(wire::JobActionKind::CANCEL);
  harness_->Call(Serialize(cancel));
  EXPECT_GT(harness_->Submit(TestManifest("c", 10, 16, 4)), 0u);
}

}  // namespace
}  // namespace segue
