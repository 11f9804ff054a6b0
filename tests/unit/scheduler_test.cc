// The scheduler as the pure function it is: jobs and workers in, decisions out.
#include "coordinator/scheduler.h"

#include <gtest/gtest.h>

#include "tests/support/core_harness.h"

namespace segue {
namespace {

const SchedulerOptions kOptions{2000};
constexpr uint64_t kNow = 1'000'000;

// A planned job with id `id`: `frames` frames in segments of 16 overlapping by 4, chunks of 8.
Job MakeJob(uint64_t id, const std::string& strategy = "independent", int frames = 40,
            int priority = 50, const std::string& extra = "") {
  auto m = ParseManifest(TestManifest("job", frames, 16, 4, strategy, extra), "job.yaml",
                         ManifestParseOptions{"", false});
  EXPECT_TRUE(m.ok()) << m.message();
  Job j;
  j.id = id;
  j.priority = priority;
  j.chunk_frames = 8;
  EXPECT_TRUE(PlanJob(j, *m, model::PlanningMetadata(m->model_name), 96).ok());
  return j;
}

Worker& AddWorker(WorkerRegistry::Map& workers, const std::string& name,
                  std::set<std::string> models = {"zoom"}) {
  Worker& w = workers[name];
  w.name = name;
  w.identity = name;
  w.models = std::move(models);
  w.device = "cpu";
  w.credits = 1;
  return w;
}

void SetDone(Job& j, std::initializer_list<uint32_t> segments) {
  for (uint32_t s : segments) {
    j.seg[s].state = TaskState::kDone;
    ++j.segments_done;
  }
  while (j.segments_done_below < j.seg.size() &&
         j.seg[j.segments_done_below].state == TaskState::kDone)
    ++j.segments_done_below;
}

std::string Show(const std::vector<Decision>& ds) {
  std::string out;
  for (const Decision& d : ds) {
    const char* kind = d.kind == Decision::Kind::kEncode   ? "encode"
                       : d.kind == Decision::Kind::kRender ? "render"
                       : d.kind == Decision::Kind::kGang   ? "gang"
                                                           : "wait";
    out += std::string(out.empty() ? "" : " ") + kind + ":" + std::to_string(d.job) + "/" +
           std::to_string(d.index);
    for (const auto& w : d.workers) out += "@" + w;
  }
  return out;
}

TEST(Scheduler, HigherPriorityFirstThenFirstCome) {
  JobTable jobs;
  jobs[1] = MakeJob(1, "independent", 16, 50);
  jobs[2] = MakeJob(2, "independent", 16, 90);
  jobs[3] = MakeJob(3, "independent", 16, 90);
  WorkerRegistry::Map workers;
  AddWorker(workers, "a");
  AddWorker(workers, "b");
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)), "render:2/0@a render:3/0@b");
  AddWorker(workers, "c");
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)),
            "render:2/0@a render:3/0@b render:1/0@c");
}

TEST(Scheduler, OnlyIdleWorkersWithCreditTakeTasksAndEachOnlyOne) {
  JobTable jobs;
  jobs[1] = MakeJob(1);
  WorkerRegistry::Map workers;
  AddWorker(workers, "busy").task = TaskRef{9, TaskKind::kRender, 0};
  AddWorker(workers, "draining").draining = true;
  AddWorker(workers, "no-credit").credits = 0;
  AddWorker(workers, "idle").credits = 4;
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)), "render:1/0@idle");
}

TEST(Scheduler, WorkersMustMeetTheJobsRequirements) {
  JobTable jobs;
  jobs[1] = MakeJob(1, "independent", 16, 50,
                    "requirements: {device: cuda, memory: 8GiB, tags: [studio-a]}\n");
  WorkerRegistry::Map workers;
  AddWorker(workers, "no-model", {"other"});
  Worker& cpu = AddWorker(workers, "cpu");
  cpu.memory = 16ull << 30;
  cpu.tags = {"studio-a"};
  Worker& small = AddWorker(workers, "small");
  small.device = "cuda:0";
  small.memory = 4ull << 30;
  small.tags = {"studio-a"};
  Worker& untagged = AddWorker(workers, "untagged");
  untagged.device = "cuda:1";
  untagged.memory = 16ull << 30;
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)), "");
  Worker& fit = AddWorker(workers, "zz-fit");
  fit.device = "cuda:3";
  fit.memory = 16ull << 30;
  fit.tags = {"studio-a", "other"};
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)), "render:1/0@zz-fit");
  EXPECT_TRUE(Capable(jobs[1], fit));
  EXPECT_FALSE(Capable(jobs[1], untagged));
}

TEST(Scheduler, ATaskAvoidsWorkersItFailedOnAndWorkersKeptOffTheJob) {
  JobTable jobs;
  jobs[1] = MakeJob(1, "independent", 16);
  jobs[1].seg[0].failed_on = {"a"};
  WorkerRegistry::Map workers;
  AddWorker(workers, "a");
  Worker& b = AddWorker(workers, "b");
  b.credits = 0;  // busy elsewhere, but able: the task waits for it
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)), "");
  b.credits = 1;
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)), "render:1/0@b");
  jobs[1].worker_failures["b"] = kKeepWorkerOffAfter;
  b.credits = 0;
  // Nobody eligible on the whole farm: a small farm must still make progress.
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)), "render:1/0@a");
}

