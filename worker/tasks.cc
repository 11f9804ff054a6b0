#include "worker/tasks.h"

#include <algorithm>

#include "common/plan/timeline.h"
#include "common/protocol/protocol.h"

namespace segue {

Result<model::SegmentRequest> ReadRenderTask(wire::RenderTask::Reader t,
                                             const MetadataOf& metadata) {
  using R = Result<model::SegmentRequest>;
  model::SegmentRequest r;
  r.model = t.getModel().cStr();
  r.sampler = t.getSampler().size() ? t.getSampler().cStr() : "euler";
  r.steps = static_cast<int>(t.getSteps());
  r.shift = t.getShift() > 0 ? t.getShift() : 1.0;
  r.shift_from_tokens = t.getShiftFromTokens();
  if (t.getSigmas().size() > 1000) return R::Error("task has more than 1000 sigmas");
  for (double s : t.getSigmas()) r.sigmas.push_back(s);  // checked by the runtime
  r.eta = t.getEta();
  r.guidance = t.getGuidance() > 0 ? t.getGuidance() : 1.0;
  r.negative_prompt = t.getNegativePrompt().cStr();
  r.width = static_cast<int>(t.getWidth());
  r.height = static_cast<int>(t.getHeight());
  if (t.getFpsNum() <= 0 || t.getFpsDen() <= 0) return R::Error("bad frame rate in task");
  r.fps = static_cast<double>(t.getFpsNum()) / static_cast<double>(t.getFpsDen());
  r.latent_start = t.getLatentStart();
  r.latent_count = t.getLatentCount();
  r.seed = t.getSeed();
  r.camera_motion = t.getCameraMotion().cStr();
  r.camera_speed = t.getCameraSpeed();
  std::vector<Keyframe> timeline;
  if (t.getTimeline().size() > kMaxKeyframes)
    return R::Error("task has more than " + std::to_string(kMaxKeyframes) + " keyframes");
  for (auto k : t.getTimeline()) {
    timeline.push_back(Keyframe{k.getFrame(), k.getTransitionFrames(), k.getPrompt().cStr()});
  }
  if (timeline.empty() || r.steps <= 0 || r.latent_count <= 0 || r.latent_start < 0 ||
      r.latent_start > kMaxLatentStart)
    return R::Error("task has no timeline, steps or latent frames");
  auto meta = metadata(r.model);
  if (!meta.ok()) return meta.status();
  // The latents' size, checked before anything is allocated (an absurd task fails, rather than
  // the worker dying of bad_alloc): the manifest's limits give at most 1024 latent frames of
  // 7680 x 4320 / compression^2 cells.
  const int sc = std::max(1, meta->spatial_compression);
  const double latent_bytes = 4.0 * meta->latent_channels * static_cast<double>(r.latent_count) *
                              std::max(1, r.width / sc) * std::max(1, r.height / sc);
  if (r.width < 1 || r.height < 1 || r.width > 16384 || r.height > 16384 ||
      r.latent_count > 65536 || latent_bytes > 16.0 * (1 << 30) || r.steps > 100000)
    return R::Error("task asks for " + std::to_string(r.latent_count) + " latent frames at " +
                    std::to_string(r.width) + "x" + std::to_string(r.height) + " in " +
                    std::to_string(r.steps) + " steps, above what a worker renders");
  const LatentTimeline latent_timeline(meta->temporal_compression);
  // Per-frame conditioning, with prompts indexed in order of first use.
  auto index_of = [&](int timeline_index) {
    const std::string& p = timeline[static_cast<size_t>(timeline_index)].prompt;
    for (size_t i = 0; i < r.prompts.size(); ++i) {
      if (r.prompts[i] == p) return static_cast<int>(i);
    }
    r.prompts.push_back(p);
    return static_cast<int>(r.prompts.size() - 1);
  };
  for (int64_t f = 0; f < r.latent_count; ++f) {
    FramePrompt fp = PromptAt(timeline, latent_timeline.FirstFrame(r.latent_start + f));
    r.frames.push_back({index_of(fp.a), index_of(fp.b), fp.mix});
  }
  if (t.getResumeStep() > 0) {
    auto x = GetTensor(t.getResumeLatents());
    if (!x.ok()) return R::Error("bad checkpoint latents: " + x.message());
    r.resume_step = static_cast<int>(t.getResumeStep());
    r.resume_latents = std::move(*x);
  }
  if (t.hasGuide()) {
    auto g = GetTensor(t.getGuide());
    if (!g.ok()) return R::Error("bad guide latents: " + g.message());
    r.guide = std::move(*g);
  }
  return r;
}

Result<CodenoiseGroup> ReadCodenoiseTask(wire::CodenoiseTask::Reader t,
                                         const MetadataOf& metadata) {
  using R = Result<CodenoiseGroup>;
  auto tasks = t.getSegments();
  if (tasks.size() == 0 || t.getLength() == 0 || t.getOverlap() >= t.getLength() ||
      t.getTotalLatents() <= 0 || t.getTotalLatents() > kMaxTotalLatents || t.getLength() > 65536 ||
      t.getTotalLatents() / (t.getLength() - t.getOverlap()) > kMaxPlannedSegments)
    return R::Error("malformed co-denoising task");
  CodenoiseGroup g;
  g.first = tasks[0].getSegment();
  g.spans = PlanSegments(t.getTotalLatents(), static_cast<int>(t.getLength()),
                         static_cast<int>(t.getOverlap()), t.getJobSeed());
  if (tasks.size() > g.spans.size())
    return R::Error("co-denoising task segments do not match the plan");
  for (uint32_t k = 0; k < tasks.size(); ++k) {
    if (tasks[k].getSegment() != g.first + k || g.first + k >= g.spans.size() ||
        tasks[k].getLatentStart() != g.spans[g.first + k].start)
      return R::Error("co-denoising task segments do not match the plan");
    auto r = ReadRenderTask(tasks[k], metadata);
    if (!r.ok()) return r.status();
    g.requests.push_back(std::move(*r));
  }
  auto mode = ParseBlendMode(t.getBlend().cStr());
  if (!mode.ok()) return mode.status();
  g.blend = *mode;
  return g;
}

Result<Tensor> ReadEncodeTask(wire::EncodeTask::Reader t) {
  using R = Result<Tensor>;
  auto latents = GetTensor(t.getLatents());
  if (!latents.ok()) return latents.status();
  if (latents->shape.size() != 4) return R::Error("latents must be [C, T, h, w]");
  const int64_t width = t.getWidth(), height = t.getHeight();
  const int64_t frames = t.getKeepFrames();
  if (frames < 1) return R::Error("encode task keeps no frames");
  // What the pictures would take, checked before anything is allocated.
  constexpr double kMaxPictureBytes = 16.0 * (1 << 30);
  const double picture_bytes =
      3.0 * static_cast<double>(width) * static_cast<double>(height) * static_cast<double>(frames);
  if (width < 1 || height < 1 || width > 16384 || height > 16384 ||
      picture_bytes > kMaxPictureBytes)
    return R::Error("encode task asks for " + std::to_string(frames) + " frames of " +
                    std::to_string(width) + "x" + std::to_string(height) +
                    ", above what a worker encodes in one chunk (16 GiB of pictures)");
  return latents;
}

}  // namespace segue
