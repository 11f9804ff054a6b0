// What workers send back: results, failures, checkpoints and co-denoising exchanges
// (handlers.h). Each passes the fence first: only the worker holding a task's current attempt is
// heard.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "common/media/video.h"
#include "common/protocol/protocol.h"
#include "coordinator/handlers.h"
#include "coordinator/results.h"

namespace segue {

// A segment's thumbnail is kept up to this size (a 192-pixel JPEG is a few KiB).
constexpr size_t kMaxThumbnailBytes = 256 << 10;
namespace {

TaskKind KindOf(wire::TaskKind kind) {
  switch (kind) {
    case wire::TaskKind::RENDER:
      return TaskKind::kRender;
    case wire::TaskKind::ENCODE:
      return TaskKind::kEncode;
    case wire::TaskKind::CODENOISE:
      return TaskKind::kGang;
  }
  return TaskKind::kRender;
}

// Whether `w` holds an attempt of (job, kind, index) other than `attempt`.
bool HoldsNewerAttempt(const HandlerContext& c, const Worker& w, uint64_t job, TaskKind kind,
                       uint32_t index, uint32_t attempt) {
  if (kind == TaskKind::kGang) return false;
  auto it = c.jobs.find(job);
  if (it == c.jobs.end()) return false;
  const std::vector<Task>& tasks = it->second.tasks(kind);
  if (index >= tasks.size()) return false;
  const Task& t = tasks[index];
  return t.state == TaskState::kRunning && t.worker == w.name && t.attempt != attempt;
}

// The job a message from `w` about (job, kind, index, attempt) refers to, if `w` holds that
// attempt; otherwise the message is counted as fenced off, `w` stops believing it holds the
// task, and the answer is nullptr.
Job* Fence(HandlerContext& c, Worker* w, uint64_t job, TaskKind kind, uint32_t index,
           uint32_t attempt) {
  if (w && c.machine.IsCurrent(c.jobs, job, kind, index, attempt, w->name)) return &c.jobs.at(job);
  ++c.metrics.fenced_results;
  spdlog::warn("fenced off a stale result: job {} {} attempt {} from {} [{} fenced so far]", job,
               TaskName(kind, index), attempt, w ? w->name : "an unknown peer",
               c.metrics.fenced_results);
  // The worker no longer holds what it answered for, unless it holds a newer attempt of the same
  // task (given it again after a restart, while the old attempt was still running on it): that
  // one runs on, and freeing the worker would orphan it (RUNNING, held by nobody) once the
  // worker's next task overwrote it.
  if (w && w->task && w->task->job == job && w->task->index == index && w->task->kind == kind &&
      !HoldsNewerAttempt(c, *w, job, kind, index, attempt))
    WorkerRegistry::Free(*w, c.env->NowMicros());
  return nullptr;
}

// The shape of `frames` latent frames of `j`'s video by its model's metadata: [C, T, h, w].
std::vector<int64_t> LatentShape(const Job& j, int64_t frames) {
  const int sc = std::max(1, j.model.spatial_compression);
  return {j.model.latent_channels, frames, j.manifest.height / sc, j.manifest.width / sc};
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  Tensor t;
  t.shape = shape;
  return t.ShapeString();
}

// A segment's latents: [C, T, h, w], T its length in latent frames, C and h x w what the job's
// model makes of its picture size.
Status CheckSegmentLatents(const Result<Tensor>& latents, const Job& j, const SegmentSpan& span) {
  if (!latents.ok()) return latents.status();
  const std::vector<int64_t> want = LatentShape(j, span.length());
  if (latents->shape != want)
    return Status::Error("latents of shape " + latents->ShapeString() + " do not fit a segment " +
                         "of " + std::to_string(span.length()) + " latent frames of model " +
                         j.model.name + ", " + ShapeText(want));
  return Status::Ok();
}

// A finished segment's latents hold finite numbers: a worker that returns NaN or infinity fails
// its task instead of reaching the blend.
Status CheckResultLatents(const Tensor& latents) {
  for (float v : latents.data)
    if (!std::isfinite(v)) return Status::Error("latents hold a value that is not finite");
  return Status::Ok();
}

// A checkpoint: a segment's latents, or [1 + H, C, T, h, w] with a multistep sampler's history
// (at most 3 tensors: unipc's).
Status CheckCheckpoint(const Result<Tensor>& state, const Job& j, const SegmentSpan& span) {
  if (!state.ok() || state->shape.size() != 5) return CheckSegmentLatents(state, j, span);
  const std::vector<int64_t> latents(state->shape.begin() + 1, state->shape.end());
  if (state->shape[0] < 1 || state->shape[0] > 4 || latents != LatentShape(j, span.length()))
    return Status::Error("checkpoint of shape " + state->ShapeString() +
                         " does not fit a segment of " + std::to_string(span.length()) +
                         " latent frames, " + ShapeText(LatentShape(j, span.length())));
  return Status::Ok();
}

}  // namespace

void OnRenderResult(HandlerContext& c, const std::string& identity, wire::RenderResult::Reader r) {
  c.schedule_due = true;
  Worker* w = c.workers.Heard(identity, c.env->NowMillis());
  const uint32_t index = r.getSegment();
  Job* j = Fence(c, w, r.getJobId(), TaskKind::kRender, index, r.getAttempt());
  if (!j) return;
  const bool in_gang = w->task && w->task->kind == TaskKind::kGang;
  auto latents = GetTensor(r.getLatents());
  Status s = CheckSegmentLatents(latents, *j, j->segments[index]);
  if (s.ok()) s = CheckResultLatents(*latents);
  if (!s.ok())
    return FailTask(c, *j, in_gang ? TaskKind::kGang : TaskKind::kRender, index, *w, s.message());
  if (!in_gang) WorkerRegistry::Free(*w, c.env->NowMicros());
  ++w->tasks_done;
  if (!in_gang && r.getElapsedMs() > 0)
    c.metrics.step_seconds.Observe(static_cast<double>(r.getElapsedMs()) / 1000.0 /
                                   std::max(1, j->manifest.steps));
  // A gang member is free once every segment of its group is done.
  const int g = in_gang && j->gang ? j->gang->GroupOf(w->name) : -1;
  c.machine.CompleteSegment(*j, index, *latents,
                            "by " + w->name + " (attempt " + std::to_string(r.getAttempt()) + ", " +
                                std::to_string(r.getElapsedMs()) + " ms)");
  // What people watching the job see of the segment: kept only if it is a small JPEG, never
  // trusted for anything else (the dashboard serves it as image/jpeg).
  const auto thumb = r.getThumbnail();
  const std::string_view jpeg(reinterpret_cast<const char*>(thumb.begin()), thumb.size());
  if (jpeg.size() <= kMaxThumbnailBytes && LooksLikeJpeg(jpeg))
    c.journal.PutThumbnail(j->id, index, jpeg);
  if (in_gang) {
    const bool group_done =
        g < 0 || !j->gang ||
        std::all_of(j->seg.begin() + j->gang->groups[static_cast<size_t>(g)].first,
                    j->seg.begin() + j->gang->groups[static_cast<size_t>(g)].end,
                    [](const Task& t) { return t.state == TaskState::kDone; });
    if (group_done) WorkerRegistry::Free(*w, c.env->NowMicros());
  }
}

void OnEncodeResult(HandlerContext& c, const std::string& identity, wire::EncodeResult::Reader r) {
  c.schedule_due = true;
  Worker* w = c.workers.Heard(identity, c.env->NowMillis());
  const uint32_t index = r.getChunk();
  Job* j = Fence(c, w, r.getJobId(), TaskKind::kEncode, index, r.getAttempt());
  if (!j) return;
  const int64_t expected = ChunkWindow(*j, index).keep;
  if (r.getFrames() != static_cast<uint32_t>(expected) || r.getContainer().size() == 0) {
    return FailTask(c, *j, TaskKind::kEncode, index, *w,
                    "chunk came back with " + std::to_string(r.getFrames()) + " frames, expected " +
                        std::to_string(expected));
  }
  auto data = r.getContainer();
  const std::string_view container(reinterpret_cast<const char*>(data.begin()), data.size());
  // What the chunk holds, not what the worker says it holds: a chunk that is not a container of
  // exactly its frames fails its task here, and never reaches an output. Demuxing a chunk in
  // memory counts packets without decoding (well under a millisecond for a 96-frame chunk).
  auto held = CountChunkFrames(container);
  if (!held.ok() || *held != expected)
    return FailTask(c, *j, TaskKind::kEncode, index, *w,
                    "chunk " + std::to_string(index) + " is " +
                        (held.ok() ? "a container of " + std::to_string(*held) + " frames"
                                   : "unreadable: " + held.message()) +
                        ", expected " + std::to_string(expected) + " frames");
  WorkerRegistry::Free(*w, c.env->NowMicros());
  ++w->tasks_done;
  // Known by its key, so that an edited job whose chunk it would be takes it (results.h).
  Task& t = j->chunk[index];
  t.result_key = ChunkKeys(*j, c.assignment)[index];
  t.result_used_ms = c.env->NowMillis();
  t.result_bytes = container.size();
  if (c.machine.CompleteChunk(*j, index, container, "encoded by " + w->name)) Assemble(c, *j);
}

void OnTaskFailure(HandlerContext& c, const std::string& identity, wire::TaskFailure::Reader r) {
  c.schedule_due = true;
  Worker* w = c.workers.Heard(identity, c.env->NowMillis());
  const TaskKind kind = KindOf(r.getKind());
  Job* j = Fence(c, w, r.getJobId(), kind, r.getIndex(), r.getAttempt());
  if (!j) return;
  FailTask(c, *j, kind, r.getIndex(), *w, r.getMessage().cStr());
}

void OnCheckpoint(HandlerContext& c, const std::string& identity, wire::Checkpoint::Reader cp) {
  Worker* w = c.workers.Heard(identity, c.env->NowMillis());
  const uint32_t index = cp.getSegment(), step = cp.getStep();
  Job* j = Fence(c, w, cp.getJobId(), TaskKind::kRender, index, cp.getAttempt());
  if (!j) return;
  auto latents = GetTensor(cp.getLatents());
  if (!CheckCheckpoint(latents, *j, j->segments[index]).ok() || step == 0) {
    ++c.metrics.bad_messages;
    spdlog::warn("job {}: dropped a malformed checkpoint of segment {}", j->id, index);
    return;
  }
  c.metrics.checkpoint_bytes += latents->data.size() * sizeof(float);
  w->task_progress_ms = c.env->NowMillis();
  if (j->gang) {
    c.machine.GangCheckpoint(*j, index, step, *latents);
  } else {
    c.machine.Checkpoint(*j, index, step, *latents, w->name);
  }
  capnp::MallocMessageBuilder b;
  auto ack = b.initRoot<wire::Envelope>().initCheckpointAck();
  ack.setJobId(j->id);
  ack.setSegment(index);
  ack.setStep(step);
  c.outbox.Send(identity, Serialize(b));  // once the checkpoint is durable
}

void OnCodenoiseExchange(HandlerContext& c, const std::string& identity,
                         wire::CodenoiseExchange::Reader x) {
  Worker* w = c.workers.Heard(identity, c.env->NowMillis());
  auto it = c.jobs.find(x.getJobId());
  Job* j = it == c.jobs.end() ? nullptr : &it->second;
  const int group =
      (w && j && j->gang && j->gang->attempt == x.getAttempt()) ? j->gang->GroupOf(w->name) : -1;
  if (group < 0 || x.getStep() < j->gang->exchange->step()) {
    ++c.metrics.fenced_results;
    spdlog::warn(
        "fenced off a stale co-denoising exchange for job {} attempt {} [{} fenced so far]",
        x.getJobId(), x.getAttempt(), c.metrics.fenced_results);
    return;
  }
  Gang& gang = *j->gang;
  w->task_progress_ms = c.env->NowMillis();
  auto fail = [&](const std::string& why) { FailTask(c, *j, TaskKind::kGang, 0, *w, why); };
  if (x.getStep() > gang.exchange->step()) return fail("exchange arrived out of step");
  std::vector<FrameValues> values;
  std::vector<int64_t> frame_shape = LatentShape(*j, 1);  // one latent frame: [C, h, w]
  frame_shape.erase(frame_shape.begin() + 1);
  for (auto slice : x.getSlices()) {
    auto t = GetTensor(slice.getLatents());
    if (!t.ok()) return fail("bad exchange: " + t.message());
    if (t->shape != frame_shape)
      return fail("bad exchange: a latent frame of shape " + t->ShapeString() + ", not " +
                  ShapeText(frame_shape));
    values.push_back({slice.getSegment(), slice.getFrame(), std::move(t->data)});
    if (values.size() == 1) gang.exchange_shape = t->shape;
  }
  if (Status s = gang.exchange->Add(group, std::move(values)); !s.ok())
    return fail("bad exchange: " + s.message());
  if (!gang.exchange->Complete()) return;
  const uint32_t step = gang.exchange->step();
  auto merged = gang.exchange->Merge();
  if (!merged.ok()) return fail(merged.message());
  // The time trigger, decided here so that every group checkpoints after the same step.
  const uint64_t now = c.env->NowMillis();
  const uint64_t every_ms = static_cast<uint64_t>(CheckpointSeconds(*j, c.assignment)) * 1000;
  const bool checkpoint = every_ms > 0 && now - gang.last_checkpoint_ms >= every_ms &&
                          step + 1 < static_cast<uint32_t>(j->manifest.steps);
  if (checkpoint) gang.last_checkpoint_ms = now;
  // One first segment big enough for each whole reply: no segment chain to walk and copy.
  const size_t half_words = (Tensor::NumElements(gang.exchange_shape) * 2 + 7) / 8;
  for (size_t g = 0; g < merged->size(); ++g) {
    Worker* member = c.workers.ByName(gang.groups[g].worker);
    if (!member) continue;
    const auto& frames = (*merged)[g];
    capnp::MallocMessageBuilder b(static_cast<unsigned>(frames.size() * (half_words + 16) + 64));
    auto m = b.initRoot<wire::Envelope>().initCodenoiseMerged();
    m.setJobId(j->id);
    m.setAttempt(gang.attempt);
    m.setStep(step);
    m.setCheckpoint(checkpoint);
    auto slices = m.initSlices(static_cast<unsigned>(frames.size()));
    for (size_t i = 0; i < frames.size(); ++i) {
      slices[static_cast<unsigned>(i)].setFrame(frames[i].frame);
      SetTensorHalf(slices[static_cast<unsigned>(i)].initLatents(), gang.exchange_shape,
                    frames[i].data->data());
    }
    c.outbox.Send(member->identity, Serialize(b));
  }
}

}  // namespace segue
