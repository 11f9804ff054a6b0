// The journal: what the coordinator writes of its jobs comes back as it was, after a clean close
// and after a crash (what a sync covered).
#include "coordinator/journal.h"

#include <gtest/gtest.h>

#include "coordinator/state_machine.h"
#include "tests/support/core_harness.h"
#include "tests/support/fault_env.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

Job PlannedJob(const std::string& manifest_text) {
  auto m = ParseManifest(manifest_text, "job.yaml", ManifestParseOptions{"", false});
  EXPECT_TRUE(m.ok()) << m.message();
  Job j;
  j.name = m->name;
  j.manifest_text = manifest_text;
  j.manifest_name = "job.yaml";
  j.output_path = "/renders/out/job";
  j.chunk_frames = 8;
  EXPECT_TRUE(PlanJob(j, *m, model::PlanningMetadata(m->model_name), 96).ok());
  return j;
}

std::unique_ptr<Journal> OpenJournal(const std::string& dir, Env* env) {
  auto j = Journal::Open(dir, env, std::chrono::microseconds(0), Syncer::Mode::kOnDemand);
  EXPECT_TRUE(j.ok()) << j.message();
  return j.ok() ? std::move(*j) : nullptr;
}

TEST(Journal, KeysSortByJobThenIndex) {
  EXPECT_LT(TaskKey(1, 300), TaskKey(2, 0));
  EXPECT_LT(TaskKey(1, 2), TaskKey(1, 256));
  EXPECT_EQ(JobOfKey(TaskKey(77, 5)), 77u);
  EXPECT_EQ(IndexOfKey(TaskKey(77, 5)), 5u);
}

TEST(Journal, LoadsTheJobsAndTasksItWrote) {
  TempDir dir;
  FaultEnv env;
  uint64_t id = 0;
  {
    auto journal = OpenJournal(dir.path(), &env);
    Job j = PlannedJob(TestManifest("first", 40, 16, 4));
    j.has_audio = true;
    j.audio_name = "song.mp3";
    j.priority = 70;
    ASSERT_TRUE(journal->AddJob(j, "audio bytes", "submitted").ok());
    id = j.id;
    EXPECT_GT(id, 0u);
    Job other = PlannedJob(TestManifest("second", 300 * 8, 8, 0));  // 300 segments
    ASSERT_TRUE(journal->AddJob(other, "", "submitted").ok());
    EXPECT_EQ(other.id, id + 1);
    j.state = JobState::kRunning;
    j.error = "an error";
    journal->PutJob(j);
    j.seg[1].state = TaskState::kDone;
    j.seg[1].attempt = 2;
    journal->PutTask(id, TaskKind::kRender, 1, j.seg[1]);
    j.seg[2].state = TaskState::kFailed;
    j.seg[2].attempt = 3;
    j.seg[2].failures = 3;
    j.seg[2].error = "out of memory";
    j.seg[2].failed_on = {"w1", "w2", "w3"};
    journal->PutTask(id, TaskKind::kRender, 2, j.seg[2]);
    EXPECT_EQ(j.seg[2].recorded_attempt, 3u);
    EXPECT_EQ(j.seg[2].recorded_in_write, journal->written() + 1);
    j.chunk[0].state = TaskState::kDone;
    journal->PutTask(id, TaskKind::kEncode, 0, j.chunk[0]);
    journal->PutCheckpoint(id, 0, 2, Tensor::Zeros({2, 16, 2, 2}));
    journal->SyncAll();
    EXPECT_TRUE(journal->IsDurable(j.seg[2]));
  }
  auto journal = OpenJournal(dir.path(), &env);
  JobTable jobs;
  ASSERT_TRUE(journal->Load(jobs, 96).ok());
  ASSERT_EQ(jobs.size(), 2u);
  const Job& j = jobs.at(id);
  EXPECT_EQ(j.name, "first");
  EXPECT_EQ(j.state, JobState::kRunning);
  EXPECT_EQ(j.priority, 70);
  EXPECT_EQ(j.error, "an error");
  EXPECT_TRUE(j.has_audio);
  EXPECT_EQ(j.audio_name, "song.mp3");
  EXPECT_EQ(j.chunk_frames, 8u);  // the record's, not the default
  EXPECT_EQ(j.segments.size(), 3u);
  EXPECT_EQ(j.seg[0].state, TaskState::kPending);
  EXPECT_TRUE(j.seg[0].has_checkpoint);
  EXPECT_EQ(j.seg[1].state, TaskState::kDone);
  EXPECT_EQ(j.seg[1].attempt, 2u);
  EXPECT_FALSE(j.seg[1].has_checkpoint);
  EXPECT_EQ(j.seg[2].state, TaskState::kFailed);
  EXPECT_EQ(j.seg[2].failures, 3u);
  EXPECT_EQ(j.seg[2].error, "out of memory");
  EXPECT_EQ(j.seg[2].failed_on, (std::vector<std::string>{"w1", "w2", "w3"}));
  EXPECT_EQ(j.chunk[0].state, TaskState::kDone);
  // A job's tasks are one key range: 300 segments load into their own job, none into another.
  EXPECT_EQ(jobs.at(id + 1).seg.size(), 300u);
  EXPECT_EQ(*journal->Audio(id), "audio bytes");
}

