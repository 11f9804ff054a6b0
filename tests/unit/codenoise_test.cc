// The coordinator's half of co-denoising: per-step consensus over groups.
#include <gtest/gtest.h>

#include "coordinator/codenoise.h"

namespace segue {
namespace {

TEST(Codenoise, SplitIntoGroups) {
  auto g = SplitIntoGroups(7, 3);
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[0], (std::pair<uint32_t, uint32_t>{0, 3}));
  EXPECT_EQ(g[1], (std::pair<uint32_t, uint32_t>{3, 5}));
  EXPECT_EQ(g[2], (std::pair<uint32_t, uint32_t>{5, 7}));
  EXPECT_EQ(SplitIntoGroups(2, 5).size(), 2u);  // never an empty group
  EXPECT_EQ(SplitIntoGroups(4, 0).size(), 1u);
}

TEST(Codenoise, MergeIsTheStitchBlend) {
  auto segs = PlanSegments(20, 8, 4, 1);  // [0,8) [4,12) [8,16) [12,20)
  StepExchange x(segs, BlendMode::kLinear, 2);
  // Group 0 holds segments 0-1, group 1 segments 2-3; frames 8..11 are shared across groups.
  std::vector<FrameValues> g0, g1;
  for (int64_t f = 8; f < 12; ++f) g0.push_back({1, f, {10.f, 11.f}});
  for (int64_t f = 8; f < 12; ++f) g1.push_back({2, f, {20.f, 21.f}});
  ASSERT_TRUE(x.Add(0, g0).ok());
  EXPECT_FALSE(x.Complete());
  EXPECT_FALSE(x.Add(0, g0).ok());  // twice in one step
  ASSERT_TRUE(x.Add(1, g1).ok());
  ASSERT_TRUE(x.Complete());
  auto merged = x.Merge();
  ASSERT_TRUE(merged.ok()) << merged.message();
  ASSERT_EQ((*merged)[0].size(), 4u);
  ASSERT_EQ((*merged)[1].size(), 4u);
  // Frame 8: first frame of the 4-frame overlap: weight 0.8 on segment 1.
  EXPECT_EQ((*merged)[0][0].frame, 8);
  EXPECT_FLOAT_EQ((*merged)[0][0].data->at(0), 0.8f * 10 + 0.2f * 20);
  EXPECT_EQ(*(*merged)[0][0].data, *(*merged)[1][0].data);  // both groups get the same consensus
  EXPECT_EQ(x.step(), 1u);
}

TEST(Codenoise, RejectsIncompleteOrInconsistentValues) {
  auto segs = PlanSegments(20, 8, 4, 1);
  StepExchange x(segs, BlendMode::kLinear, 2);
  EXPECT_FALSE(x.Add(0, {{0, 9, {1.f}}}).ok());  // segment 0 does not cover frame 9
  EXPECT_FALSE(x.Add(5, {}).ok());
  ASSERT_TRUE(x.Add(0, {{1, 8, {1.f}}}).ok());
  ASSERT_TRUE(x.Add(1, {}).ok());  // segment 2's value for frame 8 is missing
  EXPECT_FALSE(x.Merge().ok());
}

}  // namespace
}  // namespace segue
