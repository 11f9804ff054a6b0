// The latent timeline: how a model's latent frames map to the video's frames, and how a manifest
// (which speaks video frames) becomes a plan in latent frames.
//
// A model with temporal compression r keeps the first frame alone, as causal video VAEs do:
// latent frame 0 is video frame 0, latent frame j >= 1 is video frames [1 + r (j - 1), 1 + r j).
// K latent frames decoded as one clip give 1 + r (K - 1) video frames. With r = 1 latent and
// video frames are the same.
//
// Everything that renders indexes latent frames (segments, noise, guides, blending, the
// co-denoising exchange, checkpoints, chunks); video frames appear only where prompts are looked
// up, where frame times are given to a model, and where chunks are decoded and the output
// trimmed. Pure functions; the coordinator (to plan), the worker (to condition) and the CLI (to
// show a plan) call them, so they agree by construction.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/manifest/manifest.h"
#include "common/model/metadata.h"
#include "common/plan/plan.h"
#include "common/status/status.h"

namespace segue {

class LatentTimeline {
 public:
  // REQUIRES: r >= 1.
  explicit LatentTimeline(int r = 1) : r_(r) {}
  int r() const { return r_; }

  // The first video frame of latent frame j (j may be the count: then one past the last frame
  // of latent j - 1). REQUIRES: j >= 0.
  int64_t FirstFrame(int64_t j) const { return j == 0 ? 0 : 1 + int64_t{r_} * (j - 1); }
  // The latent frame holding video frame f. REQUIRES: f >= 0.
  int64_t LatentOf(int64_t f) const { return f == 0 ? 0 : 1 + (f - 1) / r_; }
  // The fewest latent frames whose clip covers `frames` video frames (padding the last one).
  int64_t LatentsFor(int64_t frames) const { return frames <= 0 ? 0 : LatentOf(frames - 1) + 1; }
  // Video frames of `latents` latent frames decoded as one clip: 1 + r (K - 1).
  int64_t FramesOf(int64_t latents) const { return latents <= 0 ? 0 : FirstFrame(latents); }
  // Whether a clip of `frames` video frames is whole latent frames: 1 + r k.
  bool IsClipLength(int64_t frames) const { return frames >= 1 && (frames - 1) % r_ == 0; }

 private:
  int r_;
};

// A job's plan in latent frames: what FitToModel makes of a manifest for one model.
struct LatentGeometry {
  LatentTimeline timeline;
  int64_t frames = 0;    // N: the output's frames, exactly the manifest's
  int64_t latents = 0;   // K: the latent frames rendered (LatentsFor(N): the last may be padded)
  int length = 0;        // latent frames per segment (before capping at K)
  int overlap = 0;       // latent frames neighbouring segments share
  std::string adjusted;  // with `segments.fit: nearest`: what was rounded ("" when nothing)

  // The video frames of latent frames [start, end), trimmed to the output: [first, last).
  int64_t VideoStart(int64_t start) const { return timeline.FirstFrame(start); }
  int64_t VideoEnd(int64_t end) const {
    const int64_t e = timeline.FirstFrame(end);
    return e < frames ? e : frames;
  }
};

// Checks the manifest against the model's rule and plans in latent frames: segments.length must
// be 1 + r k video frames (k >= 1 when r > 1), segments.overlap a multiple of r, width and height
// multiples of the model's spatial multiple. A value that does not fit is refused with the
// manifest's FILE:LINE:COLUMN, the field, and the nearest valid values; with `segments.fit:
// nearest` lengths and overlaps are rounded instead (sizes never are: the output's size is the
// manifest's). The video's length N is never refused: it is padded up to whole latent frames and
// trimmed when decoded.
Result<LatentGeometry> FitToModel(const Manifest& m, const model::ModelMetadata& meta);

// The segments of a job planned with `g` (PlanSegments over its latent frames).
std::vector<SegmentSpan> PlanLatentSegments(const LatentGeometry& g, uint64_t job_seed);

// The section (SectionAt) a segment belongs to for takes: the one its middle video frame is in.
int SectionOfSegment(const LatentGeometry& g, const std::vector<Keyframe>& timeline,
                     const SegmentSpan& s);
// Gives every segment whose section uses a take other than the first (Keyframe::take) that
// take's seed (TakeSeed). The coordinator plans with it; workers get the seeds in their tasks.
void SeedTakes(const LatentGeometry& g, const std::vector<Keyframe>& timeline,
               std::vector<SegmentSpan>& segments);

// The latent frames a chunk [start, end) is decoded with, and which of the decoded frames are
// the chunk's. Decoding latent frames [first, end_with_context) as one clip gives frames whose
// first `skip` belong to the context before; the next `keep` are the chunk's video frames
// (trimmed to the output's N); any after them belong to the context after.
struct DecodeWindow {
  int64_t first = 0;             // first latent frame sent to the decoder
  int64_t end_with_context = 0;  // one past the last
  int64_t skip = 0;              // decoded frames to drop first
  int64_t keep = 0;              // decoded frames that are the chunk's
  int64_t video_start = 0;       // the video frame the kept frames start at
};
// `before`/`after`: the model's decode_context_before/after. A causal decoder makes the first
// latent frame of every call one frame, so with r > 1 a chunk that does not start the video
// always gets at least one latent frame of context before.
// REQUIRES: 0 <= start < end <= g.latents.
DecodeWindow WindowFor(const LatentGeometry& g, int64_t start, int64_t end, int before, int after);

}  // namespace segue
