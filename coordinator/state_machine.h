// The state machine: every change of a task's or a job's state, in one place (after Flamenco's
// task_state_machine). Each transition changes the job in memory, keeps its derived counters
// (jobs.h) true and hands what it means to the journal in the same call, so memory and store
// move together. It sends nothing and knows no workers beyond their names: what a transition
// means for a worker (cancel its task, count a failure) is its caller's, told by the return value.
//
//   task:  PENDING --Assign--> RUNNING --CompleteSegment/Chunk--> DONE
//          PENDING or DONE --StartGang--> RUNNING (every segment of a codenoise job)
//          RUNNING --Fail--> PENDING (retry elsewhere) or FAILED (job fails)
//          RUNNING --Requeue--> PENDING (worker gone, job cancelled, gang stopped)
//          DONE --Rerender--> PENDING (its stored result is unreadable)
//   job:   QUEUED --first Assign or StartGang--> RUNNING --BeginStitching--> STITCHING
//          STITCHING --EndStitching--> DONE or FAILED
//          any unfinished --Cancel--> CANCELLED; --a task's last failure, FailJob--> FAILED
//          FAILED or CANCELLED --Retry--> QUEUED or RUNNING
//
// Fencing lives here too. Every assignment carries an attempt number past any the task had
// (Assign: one past its own; StartGang: one past the highest of the gang's segments); a result,
// failure or checkpoint counts only from the worker holding the current attempt of a RUNNING
// task (IsCurrent). Single assignments are not written, so two more rules keep numbers unique
// across crashes: a task is assigned only once its current attempt number is durable (Assign
// syncs first when it is not), and a restart moves every unfinished task's number one past the
// stored one and makes that durable before serving (Recover). A worker holding an assignment
// that a crash made the coordinator forget is therefore fenced off like a stale one.
//
// Not thread-safe: owned by the event loop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/env/env.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"
#include "coordinator/events.h"
#include "coordinator/jobs.h"
#include "coordinator/journal.h"

namespace segue {

class StateMachine {
 public:
  // A task that failed on `max_attempts` distinct workers (or 2 x max_attempts times in all, on
  // a farm too small to have that many) fails its job.
  // REQUIRES: `journal` and `env` outlive the state machine.
  StateMachine(Journal* journal, Env* env, int max_attempts);
  // Where transitions are staged as events (events.h); nullptr: none.
  // REQUIRES: `events` outlives the state machine.
  void set_events(EventLog* events) { events_ = events; }

  // ---- Tasks ----------------------------------------------------------------------------------
  // PENDING -> RUNNING on `worker` with the next attempt number (returned). Makes the task's
  // current attempt durable first if it is not (a sync, only when the task's last record, from a
  // failure, a requeue, a cancel or a rerender, has not been synced yet).
  uint32_t Assign(Job& j, TaskKind kind, uint32_t index, const std::string& worker);

  // Whether `worker` holds attempt `attempt` of a RUNNING task (job, kind, index) of an
  // unfinished job: the fence every result, failure and checkpoint passes. kGang: the segment.
  bool IsCurrent(const JobTable& jobs, uint64_t job, TaskKind kind, uint32_t index,
                 uint32_t attempt, const std::string& worker) const;

  // RUNNING -> DONE with its final latents (replacing its checkpoint). `note`: how the event
  // says it came ("by w1 (attempt 2, 840 ms)"). `used_ms`: when its result was used, for the
  // result cache (0: now).
  void CompleteSegment(Job& j, uint32_t index, const Tensor& latents, const std::string& note,
                       uint64_t used_ms = 0);
  // RUNNING -> DONE with its encoded bytes. Returns true when it was the job's last chunk: the
  // job is ready to assemble.
  bool CompleteChunk(Job& j, uint32_t index, std::string_view container, const std::string& note);
  // PENDING -> DONE with the stored result of job `from`'s task `from_index` (results.h: a
  // reused result, the same bits; the store shares its bytes). As CompleteSegment/Chunk.
  void ReuseSegment(Job& j, uint32_t index, uint64_t from, uint32_t from_index,
                    const std::string& note, uint64_t used_ms);
  bool ReuseChunk(Job& j, uint32_t index, uint64_t from, uint32_t from_index,
                  const std::string& note);

