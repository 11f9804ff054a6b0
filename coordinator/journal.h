// The journal: the only code that knows how the coordinator's state lies in its store (the
// records of coordinator/records.capnp and the keys below). The state machine hands it
// transitions, the assignment builder and assembly read what results it holds, and on start it
// loads the job table back.
//
// Group commit's writing half. Every transition's writes go into one batch per turn of the event
// loop; Flush writes the batch unsynced (Store::Sync::kLater) and numbers the write; the syncer
// (coordinator/syncer.h, owned here) makes the writes durable on its own thread, and the outbox
// (coordinator/outbox.h) holds back the messages that must not leave before their writes are.
// A read of the store first flushes the turn's batch, so it sees every earlier write; so that a
// crash cannot keep half of a transition, no read comes between the writes of one (the state
// machine reads nothing; its callers read first).
// If the disk refuses a write or a sync the process stops (exit 3): running ahead of the store
// would hand out work that a restart forgets.
//
// Not thread-safe: owned by the event loop (the syncer's thread only syncs).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/env/env.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"
#include "coordinator/jobs.h"
#include "coordinator/store/store.h"
#include "coordinator/syncer.h"

namespace segue {

class Journal {
 public:
  // Opens the store in `dir` (its files through `env`) and starts its syncer.
  // REQUIRES: `env` outlives the journal.
  static Result<std::unique_ptr<Journal>> Open(const std::string& dir, Env* env,
                                               std::chrono::microseconds sync_interval,
                                               Syncer::Mode mode = Syncer::Mode::kBackground);
  ~Journal();  // whatever was written is durable when it goes
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // ---- Transitions: added to the turn's batch ------------------------------------------------
  void PutJob(const Job& j);
  // Records `task` of job `job`: its state, attempt and failures. Sets task.recorded_attempt
  // and task.recorded_in_write.
  void PutTask(uint64_t job, TaskKind kind, uint32_t index, Task& task);
  void AddEvent(uint64_t job, const std::string& text);
  void PutLatents(uint64_t job, uint32_t segment, const Tensor& latents);
  void PutChunk(uint64_t job, uint32_t chunk, std::string_view container);
  // A result reused from another job (results.h): the same bytes under the new job's key. The
  // store shares the value file, so nothing is copied or synced however big the result is.
  void CopyLatents(uint64_t from_job, uint32_t from_segment, uint64_t job, uint32_t segment);
  void CopyChunk(uint64_t from_job, uint32_t from_chunk, uint64_t job, uint32_t chunk);
  // A segment's thumbnail (a JPEG; the newest render's).
  void PutThumbnail(uint64_t job, uint32_t segment, std::string_view jpeg);
  // A reused segment's thumbnail is its donor's (none if the donor has none).
  void CopyThumbnail(uint64_t from_job, uint32_t from_segment, uint64_t job, uint32_t segment);
  // A segment's checkpoint after `step` (one per segment: the newest).
  void PutCheckpoint(uint64_t job, uint32_t segment, uint32_t step, const Tensor& latents);
  void DeleteCheckpoint(uint64_t job, uint32_t segment);
  // A finished job's segment result, evicted from the result cache (results.h).
  void DeleteLatents(uint64_t job, uint32_t segment);
  void DeleteChunk(uint64_t job, uint32_t chunk);
  // A co-denoising gang member's checkpoint: kept per step, since a gang's step counts only once
  // every segment has one there.
  void PutGangCheckpoint(uint64_t job, uint32_t segment, uint32_t step, const Tensor& latents);
  // Makes `step` the gang's resume step and drops its `segments` segments' older checkpoints.
  void SetGangStep(uint64_t job, uint32_t segments, uint32_t step);
  // Every checkpoint of the job, the gang's resume step included.
  void DropCheckpoints(uint64_t job);
  void PutPoolSettings(const std::string& pool, const std::string& settings);

