// The coordinator's jobs and their tasks as it holds them in memory: the types every part of the
// coordinator speaks. Plain data. Every change of a job's or a task's state is made by the state
// machine (coordinator/state_machine.h), which also keeps the derived counters below true; other
// parts read the states (and keep their own bookkeeping here: a gang's exchange and timers, when
// a gang began to wait).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/blend/blend.h"
#include "common/manifest/manifest.h"
#include "common/plan/plan.h"
#include "common/plan/timeline.h"
#include "coordinator/codenoise.h"

namespace segue {

enum class JobState { kQueued, kRunning, kStitching, kDone, kFailed, kCancelled };
enum class TaskState { kPending, kRunning, kDone, kFailed };

// What a worker works on: a segment to render, a chunk to decode and encode, or (co-denoising)
// its group of a gang's segments, named by the group's first segment.
enum class TaskKind { kRender, kEncode, kGang };

// "QUEUED" ... "CANCELLED", as status reports write them.
const char* JobStateName(JobState s);
// DONE, FAILED and CANCELLED: nothing of the job runs, and only a retry brings it back.
bool IsFinished(JobState s);
// A worker that failed this many of a job's tasks gets no more of them (while others can).
constexpr uint32_t kKeepWorkerOffAfter = 2;

// How a job came to be (docs/MANIFEST.md, "Iterating"): submitted (a final), or derived from a
// submitted one by the farm (its preview, each of its takes) or by `segue pick` (coordinator/
// family.h).
enum class JobRole { kFinal, kPreview, kTake, kPick };
// "final", "preview", "take", "pick".
const char* JobRoleName(JobRole r);

struct JobFamily {
  JobRole role = JobRole::kFinal;
  uint64_t root = 0;    // the submitted job it derives from (0: itself); it uses the root's audio
  uint64_t parent = 0;  // preview and take: the submitted job; pick: the job picked from
  int section = -1;     // take: the section (timeline index) it renders another take of
  int take = 0;         // take: which one (2 and up)
  // Pick jobs: the take each section uses where it is not the manifest's own (section -> take).
  std::map<int, int> picks;
};

// "segment 3", "chunk 2": how events and logs name a task.
std::string TaskName(TaskKind kind, uint32_t index);

// One render (segment) or encode (chunk) task of a job.
struct Task {
  TaskState state = TaskState::kPending;
  uint32_t attempt = 0;  // the attempt number of its latest assignment (0: never assigned)
  std::string worker;    // the worker holding it while RUNNING
  uint32_t failures = 0;
  std::string error;
  std::vector<std::string> failed_on;  // the distinct workers it failed on, in order
  bool has_checkpoint = false;         // a render checkpoint of it is in the store
  // A DONE segment: the content key of its result (coordinator/results.h), by which another job
  // may reuse it. Empty for other tasks, and for results stored before keys were.
  std::string result_key;
  // With a key: when its result was last made or reused, for the cache's least-recently-used
  // eviction (results.h).
  uint64_t result_used_ms = 0;
  uint64_t result_bytes = 0;  // a chunk's: its container's size (a segment's is computed)
  // Kept by the journal: the attempt number of the task's latest record, and the number of the
  // write that holds it (0: synced, or written before this process). Single assignments are not
  // recorded (the transitions that end one are), so while RUNNING outside a gang, attempt ==
  // recorded_attempt + 1.
  uint32_t recorded_attempt = 0;
  uint64_t recorded_in_write = 0;
};

struct Job {
  uint64_t id = 0;
  JobState state = JobState::kQueued;
  int priority = 50;
  std::string name;
  std::string manifest_text, manifest_name;  // as submitted; restored jobs parse it again
  std::string output_path;                   // absolute, inside the output root
  std::string error;
  bool has_audio = false;
  std::string audio_name;     // the audio file's name as submitted (its extension is kept)
  std::string owner;          // the identity that submitted it (common/security/keyring.h)
  std::string submission_id;  // the client's id for the submission ("" for none)
  uint64_t created_ms = 0, updated_ms = 0, finished_ms = 0;
  uint64_t started_ms = 0;  // when this process began (or resumed) working on it: the ETA's start
  uint32_t chunk_frames = 96;

