// Clients and admins: submit, status, job actions, workers, logs and pools (handlers.h). Each
// handler returns its reply, which leaves once the turn's writes are durable.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/protocol/protocol.h"
#include "common/protocol/reports.h"
#include "common/protocol/transfer.h"
#include "coordinator/family.h"
#include "coordinator/handlers.h"
#include "coordinator/results.h"

namespace segue {
namespace {

std::string NoJob(uint64_t id) {
  return ErrorMessage(wire::ErrorCode::NOT_FOUND, "no job " + std::to_string(id));
}

std::string StatusReply(HandlerContext& c, const Job& j) {
  capnp::MallocMessageBuilder b;
  ToWire(ReportJob(j, c.env->NowMillis(), true), b.initRoot<wire::Envelope>().initJobStatus());
  return Serialize(b);
}

// The workers (all, or the one named `only`) as a WorkerList reply.
std::string WorkerListReply(HandlerContext& c, const std::string& only) {
  const auto& all = c.workers.all();
  capnp::MallocMessageBuilder b;
  auto list = b.initRoot<wire::Envelope>().initWorkerList().initWorkers(
      static_cast<unsigned>(only.empty() ? all.size() : all.count(only)));
  unsigned i = 0;
  for (const auto& [name, w] : all) {
    if (only.empty() || name == only) ToWire(ReportWorker(w), list[i++]);
  }
  return Serialize(b);
}

std::string PoolListReply(HandlerContext& c) {
  const auto pools = c.pools ? c.pools->List(ViewOfPools(c)) : std::vector<PoolStatus>{};
  capnp::MallocMessageBuilder b;
  auto out =
      b.initRoot<wire::Envelope>().initPoolList().initPools(static_cast<unsigned>(pools.size()));
  for (size_t i = 0; i < pools.size(); ++i)
    ToWire(ReportPool(pools[i]), out[static_cast<unsigned>(i)]);
  return Serialize(b);
}

// Tells every worker holding one of the job's tasks to stop it.
void StopJobTasks(HandlerContext& c, const Job& j, const std::string& why) {
  for (auto& [name, w] : c.workers.all()) {
    if (!w.task || w.task->job != j.id) continue;
    capnp::MallocMessageBuilder b;
    auto cancel = b.initRoot<wire::Envelope>().initCancel();
    cancel.setJobId(j.id);
    cancel.setReason(why);
    c.outbox.Send(w.identity, Serialize(b));
    WorkerRegistry::Free(w, c.env->NowMicros());
  }
}

// A derived job's log says what it is of which job (its first event could not: the ids were
// given as it was written).
void DescribeFamily(HandlerContext& c, const Job& j) {
  const std::string of = " of job " + std::to_string(j.family.parent);
  if (j.family.role == JobRole::kPreview)
    c.journal.AddEvent(j.id, "the preview" + of + ", at " + std::to_string(j.manifest.steps) +
                                 " steps and " + std::to_string(j.manifest.width) + "x" +
                                 std::to_string(j.manifest.height) + "; job " +
                                 std::to_string(j.family.parent) + " waits for it");
  if (j.family.role == JobRole::kTake)
    c.journal.AddEvent(j.id, "take " + std::to_string(j.family.take) + " of section " +
                                 std::to_string(j.family.section) + of +
                                 "; it waits until that job has rendered every segment");
}

// Why adding `added` (a submission's jobs, or a pick) to `owner`'s unfinished jobs would exceed
// the coordinator's per-owner limits, or "": one team's queue cannot fill the farm's (or the
// coordinator's memory).
std::string OverOwnerLimits(HandlerContext& c, const std::string& owner,
                            const std::vector<Job*>& added) {
  int owner_jobs = static_cast<int>(added.size());
  int64_t added_frames = 0;
  for (const Job* f : added) added_frames += f->manifest.frames;
  int64_t owner_frames = added_frames;
  for (const auto& [id, other] : c.jobs) {
    if (IsFinished(other.state) || other.owner != owner) continue;
    ++owner_jobs;
    owner_frames += other.manifest.frames;
  }
  const int others = owner_jobs - static_cast<int>(added.size());
  if (c.options.max_owner_jobs > 0 && owner_jobs > c.options.max_owner_jobs)
    return "'" + owner + "' has " + std::to_string(others) +
           " unfinished jobs, the most this coordinator queues per owner (--max-owner-jobs)" +
           (added.size() > 1 ? " counting this manifest's " + std::to_string(added.size()) +
                                   " jobs (its preview and takes are jobs)"
                             : std::string()) +
           "; wait for some to finish or cancel some";
  if (c.options.max_owner_frames > 0 && owner_frames > c.options.max_owner_frames)
    return added.front()->manifest_name + ": its " + std::to_string(added_frames) +
           " frames would bring '" + owner + "''s unfinished jobs to " +
           std::to_string(owner_frames) + " frames, above this coordinator's limit of " +
           std::to_string(c.options.max_owner_frames) + " per owner (--max-owner-frames)";
  return "";
}

}  // namespace

std::string SubmitReplyOf(const Job& j, bool existing) {
  capnp::MallocMessageBuilder b;
  auto r = b.initRoot<wire::Envelope>().initSubmitReply();
  r.setJobId(j.id);
  r.setFrames(j.manifest.frames);
  r.setSegments(static_cast<uint32_t>(j.segments.size()));
  r.setOutput(j.output_path);
  r.setExisting(existing);
  return Serialize(b);
}

std::string OnSubmit(HandlerContext& c, wire::Submit::Reader s, const std::string& owner) {
  // A resubmission (same owner, same submission id) gets the first one's job back, whatever
  // it says now: a client that lost the reply cannot start the job twice.
  const std::string submission_id = s.getSubmissionId().cStr();
  if (!submission_id.empty()) {
    if (submission_id.size() > 128 || !std::all_of(submission_id.begin(), submission_id.end(),
                                                   [](char ch) { return ch > 0x20 && ch < 0x7f; }))
      return ErrorMessage(wire::ErrorCode::BAD_REQUEST,
                          "submission id: 1 to 128 printable ASCII characters without spaces");
    for (const auto& [id, other] : c.jobs)
      if (other.owner == owner && other.submission_id == submission_id)
        return SubmitReplyOf(other, true);
  }
  auto admitted = Admit(s, c.admission, c.env, c.models);
  if (!admitted.ok()) return ErrorMessage(wire::ErrorCode::BAD_REQUEST, admitted.message());
  Job& j = *admitted;
  j.owner = owner;
  j.submission_id = submission_id;
  // Its preview and takes come with it, each a job (family.h).
  auto derived = DeriveJobs(j, c.admission, c.env, c.models);
  if (!derived.ok()) return ErrorMessage(wire::ErrorCode::BAD_REQUEST, derived.message());
  std::vector<Job*> family{&j};
  for (Job& d : *derived) family.push_back(&d);
  if (std::string over = OverOwnerLimits(c, owner, family); !over.empty())
    return ErrorMessage(wire::ErrorCode::OVER_LIMIT, over);
  std::vector<std::string> events;
  for (Job* f : family) {
    f->owner = owner;
    events.push_back((f == &j ? "submitted by " + owner
                              : std::string("derived from the job submitted with it")) +
                     ": " + std::to_string(f->manifest.frames) + " frames " +
                     (f->planned() ? "in " + std::to_string(f->segments.size()) + " segments"
                                   : "(waiting for a worker that serves model " +
                                         f->manifest.model_name + " to plan it)") +
                     ", output " + f->output_path);
  }
  auto audio = s.getAudioData();
  Status ws = c.journal.AddJobs(
      family, std::string_view(reinterpret_cast<const char*>(audio.begin()), audio.size()), events);
  if (!ws.ok())
    return ErrorMessage(wire::ErrorCode::INTERNAL, "cannot store the job: " + ws.message());
  std::string reply = SubmitReplyOf(j, false);
  std::vector<uint64_t> ids;
  for (Job* f : family) {
    spdlog::info("job {} ({}, owner {}) accepted: {} frames, {} segments, {} chunks -> {}", f->id,
                 f->name, f->owner, f->manifest.frames, f->segments.size(), f->chunks.size(),
                 f->output_path);
    f->started_ms = c.env->NowMillis();
    c.machine.Submitted(*f);
    ids.push_back(f->id);
    const uint64_t id = f->id;
    c.jobs.emplace(id, std::move(*f));
  }
  for (uint64_t id : ids) {
    Job& placed = c.jobs.at(id);
    if (placed.family.role == JobRole::kPreview) c.jobs.at(placed.family.parent).preview_job = id;
  }
  for (uint64_t id : ids) {
    Job& placed = c.jobs.at(id);
    DescribeFamily(c, placed);
    placed.waiting_for = WaitingFor(c.jobs, placed);
    // Segments another job has rendered with the same inputs are not rendered again, and its
    // song is encoded while they render (a job that waits does both when it stops waiting:
    // ReleaseWaitingJobs).
    if (placed.waiting_for != 0) continue;
    if (placed.has_audio)
      c.audio_tracks.Prepare(
          placed, std::string_view(reinterpret_cast<const char*>(audio.begin()), audio.size()));
    ReuseResults(c, placed);
  }
  c.schedule_due = true;
  return reply;
}

std::string OnPickRequest(HandlerContext& c, wire::PickRequest::Reader r,
                          const std::string& owner) {
  auto it = c.jobs.find(r.getJobId());
  if (it == c.jobs.end()) return NoJob(r.getJobId());
  const Job& from = it->second;
  auto root = c.jobs.find(from.family.root ? from.family.root : from.id);
  if (root == c.jobs.end()) return NoJob(from.family.root);
  std::map<int, int> picks;
  for (auto p : r.getPicks()) {
    if (p.getSection() > static_cast<uint32_t>(ManifestLimits::kMaxTimelineEntries))
      return ErrorMessage(wire::ErrorCode::BAD_REQUEST,
                          "section " + std::to_string(p.getSection()) + " is out of range");
    picks[static_cast<int>(p.getSection())] = static_cast<int>(p.getTake());
  }
  auto picked =
      PickJob(from, root->second, picks, r.getOutput().cStr(), c.admission, c.env, c.models);
  if (!picked.ok()) return ErrorMessage(wire::ErrorCode::BAD_REQUEST, picked.message());
  Job& j = *picked;
  j.owner = owner;
  j.created_ms = j.updated_ms = c.env->NowMillis();
  if (std::string over = OverOwnerLimits(c, owner, {&j}); !over.empty())
    return ErrorMessage(wire::ErrorCode::OVER_LIMIT, over);
  std::string said;
  for (const auto& [section, take] : j.family.picks)
    said += " section " + std::to_string(section) + " take " + std::to_string(take);
  Status ws = c.journal.AddJob(j, {},
                               "picked by " + owner + " from job " + std::to_string(from.id) + ":" +
                                   said + "; output " + j.output_path);
  if (!ws.ok())
    return ErrorMessage(wire::ErrorCode::INTERNAL, "cannot store the job: " + ws.message());
  std::string reply = SubmitReplyOf(j, false);
  if (j.has_audio)  // its family's song, encoded ahead unless it is already
    if (auto audio = c.journal.Audio(j.AudioJob()); audio.ok()) c.audio_tracks.Prepare(j, *audio);
  j.started_ms = c.env->NowMillis();
  c.machine.Submitted(j);
  const uint64_t id = j.id;
  Job& placed = c.jobs.emplace(id, std::move(j)).first->second;
  ReuseResults(c, placed);
  c.schedule_due = true;
  return reply;
}

void ReleaseWaitingJobs(HandlerContext& c) {
  for (auto& [id, j] : c.jobs) {
    if (j.waiting_for == 0) continue;
    if (IsFinished(j.state)) {  // cancelled while it waited: nothing to release
      j.waiting_for = 0;
      continue;
    }
    const uint64_t was = j.waiting_for;
    // A take whose job ended without its output has nothing to take its segments from.
    if (j.family.role == JobRole::kTake) {
      auto parent = c.jobs.find(j.family.parent);
      if (parent != c.jobs.end() && IsFinished(parent->second.state) &&
          parent->second.state != JobState::kDone) {
        if (c.machine.Cancel(j).ok())
          c.journal.AddEvent(id, "job " + std::to_string(was) + " is " +
                                     JobStateName(parent->second.state) +
                                     ": cancelled with it (retry both to render the take)");
        j.waiting_for = 0;
        continue;
      }
    }
    j.waiting_for = WaitingFor(c.jobs, j);
    if (j.waiting_for != 0) continue;
    c.journal.AddEvent(
        id, j.family.role == JobRole::kTake
                ? "job " + std::to_string(was) + " has rendered every segment: scheduled now"
                : "its preview, job " + std::to_string(was) + ", is finished: scheduled now");
    j.started_ms = c.env->NowMillis();  // the ETA counts from here
    if (j.has_audio)
      if (auto audio = c.journal.Audio(j.AudioJob()); audio.ok()) c.audio_tracks.Prepare(j, *audio);
    ReuseResults(c, j);
    c.schedule_due = true;
  }
}

std::string OnStatusRequest(HandlerContext& c, uint64_t job) {
  auto it = c.jobs.find(job);
  if (it == c.jobs.end()) return NoJob(job);
  return StatusReply(c, it->second);
}

std::string OnThumbnailRequest(HandlerContext& c, wire::ThumbnailRequest::Reader r) {
  // At most 64 thumbnails of at most 256 KiB each (result_handlers.cc): a reply of at most
  // 16 MiB, far under a message's limit; a contact sheet asks for a row (6) at a time.
  constexpr unsigned kMaxThumbnails = 64;
  auto it = c.jobs.find(r.getJobId());
  if (it == c.jobs.end()) return NoJob(r.getJobId());
  const Job& j = it->second;
  const auto segments = r.getSegments();
  if (segments.size() > kMaxThumbnails)
    return ErrorMessage(wire::ErrorCode::BAD_REQUEST,
                        "thumbnails: " + std::to_string(segments.size()) +
                            " segments asked for, at most " + std::to_string(kMaxThumbnails));
  for (uint32_t s : segments)
    if (s >= j.seg.size())
      return ErrorMessage(wire::ErrorCode::BAD_REQUEST,
                          "thumbnails: job " + std::to_string(j.id) + " has no segment " +
                              std::to_string(s) + " (it has " + std::to_string(j.seg.size()) + ")");
  capnp::MallocMessageBuilder b;
  auto reply = b.initRoot<wire::Envelope>().initThumbnails();
  reply.setJobId(j.id);
  auto jpegs = reply.initJpegs(segments.size());
  for (unsigned i = 0; i < segments.size(); ++i) {
    auto jpeg = c.journal.Thumbnail(j.id, segments[i]);
    if (jpeg.ok())
      jpegs.set(i, kj::arrayPtr(reinterpret_cast<const kj::byte*>(jpeg->data()), jpeg->size()));
    else if (jpeg.message().rfind("not found", 0) != 0)  // none yet is no news; a bad read is
      spdlog::warn("job {} segment {}: its thumbnail cannot be read: {}", j.id, segments[i],
                   jpeg.message());
  }
  return Serialize(b);
}

std::string OnListJobs(HandlerContext& c, wire::ListJobs::Reader r) {
  JobQuery q;
  for (auto s : r.getStates()) q.states.insert(s.cStr());
  for (auto kv : r.getMetadata()) q.metadata.emplace_back(kv.getKey().cStr(), kv.getValue().cStr());
  q.owner = r.getOwner().cStr();
  q.name = r.getName().cStr();
  q.after_id = r.getAfterId();
  q.limit = r.getLimit();
  q.family = r.getFamily();
  uint64_t next = 0;
  const std::vector<const Job*> page = FindJobs(c.jobs, q, &next);
  capnp::MallocMessageBuilder b;
  auto out = b.initRoot<wire::Envelope>().initJobList();
  auto list = out.initJobs(static_cast<unsigned>(page.size()));
  const uint64_t now = c.env->NowMillis();
  for (size_t i = 0; i < page.size(); ++i)
    ToWire(ReportJob(*page[i], now, true), list[static_cast<unsigned>(i)]);
  out.setNextAfterId(next);
  return Serialize(b);
}

std::string OnVersionRequest(HandlerContext&, const Identity& peer) {
  capnp::MallocMessageBuilder b;
  auto v = b.initRoot<wire::Envelope>().initVersionReply();
  v.setProtocolVersion(wire::PROTOCOL_VERSION);
  v.setVersion(SEGUE_VERSION);
  v.setMaxMessageBytes(WireLimits::kMaxMessageBytes);
  v.setPartBytes(TransferLimits::kPartBytes);
  v.setIdentity(peer.name);
  v.setRole(peer.name.empty() ? "" : RoleName(peer.role));
  return Serialize(b);
}

std::string OnListWorkers(HandlerContext& c) { return WorkerListReply(c, ""); }

std::string OnJobAction(HandlerContext& c, wire::JobAction::Reader a) {
  auto it = c.jobs.find(a.getJobId());
  if (it == c.jobs.end()) return NoJob(a.getJobId());
  Job& j = it->second;
  Status s;
  switch (a.getAction()) {
    case wire::JobActionKind::CANCEL:
      // Its preview and takes go with it, even when it has ended already: they exist for it.
      for (uint64_t d : DerivedJobsOf(c.jobs, j.id)) {
        Job& dj = c.jobs.at(d);
        StopJobTasks(c, dj, "job " + std::to_string(j.id) + " cancelled");
        if (c.machine.Cancel(dj).ok())
          c.journal.AddEvent(d, "cancelled with job " + std::to_string(j.id));
        dj.waiting_for = 0;
      }
      // Idempotent: a finished job (cancelled, done or failed) is left as it is and reported.
      if (IsFinished(j.state)) {
        c.schedule_due = true;
        return StatusReply(c, j);
      }
      StopJobTasks(c, j, "job cancelled");
      s = c.machine.Cancel(j);
      j.waiting_for = 0;
      break;
    case wire::JobActionKind::RETRY:
      s = c.machine.Retry(j);
      // A job that failed to plan is planned again if its model is known (it fails the same way
      // unless the model's metadata changed); else it waits for a worker that serves it.
      if (s.ok() && !j.planned()) {
        if (const model::ModelMetadata* m = c.models.Find(j.manifest.model_name))
          c.machine.Plan(j, *m, c.admission.chunk_frames, c.admission.max_job_segments);
      }
      if (s.ok()) j.waiting_for = WaitingFor(c.jobs, j);
      if (s.ok() && j.waiting_for == 0) ReuseResults(c, j);
      // A job that failed at assembly has nothing left to render or encode: it is assembled
      // again now (no task will finish to trigger it).
      if (s.ok() && j.planned() && !j.chunks.empty() && j.chunks_done == j.chunks.size())
        Assemble(c, j);
      break;
    case wire::JobActionKind::PRIORITY:
      s = c.machine.SetPriority(j, a.getPriority());
      break;
  }
  if (!s.ok()) return ErrorMessage(wire::ErrorCode::BAD_REQUEST, s.message());
  c.schedule_due = true;
  return StatusReply(c, j);
}

std::string OnDrainWorker(HandlerContext& c, const std::string& name) {
  Worker* w = c.workers.ByName(name);
  if (!w)
    return ErrorMessage(wire::ErrorCode::NOT_FOUND,
                        "no worker named '" + name + "' (see segue workers)");
  DrainWorker(c, *w);
  return WorkerListReply(c, name);
}

std::string OnGetLogs(HandlerContext& c, wire::GetLogs::Reader r) {
  if (!c.jobs.count(r.getJobId())) return NoJob(r.getJobId());
  const int segment = r.getSegment();
  const std::string needle = "segment " + std::to_string(segment) + " ";
  auto lines = c.journal.Events(
      r.getJobId(),
      [&](const std::string& line) {
        return segment < 0 || line.find(needle) != std::string::npos;
      },
      100000);
  if (!lines.ok()) return ErrorMessage(wire::ErrorCode::INTERNAL, lines.message());
  capnp::MallocMessageBuilder b;
  auto out =
      b.initRoot<wire::Envelope>().initLogs().initLines(static_cast<unsigned>(lines->size()));
  for (size_t i = 0; i < lines->size(); ++i) out.set(static_cast<unsigned>(i), (*lines)[i]);
  return Serialize(b);
}

std::string OnPoolRequest(HandlerContext& c, wire::PoolRequest::Reader r) {
  if (!c.pools) return ErrorMessage(wire::ErrorCode::NOT_FOUND, "this coordinator has no pools");
  Status s;
  switch (r.which()) {
    case wire::PoolRequest::LIST:
      break;
    case wire::PoolRequest::SCALE:
      s = c.pools->Scale(r.getScale().getName().cStr(), static_cast<int>(r.getScale().getSize()));
      break;
    case wire::PoolRequest::AUTOSCALE: {
      auto a = r.getAutoscale();
      s = c.pools->Autoscale(a.getName().cStr(), a.getEnabled(), static_cast<int>(a.getMin()),
                             static_cast<int>(a.getMax()));
      break;
    }
  }
  if (!s.ok()) return ErrorMessage(wire::ErrorCode::BAD_REQUEST, s.message());
  if (r.which() != wire::PoolRequest::LIST) TickPools(c);  // act now, not in a second
  return PoolListReply(c);
}

std::string OnPlanRequest(HandlerContext& c, wire::PlanRequest::Reader r) {
  const std::string name =
      r.getManifestName().size() ? r.getManifestName().cStr() : "manifest.yaml";
  auto m = ParseManifest(r.getManifestText().cStr(), name, ManifestParseOptions{"", false});
  if (!m.ok()) return ErrorMessage(wire::ErrorCode::BAD_REQUEST, m.message());
  const model::ModelMetadata* model = c.models.Find(m->model_name);
  if (!model)
    return ErrorMessage(wire::ErrorCode::BAD_REQUEST,
                        name + ": model.name: no worker serving '" + m->model_name +
                            "' has joined this farm yet, so it cannot be planned here");
  Job j;
  if (Status s = PlanJob(j, *m, *model, c.admission.chunk_frames, c.admission.max_job_segments);
      !s.ok())
    return ErrorMessage(wire::ErrorCode::BAD_REQUEST, s.message());
  const std::vector<SegmentKey> keys = SegmentKeys(j);
  std::vector<std::string> plain;
  for (const SegmentKey& k : keys) plain.push_back(k.key);
  std::vector<StoredResult> found = FindStoredResults(c.jobs, plain, 0);
  const bool whole_gang =
      std::all_of(found.begin(), found.end(), [](const StoredResult& f) { return f.job != 0; });
  if (j.strategy() == Strategy::kCodenoise && !whole_gang)
    for (StoredResult& f : found) f = {};  // a gang renders all or none
  const Job* against = nullptr;
  std::vector<SegmentKey> before;
  if (const uint64_t id = r.getAgainstJob(); id != 0) {
    auto it = c.jobs.find(id);
    if (it == c.jobs.end())
      return ErrorMessage(wire::ErrorCode::NOT_FOUND, "no job " + std::to_string(id));
    if (!it->second.planned())
      return ErrorMessage(wire::ErrorCode::BAD_REQUEST,
                          "job " + std::to_string(id) + " is not planned: nothing to compare");
    against = &it->second;
    before = SegmentKeys(*against);
  }
  capnp::MallocMessageBuilder b;
  auto reply = b.initRoot<wire::Envelope>().initPlanReply();
  reply.setStrategy(StrategyName(j.strategy()));
  reply.setAgainstJob(against ? against->id : 0);
  auto list = reply.initSegments(static_cast<unsigned>(keys.size()));
  for (size_t s = 0; s < keys.size(); ++s) {
    auto out = list[static_cast<unsigned>(s)];
    out.setIndex(static_cast<uint32_t>(s));
    out.setFrameStart(j.geometry.VideoStart(j.segments[s].start));
    out.setFrameEnd(j.geometry.VideoEnd(j.segments[s].end));
    out.setKey(keys[s].key);
    std::vector<std::string> reasons;
    if (found[s].job != 0) {
      out.setReuse(true);
      out.setFromJob(found[s].job);
      out.setFromSegment(found[s].segment);
    } else if (j.model.identity.empty()) {
      reasons.push_back("the farm does not know model '" + j.manifest.model_name +
                        "''s weights (its workers report no identity): nothing is reused");
    } else if (against && s >= before.size()) {
      reasons.push_back("a new segment (job " + std::to_string(against->id) + " has " +
                        std::to_string(before.size()) + ")");
    } else if (against) {
      reasons = WhyDifferent(keys[s], before[s], j.strategy(), static_cast<uint32_t>(s));
      if (reasons.empty() && j.strategy() == Strategy::kCodenoise)
        reasons.push_back("unchanged, but co-denoised with segments that have no stored result");
      else if (reasons.empty())
        reasons.push_back("unchanged, but job " + std::to_string(against->id) +
                          " has no stored result for it");
    } else {
      reasons.push_back("no stored result has its key");
    }
    auto why = out.initReasons(static_cast<unsigned>(reasons.size()));
    for (size_t i = 0; i < reasons.size(); ++i) why.set(static_cast<unsigned>(i), reasons[i]);
  }
  return Serialize(b);
}

void ReuseResults(HandlerContext& c, Job& j) {
  const Reuse r = ReuseStoredResults(c.jobs, c.journal, c.machine, c.env, c.assignment, j);
  c.metrics.result_hits += r.hits;
  c.metrics.result_misses += r.misses;
  c.metrics.result_hit_bytes += r.bytes;
  c.metrics.result_chunk_hits += r.chunks;
  if (r.assemble) Assemble(c, j);  // everything was stored already
}

std::string OnCacheRequest(HandlerContext& c, wire::CacheRequest::Reader r) {
  Evicted evicted;
  evicted.segments = c.metrics.results_evicted;
  evicted.bytes = c.metrics.results_evicted_bytes;
  if (r.isPrune()) {
    const uint64_t older = r.getPrune().getOlderThanMs(), now = c.env->NowMillis();
    const uint64_t to = r.getPrune().getBySize() ? r.getPrune().getToBytes() : UINT64_MAX;
    evicted =
        EvictResults(c.jobs, c.journal, to, older == 0 ? 0 : (older >= now ? 1 : now - older));
    c.metrics.results_evicted += evicted.segments + evicted.chunks;
    c.metrics.results_evicted_bytes += evicted.bytes;
  }
  const CacheContents cache = CachedResults(c.jobs);
  capnp::MallocMessageBuilder b;
  auto reply = b.initRoot<wire::Envelope>().initCacheReply();
  auto list = reply.initJobs(static_cast<unsigned>(cache.jobs.size()));
  for (size_t i = 0; i < cache.jobs.size(); ++i) {
    const CachedJob& cj = cache.jobs[i];
    const Job& j = c.jobs.at(cj.job);
    auto out = list[static_cast<unsigned>(i)];
    out.setJobId(cj.job);
    out.setName(j.name);
    out.setState(JobStateName(j.state));
    out.setSegments(cj.segments);
    out.setChunks(cj.chunks);
    out.setBytes(cj.bytes);
    out.setLastUsedMs(cj.last_used_ms);
  }
  reply.setBytes(cache.bytes);
  reply.setLiveBytes(cache.live_bytes);
  reply.setLimitBytes(c.options.result_cache_bytes);
  reply.setHits(c.metrics.result_hits);
  reply.setMisses(c.metrics.result_misses);
  reply.setEvictedSegments(evicted.segments);
  reply.setEvictedChunks(evicted.chunks);
  reply.setEvictedBytes(evicted.bytes);
  return Serialize(b);
}

}  // namespace segue
