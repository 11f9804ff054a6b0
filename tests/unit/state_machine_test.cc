// The state machine over a real journal (RocksDB through a FaultEnv): every transition, what it
// records, and what a restart makes of it. No sockets, no workers but names.
#include "coordinator/state_machine.h"

#include <gtest/gtest.h>

#include "tests/support/core_harness.h"
#include "tests/support/fault_env.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

class StateMachineTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    journal_.reset();
    auto j =
        Journal::Open(dir_.path(), &env_, std::chrono::microseconds(0), Syncer::Mode::kOnDemand);
    ASSERT_TRUE(j.ok()) << j.message();
    journal_ = std::move(*j);
    machine_ = std::make_unique<StateMachine>(journal_.get(), &env_, /*max_attempts=*/3);
  }

  // A submitted job (stored), in the table.
  Job& Submit(const std::string& strategy = "independent", int frames = 40) {
    auto m = ParseManifest(TestManifest("job", frames, 16, 4, strategy), "job.yaml",
                           ManifestParseOptions{"", false});
    EXPECT_TRUE(m.ok()) << m.message();
    Job j;
    j.manifest_text = TestManifest("job", frames, 16, 4, strategy);
    j.manifest_name = "job.yaml";
    j.chunk_frames = 8;
    EXPECT_TRUE(PlanJob(j, *m, model::PlanningMetadata(m->model_name), 96).ok());
    EXPECT_TRUE(journal_->AddJob(j, "", "submitted").ok());
    const uint64_t id = j.id;
    return jobs_[id] = std::move(j);
  }

  // The table as a restarted coordinator rebuilds it; `due` gets the jobs to assemble.
  JobTable Restart(std::vector<uint64_t>* due = nullptr) {
    journal_->SyncAll();
    Open();
    JobTable jobs;
    EXPECT_TRUE(journal_->Load(jobs, 8).ok());
    auto d = machine_->Recover(jobs);
    EXPECT_TRUE(d.ok()) << d.message();
    if (due && d.ok()) *due = *d;
    return jobs;
  }

  TempDir dir_;
  FaultEnv env_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<StateMachine> machine_;
  JobTable jobs_;
};

Tensor LatentsOf(const Job& j, uint32_t segment) {
  return Tensor::Zeros({2, j.segments[segment].length(), 2, 2});
}

TEST_F(StateMachineTest, AnAssignmentTakesTheNextAttemptAndOnlyItsHolderIsCurrent) {
  Job& j = Submit();
  EXPECT_EQ(j.state, JobState::kQueued);
  EXPECT_EQ(machine_->Assign(j, TaskKind::kRender, 1, "w1"), 1u);
  EXPECT_EQ(j.state, JobState::kRunning);
  EXPECT_EQ(j.seg[1].state, TaskState::kRunning);
  EXPECT_TRUE(machine_->IsCurrent(jobs_, j.id, TaskKind::kRender, 1, 1, "w1"));
  EXPECT_FALSE(machine_->IsCurrent(jobs_, j.id, TaskKind::kRender, 1, 1, "w2"));
  EXPECT_FALSE(machine_->IsCurrent(jobs_, j.id, TaskKind::kRender, 1, 0, "w1"));
  EXPECT_FALSE(machine_->IsCurrent(jobs_, j.id, TaskKind::kRender, 0, 1, "w1"));
  EXPECT_FALSE(machine_->IsCurrent(jobs_, j.id, TaskKind::kEncode, 1, 1, "w1"));
  EXPECT_FALSE(machine_->IsCurrent(jobs_, j.id + 1, TaskKind::kRender, 1, 1, "w1"));
  EXPECT_FALSE(machine_->IsCurrent(jobs_, j.id, TaskKind::kRender, 99, 1, "w1"));
  machine_->Requeue(j, TaskKind::kRender, 1, "worker presumed dead (w1)");
  EXPECT_EQ(j.seg[1].state, TaskState::kPending);
  EXPECT_TRUE(j.seg[1].worker.empty());
  EXPECT_FALSE(machine_->IsCurrent(jobs_, j.id, TaskKind::kRender, 1, 1, "w1"));
  EXPECT_EQ(machine_->Assign(j, TaskKind::kRender, 1, "w2"), 2u);
}

// A task is assigned only once its current attempt number is durable: a restart skips one number,
// so at most one assignment of a task may be unknown to the disk.
TEST_F(StateMachineTest, AnAssignmentAfterAnUnsyncedFailureSyncsFirst) {
  Job& j = Submit();
  machine_->Assign(j, TaskKind::kRender, 0, "w1");
  machine_->Fail(j, TaskKind::kRender, 0, "w1", "boom");
  EXPECT_FALSE(journal_->IsDurable(j.seg[0]));
  const uint64_t syncs = env_.syncs();
  EXPECT_EQ(machine_->Assign(j, TaskKind::kRender, 0, "w2"), 2u);
  EXPECT_GT(env_.syncs(), syncs);
  EXPECT_TRUE(journal_->IsDurable(j.seg[0]));
  // A first assignment (the submission's synced record) needs no sync.
  const uint64_t before = env_.syncs();
  machine_->Assign(j, TaskKind::kRender, 1, "w1");
  EXPECT_EQ(env_.syncs(), before);
}

