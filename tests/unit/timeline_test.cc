// The latent timeline (common/plan/timeline.h): video frames and latent frames for temporal
// compression r in {1, 4, 6, 8}, the fit of a manifest to a model, and chunk decode windows,
// checked as properties over many videos and plans.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <regex>

#include "common/plan/timeline.h"

namespace segue {
namespace {

model::ModelMetadata ModelWith(int r, int before = 0, int after = 0, int spatial = 8,
                               int patch = 1) {
  model::ModelMetadata m;
  m.name = "m" + std::to_string(r);
  m.temporal_compression = r;
  m.spatial_compression = spatial;
  m.patch_size = patch;
  m.native_frames = {1 + r * 12};
  m.decode_context_before = before;
  m.decode_context_after = after;
  return m;
}

// A manifest as ParseManifest leaves it, with length and overlap written at lines 3 and 4.
Manifest ManifestWith(int64_t frames, int length, int overlap, int width = 64, int height = 32) {
  Manifest m;
  m.source_name = "job.yaml";
  m.frames = frames;
  m.width = width, m.height = height;
  m.segment_length = length;
  m.segment_overlap = overlap;
  m.locations["segments.length"] = {3, 13};
  m.locations["segments.overlap"] = {4, 14};
  m.locations["video.width"] = {2, 10};
  return m;
}

rc::Gen<int> Compression() { return rc::gen::element(1, 4, 6, 8); }

RC_GTEST_PROP(LatentTimeline, FramesAndLatentsAgree, ()) {
  const int r = *Compression();
  const LatentTimeline t(r);
  const int64_t f = *rc::gen::inRange<int64_t>(0, 100000);
  const int64_t j = t.LatentOf(f);
  RC_ASSERT(t.FirstFrame(j) <= f);
  RC_ASSERT(f < t.FirstFrame(j + 1));
  // Latent frame 0 is one frame, every other r.
  RC_ASSERT(t.FirstFrame(1) - t.FirstFrame(0) == 1);
  RC_ASSERT(t.FirstFrame(j + 2) - t.FirstFrame(j + 1) == r);
  // LatentsFor(N) is the fewest latent frames whose clip covers N frames.
  const int64_t n = f + 1;
  const int64_t k = t.LatentsFor(n);
  RC_ASSERT(t.FramesOf(k) >= n);
  RC_ASSERT(t.FramesOf(k - 1) < n);
  RC_ASSERT(t.FramesOf(k) - n < r);  // at most r - 1 frames of padding
  RC_ASSERT(t.IsClipLength(t.FramesOf(k)));
}

TEST(LatentTimeline, TheFamiliesNumbers) {
  EXPECT_EQ(LatentTimeline(4).LatentsFor(81), 21);   // Wan 2.1
  EXPECT_EQ(LatentTimeline(8).LatentsFor(121), 16);  // LTX-Video
  EXPECT_EQ(LatentTimeline(4).LatentsFor(129), 33);  // HunyuanVideo
  EXPECT_EQ(LatentTimeline(4).LatentsFor(49), 13);   // CogVideoX
  EXPECT_EQ(LatentTimeline(6).LatentsFor(163), 28);  // Mochi
  EXPECT_EQ(LatentTimeline(4).FramesOf(21), 81);
  EXPECT_EQ(LatentTimeline(1).LatentsFor(48), 48);
}

// A valid length and overlap give a plan whose segments cover the latent frames, whose video
// ranges cover exactly the manifest's frames, and whose neighbours share the overlap.
RC_GTEST_PROP(LatentPlan, ValidLengthsPlanAndCoverTheVideo, ()) {
  const int r = *Compression();
  const int k = *rc::gen::inRange(r == 1 ? 0 : 1, 40);  // length 1 + r k
  const int length = 1 + r * k;
  const int latent_length = k + 1;
  const int latent_overlap = *rc::gen::inRange(0, latent_length);
  const int overlap = latent_overlap * r;
  if (overlap >= length) return;  // r = 1 and overlap == length: refused at parse
  const int64_t n = *rc::gen::inRange<int64_t>(1, 5000);
  auto g = FitToModel(ManifestWith(n, length, overlap), ModelWith(r));
  RC_ASSERT(g.ok());
  RC_ASSERT(g->length == latent_length);
  RC_ASSERT(g->overlap == latent_overlap);
  RC_ASSERT(g->latents == LatentTimeline(r).LatentsFor(n));
  RC_ASSERT(g->adjusted.empty());
  const auto segs = PlanLatentSegments(*g, 7);
  RC_ASSERT(segs.front().start == 0);
  RC_ASSERT(segs.back().end == g->latents);
  RC_ASSERT(g->VideoStart(segs.front().start) == 0);
  RC_ASSERT(g->VideoEnd(segs.back().end) == n);
  for (size_t i = 0; i < segs.size(); ++i) {
    RC_ASSERT(segs[i].length() == std::min<int64_t>(g->latents, latent_length));
    if (i > 0) {
      RC_ASSERT(segs[i - 1].end - segs[i].start >= latent_overlap);
      // The video frames of neighbours overlap by at least the manifest's overlap.
      RC_ASSERT(g->VideoEnd(segs[i - 1].end) - g->VideoStart(segs[i].start) >=
                std::min<int64_t>(overlap, n));
    }
  }
}

// A length that is not 1 + r k, or an overlap that is not a multiple of r, is refused with the
// manifest's location and nearest values that are themselves valid; with `fit: nearest` it is
// rounded to one of them.
RC_GTEST_PROP(LatentPlan, InvalidLengthsAreRefusedWithValidNearestValues, ()) {
  const int r = *rc::gen::element(4, 6, 8);
  const int length = *rc::gen::inRange(2, 400);
  const int overlap = *rc::gen::inRange(0, 3) * r;
  if ((length - 1) % r == 0) return;
  Manifest m = ManifestWith(1000, length, overlap);
  auto g = FitToModel(m, ModelWith(r));
  RC_ASSERT(!g.ok());
  RC_ASSERT(g.message().rfind("job.yaml:3:13: segments.length: ", 0) == 0);
  std::smatch match;
  const std::string message = g.message();
  RC_ASSERT(std::regex_search(message, match, std::regex("nearest: (\\d+)(?: or (\\d+))?")));
  for (size_t i = 1; i < match.size(); ++i) {
    if (!match[i].matched) continue;
    const int v = std::stoi(match[i]);
    RC_ASSERT((v - 1) % r == 0);
    RC_ASSERT(v >= 1 + r);
    RC_ASSERT(std::abs(v - length) < r);
  }
  m.fit_nearest = true;
  auto rounded = FitToModel(m, ModelWith(r));
  if (!rounded.ok()) {  // the rounded length may leave no room for the overlap
    RC_ASSERT(rounded.message().find("segments.overlap") != std::string::npos);
    return;
  }
  const int64_t fitted = LatentTimeline(r).FramesOf(rounded->length);
  RC_ASSERT(std::abs(fitted - length) < r);
  RC_ASSERT(rounded->adjusted.find("segments.length " + std::to_string(length) + " -> " +
                                   std::to_string(fitted)) == 0);
}

TEST(LatentPlan, MessagesNameTheFieldTheModelAndTheNearestValues) {
  auto g = FitToModel(ManifestWith(200, 80, 16), ModelWith(4));
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.message(),
            "job.yaml:3:13: segments.length: 80 frames is not 1 + 4 k frames (model 'm4' "
            "compresses time 4x and keeps the first frame alone); nearest: 77 or 81 (or write "
            "segments.fit: nearest)");
  g = FitToModel(ManifestWith(200, 81, 10), ModelWith(4));
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.message().find("job.yaml:4:14: segments.overlap: 10 frames"), std::string::npos)
      << g.message();
  EXPECT_NE(g.message().find("nearest: 8 or 12"), std::string::npos) << g.message();
  // Sizes: a multiple of compression x patch (Wan: 8 x 2 = 16).
  g = FitToModel(ManifestWith(200, 81, 12, 840, 480), ModelWith(4, 0, 0, 8, 2));
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.message(),
            "job.yaml:2:10: video.width: 840 pixels is not a multiple of 16 (model 'm4': 8x "
            "spatial compression and patches of 2); nearest: 832 or 848");
  // Without a length, the model's native clip; the default overlap is whole latent frames.
  Manifest m = ManifestWith(200, 48, 12);
  m.locations.erase("segments.length");
  m.locations.erase("segments.overlap");
  g = FitToModel(m, ModelWith(8));
  ASSERT_TRUE(g.ok()) << g.message();
  EXPECT_EQ(g->length, 13);  // 97 frames
  EXPECT_EQ(g->overlap, 2);  // 16 frames, the multiple of 8 nearest 12
}