TEST(Scheduler, IndependentSegmentsRunTogetherChainedOnesInOrder) {
  JobTable jobs;
  jobs[1] = MakeJob(1, "independent");
  jobs[2] = MakeJob(2, "chained");
  WorkerRegistry::Map workers;
  for (const char* n : {"a", "b", "c", "d", "e"}) AddWorker(workers, n);
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)),
            "render:1/0@a render:1/1@b render:1/2@c render:2/0@d");
  jobs[2].seg[0].state = TaskState::kRunning;
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)),
            "render:1/0@a render:1/1@b render:1/2@c");
  SetDone(jobs[2], {0});
  jobs.erase(1);
  // Segment 1 may start now (and segment 0's first chunk be encoded); segment 2 may not.
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)), "encode:2/0@a render:2/1@b");
}

// Encodes go first, and a chunk only once every segment covering its frames is done.
TEST(Scheduler, AReadyChunkIsEncodedBeforeAnySegmentIsRendered) {
  JobTable jobs;
  jobs[1] = MakeJob(1);  // segments [0,16) [12,28) [24,40); chunks of 8
  jobs[2] = MakeJob(2, "independent", 16, 90);
  SetDone(jobs[1], {0});
  WorkerRegistry::Map workers;
  AddWorker(workers, "a");
  AddWorker(workers, "b");
  // Chunk 0 ([0,8)) is covered by segment 0 alone; chunk 1 ([8,16)) needs segment 1 too.
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)), "encode:1/0@a render:2/0@b");
  jobs[1].chunk[0].state = TaskState::kRunning;
  SetDone(jobs[1], {1});
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)), "encode:1/1@a encode:1/2@b");
}

// Carrying out a decision can change the job under the next ones of the same pass: a segment
// found unreadable goes back to the queue, and the chunks it covers are no longer ready.
TEST(Scheduler, ADecisionNoLongerHoldsOnceItsTaskIsNotReady) {
  JobTable jobs;
  jobs[1] = MakeJob(1, "chained");
  SetDone(jobs[1], {0});
  WorkerRegistry::Map workers;
  AddWorker(workers, "a");
  AddWorker(workers, "b");
  auto ds = Schedule(jobs, workers, kNow, kOptions);
  ASSERT_EQ(Show(ds), "encode:1/0@a render:1/1@b");
  for (const Decision& d : ds) EXPECT_TRUE(StillHolds(jobs[1], d));
  jobs[1].seg[0].state = TaskState::kPending;  // its latents were unreadable: queued again
  jobs[1].segments_done_below = 0;
  for (const Decision& d : ds) EXPECT_FALSE(StillHolds(jobs[1], d));
  jobs[1].seg[0].state = TaskState::kDone;
  jobs[1].state = JobState::kFailed;
  for (const Decision& d : ds) EXPECT_FALSE(StillHolds(jobs[1], d));
}

TEST(Scheduler, AGangWaitsForBusyWorkersThenStartsOnTheIdleOnes) {
  JobTable jobs;
  jobs[1] = MakeJob(1, "codenoise", 64);  // 5 segments
  WorkerRegistry::Map workers;
  AddWorker(workers, "a");
  AddWorker(workers, "b");
  AddWorker(workers, "busy").task = TaskRef{9, TaskKind::kRender, 0};
  auto first = Schedule(jobs, workers, kNow, kOptions);
  ASSERT_EQ(Show(first), "wait:1/0");
  EXPECT_EQ(first[0].since_ms, kNow);
  jobs[1].gang_wait_since = kNow;
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow + 1999, kOptions)), "wait:1/0");
  EXPECT_EQ(Schedule(jobs, workers, kNow + 1999, kOptions)[0].since_ms, kNow);
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow + 2000, kOptions)), "gang:1/0@a@b");
  // Every able worker idle: no wait. At most one group per segment.
  workers["busy"].task.reset();
  jobs[1] = MakeJob(1, "codenoise", 16);  // one segment
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)), "gang:1/0@a");
  jobs[1].gang.emplace();
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)), "");
}

TEST(Scheduler, NothingRunsForFinishedOrStitchingJobs) {
  JobTable jobs;
  jobs[1] = MakeJob(1);
  jobs[1].state = JobState::kCancelled;
  jobs[2] = MakeJob(2);
  jobs[2].state = JobState::kStitching;
  WorkerRegistry::Map workers;
  AddWorker(workers, "a");
  EXPECT_EQ(Show(Schedule(jobs, workers, kNow, kOptions)), "");
  EXPECT_TRUE(RunnableJobs(jobs).empty());
}

TEST(Scheduler, DemandCountsWhatCouldRun) {
  JobTable jobs;
  jobs[1] = MakeJob(1);             // 3 segments
  jobs[2] = MakeJob(2, "chained");  // one at a time
  jobs[3] = MakeJob(3);
  SetDone(jobs[3], {0, 1, 2});  // its 5 chunks then
  jobs[4] = MakeJob(4);
  jobs[4].state = JobState::kDone;
  EXPECT_EQ(Demand(jobs), 3 + 1 + 5);
}

}  // namespace
}  // namespace segue
