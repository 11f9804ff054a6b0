// Segment planning: how a video of N frames is cut into overlapping model calls, which seed each
// segment gets, and which prompt conditions each frame. Pure functions; both the coordinator (to
// plan) and the worker (to condition) call them, so they agree by construction.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/manifest/manifest.h"

namespace segue {

struct SegmentSpan {
  int index = 0;
  int64_t start = 0;  // first frame
  int64_t end = 0;    // one past the last frame
  uint64_t seed = 0;
  int64_t length() const { return end - start; }
};

// DESIGN.md's rule. N frames, length L, overlap O, stride S = L - O:
//   N <= L: one segment [0, N).
//   N > L: count = ceil((N - O) / S); segment i starts at i*S, the last at N - L.
// INVARIANTS (tests/plan_test.cc): every segment has length min(N, L); segments are sorted,
// cover [0, N), neighbours overlap by >= O frames, the last ends exactly at N.
// REQUIRES: n >= 1, 0 <= overlap < length.
std::vector<SegmentSpan> PlanSegments(int64_t n, int length, int overlap, uint64_t job_seed);
// How many segments PlanSegments(n, length, overlap, ...) plans, without planning them.
int64_t CountSegments(int64_t n, int length, int overlap);

// A stable seed for (job seed, segment index): xxHash64, identical on every host and build.
uint64_t SegmentSeed(uint64_t job_seed, int segment_index);

// Take `take`'s seed for a segment whose own seed (take 1's) is `segment_seed`: the seed itself
// for take 1, a stable hash of (seed, take) otherwise, so every take of every segment differs.
uint64_t TakeSeed(uint64_t segment_seed, int take);

// The section that frame `frame` is in: the index of the last keyframe at or before it (0 for
// frames before the first). A section is a keyframe's frames, up to the next keyframe.
int SectionAt(const std::vector<Keyframe>& timeline, int64_t frame);

// The conditioning of one frame: prompt `a` crossfading into prompt `b` by `mix` in [0, 1]
// (a == b and mix == 0 outside transitions). Indices point into the timeline.
struct FramePrompt {
  int a = 0;
  int b = 0;
  float mix = 0.f;
};
FramePrompt PromptAt(const std::vector<Keyframe>& timeline, int64_t frame);

// The distinct prompts of frames [start, end), in order of first use.
std::vector<std::string> PromptsOf(const std::vector<Keyframe>& timeline, int64_t start,
                                   int64_t end);

// Output chunks: runs of frames encoded as one piece. Chunk j covers
// [j * chunk_frames, min(N, (j+1) * chunk_frames)).
struct ChunkSpan {
  int index = 0;
  int64_t start = 0;
  int64_t end = 0;
};
std::vector<ChunkSpan> PlanChunks(int64_t n, int chunk_frames);

// Indices of the segments that contain at least one frame of [start, end), in order: a run of
// consecutive indices. REQUIRES: segments as PlanSegments returns them (index i at position i,
// starts and ends non-decreasing). O(log n + the answer).
std::vector<int> SegmentsCovering(const std::vector<SegmentSpan>& segments, int64_t start,
                                  int64_t end);

}  // namespace segue