// Chunk windows tile the video: the kept frames of consecutive chunks are consecutive, start at
// 0 and end at N, and each window decodes to enough frames for what it skips and keeps.
RC_GTEST_PROP(LatentPlan, ChunkWindowsTileTheVideo, ()) {
  const int r = *Compression();
  const int before = *rc::gen::inRange(0, 3), after = *rc::gen::inRange(0, 3);
  const int64_t n = *rc::gen::inRange<int64_t>(1, 3000);
  auto g = FitToModel(ManifestWith(n, 1 + r * 4, r), ModelWith(r, before, after));
  RC_ASSERT(g.ok());
  const int chunk = *rc::gen::inRange(1, 30);
  int64_t next = 0;
  for (const ChunkSpan& c : PlanChunks(g->latents, chunk)) {
    const DecodeWindow w = WindowFor(*g, c.start, c.end, before, after);
    RC_ASSERT(w.video_start == next);
    RC_ASSERT(w.keep >= 1);
    RC_ASSERT(w.first <= c.start);
    RC_ASSERT(w.end_with_context >= c.end);
    RC_ASSERT(w.end_with_context <= g->latents);
    if (r > 1 && c.start > 0) RC_ASSERT(w.first < c.start);  // a causal decoder's context
    const int64_t decoded = g->timeline.FramesOf(w.end_with_context - w.first);
    RC_ASSERT(w.skip + w.keep <= decoded);
    next += w.keep;
  }
  RC_ASSERT(next == n);
}

