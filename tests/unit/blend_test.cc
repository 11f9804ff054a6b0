// Overlap blending weights and the latent-space stitch.
#include <gtest/gtest.h>

#include "common/blend/blend.h"

namespace segue {
namespace {

TEST(Blend, WeightsFallAcrossTheOverlapAndAreSymmetric) {
  for (BlendMode mode : {BlendMode::kLinear, BlendMode::kCosine}) {
    for (int overlap : {1, 2, 7, 12, 48}) {
      float prev = 1.f;
      for (int i = 0; i < overlap; ++i) {
        float w = EarlierWeight(mode, i, overlap);
        EXPECT_GT(w, 0.f);
        EXPECT_LT(w, 1.f);
        EXPECT_LE(w, prev);
        EXPECT_NEAR(w + EarlierWeight(mode, overlap - 1 - i, overlap), 1.f, 1e-6);
        prev = w;
      }
    }
  }
  EXPECT_FLOAT_EQ(EarlierWeight(BlendMode::kLinear, 0, 3), 0.75f);
  EXPECT_FLOAT_EQ(EarlierWeight(BlendMode::kLinear, 1, 3), 0.5f);
  EXPECT_FLOAT_EQ(EarlierWeight(BlendMode::kCosine, 1, 3), 0.5f);
  EXPECT_LT(EarlierWeight(BlendMode::kCosine, 0, 12),
            EarlierWeight(BlendMode::kLinear, 0, 12) + 0.2f);
}

TEST(Blend, NoneIsAHardCutInTheMiddle) {
  for (int overlap : {4, 5, 12}) {
    int ones = 0;
    for (int i = 0; i < overlap; ++i) {
      float w = EarlierWeight(BlendMode::kNone, i, overlap);
      EXPECT_TRUE(w == 0.f || w == 1.f);
      ones += w == 1.f;
    }
    EXPECT_EQ(ones, overlap / 2);
  }
}

// Segment k's latents: every element equals 10 * (k + 1) + frame-within-segment / 100.
Tensor Fill(const SegmentSpan& s, int c, int h, int w) {
  Tensor t = Tensor::Zeros({c, s.length(), h, w});
  for (int ch = 0; ch < c; ++ch)
    for (int64_t f = 0; f < s.length(); ++f)
      for (int i = 0; i < h * w; ++i)
        t.data[static_cast<size_t>((ch * s.length() + f) * h * w + i)] = 10.f * (s.index + 1);
  return t;
}

TEST(Blend, RangeMixesNeighboursOnlyInTheOverlap) {
  auto segs = PlanSegments(20, 8, 4, 1);  // [0,8) [4,12) [8,16) [12,20)
  ASSERT_EQ(segs.size(), 4u);
  std::vector<Tensor> lat;
  for (const auto& s : segs) lat.push_back(Fill(s, 2, 2, 3));
  std::vector<const Tensor*> ptr;
  for (const auto& t : lat) ptr.push_back(&t);
  auto out = BlendRange(segs, ptr, BlendMode::kLinear, 0, 20);
  ASSERT_TRUE(out.ok()) << out.message();
  ASSERT_EQ(out->shape, (std::vector<int64_t>{2, 20, 2, 3}));
  auto at = [&](int c, int f) { return out->data[static_cast<size_t>((c * 20 + f) * 6)]; };
  for (int f = 0; f < 4; ++f) EXPECT_EQ(at(0, f), 10.f);  // only segment 0
  // Frames 4..7: segment 0 (10) into segment 1 (20), weights 0.8, 0.6, 0.4, 0.2.
  EXPECT_FLOAT_EQ(at(0, 4), 0.8f * 10 + 0.2f * 20);
  EXPECT_FLOAT_EQ(at(1, 7), 0.2f * 10 + 0.8f * 20);
  EXPECT_FLOAT_EQ(at(0, 19), 40.f);
  // A sub-range gives the same values as the whole.
  auto part = BlendRange(segs, ptr, BlendMode::kLinear, 6, 10);
  ASSERT_TRUE(part.ok());
  EXPECT_EQ(part->data[0], at(0, 6));
}

TEST(Blend, RejectsMissingOrMisshapenLatents) {
  auto segs = PlanSegments(20, 8, 4, 1);
  std::vector<Tensor> lat;
  for (const auto& s : segs) lat.push_back(Fill(s, 2, 2, 3));
  std::vector<const Tensor*> ptr = {&lat[0], nullptr, &lat[2], &lat[3]};
  EXPECT_FALSE(BlendRange(segs, ptr, BlendMode::kLinear, 0, 8).ok());
  Tensor wrong = Tensor::Zeros({2, 8, 3, 3});
  ptr = {&lat[0], &wrong, &lat[2], &lat[3]};
  auto r = BlendRange(segs, ptr, BlendMode::kLinear, 0, 8);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("segment 1"), std::string::npos) << r.message();
}

}  // namespace
}  // namespace segue
