// The seam report's scoring.
#include <gtest/gtest.h>

#include "tools/seams.h"

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

}  // namespace
}  // namespace segue