// Takes (docs/MANIFEST.md, "Takes"): a section's take re-seeds exactly the segments whose middle
// frame is in the section, each to a seed no other take of it has; take 1 is the plan's own.
RC_GTEST_PROP(LatentPlan, TakesReseedExactlyTheSegmentsOfTheirSection, ()) {
  const int r = *Compression();
  const int64_t frames = *rc::gen::inRange<int64_t>(2, 3000);
  const int k = *rc::gen::inRange(1, 40);
  const int length = 1 + r * k;
  const int overlap = r * *rc::gen::inRange(0, k);
  Manifest m = ManifestWith(frames, length, overlap);
  const int sections = *rc::gen::inRange(1, 6);
  for (int s = 0; s < sections; ++s)
    m.timeline.push_back({frames * s / sections + (s > 0 ? 1 : 0), 0, "p"});
  auto g = FitToModel(m, ModelWith(r));
  RC_ASSERT(g.ok());
  const std::vector<SegmentSpan> plain = PlanLatentSegments(*g, 99);
  std::vector<Keyframe> timeline = m.timeline;
  const int chosen = *rc::gen::inRange(0, sections);
  const int take = *rc::gen::inRange(2, 17);
  timeline[static_cast<size_t>(chosen)].take = take;
  std::vector<SegmentSpan> taken = plain;
  SeedTakes(*g, timeline, taken);
  std::vector<SegmentSpan> other = plain;
  timeline[static_cast<size_t>(chosen)].take = take == 2 ? 3 : 2;
  SeedTakes(*g, timeline, other);
  for (size_t i = 0; i < plain.size(); ++i) {
    const int section = SectionOfSegment(*g, m.timeline, plain[i]);
    // The section holds the segment's middle video frame.
    const int64_t first = g->VideoStart(plain[i].start), end = g->VideoEnd(plain[i].end);
    RC_ASSERT(section == SectionAt(m.timeline, (first + end - 1) / 2));
    if (section == chosen) {
      RC_ASSERT(taken[i].seed == TakeSeed(plain[i].seed, take));
      RC_ASSERT(taken[i].seed != plain[i].seed);
      RC_ASSERT(taken[i].seed != other[i].seed);
    } else {
      RC_ASSERT(taken[i].seed == plain[i].seed);
    }
  }
  RC_ASSERT(TakeSeed(plain[0].seed, 1) == plain[0].seed);
}

}  // namespace
}  // namespace segue
