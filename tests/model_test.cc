// The zoom reference model and the flow-matching sampler.
#include <gtest/gtest.h>

#include <cmath>

#include "common/model/model.h"
#include "common/model/runtime.h"
#include "common/model/sampler.h"

namespace segue::model {
namespace {

SegmentRequest Request(uint64_t seed, int64_t start = 0, int64_t count = 12) {
  SegmentRequest r;
  r.width = 64, r.height = 48, r.steps = 8, r.fps = 12;
  r.frame_start = start, r.frame_count = count, r.seed = seed;
  r.prompts = {"a golden dance hall, film grain", "blue night sea"};
  for (int64_t f = 0; f < count; ++f)
    r.frames.push_back({0, 1, static_cast<float>(start + f) / 40.f});
  return r;
}

std::unique_ptr<Runtime> Make(int threads) {
  auto rt = Runtime::Create({"cpu", threads});
  EXPECT_TRUE(rt.ok()) << rt.message();
  return std::move(*rt);
}

TEST(Sampler, FlowMatchSigmasMatchTheShiftFormula) {
  auto s = FlowMatchSigmas(4, 1.0);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_DOUBLE_EQ(s[0], 1.0);
  EXPECT_DOUBLE_EQ(s[1], 0.75);
  EXPECT_DOUBLE_EQ(s[4], 0.0);
  // diffusers: sigma' = shift * sigma / (1 + (shift - 1) * sigma); shift 3 at 0.75 -> 0.9.
  auto shifted = FlowMatchSigmas(4, 3.0);
  EXPECT_DOUBLE_EQ(shifted[0], 1.0);
  EXPECT_NEAR(shifted[1], 0.9, 1e-12);
  EXPECT_NEAR(shifted[2], 0.75, 1e-12);
  EXPECT_DOUBLE_EQ(shifted[4], 0.0);
}

TEST(Sampler, SeededNoiseIsStandardNormalAndStable) {
  torch::Tensor a = SeededNoise(5, {1, 4, 8, 16, 16});
  torch::Tensor b = SeededNoise(5, {1, 4, 8, 16, 16});
  torch::Tensor c = SeededNoise(6, {1, 4, 8, 16, 16});
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  EXPECT_NEAR(a.mean().item<double>(), 0.0, 0.05);
  EXPECT_NEAR(a.std().item<double>(), 1.0, 0.05);
}

TEST(Zoom, RenderIsBitwiseDeterministicAcrossRunsAndThreadCounts) {
  auto one = Make(1);
  auto a = one->Render(Request(11));
  auto b = one->Render(Request(11));
  auto two = Make(2);
  auto c = two->Render(Request(11));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->shape, (std::vector<int64_t>{4, 12, 6, 8}));
  EXPECT_EQ(0, std::memcmp(a->data.data(), b->data.data(), a->data.size() * 4));
  EXPECT_EQ(0, std::memcmp(a->data.data(), c->data.data(), a->data.size() * 4));
}

TEST(Zoom, ContentDependsOnTheSeedSoIndependentOverlapsDisagree) {
  // Two neighbours [0,12) and [8,20) rendered independently: in their 4 shared frames the
  // latents differ for most seed pairs (each ends in the world its noise chose).
  auto rt = Make(1);
  int disagree = 0;
  for (uint64_t s = 1; s <= 6; ++s) {
    auto left = rt->Render(Request(s, 0, 12));
    auto right = rt->Render(Request(s + 100, 8, 12));
    ASSERT_TRUE(left.ok() && right.ok());
    const int64_t frame = 6 * 8;
    double diff = 0;
    for (int c = 0; c < 4; ++c)
      for (int64_t f = 0; f < 4; ++f)
        for (int64_t i = 0; i < frame; ++i)
          diff += std::abs(left->data[static_cast<size_t>((c * 12 + 8 + f) * frame + i)] -
                           right->data[static_cast<size_t>((c * 12 + f) * frame + i)]);
    disagree += diff > 1.0;
  }
  EXPECT_GE(disagree, 3);
}

TEST(Zoom, DenoiserIsTheExactPosteriorMean) {
  auto m = CreateBuiltinModel("zoom");
  ASSERT_TRUE(m);
  const int64_t T = 4;
  torch::Tensor emb = torch::stack({m->EncodePrompt("golden"), m->EncodePrompt("golden"),
                                    m->EncodePrompt("golden"), m->EncodePrompt("golden")})
                          .unsqueeze(0);
  torch::Tensor times = torch::arange(T, torch::kFloat64).unsqueeze(0) / 12.0;
  Conditioning cond{emb, times, CameraMotion::kZoomIn, 0.3, 64, 48};
  // At sigma = 1 the data says nothing: the mean of the worlds, whatever x is.
  torch::Tensor x1 = SeededNoise(1, {1, 4, T, 6, 8});
  torch::Tensor x2 = SeededNoise(2, {1, 4, T, 6, 8});
  torch::Tensor mean1 = m->Denoise(x1, torch::ones({1}), cond);
  torch::Tensor mean2 = m->Denoise(x2, torch::ones({1}), cond);
  EXPECT_TRUE(torch::allclose(mean1, mean2));
  // A finished sample is one world; at low noise right on it, the posterior is that world.
  torch::Tensor w = SampleFlowMatchEuler(*m, x1, cond, 10, 1.0);
  torch::Tensor back = m->Denoise(w * 0.99f, torch::full({1}, 0.01f), cond);
  EXPECT_TRUE(torch::equal(back, w));
  EXPECT_FALSE(torch::allclose(w, mean1, 1e-3, 1e-3));  // and not the blurry mean
}

TEST(Zoom, LooksFollowThePromptAndTheCameraMoves) {
  auto rt = Make(1);
  auto golden = Request(3);
  golden.prompts = {"golden hour, warm sunset", "golden hour, warm sunset"};
  auto blue = Request(3);
  blue.prompts = {"blue night sea, ocean", "blue night sea, ocean"};
  auto g = rt->Render(golden), b = rt->Render(blue);
  ASSERT_TRUE(g.ok() && b.ok());
  auto mean_channel = [](const Tensor& t, int c) {
    const size_t per = t.data.size() / 4;
    double s = 0;
    for (size_t i = 0; i < per; ++i) s += t.data[c * per + i];
    return s / static_cast<double>(per);
  };
  // Red over blue for the golden prompt; blue over red for the night sea.
  EXPECT_GT(mean_channel(*g, 0) - mean_channel(*g, 2), 0.3);
  EXPECT_GT(mean_channel(*b, 2) - mean_channel(*b, 0), 0.3);
  // The camera moves: consecutive frames differ, gently; distant frames differ more.
  auto rgb = rt->DecodeRgb("zoom", *g, 64, 48);
  ASSERT_TRUE(rgb.ok()) << rgb.message();
  const size_t fb = 64 * 48 * 3;
  auto frame_diff = [&](int a, int c) {
    double d = 0;
    for (size_t i = 0; i < fb; ++i)
      d += std::abs(int((*rgb)[a * fb + i]) - int((*rgb)[c * fb + i]));
    return d / static_cast<double>(fb);
  };
  EXPECT_GT(frame_diff(0, 1), 0.05);
  EXPECT_GT(frame_diff(0, 11), 2 * frame_diff(0, 1));
}

TEST(Runtime, ErrorsNameTheProblem) {
  auto rt = Make(1);
  auto r = Request(1);
  r.model = "nope";
  auto bad = rt->Render(r);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("unknown model 'nope'"), std::string::npos);
  r = Request(1);
  r.width = 60;
  EXPECT_FALSE(rt->Render(r).ok());
  Tensor wrong = Tensor::Zeros({3, 2, 2});
  EXPECT_FALSE(rt->DecodeRgb("zoom", wrong, 16, 16).ok());
  EXPECT_FALSE(Runtime::Create({"tpu", 1}).ok());
}

}  // namespace
}  // namespace segue::model
