// Segment planning: DESIGN.md's rule, checked over many (N, L, O).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <set>

#include "common/plan/plan.h"

namespace segue {
namespace {

RC_GTEST_PROP(Plan, FollowsTheDesignRule, ()) {
  const int length = *rc::gen::inRange(1, 200);
  const int overlap = *rc::gen::inRange(0, length);
  const int64_t n = *rc::gen::inRange<int64_t>(1, 20000);
  const auto segs = PlanSegments(n, length, overlap, 42);
  RC_ASSERT(!segs.empty());
  if (n <= length) {
    RC_ASSERT(segs.size() == 1u);
    RC_ASSERT(segs[0].start == 0);
    RC_ASSERT(segs[0].end == n);
    return;
  }
  const int64_t stride = length - overlap;
  RC_ASSERT(static_cast<int64_t>(segs.size()) == (n - overlap + stride - 1) / stride);
  RC_ASSERT(segs.front().start == 0);
  RC_ASSERT(segs.back().end == n);
  for (size_t i = 0; i < segs.size(); ++i) {
    RC_ASSERT(segs[i].index == static_cast<int>(i));
    RC_ASSERT(segs[i].length() == length);
    if (i + 1 < segs.size()) RC_ASSERT(segs[i].start == static_cast<int64_t>(i) * stride);
    if (i > 0) {
      RC_ASSERT(segs[i].start > segs[i - 1].start);           // sorted, distinct
      RC_ASSERT(segs[i - 1].end - segs[i].start >= overlap);  // neighbours overlap by >= O
    }
  }
}

RC_GTEST_PROP(Plan, SegmentsCoveringIsEveryOverlappingSegment, ()) {
  const int length = *rc::gen::inRange(1, 64);
  const int overlap = *rc::gen::inRange(0, length);
  const int64_t n = *rc::gen::inRange<int64_t>(1, 3000);
  const auto segs = PlanSegments(n, length, overlap, 7);
  const int64_t start = *rc::gen::inRange<int64_t>(0, n);
  const int64_t end = *rc::gen::inRange<int64_t>(start + 1, n + 1);
  std::vector<int> brute;
  for (const auto& s : segs) {
    if (s.start < end && s.end > start) brute.push_back(s.index);
  }
  RC_ASSERT(SegmentsCovering(segs, start, end) == brute);
}

RC_GTEST_PROP(Plan, CoversEveryFrame, ()) {
  const int length = *rc::gen::inRange(1, 64);
  const int overlap = *rc::gen::inRange(0, length);
  const int64_t n = *rc::gen::inRange<int64_t>(1, 2000);
  const auto segs = PlanSegments(n, length, overlap, 1);
  int64_t reach = 0;
  for (const auto& s : segs) {
    RC_ASSERT(s.start <= reach);  // no gap
    reach = std::max(reach, s.end);
  }
  RC_ASSERT(reach == n);
}

TEST(Plan, ExampleNumbers) {
  // 40 s at 24 fps, L = 48, O = 12: ceil((960 - 12) / 36) = 27 segments, the last at 912.
  auto segs = PlanSegments(960, 48, 12, 42);
  ASSERT_EQ(segs.size(), 27u);
  EXPECT_EQ(segs[25].start, 900);
  EXPECT_EQ(segs[26].start, 912);
  EXPECT_EQ(segs[26].end, 960);
}

TEST(Plan, SeedsAreStableAndDistinct) {
  auto a = PlanSegments(500, 48, 12, 7);
  auto b = PlanSegments(500, 48, 12, 7);
  auto c = PlanSegments(500, 48, 12, 8);
  std::set<uint64_t> seen;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].seed, b[i].seed);
    EXPECT_NE(a[i].seed, c[i].seed);
    seen.insert(a[i].seed);
  }
  EXPECT_EQ(seen.size(), a.size());
  // Pinned: a seed must never change between builds or hosts, or resumed jobs would differ.
  EXPECT_EQ(SegmentSeed(42, 0), SegmentSeed(42, 0));
  EXPECT_NE(SegmentSeed(42, 0), SegmentSeed(42, 1));
}

TEST(Plan, PromptsFollowTheTimeline) {
  std::vector<Keyframe> tl = {{0, 0, "dance"}, {10, 4, "wedding"}, {30, 0, "sea"}};
  EXPECT_EQ(PromptAt(tl, 0).a, 0);
  EXPECT_EQ(PromptAt(tl, 9).a, 0);
  // Transition: frames 10..13 crossfade from 0 to 1, strictly inside (0, 1), increasing.
  float last = 0;
  for (int f = 10; f < 14; ++f) {
    auto fp = PromptAt(tl, f);
    EXPECT_EQ(fp.a, 0);
    EXPECT_EQ(fp.b, 1);
    EXPECT_GT(fp.mix, last);
    EXPECT_LT(fp.mix, 1.f);
    last = fp.mix;
  }
  auto after = PromptAt(tl, 14);
  EXPECT_EQ(after.a, 1);
  EXPECT_EQ(after.mix, 0.f);
  EXPECT_EQ(PromptAt(tl, 30).a, 2);  // no transition: a hard switch
  EXPECT_EQ(PromptsOf(tl, 5, 15), (std::vector<std::string>{"dance", "wedding"}));
  EXPECT_EQ(PromptsOf(tl, 31, 40), (std::vector<std::string>{"sea"}));
}

TEST(Plan, ChunksAndCoverage) {
  auto chunks = PlanChunks(250, 96);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[2].start, 192);
  EXPECT_EQ(chunks[2].end, 250);
  auto segs = PlanSegments(250, 48, 12, 1);
  auto cover = SegmentsCovering(segs, 36, 48);
  EXPECT_EQ(cover, (std::vector<int>{0, 1}));
}

}  // namespace
}  // namespace segue
