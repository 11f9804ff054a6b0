#include "coordinator/journal.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "common/protocol/protocol.h"
#include "common/util/big_endian.h"
#include "coordinator/family.h"
#include "coordinator/records.capnp.h"

namespace segue {
namespace {

// A gang member's checkpoint: the segment's key and the step, so a job's gang checkpoints sort
// by segment, then step. kGangStepName names the gang's resume step.
std::string GangCheckpointKey(uint64_t job, uint32_t segment, uint32_t step) {
  std::string key = TaskKey(job, segment);
  PutBigEndian(key, step, 4);
  return key;
}
const char* const kGangStepName = "gang-step";

// Beside the chunks, under names no chunk's key can have (a chunk's is the job's key and 4 bytes).
std::string ThumbnailKey(uint64_t job, uint32_t segment) {
  return NamedKey(job, "thumbnail-" + std::to_string(segment));
}

std::string EncodeStep(uint32_t step) {
  std::string v(4, '\0');
  std::memcpy(v.data(), &step, 4);
  return v;
}
uint32_t DecodeStep(const std::string& v) {
  uint32_t step = 0;
  if (v.size() >= 4) std::memcpy(&step, v.data(), 4);
  return step;
}

Family FamilyOf(TaskKind kind) {
  return kind == TaskKind::kEncode ? Family::kChunks : Family::kSegments;
}

rec::JobState ToRecord(JobState s) {
  switch (s) {
    case JobState::kQueued:
      return rec::JobState::QUEUED;
    case JobState::kRunning:
      return rec::JobState::RUNNING;
    case JobState::kStitching:
      return rec::JobState::STITCHING;
    case JobState::kDone:
      return rec::JobState::DONE;
    case JobState::kFailed:
      return rec::JobState::FAILED;
    case JobState::kCancelled:
      return rec::JobState::CANCELLED;
  }
  return rec::JobState::QUEUED;
}
JobState FromRecord(rec::JobState s) {
  switch (s) {
    case rec::JobState::QUEUED:
      return JobState::kQueued;
    case rec::JobState::RUNNING:
      return JobState::kRunning;
    case rec::JobState::STITCHING:
      return JobState::kStitching;
    case rec::JobState::DONE:
      return JobState::kDone;
    case rec::JobState::FAILED:
      return JobState::kFailed;
    case rec::JobState::CANCELLED:
      return JobState::kCancelled;
  }
  return JobState::kQueued;
}
rec::TaskState ToRecord(TaskState s) {
  switch (s) {
    case TaskState::kPending:
      return rec::TaskState::PENDING;
    case TaskState::kRunning:
      return rec::TaskState::RUNNING;
    case TaskState::kDone:
      return rec::TaskState::DONE;
    case TaskState::kFailed:
      return rec::TaskState::FAILED;
  }
  return rec::TaskState::PENDING;
}
TaskState FromRecord(rec::TaskState s) {
  switch (s) {
    case rec::TaskState::PENDING:
      return TaskState::kPending;
    case rec::TaskState::RUNNING:
      return TaskState::kRunning;
    case rec::TaskState::DONE:
      return TaskState::kDone;
    case rec::TaskState::FAILED:
      return TaskState::kFailed;
  }
  return TaskState::kPending;
}

std::string EncodeJob(const Job& j) {
  capnp::MallocMessageBuilder b;
  auto r = b.initRoot<rec::Job>();
  r.setId(j.id);
  r.setName(j.name);
  r.setState(ToRecord(j.state));
  r.setPriority(j.priority);
  r.setManifestText(j.manifest_text);
  r.setManifestName(j.manifest_name);
  r.setOutputPath(j.output_path);
  r.setHasAudio(j.has_audio);
  r.setAudioName(j.audio_name);
  r.setOwner(j.owner);
  r.setSubmissionId(j.submission_id);
  r.setError(j.error);
  r.setCreatedMs(j.created_ms);
  r.setUpdatedMs(j.updated_ms);
  r.setFinishedMs(j.finished_ms);
  r.setChunkFrames(j.chunk_frames);
  r.setRole(static_cast<uint8_t>(j.family.role));
  r.setRoot(j.family.root);
  r.setParent(j.family.parent);
  r.setSection(j.family.section);
  r.setTake(static_cast<uint32_t>(j.family.take));
  auto picks = r.initPicks(static_cast<unsigned>(j.family.picks.size()));
  unsigned p = 0;
  for (const auto& [section, take] : j.family.picks) {
    picks[p].setSection(static_cast<uint32_t>(section));
    picks[p++].setTake(static_cast<uint32_t>(take));
  }
  if (j.planned()) {
    capnp::MallocMessageBuilder spec;
    SetModelSpec(spec.initRoot<wire::ModelSpec>(), j.model);
    const std::string bytes = Serialize(spec);
    r.setModel(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
  }
  return Serialize(b);
}

std::string EncodeTask(const Task& t, uint64_t now_ms) {
  capnp::MallocMessageBuilder b;
  auto r = b.initRoot<rec::Task>();
  r.setState(ToRecord(t.state));
  r.setAttempt(t.attempt);
  r.setWorker(t.worker);
  r.setError(t.error);
  r.setUpdatedMs(now_ms);
  r.setFailures(t.failures);
  auto list = r.initFailedOn(static_cast<unsigned>(t.failed_on.size()));
  for (size_t i = 0; i < t.failed_on.size(); ++i)
    list.set(static_cast<unsigned>(i), t.failed_on[i]);
  r.setResultKey(t.result_key);
  r.setResultUsedMs(t.result_used_ms);
  r.setResultBytes(t.result_bytes);
  return Serialize(b);
}

capnp::FlatArrayMessageReader ReaderOf(const std::string& value) {
  return capnp::FlatArrayMessageReader(kj::arrayPtr(
      reinterpret_cast<const capnp::word*>(value.data()), value.size() / sizeof(capnp::word)));
}

}  // namespace

std::string JobKey(uint64_t job) {
  std::string k;
  PutBigEndian(k, job, 8);
  return k;
}
std::string TaskKey(uint64_t job, uint32_t index) {
  std::string k = JobKey(job);
  PutBigEndian(k, index, 4);
  return k;
}
std::string NamedKey(uint64_t job, const std::string& name) { return JobKey(job) + name; }
uint64_t JobOfKey(const std::string& key) { return GetBigEndian(key, 0, 8); }
uint32_t IndexOfKey(const std::string& key) {
  return static_cast<uint32_t>(GetBigEndian(key, 8, 4));
}

Result<std::unique_ptr<Journal>> Journal::Open(const std::string& dir, Env* env,
                                               std::chrono::microseconds sync_interval,
                                               Syncer::Mode mode) {
  auto store = Store::Open(dir, env);
  if (!store.ok()) return store.status();
  auto syncer = std::make_unique<Syncer>(store->get(), sync_interval, env, mode);
  return std::unique_ptr<Journal>(new Journal(std::move(*store), std::move(syncer), env));
}

Journal::Journal(std::unique_ptr<Store> store, std::unique_ptr<Syncer> syncer, Env* env)
    : env_(env), store_(std::move(store)), syncer_(std::move(syncer)) {}

Journal::~Journal() {
  if (!batch_.empty() && store_->Write(batch_, Store::Sync::kLater).ok()) ++written_;
  (void)syncer_->SyncNow(written_);
}

void Journal::PutJob(const Job& j) { batch_.Put(Family::kJobs, JobKey(j.id), EncodeJob(j)); }

void Journal::PutTask(uint64_t job, TaskKind kind, uint32_t index, Task& task) {
  batch_.Put(FamilyOf(kind), TaskKey(job, index), EncodeTask(task, env_->NowMillis()));
  task.recorded_attempt = task.attempt;
  task.recorded_in_write = written_ + 1;  // the write this turn's batch becomes
}

void Journal::AddEvent(uint64_t job, const std::string& text) {
  batch_.Put(Family::kEvents, JobKey(job) + JobKey(store_->NextId("event", batch_)),
             std::to_string(env_->NowMillis()) + " " + text);
}

void Journal::PutLatents(uint64_t job, uint32_t segment, const Tensor& latents) {
  batch_.Put(Family::kLatents, TaskKey(job, segment), EncodeTensor(latents));
}

void Journal::PutChunk(uint64_t job, uint32_t chunk, std::string_view container) {
  batch_.Put(Family::kOutputs, TaskKey(job, chunk), std::string(container));
}

void Journal::CopyLatents(uint64_t from_job, uint32_t from_segment, uint64_t job,
                          uint32_t segment) {
  batch_.Copy(Family::kLatents, TaskKey(from_job, from_segment), TaskKey(job, segment));
}

void Journal::CopyChunk(uint64_t from_job, uint32_t from_chunk, uint64_t job, uint32_t chunk) {
  batch_.Copy(Family::kOutputs, TaskKey(from_job, from_chunk), TaskKey(job, chunk));
}

void Journal::PutThumbnail(uint64_t job, uint32_t segment, std::string_view jpeg) {
  batch_.Put(Family::kOutputs, ThumbnailKey(job, segment), std::string(jpeg));
}

void Journal::CopyThumbnail(uint64_t from_job, uint32_t from_segment, uint64_t job,
                            uint32_t segment) {
  batch_.Copy(Family::kOutputs, ThumbnailKey(from_job, from_segment), ThumbnailKey(job, segment));
}

void Journal::PutCheckpoint(uint64_t job, uint32_t segment, uint32_t step, const Tensor& latents) {
  batch_.Put(Family::kCheckpoints, TaskKey(job, segment), EncodeStep(step) + EncodeTensor(latents));
}

void Journal::DeleteLatents(uint64_t job, uint32_t segment) {
  batch_.Delete(Family::kLatents, TaskKey(job, segment));
}

void Journal::DeleteChunk(uint64_t job, uint32_t chunk) {
  batch_.Delete(Family::kOutputs, TaskKey(job, chunk));
}

void Journal::DeleteCheckpoint(uint64_t job, uint32_t segment) {
  batch_.Delete(Family::kCheckpoints, TaskKey(job, segment));
}

void Journal::PutGangCheckpoint(uint64_t job, uint32_t segment, uint32_t step,
                                const Tensor& latents) {
  batch_.Put(Family::kCheckpoints, GangCheckpointKey(job, segment, step), EncodeTensor(latents));
}

void Journal::SetGangStep(uint64_t job, uint32_t segments, uint32_t step) {
  batch_.Put(Family::kCheckpoints, NamedKey(job, kGangStepName), EncodeStep(step));
  for (uint32_t s = 0; s < segments; ++s) {
    batch_.DeleteRange(Family::kCheckpoints, GangCheckpointKey(job, s, 0),
                       GangCheckpointKey(job, s, step));
  }
}

void Journal::DropCheckpoints(uint64_t job) {
  batch_.DeleteRange(Family::kCheckpoints, JobKey(job), JobKey(job + 1));
}

void Journal::PutPoolSettings(const std::string& pool, const std::string& settings) {
  batch_.Put(Family::kMeta, "pool/" + pool, settings);
}

Status Journal::AddJob(Job& j, std::string_view audio, const std::string& first_event) {
  return AddJobs({&j}, audio, {first_event});
}

Status Journal::AddJobs(const std::vector<Job*>& family, std::string_view audio,
                        const std::vector<std::string>& first_events) {
  Flush();  // what the turn wrote before stays before the jobs
  Store::Batch batch;
  for (Job* j : family) j->id = store_->NextId("job", batch);
  const uint64_t root = family.front()->id;
  const uint64_t now = env_->NowMillis();
  for (size_t f = 0; f < family.size(); ++f) {
    Job& j = *family[f];
    if (f > 0 && j.family.root == 0) j.family.root = j.family.parent = root;
    batch.Put(Family::kJobs, JobKey(j.id), EncodeJob(j));
    // Synced below: the tasks' recorded_attempt (0) and recorded_in_write (0) hold as they are.
    for (size_t i = 0; i < j.seg.size(); ++i)
      batch.Put(Family::kSegments, TaskKey(j.id, static_cast<uint32_t>(i)),
                EncodeTask(j.seg[i], now));
    for (size_t i = 0; i < j.chunk.size(); ++i)
      batch.Put(Family::kChunks, TaskKey(j.id, static_cast<uint32_t>(i)),
                EncodeTask(j.chunk[i], now));
    // A family's audio is stored once, with its root (AudioJob).
    if (j.has_audio && j.family.root == 0)
      batch.Put(Family::kInputs, NamedKey(j.id, "audio"), std::string(audio));
    batch.Put(Family::kEvents, JobKey(j.id) + JobKey(store_->NextId("event", batch)),
              std::to_string(now) + " " + first_events[f]);
  }
  return store_->Write(batch);  // synced, with every write before it
}

void Journal::Flush() {
  if (batch_.empty()) return;
  Status s = store_->Write(batch_, Store::Sync::kLater);
  if (!s.ok()) StopOnStoreFailure(s);
  ++written_;
  batch_ = Store::Batch();
}

void Journal::SyncAll() {
  if (Status s = TrySyncAll(); !s.ok()) StopOnStoreFailure(s);
}

Status Journal::TrySyncAll() {
  if (!batch_.empty()) {
    if (Status s = store_->Write(batch_, Store::Sync::kLater); !s.ok()) return s;
    ++written_;
    batch_ = Store::Batch();
  }
  return syncer_->SyncNow(written_);
}

void Journal::StopOnStoreFailure(const Status& s) {
  spdlog::critical("cannot write the state store: {}; stopping", s.message());
  std::_Exit(3);
}

Result<Tensor> Journal::Latents(uint64_t job, uint32_t segment) {
  Flush();
  auto bytes = store_->Get(Family::kLatents, TaskKey(job, segment));
  if (!bytes.ok()) return bytes.status();
  return DecodeTensor(*bytes);
}

Result<Journal::Checkpoint> Journal::SegmentCheckpoint(uint64_t job, uint32_t segment) {
  using R = Result<Checkpoint>;
  Flush();
  auto bytes = store_->Get(Family::kCheckpoints, TaskKey(job, segment));
  if (!bytes.ok()) return bytes.status();
  if (bytes->size() <= 4) return R::Error("checkpoint record is truncated");
  auto latents = DecodeTensor(bytes->substr(4));
  if (!latents.ok()) return latents.status();
  return Checkpoint{DecodeStep(*bytes), std::move(*latents)};
}

uint32_t Journal::GangStep(uint64_t job) {
  Flush();
  auto v = store_->Get(Family::kCheckpoints, NamedKey(job, kGangStepName));
  return v.ok() ? DecodeStep(*v) : 0;
}

Result<Tensor> Journal::GangCheckpoint(uint64_t job, uint32_t segment, uint32_t step) {
  Flush();
  auto bytes = store_->Get(Family::kCheckpoints, GangCheckpointKey(job, segment, step));
  if (!bytes.ok()) return bytes.status();
  return DecodeTensor(*bytes);
}

Result<std::string> Journal::Chunk(uint64_t job, uint32_t chunk) {
  Flush();
  return store_->Get(Family::kOutputs, TaskKey(job, chunk));
}

Result<std::string> Journal::Thumbnail(uint64_t job, uint32_t segment) {
  Flush();
  return store_->Get(Family::kOutputs, ThumbnailKey(job, segment));
}

Result<std::string> Journal::Audio(uint64_t job) {
  Flush();
  return store_->Get(Family::kInputs, NamedKey(job, "audio"));
}

Result<std::vector<std::string>> Journal::Events(
    uint64_t job, const std::function<bool(const std::string&)>& keep, size_t limit) {
  Flush();
  std::vector<std::string> lines;
  Status s = store_->Scan(Family::kEvents, JobKey(job), JobKey(job + 1),
                          [&](const std::string&, const std::string& v) {
                            if (keep(v)) lines.push_back(v);
                            return lines.size() < limit;
                          });
  if (!s.ok()) return s;
  return lines;
}

Status Journal::ForEachPoolSettings(
    const std::function<void(const std::string&, const std::string&)>& fn) {
  Flush();
  return store_->Scan(Family::kMeta, "pool/", "pool0",
                      [&](const std::string& k, const std::string& v) {
                        fn(k.substr(5), v);
                        return true;
                      });
}

Result<Job> DecodeJobRecord(const std::string& value, uint32_t default_chunk_frames) {
  using R = Result<Job>;
  Job j;
  std::optional<model::ModelMetadata> planned_with;
  try {
    auto reader = ReaderOf(value);
    auto r = reader.getRoot<rec::Job>();
    j.id = r.getId();
    j.name = r.getName().cStr();
    j.state = FromRecord(r.getState());
    j.priority = r.getPriority();
    j.manifest_text = r.getManifestText().cStr();
    j.manifest_name = r.getManifestName().cStr();
    j.output_path = r.getOutputPath().cStr();
    j.has_audio = r.getHasAudio();
    j.audio_name = r.getAudioName().cStr();
    j.owner = r.getOwner().cStr();
    j.submission_id = r.getSubmissionId().cStr();
    j.error = r.getError().cStr();
    j.created_ms = r.getCreatedMs();
    j.updated_ms = r.getUpdatedMs();
    j.finished_ms = r.getFinishedMs();
    j.chunk_frames = r.getChunkFrames();
    if (r.getRole() > static_cast<uint8_t>(JobRole::kPick))
      return R::Error("unknown role " + std::to_string(r.getRole()));
    j.family.role = static_cast<JobRole>(r.getRole());
    j.family.root = r.getRoot();
    j.family.parent = r.getParent();
    j.family.section = r.getSection();
    j.family.take =
        static_cast<int>(std::min<uint32_t>(r.getTake(), ManifestLimits::kMaxTakes + 1));
    if (j.family.role == JobRole::kTake &&
        (j.family.section < 0 || j.family.section >= ManifestLimits::kMaxTimelineEntries ||
         j.family.take < 2 || j.family.take > ManifestLimits::kMaxTakes))
      return R::Error("a take of section " + std::to_string(j.family.section) + " numbered " +
                      std::to_string(j.family.take) + " is out of range");
    for (auto p : r.getPicks()) {
      if (p.getSection() >= ManifestLimits::kMaxTimelineEntries || p.getTake() < 1 ||
          p.getTake() > ManifestLimits::kMaxTakes)
        return R::Error("a pick of section " + std::to_string(p.getSection()) + " take " +
                        std::to_string(p.getTake()) + " is out of range");
      j.family.picks[static_cast<int>(p.getSection())] = static_cast<int>(p.getTake());
    }
    if (r.getModel().size() > 0) {
      const std::string bytes(reinterpret_cast<const char*>(r.getModel().begin()),
                              r.getModel().size());
      auto spec_reader = ReaderOf(bytes);
      auto meta = ModelSpecFrom(spec_reader.getRoot<wire::ModelSpec>());
      if (!meta.ok()) return R::Error("its model metadata: " + meta.message());
      planned_with = *meta;
    }
  } catch (const kj::Exception& e) {
    return R::Error(std::string("unreadable: ") + e.getDescription().cStr());
  }
  auto m = ParseManifest(j.manifest_text, j.manifest_name, ManifestParseOptions{"", false});
  if (!m.ok()) return R::Error("stored manifest no longer parses: " + m.message());
  // Planned again exactly as before: with the metadata it was planned with (records older
  // than the metadata: the built-in's); a job that was waiting for its model waits on.
  ApplyFamily(*m, j.family);
  j.manifest = *m;
  const model::ModelMetadata* builtin = model::BuiltinMetadata(m->model_name);
  if (!planned_with && builtin) planned_with = *builtin;
  if (!planned_with) return j;
  if (Status ps = PlanJob(j, *m, *planned_with, default_chunk_frames); !ps.ok())
    return R::Error("stored manifest no longer fits its model: " + ps.message());
  return j;
}

Status DecodeTaskRecord(const std::string& value, Task* t) {
  try {
    auto reader = ReaderOf(value);
    auto r = reader.getRoot<rec::Task>();
    t->state = FromRecord(r.getState());
    t->attempt = r.getAttempt();
    t->recorded_attempt = t->attempt;
    t->failures = r.getFailures();
    t->error = r.getError().cStr();
    t->failed_on.clear();
    for (auto name : r.getFailedOn()) t->failed_on.emplace_back(name.cStr());
    t->result_key = r.getResultKey().cStr();
    t->result_used_ms = r.getResultUsedMs();
    t->result_bytes = r.getResultBytes();
  } catch (const kj::Exception& e) {
    return Status::Error(std::string("unreadable: ") + e.getDescription().cStr());
  }
  return Status::Ok();
}

Status Journal::Load(JobTable& jobs, uint32_t default_chunk_frames) {
  Flush();
  std::vector<uint64_t> ids;
  Status s =
      store_->Scan(Family::kJobs, "", "", [&](const std::string& key, const std::string& value) {
        auto j = DecodeJobRecord(value, default_chunk_frames);
        if (!j.ok()) {
          spdlog::error("job record {}: {}", JobOfKey(key), j.message());
          return true;
        }
        const uint64_t id = j->id;
        ids.push_back(id);
        jobs[id] = std::move(*j);
        return true;
      });
  if (!s.ok()) return s;
  for (uint64_t id : ids) {
    Job& j = jobs.at(id);
    for (TaskKind kind : {TaskKind::kRender, TaskKind::kEncode}) {
      std::vector<Task>& tasks = j.tasks(kind);
      Status ls = store_->Scan(FamilyOf(kind), TaskKey(id, 0), JobKey(id + 1),
                               [&](const std::string& key, const std::string& value) {
                                 const uint32_t index = IndexOfKey(key);
                                 if (index >= tasks.size()) return true;
                                 if (Status ts = DecodeTaskRecord(value, &tasks[index]); !ts.ok())
                                   spdlog::error("job {}: record of {}: {}", id,
                                                 TaskName(kind, index), ts.message());
                                 return true;
                               });
      if (!ls.ok()) return ls;
    }
    const size_t task_key_size = TaskKey(id, 0).size();
    Status cs = store_->Scan(Family::kCheckpoints, JobKey(id), JobKey(id + 1),
                             [&](const std::string& key, const std::string&) {
                               const uint32_t index = IndexOfKey(key);
                               if (key.size() == task_key_size && index < j.seg.size())
                                 j.seg[index].has_checkpoint = true;
                               return true;
                             });
    if (!cs.ok()) return cs;
  }
  return Status::Ok();
}

}  // namespace segue
