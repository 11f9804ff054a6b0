// The CLI's progress pieces: the per-segment strip of `segue status`.
#include <gtest/gtest.h>

#include "tools/cli/progress.h"

namespace segue {
namespace {

TEST(SegmentStrip, OneCellPerSegmentWhenTheyFit) {
  EXPECT_EQ(ProgressDisplay::SegmentStrip("##>..x", 64), "##>..x");
  EXPECT_EQ(ProgressDisplay::SegmentStrip("", 64), "");
}

TEST(SegmentStrip, LongJobsFoldRunsOfSegmentsIntoCells) {
  // 12 segments into 4 cells of 3: all done, some done, one running, one failed.
  const std::string states =
      "###"
      "#.."
      ".>#"
      "x##";
  EXPECT_EQ(ProgressDisplay::SegmentStrip(states, 4), "#:>x");
  // Nothing started yet.
  EXPECT_EQ(ProgressDisplay::SegmentStrip(std::string(1000, '.'), 10), "..........");
  // Every cell covers at least one segment and the strip never exceeds its width.
  std::string odd(7201, '#');
  odd[7200] = '>';
  const std::string strip = ProgressDisplay::SegmentStrip(odd, 64);
  EXPECT_EQ(strip.size(), 64u);
  EXPECT_EQ(strip.back(), '>');
  EXPECT_EQ(strip.substr(0, 63), std::string(63, '#'));
}

}  // namespace
}  // namespace segue