  JobFamily family;
  // Not stored, worked out from the family (coordinator/family.h): a final's preview job (0:
  // none), and the job this one waits for before it is scheduled (0: it does not wait).
  uint64_t preview_job = 0;
  uint64_t waiting_for = 0;

  // The manifest as submitted with the family applied (ApplyFamily): a take's seeds, a pick's
  // takes, a preview's steps and (once planned) its size.
  Manifest manifest;
  model::ModelMetadata model;  // what the job was planned with
  LatentGeometry geometry;     // the plan in latent frames (FitToModel)
  BlendMode blend = BlendMode::kLinear;
  std::vector<SegmentSpan> segments;  // in latent frames
  std::vector<Task> seg;              // one per segment
  std::vector<ChunkSpan> chunks;      // in latent frames, decoded with context (WindowFor)
  std::vector<Task> chunk;            // one per chunk

  // Derived from the tasks' states; kept by the state machine.
  uint32_t segments_done = 0, chunks_done = 0;
  // Every segment (chunk) below this index is DONE: scheduling walks start here.
  uint32_t segments_done_below = 0, chunks_done_below = 0;

  // Every segment's result key, worked out when first needed (ResultKeys): not stored, and not
  // computed for jobs restored with nothing left to render.
  std::vector<std::string> result_keys;
  std::vector<std::string> chunk_keys;  // the same for chunks (ChunkKeys)

  std::optional<Gang> gang;      // codenoise: the running gang, if any
  uint64_t gang_wait_since = 0;  // when a gang could first have started with fewer workers
  std::map<std::string, uint32_t> worker_failures;  // tasks of this job each worker failed
  bool restored_stitching = false;  // it was STITCHING when this coordinator started

  // A job is planned from its model's metadata (PlanJob). Until a worker that serves its model
  // has joined (a model that is not built in), it waits unplanned: no segments, no tasks.
  bool planned() const { return !segments.empty(); }

  std::vector<Task>& tasks(TaskKind kind) { return kind == TaskKind::kEncode ? chunk : seg; }
  const std::vector<Task>& tasks(TaskKind kind) const {
    return kind == TaskKind::kEncode ? chunk : seg;
  }
  Strategy strategy() const { return manifest.strategy; }
  // The job whose stored audio this one uses: a family's is stored once, with its root.
  uint64_t AudioJob() const { return family.root ? family.root : id; }
};

// The extension of a submitted audio file's name (".mp3"), kept on its copies because FFmpeg
// guesses the format by it; empty when it is not a plausible one.
std::string AudioExtension(const std::string& name);

// Every job the coordinator knows, finished ones included, by id.
using JobTable = std::map<uint64_t, Job>;

// Plans `j`'s segments and chunks from `m` for a model with `meta`, every task PENDING; the
// error (FitToModel's) names the manifest's field and location. A job without a chunk size yet
// (chunk_frames 0, in video frames) gets `default_chunk_frames`; chunks are whole latent frames,
// at least one. `max_segments` > 0: a plan of more segments is refused before anything is
// planned (a coordinator's limit; restored jobs, admitted under their own, pass 0).
// A preview (family.role) is planned at its manifest's preview.scale of the size, rounded down to
// the model's spatial multiple.
// REQUIRES: `m` is a validated manifest, as submitted with the family applied (not a planned
// job's: a preview's would be scaled twice).
Status PlanJob(Job& j, const Manifest& m, const model::ModelMetadata& meta,
               uint32_t default_chunk_frames, int64_t max_segments = 0);

// Which jobs a listing shows (ListJobs, GET /api/v1/jobs): every filter given must hold; ids
// above `after_id`, at most `limit` (0: all), oldest first.
struct JobQuery {
  std::set<std::string> states;  // JobStateName()s
  std::string owner, name;
  std::vector<std::pair<std::string, std::string>> metadata;
  uint64_t family = 0;  // the submitted job and every job derived from it (JobFamily::root)
  uint64_t after_id = 0;
  uint32_t limit = 0;
};

// The jobs of `jobs` that `q` selects; `*next_after_id`: where the next page starts (0: none).
std::vector<const Job*> FindJobs(const JobTable& jobs, const JobQuery& q, uint64_t* next_after_id);

}  // namespace segue
