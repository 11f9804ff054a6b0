// The seam report's scoring.
#include <gtest/gtest.h>

#include "tools/cli/seams.h"

namespace segue {
namespace {

TEST(Seams, AHardCutScoresHighASmoothJoinAboutOne) {
  auto segs = PlanSegments(40, 12, 4, 1);  // overlaps [8,12) [16,20) [24,28) [28,...)
  std::vector<double> changes(40, 1.0);
  changes[0] = 0;
  changes[18] = 9.0;  // a jump inside the second overlap
  SeamReport r = ScoreSeams(segs, changes);
  EXPECT_DOUBLE_EQ(r.baseline, 1.0);
  ASSERT_EQ(r.joins.size(), segs.size() - 1);
  EXPECT_DOUBLE_EQ(r.joins[0].ratio, 1.0);
  EXPECT_DOUBLE_EQ(r.joins[1].ratio, 9.0);
  EXPECT_DOUBLE_EQ(r.worst, 9.0);
}

TEST(Seams, BaselineIgnoresOverlaps) {
  auto segs = PlanSegments(30, 10, 5, 1);
  std::vector<double> changes(30, 2.0);
  for (const auto& s : segs) {
    if (s.index == 0) continue;
    for (int64_t f = s.start; f < segs[static_cast<size_t>(s.index - 1)].end; ++f)
      changes[static_cast<size_t>(f)] = 50;
  }
  SeamReport r = ScoreSeams(segs, changes);
  EXPECT_DOUBLE_EQ(r.baseline, 2.0);
  EXPECT_DOUBLE_EQ(r.worst, 25.0);
}

TEST(Seams, LocalScoreDiscountsATransitionButNotACutInsideIt) {
  auto segs = PlanSegments(60, 12, 4, 1);  // segments start every 8 frames
  std::vector<double> changes(60, 1.0);
  changes[0] = 0;
  for (int64_t f = 24; f < 44; ++f) changes[static_cast<size_t>(f)] = 3.0;  // a transition
  SeamReport r = ScoreSeams(segs, changes);
  EXPECT_DOUBLE_EQ(r.baseline, 1.0);
  // The join [32, 36) lies inside the transition, as do both segments it joins.
  ASSERT_EQ(r.joins[3].start, 32);
  EXPECT_DOUBLE_EQ(r.joins[3].ratio, 3.0);
  EXPECT_DOUBLE_EQ(r.joins[3].local_baseline, 3.0);
  EXPECT_DOUBLE_EQ(r.joins[3].local_ratio, 1.0);
  changes[33] = 30.0;  // a hard cut in that join
  r = ScoreSeams(segs, changes);
  EXPECT_DOUBLE_EQ(r.joins[3].local_ratio, 10.0);
  EXPECT_DOUBLE_EQ(r.worst_local, 10.0);
}

TEST(Seams, LocalScoreTakesTheBusierSide) {
  auto segs = PlanSegments(60, 12, 4, 1);
  std::vector<double> changes(60, 1.0);
  changes[0] = 0;
  for (int64_t f = 32; f < 60; ++f) changes[static_cast<size_t>(f)] = 2.0;  // starts at a join
  SeamReport r = ScoreSeams(segs, changes);
  EXPECT_DOUBLE_EQ(r.joins[3].ratio, 2.0);
  EXPECT_DOUBLE_EQ(r.joins[3].local_ratio, 1.0);
  // A crossfade: busier inside the overlap than on either side.
  for (int64_t f = 16; f <= 20; ++f) changes[static_cast<size_t>(f)] = 2.5;
  r = ScoreSeams(segs, changes);
  EXPECT_DOUBLE_EQ(r.joins[1].local_ratio, 2.5);
}

}  // namespace
}  // namespace segue