  struct Failure {
    bool job_failed = false;  // the task failed too often: the job is FAILED
    bool kept_off = false;    // the worker has just reached kKeepWorkerOffAfter failures here
  };
  // A task failed on `worker`: RUNNING -> PENDING to be retried elsewhere, or FAILED with its job.
  Failure Fail(Job& j, TaskKind kind, uint32_t index, const std::string& worker,
               const std::string& message);

  // RUNNING -> PENDING, its worker forgotten (worker gone, reconnected). `why` goes to the event.
  void Requeue(Job& j, TaskKind kind, uint32_t index, const std::string& why);
  // DONE -> PENDING: a segment whose stored latents cannot be read is rendered again. Nothing
  // if it is not DONE (two tasks of one pass may find the same latents unreadable).
  void Rerender(Job& j, uint32_t index, const std::string& why);

  // A segment's step checkpoint from its worker (replacing the previous one).
  void Checkpoint(Job& j, uint32_t index, uint32_t step, const Tensor& latents,
                  const std::string& worker);

  // ---- Co-denoising gangs ---------------------------------------------------------------------
  // Starts the job's gang: every segment RUNNING under one new attempt number (returned), in
  // `groups` (worker names filled in), resuming at `resume_step` (0: from noise). A gang always
  // runs every segment: ones a failed gang finished are done again (the same bits), so the gang's
  // steps stay in lockstep. REQUIRES: no gang runs.
  uint32_t StartGang(Job& j, std::vector<Gang::Group> groups, uint32_t resume_step);
  // A gang member's checkpoint after `step`; when every segment has one at `step`, the same batch
  // makes it the gang's resume step and drops the older ones. Returns true then.
  bool GangCheckpoint(Job& j, uint32_t segment, uint32_t step, const Tensor& latents);
  // Stops the gang: its RUNNING segments go back to PENDING and the gang is gone. Returns its
  // groups, whose workers the caller tells to stop. No gang: nothing.
  std::vector<Gang::Group> AbortGang(Job& j, const std::string& why);

  // ---- Jobs -----------------------------------------------------------------------------------
  // A job just stored (Journal::AddJob) in its first state: its event.
  void Submitted(const Job& j);
  // Error (the job is finished) or CANCELLED, every RUNNING task back to PENDING, no gang.
  Status Cancel(Job& j);
  // Error (not FAILED or CANCELLED) or back to work: unfinished tasks PENDING with their failure
  // history cleared, QUEUED (or RUNNING if some segment is done).
  Status Retry(Job& j);
  // Error (out of 0..100) or the new priority.
  Status SetPriority(Job& j, int priority);
  // Every chunk is stored: STITCHING while the output is assembled ...
  void BeginStitching(Job& j);
  // ... then DONE, or FAILED with what went wrong.
  void EndStitching(Job& j, const Status& assembled);
  // FAILED with `error` (a chunk cannot be blended, say).
  void FailJob(Job& j, const std::string& error);
  // A job that waited for its model (!j.planned()), planned with `meta` now that a worker serves
  // it (PlanJob); FAILED with the plan's error when its manifest does not fit the model. Returns
  // whether it was planned.
  bool Plan(Job& j, const model::ModelMetadata& meta, uint32_t default_chunk_frames,
            int64_t max_segments = 0);

  // ---- Restart --------------------------------------------------------------------------------
  // What a restart means for jobs as the journal loaded them: RUNNING tasks back to PENDING
  // (their workers, if alive, are fenced off), every unfinished task's attempt number one past
  // the stored one, durable before it returns (a crash may have lost an assignment made after the
  // last sync, and its worker may still hold it), counters derived, and jobs that were
  // STITCHING, or whose chunks are all stored, named for assembly (returned).
  Result<std::vector<uint64_t>> Recover(JobTable& jobs);

 private:
  void SetJobState(Job& j, JobState state, const std::string& error);
  // Stages the event of task (kind, index)'s new state.
  void NoteTask(const Job& j, TaskKind kind, uint32_t index, const std::string& detail);
  void AdvanceDoneCursors(Job& j);
  // What every way a task becomes DONE shares, once its result is staged in the journal.
  void SegmentDone(Job& j, uint32_t index, const std::string& note, uint64_t used_ms);
  bool ChunkDone(Job& j, uint32_t index, const std::string& note);

  Journal* const journal_;
  Env* const env_;
  const uint32_t max_attempts_;
  EventLog* events_ = nullptr;
};

}  // namespace segue
