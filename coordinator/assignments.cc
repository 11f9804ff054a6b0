#include "coordinator/assignments.h"

#include <capnp/message.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/blend/blend.h"
#include "common/protocol/protocol.h"

namespace segue {

void FillRenderTask(const Job& j, uint32_t index, uint32_t attempt, const AssignmentOptions& o,
                    wire::RenderTask::Builder t) {
  const SegmentSpan& span = j.segments[index];
  const Manifest& m = j.manifest;
  t.setJobId(j.id);
  t.setSegment(index);
  t.setAttempt(attempt);
  t.setModel(m.model_name);
  t.setSteps(static_cast<uint32_t>(m.steps));
  t.setSampler(m.sampler);
  t.setShift(m.shift);
  t.setShiftFromTokens(m.shift_from_tokens);
  auto sigmas = t.initSigmas(static_cast<unsigned>(m.sigmas.size()));
  for (size_t i = 0; i < m.sigmas.size(); ++i) sigmas.set(static_cast<unsigned>(i), m.sigmas[i]);
  t.setEta(m.eta);
  t.setGuidance(m.guidance);
  t.setNegativePrompt(m.negative_prompt);
  t.setWidth(static_cast<uint32_t>(m.width));
  t.setHeight(static_cast<uint32_t>(m.height));
  t.setFpsNum(m.fps.num);
  t.setFpsDen(m.fps.den);
  t.setLatentStart(span.start);
  t.setLatentCount(static_cast<uint32_t>(span.length()));
  t.setTotalLatents(j.geometry.latents);
  t.setSeed(span.seed);
  t.setCameraMotion(m.camera_motion);
  t.setCameraSpeed(m.camera_speed);
  t.setCheckpointEverySteps(static_cast<uint32_t>(CheckpointSteps(j, o)));
  t.setCheckpointEverySeconds(static_cast<uint32_t>(CheckpointSeconds(j, o)));
  // Only the keyframes that matter to this segment travel: from the one before the keyframe in
  // force at its first video frame (a transition needs its predecessor) to the last one inside
  // its video frames (keyframes speak video frames).
  const int64_t video_start = j.geometry.timeline.FirstFrame(span.start);
  const int64_t video_end = j.geometry.timeline.FirstFrame(span.end);
  size_t first = 0;
  for (size_t i = 0; i < m.timeline.size() && m.timeline[i].frame <= video_start; ++i) first = i;
  if (first > 0) --first;
  size_t last = first;
  for (size_t i = first; i < m.timeline.size() && m.timeline[i].frame < video_end; ++i) last = i;
  auto tl = t.initTimeline(static_cast<unsigned>(last - first + 1));
  for (size_t i = first; i <= last; ++i) {
    auto k = tl[static_cast<unsigned>(i - first)];
    k.setFrame(m.timeline[i].frame);
    k.setTransitionFrames(m.timeline[i].transition_frames);
    k.setPrompt(m.timeline[i].prompt);
  }
}

namespace {

// Chained: the previous segment's final latents over the frames it shares with `index`.
Result<Tensor> GuideFor(const Job& j, uint32_t index, Journal& journal) {
  const SegmentSpan& prev = j.segments[index - 1];
  const SegmentSpan& cur = j.segments[index];
  auto t = journal.Latents(j.id, index - 1);
  if (!t.ok()) return t;
  const int64_t C = t->shape[0], T = t->shape[1], hw = t->shape[2] * t->shape[3];
  const int64_t from = cur.start - prev.start, count = prev.end - cur.start;
  Tensor g = Tensor::Zeros({C, count, t->shape[2], t->shape[3]});
  for (int64_t c = 0; c < C; ++c) {
    const float* src = t->data.data() + (c * T + from) * hw;
    std::copy(src, src + count * hw, g.data.begin() + c * count * hw);
  }
  return g;
}

}  // namespace

int CheckpointSteps(const Job& j, const AssignmentOptions& o) {
  return j.manifest.checkpoint_steps.value_or(o.checkpoint_steps);
}

int CheckpointSeconds(const Job& j, const AssignmentOptions& o) {
  return j.manifest.checkpoint_seconds.value_or(o.checkpoint_seconds);
}

std::variant<RenderInputs, ReadFailure> ReadRenderInputs(const Job& j, uint32_t segment,
                                                         Journal& journal) {
  RenderInputs in;
  if (j.strategy() == Strategy::kChained && segment > 0) {
    auto g = GuideFor(j, segment, journal);
    if (!g.ok()) return ReadFailure{segment - 1, g.message()};
    in.guide = std::move(*g);
  }
  // Resume from the newest checkpoint: at most one checkpoint interval is redone. (Only when
  // there is one: a read writes the turn's batch first.)
  if (j.seg[segment].has_checkpoint) {
    auto cp = journal.SegmentCheckpoint(j.id, segment);
    if (cp.ok() && cp->step > 0 && cp->step < static_cast<uint32_t>(j.manifest.steps)) {
      in.resume_step = cp->step;
      in.resume_latents = std::move(cp->latents);
    }
  }
  return in;
}

DecodeWindow ChunkWindow(const Job& j, uint32_t chunk) {
  const ChunkSpan& span = j.chunks[chunk];
  return WindowFor(j.geometry, span.start, span.end, j.model.decode_context_before,
                   j.model.decode_context_after);
}

std::variant<Tensor, ReadFailure> ReadEncodeInputs(const Job& j, uint32_t chunk, Journal& journal) {
  const DecodeWindow w = ChunkWindow(j, chunk);
  const ChunkSpan span{static_cast<int>(chunk), w.first, w.end_with_context};
  std::vector<int> cover = SegmentsCovering(j.segments, span.start, span.end);
  std::vector<Tensor> owned(cover.size());
  std::vector<const Tensor*> latents(j.segments.size(), nullptr);
  for (size_t i = 0; i < cover.size(); ++i) {
    const auto segment = static_cast<uint32_t>(cover[i]);
    auto t = journal.Latents(j.id, segment);
    if (!t.ok()) return ReadFailure{segment, t.message()};  // store damage: render it again
    owned[i] = std::move(*t);
    latents[segment] = &owned[i];
  }
  auto blended = BlendRange(j.segments, latents, j.blend, span.start, span.end);
  if (!blended.ok())
    return ReadFailure{std::nullopt,
                       "cannot blend chunk " + std::to_string(chunk) + ": " + blended.message()};
  return std::move(*blended);
}

uint32_t ReadGangResume(const Job& j, Journal& journal, std::vector<Tensor>* latents) {
  const uint32_t step = journal.GangStep(j.id);
  if (step == 0 || step >= static_cast<uint32_t>(j.manifest.steps)) return 0;
  latents->clear();
  for (uint32_t s = 0; s < j.segments.size(); ++s) {
    auto t = journal.GangCheckpoint(j.id, s, step);
    if (!t.ok()) {
      spdlog::error(
          "job {}: gang checkpoint of segment {} at step {} unreadable ({}); starting from step 0",
          j.id, s, step, t.message());
      return 0;
    }
    latents->push_back(std::move(*t));
  }
  return step;
}

std::string RenderAssignment(const Job& j, uint32_t segment, uint32_t attempt,
                             const RenderInputs& in, const AssignmentOptions& o) {
  capnp::MallocMessageBuilder b;
  auto t = b.initRoot<wire::Envelope>().initAssignment().initRender();
  FillRenderTask(j, segment, attempt, o, t);
  if (in.guide) SetTensor(t.initGuide(), *in.guide);
  if (in.resume_step > 0) {
    t.setResumeStep(in.resume_step);
    SetTensor(t.initResumeLatents(), in.resume_latents);
  }
  return Serialize(b);
}

void FillEncodeTask(const Job& j, uint32_t chunk, uint32_t attempt, const AssignmentOptions& o,
                    wire::EncodeTask::Builder t) {
  const Manifest& m = j.manifest;
  t.setJobId(j.id);
  t.setChunk(chunk);
  t.setAttempt(attempt);
  t.setModel(m.model_name);
  t.setWidth(static_cast<uint32_t>(m.width));
  t.setHeight(static_cast<uint32_t>(m.height));
  t.setFpsNum(m.fps.num);
  t.setFpsDen(m.fps.den);
  const DecodeWindow w = ChunkWindow(j, chunk);
  t.setFrameStart(w.video_start);
  t.setSkipFrames(static_cast<uint32_t>(w.skip));
  t.setKeepFrames(static_cast<uint32_t>(w.keep));
  t.setCodec(m.output_codec);
  t.setCrf(static_cast<uint32_t>(m.output_crf));
  t.setProfile(m.output_profile);
  t.setPreset(o.encoder_preset);
}

std::string EncodeAssignment(const Job& j, uint32_t chunk, uint32_t attempt, const Tensor& blended,
                             const AssignmentOptions& o) {
  capnp::MallocMessageBuilder b;
  auto t = b.initRoot<wire::Envelope>().initAssignment().initEncode();
  FillEncodeTask(j, chunk, attempt, o, t);
  SetTensor(t.initLatents(), blended);
  return Serialize(b);
}

std::string GangAssignment(const Job& j, const Gang::Group& group, uint32_t attempt,
                           uint32_t resume_step, const std::vector<Tensor>& resume_latents,
                           const AssignmentOptions& o) {
  capnp::MallocMessageBuilder b;
  auto t = b.initRoot<wire::Envelope>().initAssignment().initCodenoise();
  t.setJobId(j.id);
  t.setAttempt(attempt);
  t.setTotalLatents(j.geometry.latents);
  t.setLength(static_cast<uint32_t>(j.geometry.length));
  t.setOverlap(static_cast<uint32_t>(j.geometry.overlap));
  t.setJobSeed(j.manifest.seed);
  t.setBlend(j.manifest.blend);
  auto list = t.initSegments(group.end - group.first);
  for (uint32_t s = group.first; s < group.end; ++s) {
    auto task = list[s - group.first];
    FillRenderTask(j, s, attempt, o, task);
    if (resume_step > 0) {
      task.setResumeStep(resume_step);
      SetTensor(task.initResumeLatents(), resume_latents[s]);
    }
  }
  return Serialize(b);
}

}  // namespace segue