TEST(Journal, ReadsSeeTheTurnsWritesBeforeTheyAreFlushed) {
  TempDir dir;
  FaultEnv env;
  auto journal = OpenJournal(dir.path(), &env);
  Tensor t = Tensor::Zeros({2, 4, 2, 2});
  t.data[5] = 1.5f;
  journal->PutLatents(9, 3, t);
  auto back = journal->Latents(9, 3);
  ASSERT_TRUE(back.ok()) << back.message();
  EXPECT_EQ(back->data, t.data);
  EXPECT_EQ(journal->written(), 1u);  // the read wrote the turn's batch first
  EXPECT_FALSE(journal->Latents(9, 4).ok());
}

TEST(Journal, AGangStepCountsWhenEverySegmentHasOneAndDropsTheOlder) {
  TempDir dir;
  FaultEnv env;
  auto journal = OpenJournal(dir.path(), &env);
  for (uint32_t s = 0; s < 2; ++s) {
    journal->PutGangCheckpoint(5, s, 3, Tensor::Zeros({1, 1, 1, 1}));
    journal->PutGangCheckpoint(5, s, 6, Tensor::Zeros({1, 2, 1, 1}));
  }
  EXPECT_EQ(journal->GangStep(5), 0u);
  journal->SetGangStep(5, 2, 6);
  EXPECT_EQ(journal->GangStep(5), 6u);
  EXPECT_FALSE(journal->GangCheckpoint(5, 0, 3).ok());
  EXPECT_EQ(journal->GangCheckpoint(5, 1, 6)->shape, (std::vector<int64_t>{1, 2, 1, 1}));
  journal->PutCheckpoint(5, 0, 4, Tensor::Zeros({1, 1, 1, 1}));
  EXPECT_EQ(journal->SegmentCheckpoint(5, 0)->step, 4u);
  journal->DropCheckpoints(5);
  EXPECT_EQ(journal->GangStep(5), 0u);
  EXPECT_FALSE(journal->SegmentCheckpoint(5, 0).ok());
}

TEST(Journal, EventsComeBackInOrderAndFiltered) {
  TempDir dir;
  FaultEnv env;
  auto journal = OpenJournal(dir.path(), &env);
  for (int i = 0; i < 12; ++i) journal->AddEvent(2, "segment " + std::to_string(i % 3) + " done");
  journal->AddEvent(3, "another job's");
  auto all = journal->Events(
      2, [](const std::string&) { return true; }, 100);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 12u);
  EXPECT_NE((*all)[4].find("segment 1 done"), std::string::npos);
  auto ones = journal->Events(
      2, [](const std::string& l) { return l.find("segment 1 ") != std::string::npos; }, 100);
  EXPECT_EQ(ones->size(), 4u);
  EXPECT_EQ(journal
                ->Events(
                    2, [](const std::string&) { return true; }, 5)
                ->size(),
            5u);
}

// What a crash keeps: the turns a sync covered, never a later one.
TEST(Journal, ACrashKeepsTheSyncedTurnsAndLosesTheRest) {
  TempDir dir;
  FaultEnv env;
  uint64_t id = 0;
  {
    auto journal = OpenJournal(dir.path(), &env);
    Job j = PlannedJob(TestManifest("crash", 40, 16, 4));
    ASSERT_TRUE(journal->AddJob(j, "", "submitted").ok());
    id = j.id;
    j.seg[0].state = TaskState::kDone;
    journal->PutTask(id, TaskKind::kRender, 0, j.seg[0]);
    journal->Flush();
    journal->SyncAll();
    j.seg[1].state = TaskState::kDone;
    journal->PutTask(id, TaskKind::kRender, 1, j.seg[1]);
    journal->Flush();  // written, never synced
    env.Crash();
  }
  ASSERT_TRUE(env.DropUnsyncedData().ok());
  env.Restart();
  auto journal = OpenJournal(dir.path(), &env);
  JobTable jobs;
  ASSERT_TRUE(journal->Load(jobs, 96).ok());
  ASSERT_EQ(jobs.count(id), 1u);
  EXPECT_EQ(jobs.at(id).seg[0].state, TaskState::kDone);
  EXPECT_EQ(jobs.at(id).seg[1].state, TaskState::kPending);
}

}  // namespace
}  // namespace segue
