#include "coordinator/state_machine.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "coordinator/results.h"

namespace segue {

StateMachine::StateMachine(Journal* journal, Env* env, int max_attempts)
    : journal_(journal), env_(env), max_attempts_(static_cast<uint32_t>(max_attempts)) {}

void StateMachine::SetJobState(Job& j, JobState state, const std::string& error) {
  j.state = state;
  j.updated_ms = env_->NowMillis();
  if (events_) events_->Stage({0, j.updated_ms, j.id, "job", -1, JobStateName(state), error});
  if (!error.empty()) j.error = error;
  if (IsFinished(state)) j.finished_ms = j.updated_ms;
  journal_->PutJob(j);
  journal_->AddEvent(
      j.id, std::string("job ") + JobStateName(state) + (error.empty() ? "" : ": " + error));
}

void StateMachine::NoteTask(const Job& j, TaskKind kind, uint32_t index,
                            const std::string& detail) {
  if (!events_) return;
  const Task& t = j.tasks(kind)[index];
  const char* state = t.state == TaskState::kDone      ? "done"
                      : t.state == TaskState::kRunning ? "running"
                      : t.state == TaskState::kFailed  ? "failed"
                                                       : "pending";
  events_->Stage({0, env_->NowMillis(), j.id, kind == TaskKind::kEncode ? "chunk" : "segment",
                  index, state, detail});
}

void StateMachine::AdvanceDoneCursors(Job& j) {
  while (j.segments_done_below < j.seg.size() &&
         j.seg[j.segments_done_below].state == TaskState::kDone)
    ++j.segments_done_below;
  while (j.chunks_done_below < j.chunk.size() &&
         j.chunk[j.chunks_done_below].state == TaskState::kDone)
    ++j.chunks_done_below;
}

// ---- Tasks ------------------------------------------------------------------------------------

uint32_t StateMachine::Assign(Job& j, TaskKind kind, uint32_t index, const std::string& worker) {
  Task& t = j.tasks(kind)[index];
  if (t.recorded_attempt != t.attempt) {
    // No transition of this state machine ends an assignment unrecorded; should one, the record
    // is made here rather than assumed.
    spdlog::error("job {} {}: attempt {} was not recorded; recording it", j.id,
                  TaskName(kind, index), t.attempt);
    journal_->PutTask(j.id, kind, index, t);
  }
  // The assignment itself is not written (a tenth of the loop's time under load: docs/
  // PERFORMANCE.md, fourth pass). Its number is one past the durable one, which a restart skips.
  if (!journal_->IsDurable(t)) journal_->SyncAll();
  t.state = TaskState::kRunning;
  ++t.attempt;
  t.worker = worker;
  NoteTask(j, kind, index, worker);
  if (j.state == JobState::kQueued) SetJobState(j, JobState::kRunning, "");
  return t.attempt;
}

bool StateMachine::IsCurrent(const JobTable& jobs, uint64_t job, TaskKind kind, uint32_t index,
                             uint32_t attempt, const std::string& worker) const {
  auto it = jobs.find(job);
  if (it == jobs.end() || IsFinished(it->second.state)) return false;
  const std::vector<Task>& tasks = it->second.tasks(kind);
  if (index >= tasks.size()) return false;
  const Task& t = tasks[index];
  return t.state == TaskState::kRunning && t.attempt == attempt && t.worker == worker;
}

void StateMachine::CompleteSegment(Job& j, uint32_t index, const Tensor& latents,
                                   const std::string& note, uint64_t used_ms) {
  journal_->PutLatents(j.id, index, latents);
  SegmentDone(j, index, note, used_ms);
}

void StateMachine::ReuseSegment(Job& j, uint32_t index, uint64_t from, uint32_t from_index,
                                const std::string& note, uint64_t used_ms) {
  journal_->CopyLatents(from, from_index, j.id, index);
  journal_->CopyThumbnail(from, from_index, j.id, index);
  SegmentDone(j, index, note, used_ms);
}

void StateMachine::SegmentDone(Job& j, uint32_t index, const std::string& note, uint64_t used_ms) {
  Task& t = j.seg[index];
  t.state = TaskState::kDone;
  t.result_key = ResultKeys(j)[index];
  t.result_used_ms = used_ms ? used_ms : env_->NowMillis();
  journal_->PutTask(j.id, TaskKind::kRender, index, t);
  if (t.has_checkpoint) journal_->DeleteCheckpoint(j.id, index);  // done: not needed any more
  t.has_checkpoint = false;
  journal_->AddEvent(j.id, TaskName(TaskKind::kRender, index) + " done " + note);
  NoteTask(j, TaskKind::kRender, index, note);
  ++j.segments_done;
  AdvanceDoneCursors(j);
  if (j.gang && j.segments_done == j.segments.size()) {
    j.gang.reset();
    journal_->DropCheckpoints(j.id);  // the gang's checkpoints are of no use any more
  }
}

bool StateMachine::CompleteChunk(Job& j, uint32_t index, std::string_view container,
                                 const std::string& note) {
  journal_->PutChunk(j.id, index, container);
  return ChunkDone(j, index, note);
}

bool StateMachine::ReuseChunk(Job& j, uint32_t index, uint64_t from, uint32_t from_index,
                              const std::string& note) {
  journal_->CopyChunk(from, from_index, j.id, index);
  return ChunkDone(j, index, note);
}

bool StateMachine::ChunkDone(Job& j, uint32_t index, const std::string& note) {
  Task& t = j.chunk[index];
  t.state = TaskState::kDone;
  journal_->PutTask(j.id, TaskKind::kEncode, index, t);
  journal_->AddEvent(j.id, TaskName(TaskKind::kEncode, index) + " " + note);
  NoteTask(j, TaskKind::kEncode, index, note);
  ++j.chunks_done;
  AdvanceDoneCursors(j);
  return j.chunks_done == j.chunks.size();
}

StateMachine::Failure StateMachine::Fail(Job& j, TaskKind kind, uint32_t index,
                                         const std::string& worker, const std::string& message) {
  Task& t = j.tasks(kind)[index];
  Failure out;
  ++t.failures;
  t.error = message;
  t.worker.clear();
  if (std::find(t.failed_on.begin(), t.failed_on.end(), worker) == t.failed_on.end())
    t.failed_on.push_back(worker);
  const uint32_t by_worker = ++j.worker_failures[worker];
  const std::string what = TaskName(kind, index);
  journal_->AddEvent(j.id, what + " failed on " + worker + ": " + message);
  if (t.failed_on.size() >= max_attempts_ || t.failures >= 2 * max_attempts_) {
    t.state = TaskState::kFailed;
    journal_->PutTask(j.id, kind, index, t);
    NoteTask(j, kind, index, "failed on " + worker + ": " + message);
    SetJobState(j, JobState::kFailed,
                what + " failed on " + std::to_string(t.failed_on.size()) + " worker(s), " +
                    std::to_string(t.failures) + " time(s); last error: " + message);
    spdlog::error("job {} failed: {} failed {} times: {}", j.id, what, t.failures, message);
    out.job_failed = true;
  } else {
    t.state = TaskState::kPending;
    journal_->PutTask(j.id, kind, index, t);
    NoteTask(j, kind, index, "failed on " + worker + ": " + message);
    if (by_worker == kKeepWorkerOffAfter) {
      journal_->AddEvent(j.id, "worker " + worker + " kept off this job after " +
                                   std::to_string(by_worker) + " failures");
      out.kept_off = true;
    }
    spdlog::warn("job {}: {} failed on {} ({}); retrying", j.id, what, worker, message);
  }
  return out;
}

void StateMachine::Requeue(Job& j, TaskKind kind, uint32_t index, const std::string& why) {
  Task& t = j.tasks(kind)[index];
  t.state = TaskState::kPending;
  t.worker.clear();
  journal_->PutTask(j.id, kind, index, t);
  NoteTask(j, kind, index, why);
  if (!why.empty()) journal_->AddEvent(j.id, TaskName(kind, index) + " requeued: " + why);
}

void StateMachine::Rerender(Job& j, uint32_t index, const std::string& why) {
  if (j.seg[index].state != TaskState::kDone) return;  // queued again already
  spdlog::error("job {}: latents of segment {} unreadable ({}); re-rendering it", j.id, index, why);
  Task& t = j.seg[index];
  t.state = TaskState::kPending;
  --j.segments_done;
  j.segments_done_below = std::min(j.segments_done_below, index);
  journal_->PutTask(j.id, TaskKind::kRender, index, t);
  NoteTask(j, TaskKind::kRender, index, why);
  journal_->AddEvent(j.id, TaskName(TaskKind::kRender, index) + " requeued: " + why);
}

void StateMachine::Checkpoint(Job& j, uint32_t index, uint32_t step, const Tensor& latents,
                              const std::string& worker) {
  journal_->PutCheckpoint(j.id, index, step, latents);
  j.seg[index].has_checkpoint = true;
  journal_->AddEvent(j.id, TaskName(TaskKind::kRender, index) + " checkpoint at step " +
                               std::to_string(step) + " from " + worker);
}

// ---- Co-denoising gangs -----------------------------------------------------------------------

uint32_t StateMachine::StartGang(Job& j, std::vector<Gang::Group> groups, uint32_t resume_step) {
  // As for Assign: the gang's attempt number is one past every segment's, and is lost in a crash
  // with the gang's records, so every segment's own number must be durable first.
  for (size_t s = 0; s < j.seg.size(); ++s) {
    if (j.seg[s].recorded_attempt != j.seg[s].attempt)
      journal_->PutTask(j.id, TaskKind::kRender, static_cast<uint32_t>(s), j.seg[s]);
  }
  if (std::any_of(j.seg.begin(), j.seg.end(),
                  [&](const Task& t) { return !journal_->IsDurable(t); }))
    journal_->SyncAll();
  Gang gang;
  for (const Task& t : j.seg) gang.attempt = std::max(gang.attempt, t.attempt);
  ++gang.attempt;
  gang.last_checkpoint_ms = env_->NowMillis();
  for (const Gang::Group& g : groups) {
    for (uint32_t s = g.first; s < g.end; ++s) {
      Task& t = j.seg[s];
      if (t.state == TaskState::kDone) --j.segments_done;
      t.state = TaskState::kRunning;
      t.attempt = gang.attempt;
      t.worker = g.worker;
      journal_->PutTask(j.id, TaskKind::kRender, s, t);
      NoteTask(j, TaskKind::kRender, s, g.worker);
    }
  }
  j.segments_done_below = 0;
  j.gang_wait_since = 0;
  if (j.state == JobState::kQueued) SetJobState(j, JobState::kRunning, "");
  journal_->AddEvent(j.id, "co-denoising on " + std::to_string(groups.size()) +
                               " worker(s), attempt " + std::to_string(gang.attempt));
  if (resume_step > 0)
    journal_->AddEvent(j.id, "co-denoising resumes at step " + std::to_string(resume_step));
  gang.exchange = std::make_unique<StepExchange>(j.segments, j.blend,
                                                 static_cast<int>(groups.size()), resume_step);
  gang.groups = std::move(groups);
  spdlog::info("job {}: co-denoising {} segments on {} worker(s), attempt {}", j.id,
               j.segments.size(), gang.groups.size(), gang.attempt);
  const uint32_t attempt = gang.attempt;
  j.gang = std::move(gang);
  return attempt;
}

bool StateMachine::GangCheckpoint(Job& j, uint32_t segment, uint32_t step, const Tensor& latents) {
  journal_->PutGangCheckpoint(j.id, segment, step, latents);
  auto& arrivals = j.gang->checkpoint_arrivals;
  auto& got = arrivals[step];
  got.insert(segment);
  if (got.size() < j.segments.size()) return false;
  journal_->SetGangStep(j.id, static_cast<uint32_t>(j.segments.size()), step);
  arrivals.erase(arrivals.begin(), arrivals.upper_bound(step));
  j.gang->last_checkpoint_ms = env_->NowMillis();
  journal_->AddEvent(j.id, "co-denoising checkpoint at step " + std::to_string(step) + " (" +
                               std::to_string(j.segments.size()) + " segments)");
  return true;
}

std::vector<Gang::Group> StateMachine::AbortGang(Job& j, const std::string& why) {
  if (!j.gang) return {};
  for (size_t s = 0; s < j.seg.size(); ++s) {
    if (j.seg[s].state == TaskState::kRunning)
      Requeue(j, TaskKind::kRender, static_cast<uint32_t>(s), "");
  }
  journal_->AddEvent(j.id, "co-denoising stopped: " + why);
  spdlog::warn("job {}: co-denoising stopped: {}", j.id, why);
  std::vector<Gang::Group> groups = std::move(j.gang->groups);
  j.gang.reset();
  return groups;
}

// ---- Jobs -------------------------------------------------------------------------------------

void StateMachine::Submitted(const Job& j) {
  if (events_)
    events_->Stage({0, env_->NowMillis(), j.id, "job", -1, JobStateName(j.state), j.error});
}

Status StateMachine::Cancel(Job& j) {
  if (IsFinished(j.state))
    return Status::Error("job " + std::to_string(j.id) + " is already " + JobStateName(j.state));
  j.gang.reset();
  for (TaskKind kind : {TaskKind::kRender, TaskKind::kEncode}) {
    std::vector<Task>& tasks = j.tasks(kind);
    for (size_t i = 0; i < tasks.size(); ++i) {
      if (tasks[i].state == TaskState::kRunning) Requeue(j, kind, static_cast<uint32_t>(i), "");
    }
  }
  SetJobState(j, JobState::kCancelled, "");
  spdlog::info("job {} cancelled", j.id);
  return Status::Ok();
}

Status StateMachine::Retry(Job& j) {
  if (j.state != JobState::kFailed && j.state != JobState::kCancelled) {
    return Status::Error("job " + std::to_string(j.id) + " is " + JobStateName(j.state) +
                         "; only FAILED or CANCELLED jobs can be retried");
  }
  for (TaskKind kind : {TaskKind::kRender, TaskKind::kEncode}) {
    std::vector<Task>& tasks = j.tasks(kind);
    for (size_t i = 0; i < tasks.size(); ++i) {
      Task& t = tasks[i];
      if (t.state == TaskState::kDone) continue;
      t.state = TaskState::kPending;
      t.failures = 0;
      t.failed_on.clear();
      t.error.clear();
      t.worker.clear();
      journal_->PutTask(j.id, kind, static_cast<uint32_t>(i), t);
      NoteTask(j, kind, static_cast<uint32_t>(i), "retried");
    }
  }
  j.error.clear();
  j.worker_failures.clear();
  j.finished_ms = 0;
  j.started_ms = env_->NowMillis();
  SetJobState(j, j.segments_done > 0 ? JobState::kRunning : JobState::kQueued, "");
  spdlog::info("job {} retried", j.id);
  return Status::Ok();
}

Status StateMachine::SetPriority(Job& j, int priority) {
  if (priority < 0 || priority > 100) return Status::Error("priority must be between 0 and 100");
  j.priority = priority;
  j.updated_ms = env_->NowMillis();
  journal_->PutJob(j);
  journal_->AddEvent(j.id, "priority set to " + std::to_string(j.priority));
  return Status::Ok();
}

void StateMachine::BeginStitching(Job& j) { SetJobState(j, JobState::kStitching, ""); }

void StateMachine::EndStitching(Job& j, const Status& assembled) {
  if (assembled.ok()) {
    SetJobState(j, JobState::kDone, "");
    spdlog::info("job {} ({}) done: {}", j.id, j.name, j.output_path);
  } else {
    SetJobState(j, JobState::kFailed, "assembling the output failed: " + assembled.message());
    spdlog::error("job {} failed while assembling: {}", j.id, assembled.message());
  }
}

void StateMachine::FailJob(Job& j, const std::string& error) {
  SetJobState(j, JobState::kFailed, error);
}

bool StateMachine::Plan(Job& j, const model::ModelMetadata& meta, uint32_t default_chunk_frames,
                        int64_t max_segments) {
  const Manifest manifest = j.manifest;
  if (Status s = PlanJob(j, manifest, meta, default_chunk_frames, max_segments); !s.ok()) {
    FailJob(j, s.message());
    return false;
  }
  for (TaskKind kind : {TaskKind::kRender, TaskKind::kEncode}) {
    for (size_t i = 0; i < j.tasks(kind).size(); ++i)
      journal_->PutTask(j.id, kind, static_cast<uint32_t>(i), j.tasks(kind)[i]);
  }
  journal_->PutJob(j);  // with the metadata: a restart plans it the same way
  journal_->AddEvent(j.id, "planned for model " + meta.name + " (" + model::DescribeMetadata(meta) +
                               "): " + std::to_string(j.segments.size()) + " segments, " +
                               std::to_string(j.geometry.latents) + " latent frames");
  spdlog::info("job {} ({}) planned: {} segments for model {}", j.id, j.name, j.segments.size(),
               meta.name);
  return true;
}

// ---- Restart ----------------------------------------------------------------------------------

Result<std::vector<uint64_t>> StateMachine::Recover(JobTable& jobs) {
  for (auto& [id, j] : jobs) {
    for (TaskKind kind : {TaskKind::kRender, TaskKind::kEncode}) {
      for (Task& t : j.tasks(kind)) {
        // A task running when the coordinator stopped goes back to the queue; its worker, if
        // alive, is fenced off by the attempt number. (Only a gang records RUNNING tasks.)
        if (t.state == TaskState::kRunning) {
          t.state = TaskState::kPending;
          t.worker.clear();
        }
        // Its latest assignment may be lost with the unsynced end of the log while its worker
        // holds it: that number is skipped. One is enough, as Assign assigns only once the
        // task's number is durable.
        if (t.state != TaskState::kDone) ++t.attempt;
      }
    }
    j.segments_done = static_cast<uint32_t>(std::count_if(
        j.seg.begin(), j.seg.end(), [](const Task& t) { return t.state == TaskState::kDone; }));
    j.chunks_done = static_cast<uint32_t>(std::count_if(
        j.chunk.begin(), j.chunk.end(), [](const Task& t) { return t.state == TaskState::kDone; }));
    AdvanceDoneCursors(j);
    if (IsFinished(j.state)) continue;  // its tasks wait for a retry, which records them
    spdlog::info("job {} ({}) resumes: {}/{} segments, {}/{} chunks done", j.id, j.name,
                 j.segments_done, j.seg.size(), j.chunks_done, j.chunk.size());
    j.started_ms = env_->NowMillis();
    // The skipped numbers go to disk before any new assignment: a crash after this restart must
    // not hand out again what this run hands out.
    for (TaskKind kind : {TaskKind::kRender, TaskKind::kEncode}) {
      std::vector<Task>& tasks = j.tasks(kind);
      for (size_t i = 0; i < tasks.size(); ++i) {
        if (tasks[i].state != TaskState::kDone)
          journal_->PutTask(j.id, kind, static_cast<uint32_t>(i), tasks[i]);
      }
    }
  }
  if (Status s = journal_->TrySyncAll(); !s.ok()) return s;
  std::vector<uint64_t> to_assemble;
  for (auto& [id, j] : jobs) {
    j.restored_stitching = j.state == JobState::kStitching;
    if (j.state == JobState::kStitching ||
        (!IsFinished(j.state) && j.planned() && j.chunks_done == j.chunks.size()))
      to_assemble.push_back(id);
  }
  return to_assemble;
}

}  // namespace segue