TEST_F(StateMachineTest, ATaskFailsItsJobOnlyAfterFailingOnEnoughDistinctWorkers) {
  Job& j = Submit();
  for (const char* w : {"w1", "w1"}) {
    machine_->Assign(j, TaskKind::kRender, 0, w);
    auto f = machine_->Fail(j, TaskKind::kRender, 0, w, "boom");
    EXPECT_FALSE(f.job_failed);
  }
  EXPECT_EQ(j.seg[0].failed_on, std::vector<std::string>{"w1"});
  EXPECT_EQ(j.worker_failures["w1"], 2u);
  machine_->Assign(j, TaskKind::kRender, 0, "w2");
  EXPECT_FALSE(machine_->Fail(j, TaskKind::kRender, 0, "w2", "boom").job_failed);
  EXPECT_EQ(j.state, JobState::kRunning);
  machine_->Assign(j, TaskKind::kRender, 0, "w3");
  auto last = machine_->Fail(j, TaskKind::kRender, 0, "w3", "out of memory");
  EXPECT_TRUE(last.job_failed);
  EXPECT_EQ(j.state, JobState::kFailed);
  EXPECT_EQ(j.seg[0].state, TaskState::kFailed);
  EXPECT_NE(j.error.find("failed on 3 worker(s), 4 time(s); last error: out of memory"),
            std::string::npos)
      << j.error;
  EXPECT_FALSE(machine_->IsCurrent(jobs_, j.id, TaskKind::kRender, 0, 4, "w3"));
}

TEST_F(StateMachineTest, AWorkerIsKeptOffAJobAfterTwoFailures) {
  Job& j = Submit();
  machine_->Assign(j, TaskKind::kRender, 0, "w1");
  EXPECT_FALSE(machine_->Fail(j, TaskKind::kRender, 0, "w1", "x").kept_off);
  machine_->Assign(j, TaskKind::kRender, 1, "w1");
  EXPECT_TRUE(machine_->Fail(j, TaskKind::kRender, 1, "w1", "x").kept_off);
  machine_->Assign(j, TaskKind::kRender, 2, "w1");
  EXPECT_FALSE(machine_->Fail(j, TaskKind::kRender, 2, "w1", "x").kept_off);  // said once
}

TEST_F(StateMachineTest, CountersFollowTheTasksAndTheLastChunkMakesTheJobReady) {
  Job& j = Submit();
  for (uint32_t s = 0; s < j.seg.size(); ++s) {
    machine_->Assign(j, TaskKind::kRender, s, "w1");
    machine_->CompleteSegment(j, s, LatentsOf(j, s), "by w1");
  }
  EXPECT_EQ(j.segments_done, j.seg.size());
  EXPECT_EQ(j.segments_done_below, j.seg.size());
  machine_->Rerender(j, 1, "latents unreadable");
  EXPECT_EQ(j.segments_done, j.seg.size() - 1);
  EXPECT_EQ(j.segments_done_below, 1u);
  machine_->Rerender(j, 1, "found unreadable again by another task of the pass");
  EXPECT_EQ(j.segments_done, j.seg.size() - 1);  // counted once
  machine_->Assign(j, TaskKind::kRender, 1, "w1");
  machine_->CompleteSegment(j, 1, LatentsOf(j, 1), "by w1");
  EXPECT_EQ(j.segments_done_below, j.seg.size());
  for (uint32_t c = 0; c < j.chunk.size(); ++c) {
    machine_->Assign(j, TaskKind::kEncode, c, "w1");
    const bool last = machine_->CompleteChunk(j, c, "chunk bytes", "encoded by w1");
    EXPECT_EQ(last, c + 1 == j.chunk.size());
  }
  EXPECT_EQ(j.chunks_done_below, j.chunk.size());
  machine_->BeginStitching(j);
  EXPECT_EQ(j.state, JobState::kStitching);
  machine_->EndStitching(j, Status::Error("disk full"));
  EXPECT_EQ(j.state, JobState::kFailed);
  EXPECT_NE(j.error.find("assembling the output failed: disk full"), std::string::npos);
  EXPECT_TRUE(machine_->Retry(j).ok());
  EXPECT_EQ(j.state, JobState::kRunning);
  EXPECT_TRUE(j.error.empty());
  EXPECT_EQ(journal_->Latents(j.id, 2)->shape, LatentsOf(j, 2).shape);
}

