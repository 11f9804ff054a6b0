#include "common/plan/plan.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace segue {

std::vector<SegmentSpan> PlanSegments(int64_t n, int length, int overlap, uint64_t job_seed) {
  std::vector<SegmentSpan> out;
  if (n <= length) {
    out.push_back({0, 0, n, SegmentSeed(job_seed, 0)});
    return out;
  }
  const int64_t stride = length - overlap;
  const int64_t count = CountSegments(n, length, overlap);
  out.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    int64_t start = std::min<int64_t>(i * stride, n - length);
    int idx = static_cast<int>(i);
    out.push_back({idx, start, start + length, SegmentSeed(job_seed, idx)});
  }
  return out;
}

int64_t CountSegments(int64_t n, int length, int overlap) {
  if (n <= length) return 1;
  const int64_t stride = length - overlap;
  return (n - overlap + stride - 1) / stride;
}

uint64_t SegmentSeed(uint64_t job_seed, int segment_index) {
  unsigned char buf[12];
  for (int i = 0; i < 8; ++i) buf[i] = static_cast<unsigned char>(job_seed >> (8 * i));
  uint32_t idx = static_cast<uint32_t>(segment_index);
  for (int i = 0; i < 4; ++i) buf[8 + i] = static_cast<unsigned char>(idx >> (8 * i));
  return XXH64(buf, sizeof buf, /*seed=*/0x5e9e);
}

uint64_t TakeSeed(uint64_t segment_seed, int take) {
  if (take <= 1) return segment_seed;
  // Salted so that take t of a segment is not segment t's seed of another job.
  return SegmentSeed(segment_seed ^ (0x7a6b65ull << 40), take);
}

int SectionAt(const std::vector<Keyframe>& timeline, int64_t frame) {
  auto it = std::upper_bound(timeline.begin(), timeline.end(), frame,
                             [](int64_t f, const Keyframe& k) { return f < k.frame; });
  return it == timeline.begin() ? 0 : static_cast<int>(it - timeline.begin()) - 1;
}

FramePrompt PromptAt(const std::vector<Keyframe>& timeline, int64_t frame) {
  FramePrompt fp;
  if (timeline.empty()) return fp;
  // Last keyframe at or before `frame` (the first one rules the frames before it).
  auto it = std::upper_bound(timeline.begin(), timeline.end(), frame,
                             [](int64_t f, const Keyframe& k) { return f < k.frame; });
  int cur = it == timeline.begin() ? 0 : static_cast<int>(it - timeline.begin()) - 1;
  fp.a = fp.b = cur;
  const Keyframe& k = timeline[static_cast<size_t>(cur)];
  if (cur > 0 && k.transition_frames > 0 && frame >= k.frame &&
      frame < k.frame + k.transition_frames) {
    fp.a = cur - 1;
    fp.b = cur;
    // (frame - start + 1) / (T + 1): strictly between 0 and 1 inside the transition, so the
    // first frame already moves and the frame after the transition is fully the new prompt.
    fp.mix = static_cast<float>(frame - k.frame + 1) / static_cast<float>(k.transition_frames + 1);
  }
  return fp;
}

std::vector<std::string> PromptsOf(const std::vector<Keyframe>& timeline, int64_t start,
                                   int64_t end) {
  std::vector<std::string> out;
  std::vector<int> seen;
  auto add = [&](int i) {
    if (std::find(seen.begin(), seen.end(), i) == seen.end()) {
      seen.push_back(i);
      out.push_back(timeline[static_cast<size_t>(i)].prompt);
    }
  };
  for (int64_t f = start; f < end; ++f) {
    FramePrompt fp = PromptAt(timeline, f);
    add(fp.a);
    if (fp.mix > 0) add(fp.b);
  }
  return out;
}

std::vector<ChunkSpan> PlanChunks(int64_t n, int chunk_frames) {
  std::vector<ChunkSpan> out;
  for (int64_t s = 0, j = 0; s < n; s += chunk_frames, ++j) {
    out.push_back({static_cast<int>(j), s, std::min<int64_t>(n, s + chunk_frames)});
  }
  return out;
}

std::vector<int> SegmentsCovering(const std::vector<SegmentSpan>& segments, int64_t start,
                                  int64_t end) {
  std::vector<int> out;
  auto it = std::partition_point(segments.begin(), segments.end(),
                                 [&](const SegmentSpan& s) { return s.end <= start; });
  for (; it != segments.end() && it->start < end; ++it) out.push_back(it->index);
  return out;
}

}  // namespace segue
