#include "common/plan/timeline.h"

#include <algorithm>
#include <cmath>

namespace segue {
namespace {

// The values of the form lo + q n nearest to v on each side, as "A or B" (only B when A is below
// `least`).
std::string Nearest(int64_t below, int64_t above, int64_t least) {
  if (below < least) return std::to_string(above);
  return std::to_string(below) + " or " + std::to_string(above);
}

}  // namespace

Result<LatentGeometry> FitToModel(const Manifest& m, const model::ModelMetadata& meta) {
  using R = Result<LatentGeometry>;
  const int r = meta.temporal_compression;
  const LatentTimeline t(r);
  const std::string model = "model '" + meta.name + "'";

  const int q = meta.spatial_multiple();
  for (const char* field : {"video.width", "video.height"}) {
    const int v = std::string(field) == "video.width" ? m.width : m.height;
    if (v % q == 0) continue;
    std::string why = std::to_string(meta.spatial_compression) + "x spatial compression";
    if (meta.patch_size > 1) why += " and patches of " + std::to_string(meta.patch_size);
    return R::Error(m.Where(field) + ": " + std::to_string(v) + " pixels is not a multiple of " +
                    std::to_string(q) + " (" + model + ": " + why +
                    "); nearest: " + Nearest(v / q * q, v / q * q + q, q));
  }

  LatentGeometry g;
  g.timeline = t;
  g.frames = m.frames;
  g.latents = t.LatentsFor(m.frames);
  const std::string rule = "1 + " + std::to_string(r) + " k frames (" + model +
                           " compresses time " + std::to_string(r) +
                           "x and keeps the first frame alone)";

  // Length: as written, or the model's native clip.
  const bool length_written = m.locations.count("segments.length") > 0;
  int64_t length = length_written ? m.segment_length : meta.native_frames.front();
  const int64_t shortest = r == 1 ? 1 : 1 + r;  // two latent frames: one to overlap, one new
  if (!t.IsClipLength(length) || length < shortest) {
    const int64_t below = 1 + (length - 1) / r * r, above = below + r;
    const int64_t nearest = below >= shortest && length - below < above - length ? below : above;
    if (!m.fit_nearest) {
      return R::Error(m.Where("segments.length") + ": " + std::to_string(length) +
                      " frames is not " + rule + "; nearest: " + Nearest(below, above, shortest) +
                      " (or write segments.fit: nearest)");
    }
    g.adjusted += "segments.length " + std::to_string(length) + " -> " + std::to_string(nearest);
    length = nearest;
  }

  // Overlap: as written, or 12 frames rounded to whole latent frames (at least one).
  const bool overlap_written = m.locations.count("segments.overlap") > 0;
  int64_t overlap = m.segment_overlap;
  if (!overlap_written && r > 1) {
    overlap = std::max<int64_t>(1, std::llround(static_cast<double>(overlap) / r)) * r;
  } else if (overlap % r != 0) {
    const int64_t below = overlap / r * r, above = below + r;
    const int64_t nearest = overlap - below < above - overlap ? below : above;
    if (!m.fit_nearest) {
      return R::Error(m.Where("segments.overlap") + ": " + std::to_string(overlap) +
                      " frames is not a whole number of latent frames (" + model + ": " +
                      std::to_string(r) + " frames each); nearest: " + Nearest(below, above, 0) +
                      " (or write segments.fit: nearest)");
    }
    if (!g.adjusted.empty()) g.adjusted += ", ";
    g.adjusted += "segments.overlap " + std::to_string(overlap) + " -> " + std::to_string(nearest);
    overlap = nearest;
  }
  g.length = static_cast<int>(t.LatentsFor(length));
  g.overlap = static_cast<int>(overlap / r);
  if (g.overlap >= g.length) {
    return R::Error(
        m.Where(overlap_written ? "segments.overlap" : "segments.length") + ": overlap (" +
        std::to_string(overlap) + (overlap_written ? "" : ", the default") +
        ") must be smaller than length (" + std::to_string(length) + ")" +
        (r > 1
             ? " in latent frames: " + std::to_string(g.overlap) + " >= " + std::to_string(g.length)
             : ""));
  }
  return g;
}

int SectionOfSegment(const LatentGeometry& g, const std::vector<Keyframe>& timeline,
                     const SegmentSpan& s) {
  const int64_t first = g.VideoStart(s.start), end = g.VideoEnd(s.end);
  return SectionAt(timeline, first + (std::max(end, first + 1) - 1 - first) / 2);
}

void SeedTakes(const LatentGeometry& g, const std::vector<Keyframe>& timeline,
               std::vector<SegmentSpan>& segments) {
  if (timeline.empty()) return;
  for (SegmentSpan& s : segments) {
    const int section = SectionOfSegment(g, timeline, s);
    s.seed = TakeSeed(s.seed, timeline[static_cast<size_t>(section)].take);
  }
}

std::vector<SegmentSpan> PlanLatentSegments(const LatentGeometry& g, uint64_t job_seed) {
  return PlanSegments(g.latents, g.length, g.overlap, job_seed);
}

DecodeWindow WindowFor(const LatentGeometry& g, int64_t start, int64_t end, int before, int after) {
  if (g.timeline.r() > 1 && start > 0) before = std::max(before, 1);
  DecodeWindow w;
  w.first = std::max<int64_t>(0, start - before);
  w.end_with_context = std::min<int64_t>(g.latents, end + after);
  w.skip = g.timeline.FramesOf(start - w.first);
  w.video_start = g.VideoStart(start);
  w.keep = g.VideoEnd(end) - w.video_start;
  return w;
}

}  // namespace segue