  // A new job, whole (its record, every task's, the audio and a first event), in a synced write
  // of its own, so that a job is refused before anything else of the turn is written. Sets j.id.
  Status AddJob(Job& j, std::string_view audio, const std::string& first_event);
  // A submitted job and the jobs derived from it (coordinator/family.h), stored at once: ids in
  // order; family[1..] whose root is 0 get family[0]'s id as root and parent. The audio is
  // stored with the jobs whose root is 0 (the others use their root's: Job::AudioJob).
  // REQUIRES: family is not empty; first_events has one event per job.
  Status AddJobs(const std::vector<Job*>& family, std::string_view audio,
                 const std::vector<std::string>& first_events);

  // ---- The turn -------------------------------------------------------------------------------
  // Writes the turn's batch so far, unsynced.
  void Flush();
  // Writes made so far, numbered from 1: what Syncer::Request and durable() count.
  uint64_t written() const { return written_; }
  bool IsDurable(const Task& t) const { return t.recorded_in_write <= syncer_->durable(); }
  // Every write so far is durable when it returns.
  void SyncAll();
  // The same, reporting a failure instead of stopping the process (start-up).
  Status TrySyncAll();
  Syncer& syncer() { return *syncer_; }
  // Stops the process (exit 3) over a write or sync the store refused.
  [[noreturn]] static void StopOnStoreFailure(const Status& s);

  // ---- Reads: each writes the turn's batch first --------------------------------------------
  Result<Tensor> Latents(uint64_t job, uint32_t segment);
  struct Checkpoint {
    uint32_t step = 0;
    Tensor latents;
  };
  Result<Checkpoint> SegmentCheckpoint(uint64_t job, uint32_t segment);
  // The gang's resume step (0: none).
  uint32_t GangStep(uint64_t job);
  Result<Tensor> GangCheckpoint(uint64_t job, uint32_t segment, uint32_t step);
  Result<std::string> Chunk(uint64_t job, uint32_t chunk);
  Result<std::string> Thumbnail(uint64_t job, uint32_t segment);
  Result<std::string> Audio(uint64_t job);
  // The job's event lines, oldest first, that `keep` accepts; at most `limit`.
  Result<std::vector<std::string>> Events(uint64_t job,
                                          const std::function<bool(const std::string&)>& keep,
                                          size_t limit);
  Status ForEachPoolSettings(
      const std::function<void(const std::string& pool, const std::string& settings)>& fn);

  // ---- Start-up -------------------------------------------------------------------------------
  // Reads every job and its tasks into `jobs` as they were stored, nothing changed (the state
  // machine's Recover applies what a restart means). Jobs whose record or manifest no longer
  // reads are logged and left out. Chunk sizes come from the records (`default_chunk_frames`
  // for records without one).
  Status Load(JobTable& jobs, uint32_t default_chunk_frames);

 private:
  Journal(std::unique_ptr<Store> store, std::unique_ptr<Syncer> syncer, Env* env);

  Env* const env_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Syncer> syncer_;  // after store_: destroyed (done syncing) before it
  Store::Batch batch_;              // the turn's writes so far
  uint64_t written_ = 0;
};

// The records Load reads, decoded: a record that does not read (a damaged or hostile store) is
// an error saying why, never a crash (tests/fuzz/records_fuzz.cc). A job record's manifest is
// parsed and planned again, with the model metadata it was planned with.
Result<Job> DecodeJobRecord(const std::string& value, uint32_t default_chunk_frames);
// Into `task`'s stored fields (state, attempt, failures, error, the workers it failed on).
Status DecodeTaskRecord(const std::string& value, Task* task);

// The key layout: fixed-width big-endian job ids, then a task's index or a name, so that one
// job's records are one key range in every family. Declared here for the tests of the order it
// promises; only journal.cc builds keys.
std::string JobKey(uint64_t job);
std::string TaskKey(uint64_t job, uint32_t index);
std::string NamedKey(uint64_t job, const std::string& name);
uint64_t JobOfKey(const std::string& key);
uint32_t IndexOfKey(const std::string& key);

}  // namespace segue