TEST_F(StateMachineTest, CancelRetryAndPriority) {
  Job& j = Submit();
  machine_->Assign(j, TaskKind::kRender, 0, "w1");
  machine_->Assign(j, TaskKind::kRender, 1, "w2");
  EXPECT_FALSE(machine_->SetPriority(j, 101).ok());
  EXPECT_TRUE(machine_->SetPriority(j, 90).ok());
  EXPECT_EQ(j.priority, 90);
  EXPECT_FALSE(machine_->Retry(j).ok());  // running
  ASSERT_TRUE(machine_->Cancel(j).ok());
  EXPECT_EQ(j.state, JobState::kCancelled);
  EXPECT_EQ(j.seg[0].state, TaskState::kPending);
  EXPECT_EQ(j.seg[1].state, TaskState::kPending);
  EXPECT_FALSE(machine_->IsCurrent(jobs_, j.id, TaskKind::kRender, 0, 1, "w1"));
  Status again = machine_->Cancel(j);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.message().find("already CANCELLED"), std::string::npos);
  ASSERT_TRUE(machine_->Retry(j).ok());
  EXPECT_EQ(j.state, JobState::kQueued);
  auto restored = Restart();
  EXPECT_EQ(restored.at(j.id).priority, 90);
  EXPECT_EQ(restored.at(j.id).state, JobState::kQueued);
}

TEST_F(StateMachineTest, AGangRunsEverySegmentUnderOneAttemptAndStopsAsOne) {
  Job& j = Submit("codenoise", 64);
  ASSERT_EQ(j.seg.size(), 5u);
  // A segment that failed alone before has a higher number: the gang's is past every one.
  machine_->Assign(j, TaskKind::kRender, 3, "w0");
  machine_->Fail(j, TaskKind::kRender, 3, "w0", "x");
  const uint32_t attempt = machine_->StartGang(j, {{0, 3, "w1"}, {3, 5, "w2"}}, 0);
  EXPECT_EQ(attempt, 2u);
  ASSERT_TRUE(j.gang.has_value());
  EXPECT_EQ(j.gang->GroupOf("w2"), 1);
  for (uint32_t s = 0; s < 5; ++s) {
    EXPECT_EQ(j.seg[s].state, TaskState::kRunning);
    EXPECT_TRUE(
        machine_->IsCurrent(jobs_, j.id, TaskKind::kRender, s, attempt, s < 3 ? "w1" : "w2"));
  }
  // Gang checkpoints count only once every segment has one at that step.
  for (uint32_t s = 0; s < 4; ++s) EXPECT_FALSE(machine_->GangCheckpoint(j, s, 2, LatentsOf(j, s)));
  EXPECT_TRUE(machine_->GangCheckpoint(j, 4, 2, LatentsOf(j, 4)));
  EXPECT_EQ(journal_->GangStep(j.id), 2u);
  auto groups = machine_->AbortGang(j, "a member left");
  EXPECT_EQ(groups.size(), 2u);
  EXPECT_FALSE(j.gang.has_value());
  for (const Task& t : j.seg) EXPECT_EQ(t.state, TaskState::kPending);
  EXPECT_EQ(machine_->StartGang(j, {{0, 5, "w1"}}, 2), attempt + 1);
  EXPECT_EQ(j.gang->exchange->step(), 2u);
  for (uint32_t s = 0; s < 5; ++s) machine_->CompleteSegment(j, s, LatentsOf(j, s), "by w1");
  EXPECT_FALSE(j.gang.has_value());  // done with the last segment
  EXPECT_EQ(journal_->GangStep(j.id), 0u);
}

// A restart: RUNNING tasks go back to the queue, every unfinished task's attempt moves one past
// the stored one and is durable before anything is assigned, a second restart moves it again.
TEST_F(StateMachineTest, ARestartSkipsAnAttemptNumberAndRecordsTheSkip) {
  Job& j = Submit("codenoise", 64);
  const uint64_t id = j.id;
  machine_->StartGang(j, {{0, 5, "w1"}}, 0);  // records every segment RUNNING at attempt 1
  machine_->CompleteSegment(j, 0, LatentsOf(j, 0), "by w1");
  auto first = Restart();
  const Job& r = first.at(id);
  EXPECT_EQ(r.seg[0].state, TaskState::kDone);
  EXPECT_EQ(r.seg[0].attempt, 1u);  // finished: kept as it was
  for (uint32_t s = 1; s < 5; ++s) {
    EXPECT_EQ(r.seg[s].state, TaskState::kPending);
    EXPECT_EQ(r.seg[s].attempt, 2u);
    EXPECT_TRUE(r.seg[s].worker.empty());
    EXPECT_TRUE(journal_->IsDurable(r.seg[s]));
  }
  EXPECT_EQ(r.segments_done, 1u);
  EXPECT_EQ(r.segments_done_below, 1u);
  auto second = Restart();
  EXPECT_EQ(second.at(id).seg[1].attempt, 3u);
}

TEST_F(StateMachineTest, ARestartNamesTheJobsToAssemble) {
  Job& stitching = Submit();
  machine_->BeginStitching(stitching);
  Job& ready = Submit();
  for (uint32_t c = 0; c < ready.chunk.size(); ++c) {
    machine_->Assign(ready, TaskKind::kEncode, c, "w1");
    machine_->CompleteChunk(ready, c, "bytes", "encoded by w1");
  }
  Submit();  // nothing done
  std::vector<uint64_t> due;
  auto jobs = Restart(&due);
  EXPECT_EQ(due, (std::vector<uint64_t>{stitching.id, ready.id}));
  EXPECT_TRUE(jobs.at(stitching.id).restored_stitching);
  EXPECT_FALSE(jobs.at(ready.id).restored_stitching);
}

}  // namespace
}  // namespace segue
