// The zoom reference model and the flow-matching sampler.
#include <gtest/gtest.h>

#include <cmath>

#include "common/model/builtin.h"
#include "common/model/model.h"
#include "common/model/runtime.h"
#include "common/model/sampler.h"
#include "common/plan/timeline.h"

namespace segue::model {
namespace {

SegmentRequest Request(uint64_t seed, int64_t start = 0, int64_t count = 12) {
  SegmentRequest r;
  r.width = 64, r.height = 48, r.steps = 8, r.fps = 12;
  r.latent_start = start, r.latent_count = count, r.seed = seed;
  r.prompts = {"a golden dance hall, film grain", "blue night sea"};
  for (int64_t f = 0; f < count; ++f)
    r.frames.push_back({0, 1, static_cast<float>(start + f) / 40.f});
  return r;
}

std::unique_ptr<Runtime> Make(int threads) {
  auto rt = Runtime::Create({"cpu", threads, ""});
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

// Explicit levels and dynamic shifting, as diffusers' FlowMatchEulerDiscreteScheduler computes
// them (set_timesteps with sigmas; calculate_shift and time_shift with LTX-Video's constants).
TEST(Sampler, ExplicitSigmasAndDynamicShiftFollowThePublishedFormulas) {
  SamplerConfig c;
  c.steps = 3;
  c.sigmas = {1.0, 0.6, 0.2};
  c.shift = 3.0;
  auto s = FlowMatchSchedule(c);
  ASSERT_EQ(s.size(), 4u);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_NEAR(s[i], 3.0 * c.sigmas[i] / (1.0 + 2.0 * c.sigmas[i]), 1e-15);
  EXPECT_EQ(s[3], 0.0);
  // Without explicit levels: the even spacing, bitwise as before.
  c.sigmas.clear();
  EXPECT_EQ(FlowMatchSchedule(c), FlowMatchSigmas(3, 3.0));
  // mu = tokens (max_shift - base_shift) / (max_len - base_len) + b, through (1024, 0.95) and
  // (4096, 2.05); s' = e^mu / (e^mu + 1/s - 1).
  EXPECT_NEAR(DynamicShiftMu(1024), 0.95, 1e-12);
  EXPECT_NEAR(DynamicShiftMu(4096), 2.05, 1e-12);
  EXPECT_NEAR(DynamicShiftMu(2560), 1.5, 1e-12);
  c.mu = 1.5;
  s = FlowMatchSchedule(c);
  EXPECT_DOUBLE_EQ(s[0], 1.0);
  EXPECT_NEAR(s[1], std::exp(1.5) / (std::exp(1.5) + 1.0 / (2.0 / 3.0) - 1.0), 1e-15);
  EXPECT_EQ(s[3], 0.0);
}

// Through the runtime: levels equal to the default spacing give bitwise the default render;
// other levels, or the shift by token count, another.
TEST(Runtime, SigmasAndTokenShiftReachTheSampler) {
  auto rt = Make(1);
  SegmentRequest r = Request(5);
  r.steps = 4;
  auto plain = rt->Render(r);
  r.sigmas = {1.0, 0.75, 0.5, 0.25};
  auto same = rt->Render(r);
  r.sigmas = {1.0, 0.97, 0.94, 0.91};  // the last prediction at a high level
  auto other = rt->Render(r);
  r.sigmas.clear();
  r.shift_from_tokens = true;
  auto shifted = rt->Render(r);
  ASSERT_TRUE(plain.ok() && same.ok() && other.ok() && shifted.ok());
  EXPECT_EQ(plain->data, same->data);
  EXPECT_NE(plain->data, other->data);
  EXPECT_NE(plain->data, shifted->data);
  r.sigmas = {1.0, 0.5, 0.6, 0.1};  // not decreasing: an error, not a render
  r.shift_from_tokens = false;
  EXPECT_FALSE(rt->Render(r).ok());
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
  // The second render (and a later segment of the same prompts) encoded no prompt again: b, from
  // the cache, is bitwise a, and c, encoded afresh, too.
  EXPECT_TRUE(one->Render(Request(12, 12)).ok());
  EXPECT_EQ(one->prompt_encodings(), 2u);
  EXPECT_EQ(two->prompt_encodings(), 2u);
}

TEST(Zoom, ContentDependsOnTheSeedSoIndependentOverlapsDisagree) {
  // Two neighbours [0,24) and [16,40) rendered independently at the example's picture size: in
  // their 8 shared frames the latents differ for most seed pairs (each ends in the world its
  // noise chose).
  auto rt = Make(1);
  auto request = [](uint64_t seed, int64_t start) {
    SegmentRequest r = Request(seed, start, 24);
    r.width = 512, r.height = 288, r.steps = 30, r.fps = 24;
    return r;
  };
  int disagree = 0;
  for (uint64_t s = 1; s <= 8; ++s) {
    auto left = rt->Render(request(s, 0));
    auto right = rt->Render(request(s + 100, 16));
    ASSERT_TRUE(left.ok() && right.ok());
    const int64_t frame = 36 * 64;
    double diff = 0;
    for (int c = 0; c < 4; ++c)
      for (int64_t f = 0; f < 8; ++f)
        for (int64_t i = 0; i < frame; ++i)
          diff += std::abs(left->data[static_cast<size_t>((c * 24 + 16 + f) * frame + i)] -
                           right->data[static_cast<size_t>((c * 24 + f) * frame + i)]);
    disagree += diff / (4.0 * 8 * frame) > 0.05;  // mean absolute difference per element
  }
  EXPECT_GE(disagree, 3);
}

// E[x0 | x] by enumerating every choice of worlds for the blocks the frames touch, straight from
// the prior's definition (zoom.cc): no expansion of the norm, no forward-backward.
torch::Tensor BruteForcePosteriorMean(const ZoomPrior& prior, const torch::Tensor& times,
                                      const torch::Tensor& x, const std::vector<double>& levels,
                                      double* top_weight) {
  const int64_t K = prior.worlds.size(0), T = times.size(1);
  std::vector<int64_t> block(static_cast<size_t>(T));
  std::vector<double> fade(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    const double u = times[0][t].item<double>() / prior.block_seconds;
    block[static_cast<size_t>(t)] = static_cast<int64_t>(std::floor(u));
    fade[static_cast<size_t>(t)] = std::pow(std::cos(M_PI / 2 * (u - std::floor(u))), 2);
  }
  const int64_t lo = block.front(), vars = block.back() - lo + 2;
  int64_t combos = 1;
  for (int64_t v = 0; v < vars; ++v) combos *= K;
  torch::Tensor W = prior.worlds.to(torch::kFloat64), X = x[0].to(torch::kFloat64);
  std::vector<double> logw;
  std::vector<torch::Tensor> means;
  for (int64_t n = 0; n < combos; ++n) {
    std::vector<int64_t> pick(static_cast<size_t>(vars));
    for (int64_t v = 0, r = n; v < vars; ++v, r /= K) pick[static_cast<size_t>(v)] = r % K;
    torch::Tensor x0 = torch::empty_like(X);
    double lw = 0;
    for (int64_t t = 0; t < T; ++t) {
      const size_t b = static_cast<size_t>(block[static_cast<size_t>(t)] - lo);
      const double c = fade[static_cast<size_t>(t)], s = levels[static_cast<size_t>(t)];
      torch::Tensor f = W[pick[b]].select(1, t) * c + W[pick[b + 1]].select(1, t) * (1 - c);
      x0.select(1, t).copy_(f);
      lw -= (X.select(1, t) - f * (1 - s)).pow(2).sum().item<double>() / (2 * s * s);
    }
    logw.push_back(lw);
    means.push_back(x0);
  }
  const double best = *std::max_element(logw.begin(), logw.end());
  double total = 0;
  for (double& l : logw) total += (l = std::exp(l - best));
  torch::Tensor mean = torch::zeros_like(X);
  *top_weight = 0;
  for (size_t n = 0; n < means.size(); ++n) {
    mean += means[n] * (logw[n] / total);
    *top_weight = std::max(*top_weight, logw[n] / total);
  }
  return mean.to(torch::kFloat32).unsqueeze(0);
}

TEST(Zoom, DenoiserIsTheExactPosteriorMean) {
  auto m = CreateBuiltinModel("zoom");
  ASSERT_TRUE(m);
  const int64_t T = 5, h = 6, w = 8;
  torch::Tensor emb = m->EncodePrompt("golden").tokens.expand({T, -1}).unsqueeze(0);
  // Frames from 1.2 s to 3.6 s touch blocks 0..2: four block picks, 256 combinations.
  torch::Tensor times = (torch::arange(T, torch::kFloat64) * 0.6 + 1.2).unsqueeze(0);
  Conditioning cond;
  cond.embeddings = emb.contiguous();
  cond.frame_times = times;
  cond.camera_speed = 0.3, cond.width = 64, cond.height = 48;
  const ZoomPrior prior = ZoomPriorFor(cond, h, w);
  ASSERT_EQ(prior.worlds.size(0), 4);
  // At sigma = 1 the data says nothing: the mean of the worlds, whatever x is.
  torch::Tensor x1 = SeededNoise(1, {1, 4, T, h, w});
  torch::Tensor mean1 = m->Denoise(x1, torch::ones({1}), cond);
  EXPECT_TRUE(
      torch::allclose(mean1, m->Denoise(SeededNoise(2, {1, 4, T, h, w}), torch::ones({1}), cond)));
  EXPECT_TRUE(torch::allclose(mean1, prior.worlds.mean(0).unsqueeze(0), 1e-5, 1e-5));
  // Part way: against the enumeration, at levels where the posterior is neither flat nor settled.
  for (double s : {0.95, 0.85}) {
    torch::Tensor x = SeededNoise(7, {1, 4, T, h, w}) * s + mean1 * (1 - s);
    double top = 0;
    torch::Tensor expect =
        BruteForcePosteriorMean(prior, times, x, std::vector<double>(T, s), &top);
    EXPECT_LT(top, 0.99) << "sigma " << s << ": the test needs an unsettled posterior";
    torch::Tensor got = m->Denoise(x, torch::full({1}, s), cond);
    EXPECT_TRUE(torch::allclose(got, expect, 1e-4, 1e-4))
        << "sigma " << s << ": max difference " << (got - expect).abs().max().item<float>();
  }
  // Frames at their own levels (a chained guide is level ~0): the same enumeration, per frame.
  std::vector<double> levels = {0.05, 0.05, 0.9, 0.9, 0.9};
  torch::Tensor level_tensor = torch::tensor(levels, torch::kFloat64).unsqueeze(0);
  Conditioning guided = cond;
  guided.frame_sigma = level_tensor;
  torch::Tensor x =
      SeededNoise(8, {1, 4, T, h, w}) * level_tensor.to(torch::kFloat32).view({1, 1, T, 1, 1}) +
      prior.worlds[2].unsqueeze(0) * (1 - level_tensor.to(torch::kFloat32)).view({1, 1, T, 1, 1});
  double top = 0;
  torch::Tensor expect = BruteForcePosteriorMean(prior, times, x, levels, &top);
  torch::Tensor got = m->Denoise(x, torch::full({1}, 0.9), guided);
  EXPECT_TRUE(torch::allclose(got, expect, 1e-4, 1e-4))
      << "max difference " << (got - expect).abs().max().item<float>();
  // Which differs from treating every frame at the call's level.
  EXPECT_FALSE(torch::allclose(got, m->Denoise(x, torch::full({1}, 0.9), cond), 1e-3, 1e-3));
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

// zoom's decoder is what its file comment says: the latents (over their scale) upsampled
// bilinearly to the picture (half-pixel centres, as torch's interpolate with align_corners=false),
// then shaded by contour lines of the relief channel. Sizes whose edge taps clamp, and a batch.
TEST(Zoom, DecodeIsBilinearUpsamplingWithContourShading) {
  namespace F = torch::nn::functional;
  auto model = CreateBuiltinModel("zoom");
  const int64_t h = 5, w = 7, H = 8 * h, W = 8 * w;
  torch::Tensor latents = SeededNoise(4, {2, 4, 3, h, w}) * 3;
  torch::Tensor pictures = model->Decode(latents);
  ASSERT_EQ(pictures.sizes(), (std::vector<int64_t>{2, 3, 3, H, W}));
  torch::Tensor x = latents.permute({0, 2, 1, 3, 4}).reshape({6, 4, h, w}) / 3.f;
  torch::Tensor up = F::interpolate(x, F::InterpolateFuncOptions()
                                           .size(std::vector<int64_t>{H, W})
                                           .mode(torch::kBilinear)
                                           .align_corners(false));
  torch::Tensor line = 0.5f + 0.5f * torch::cos(up.narrow(1, 3, 1) * static_cast<float>(4 * M_PI));
  torch::Tensor shade = 0.78f + 0.22f * line.pow(4);
  torch::Tensor expected = ((0.5f + 0.5f * up.narrow(1, 0, 3)) * shade).clamp(0, 1);
  expected = expected.reshape({2, 3, 3, H, W}).permute({0, 2, 1, 3, 4});
  EXPECT_LT((pictures - expected).abs().max().item<float>(), 1e-4f);
  // The pictures are not flat: the test would notice a decoder that ignored its latents.
  EXPECT_GT(pictures.std().item<float>(), 0.05f);
}

// The bytes a chunk encodes: those of the tensor expression, from a narrowed view (a chunk's
// frames after its decoding context), with values below 0 and above 1 clamped and ties rounded
// up; NaN, which has no byte, is 0.
TEST(Runtime, PicturesBecomeTheBytesOfTheTensorExpression) {
  torch::Tensor pictures = SeededNoise(5, {3, 7, 6, 10}) * 0.6f + 0.5f;
  torch::Tensor view = pictures.narrow(1, 2, 4);
  const float edges[] = {0.f, 1.f, 0.5f / 255, 254.5f / 255, -0.f, 1e-9f, 2.f, -1.f};
  for (int i = 0; i < 8; ++i) view[1][2][3][i] = edges[i];
  ASSERT_GT((view < 0).sum().item<int64_t>(), 1);
  ASSERT_GT((view > 1).sum().item<int64_t>(), 1);
  const std::vector<uint8_t> bytes = PicturesToRgbBytes(view);
  torch::Tensor expected =
      (view.clamp(0, 1) * 255.0f + 0.5f).to(torch::kUInt8).permute({1, 2, 3, 0}).contiguous();
  ASSERT_EQ(bytes.size(), static_cast<size_t>(expected.numel()));
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), expected.data_ptr<uint8_t>()));
  view[0][0][0][0] = std::nanf("");
  EXPECT_EQ(PicturesToRgbBytes(view)[0], 0);
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
  EXPECT_FALSE(Runtime::Create({"tpu", 1, ""}).ok());
}

TEST(Runtime, DevicesAreCheckedAgainstThisLibtorch) {
  auto bad = Runtime::Create({"cuda:x", 1, ""});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("unknown device 'cuda:x'"), std::string::npos) << bad.message();
  auto far = Runtime::Create({"cuda:99", 1, ""});
  ASSERT_FALSE(far.ok());  // no machine has 100 GPUs; a CPU libtorch has none at all
  EXPECT_NE(far.message().find("'cuda:99'"), std::string::npos) << far.message();
  if (!torch::cuda::is_available()) {
    EXPECT_NE(far.message().find("no CUDA device"), std::string::npos) << far.message();
    return;
  }
  // Where CUDA is: the built-in model renders the same bits with --device cuda (it computes
  // on the CPU; only TorchScript models move to the device).
  auto cpu = Make(1)->Render(Request(1));
  auto rt = Runtime::Create({"cuda", 1, ""});
  ASSERT_TRUE(rt.ok()) << rt.message();
  auto gpu = (*rt)->Render(Request(1));
  ASSERT_TRUE(cpu.ok() && gpu.ok());
  EXPECT_EQ(cpu->data, gpu->data);
}

}  // namespace
}  // namespace segue::model

namespace segue::model {
namespace {

// A model whose prediction is known: x0 = `value` everywhere, or, with guidance, a value that
// depends on the conditioning's first embedding entry.
class FixedModel final : public Model {
 public:
  explicit FixedModel(float value, Prediction kind = Prediction::kX0) : value_(value) {
    info_.name = "fixed";
    info_.prediction = kind;
  }
  const ModelInfo& info() const override { return info_; }
  PromptEncoding EncodePrompt(const std::string& text) override {
    return PooledPrompt(torch::full({2}, text.empty() ? 0.f : 1.f));
  }
  torch::Tensor Denoise(const torch::Tensor& x, const torch::Tensor& sigma,
                        const Conditioning& cond) override {
    ++calls;
    last_sigma = sigma[0].item<double>();
    const float c = cond.embeddings.defined() ? cond.embeddings[0][0][0].item<float>() : 1.f;
    return torch::full_like(x, value_ + 2.f * c);
  }
  torch::Tensor Decode(const torch::Tensor& x) override { return x; }
  int calls = 0;
  double last_sigma = -1;

 private:
  float value_;
  ModelInfo info_;
};

Conditioning CondWith(float e) {
  Conditioning c;
  c.embeddings = torch::full({1, 1, 2}, e);
  c.frame_times = torch::zeros({1, 1}, torch::kFloat64);
  return c;
}

TEST(Sampler, DdimScheduleMatchesDiffusers) {
  // Independently: scaled_linear betas, cumulative product, "leading" spacing + offset 1.
  auto d = DdimSchedule::Make(10);
  std::vector<double> ac;
  double prod = 1;
  for (int t = 0; t < 1000; ++t) {
    double beta =
        std::pow(std::sqrt(0.00085) + (std::sqrt(0.012) - std::sqrt(0.00085)) * t / 999.0, 2);
    prod *= 1 - beta;
    ac.push_back(prod);
  }
  ASSERT_EQ(d.alphas_cumprod.size(), 1000u);
  EXPECT_NEAR(d.alphas_cumprod[0], 0.99915, 1e-12);
  for (int t : {0, 1, 500, 999})
    EXPECT_NEAR(d.alphas_cumprod[static_cast<size_t>(t)], ac[static_cast<size_t>(t)], 1e-12);
  EXPECT_EQ(d.timesteps, (std::vector<int>{901, 801, 701, 601, 501, 401, 301, 201, 101, 1}));
  EXPECT_EQ(d.step_ratio, 100);
  EXPECT_NEAR(d.PrevAlpha(0), ac[801], 1e-15);
  EXPECT_NEAR(d.PrevAlpha(9), ac[0], 1e-15);  // set_alpha_to_one = false
}

TEST(Sampler, DdimStepMatchesThePublishedFormula) {
  FixedModel m(0.5f);
  SamplerConfig c;
  c.kind = SamplerKind::kDdim;
  c.steps = 10;
  Sampler s(m, c, CondWith(0.f));
  torch::Tensor x = torch::full({1, 1, 1, 1, 1}, 0.8f);
  torch::Tensor next = s.Step(0, x);
  // DDIM (eta 0): x0 = 0.5; eps = (x - sqrt(a_t) x0) / sqrt(1 - a_t);
  // x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps.
  auto d = DdimSchedule::Make(10);
  const double a_t = d.alphas_cumprod[901], a_prev = d.alphas_cumprod[801];
  const double eps = (0.8 - std::sqrt(a_t) * 0.5) / std::sqrt(1 - a_t);
  const double expect = std::sqrt(a_prev) * 0.5 + std::sqrt(1 - a_prev) * eps;
  EXPECT_NEAR(next.item<float>(), expect, 1e-5);
  // The model was asked at the flow-matching level of x_t: s = b / (a + b).
  EXPECT_NEAR(m.last_sigma, std::sqrt(1 - a_t) / (std::sqrt(a_t) + std::sqrt(1 - a_t)), 1e-6);
  // eta > 0 adds sigma_t noise: the result moves, and is reproducible.
  c.eta = 1.0;
  Sampler noisy(m, c, CondWith(0.f));
  torch::Tensor n1 = noisy.Step(0, x), n2 = noisy.Step(0, x);
  EXPECT_TRUE(torch::equal(n1, n2));
  EXPECT_GT(std::abs(n1.item<float>() - next.item<float>()), 1e-4);
}

TEST(Sampler, EulerStepAndGuidance) {
  FixedModel m(0.25f);
  SamplerConfig c;
  c.steps = 4;
  c.shift = 3.0;
  Sampler s(m, c, CondWith(0.f));
  torch::Tensor x = torch::full({1, 1, 1, 1, 1}, 1.0f);
  // Euler: x + (s1 - s0) (x - x0) / s0 with s0 = 1, s1 = 0.9 (shift 3).
  EXPECT_NEAR(s.Step(0, x).item<float>(), 1.0 + (0.9 - 1.0) * (1.0 - 0.25) / 1.0, 1e-6);
  // Guidance g: uncond + g (cond - uncond). cond -> 0.25 + 2, uncond -> 0.25 + 0.
  c.guidance = 3.0;
  Sampler g(m, c, CondWith(1.f), CondWith(0.f));
  m.calls = 0;
  const double x0 = 0.25 + 3.0 * 2.0;
  EXPECT_NEAR(g.Step(0, x).item<float>(), 1.0 + (0.9 - 1.0) * (1.0 - x0), 1e-5);
  EXPECT_EQ(m.calls, 2);  // conditional and unconditional
}

// A model whose x0 prediction depends on x, so that a multistep solver's history matters:
// x0 = 0.5 x + 0.3 (with a velocity model, the same x0 through v = (x - x0) / s).
class LinearModel final : public Model {
 public:
  LinearModel() { info_.name = "linear"; }
  const ModelInfo& info() const override { return info_; }
  PromptEncoding EncodePrompt(const std::string&) override {
    return PooledPrompt(torch::zeros({1}));
  }
  torch::Tensor Denoise(const torch::Tensor& x, const torch::Tensor&,
                        const Conditioning&) override {
    return x * 0.5f + 0.3f;
  }
  torch::Tensor Decode(const torch::Tensor& x) override { return x; }

 private:
  ModelInfo info_;
};

// UniPC as UniPCMultistepScheduler.step computes it (solver_order 2, predict_x0, bh2,
// lower_order_final, flow sigmas), written out for one number with the general R rho = b
// solve of multistep_uni_c_bh_update, independently of the sampler's closed forms.
double UniPcReference(double x, const std::vector<double>& sig, int steps) {
  auto lam = [](double s) { return std::log(1 - s) - std::log(s); };
  auto x0_of = [](double v) { return 0.5 * v + 0.3; };
  std::vector<double> ms;  // model outputs, oldest first
  double last = 0;
  int this_order = 0, lower_order_nums = 0;
  for (int i = 0; i < steps; ++i) {
    const double m = x0_of(x);
    if (i > 0) {  // corrector
      const double st = sig[i], s0 = sig[i - 1], at = 1 - st;
      const double h = lam(st) - lam(s0), hh = -h, hphi1 = std::expm1(hh), bh = std::expm1(hh);
      const double m0 = ms.back();
      std::vector<double> rks, d1s;
      for (int k = 1; k < this_order; ++k) {
        const double rk = (lam(sig[i - (k + 1)]) - lam(s0)) / h;
        rks.push_back(rk);
        d1s.push_back((ms[ms.size() - 1 - k] - m0) / rk);
      }
      rks.push_back(1.0);
      std::vector<double> b;
      double hphik = hphi1 / hh - 1, fact = 1;
      for (int k = 1; k <= this_order; ++k) {
        b.push_back(hphik * fact / bh);
        fact *= k + 1;
        hphik = hphik / hh - 1 / fact;
      }
      std::vector<double> rhos;
      if (this_order == 1) {
        rhos = {0.5};
      } else {  // 2x2: rows rks^0, rks^1; Gaussian elimination
        const double a00 = 1, a01 = 1, a10 = rks[0], a11 = rks[1];
        const double det = a00 * a11 - a01 * a10;
        rhos = {(b[0] * a11 - a01 * b[1]) / det, (a00 * b[1] - b[0] * a10) / det};
      }
      double corr = 0;
      for (size_t k = 0; k < d1s.size(); ++k) corr += rhos[k] * d1s[k];
      x = st / s0 * last - at * hphi1 * m0 - at * bh * (corr + rhos.back() * (m - m0));
    }
    ms.push_back(m);
    this_order = std::min({2, steps - i, lower_order_nums + 1});
    last = x;
    // predictor
    const double st = sig[i + 1], s0 = sig[i], at = 1 - st;
    const double h = lam(st) - lam(s0), hh = -h, hphi1 = std::expm1(hh), bh = std::expm1(hh);
    double next = st / s0 * x - at * hphi1 * m;
    if (this_order == 2) {
      const double rk = (lam(sig[i - 1]) - lam(s0)) / h;
      next -= at * bh * 0.5 * (ms[ms.size() - 2] - m) / rk;
    }
    x = next;
    lower_order_nums = std::min(lower_order_nums + 1, 2);
  }
  return x;
}

TEST(Sampler, UniPcFollowsThePublishedFormula) {
  LinearModel m;
  SamplerConfig c;
  c.kind = SamplerKind::kUniPc;
  c.steps = 7;
  c.shift = 3.0;
  // The levels: UniPCMultistepScheduler's flow sigmas, 0.999 (1 - i / steps), shifted, then 0.
  const std::vector<double> sig = FlowMatchSchedule(c);
  ASSERT_EQ(sig.size(), 8u);
  EXPECT_NEAR(sig[0], 3 * 0.999 / (1 + 2 * 0.999), 1e-12);
  EXPECT_NEAR(sig[3], 3 * (0.999 * 4 / 7) / (1 + 2 * (0.999 * 4 / 7)), 1e-12);
  EXPECT_EQ(sig[7], 0.0);
  for (float start : {-1.3f, 0.4f, 2.2f}) {
    torch::Tensor x = torch::full({1, 1, 1, 1, 1}, start);
    Sampler fresh(m, c, CondWith(0.f));
    for (int i = 0; i < c.steps; ++i) x = fresh.Step(i, x);
    EXPECT_NEAR(x.item<float>(), UniPcReference(start, sig, c.steps), 1e-5) << start;
  }
}

// A UniPC run resumed from a checkpoint (its latents and history after step k) ends bitwise
// where the uninterrupted run ends; without the history the checkpoint is refused.
TEST(Runtime, UniPcResumesBitExactFromItsHistory) {
  auto rt = Make(1);
  SegmentRequest r = Request(21);
  r.sampler = "unipc";
  r.steps = 6;
  r.guidance = 2.0;  // classifier-free: two calls per step, both part of the history's x0
  r.negative_prompt = "blur";
  Tensor state;
  auto whole = rt->RenderTogether({r}, [&](int i, std::vector<LatentView>& v) {
    if (i != 2) return Status::Ok();
    EXPECT_EQ(v[0].history.size(), 3u);
    const int64_t n = Tensor::NumElements(v[0].shape);
    state.shape = v[0].shape;
    state.shape.insert(state.shape.begin(), 4);
    state.data.assign(v[0].data, v[0].data + n);
    for (const float* h : v[0].history) state.data.insert(state.data.end(), h, h + n);
    return Status::Ok();
  });
  ASSERT_TRUE(whole.ok()) << whole.message();
  SegmentRequest resumed = r;
  resumed.resume_step = 3;
  resumed.resume_latents = state;
  auto again = Make(1)->Render(resumed);
  ASSERT_TRUE(again.ok()) << again.message();
  EXPECT_EQ(0, std::memcmp((*whole)[0].data.data(), again->data.data(), again->data.size() * 4));
  // The latents alone do not resume a multistep sampler.
  Tensor latents_only;
  latents_only.shape.assign(state.shape.begin() + 1, state.shape.end());
  latents_only.data.assign(state.data.begin(),
                           state.data.begin() + Tensor::NumElements(latents_only.shape));
  resumed.resume_latents = latents_only;
  auto refused = rt->Render(resumed);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("4 tensors of [4,12,6,8] for the unipc sampler at step 3"),
            std::string::npos)
      << refused.message();
  // And UniPC is its own trajectory, not euler's (both end on the zoom model's exact posterior,
  // which settles on one world: compare them on the way).
  SegmentRequest euler = r;
  euler.sampler = "euler";
  std::vector<float> euler_at_2;
  auto other = rt->RenderTogether({euler}, [&](int i, std::vector<LatentView>& v) {
    if (i == 2) euler_at_2.assign(v[0].data, v[0].data + Tensor::NumElements(v[0].shape));
    EXPECT_TRUE(v[0].history.empty());
    return Status::Ok();
  });
  ASSERT_TRUE(other.ok());
  EXPECT_NE(euler_at_2,
            std::vector<float>(state.data.begin(),
                               state.data.begin() + static_cast<int64_t>(euler_at_2.size())));
}

TEST(Sampler, PredictionKindsConvertToX0) {
  torch::Tensor x = torch::full({1}, 0.7f), x0 = torch::full({1}, 0.2f),
                eps = torch::full({1}, 1.2f);
  const double s = 0.4;  // x = 0.6 * 0.2 + 0.4 * eps  => eps = (0.7 - 0.12) / 0.4 = 1.45
  torch::Tensor e = (x - x0 * (1 - s)) / s;
  EXPECT_NEAR(PredictionToX0(Prediction::kEpsilon, x, e, s).item<float>(), 0.2f, 1e-6);
  EXPECT_NEAR(PredictionToX0(Prediction::kVelocity, x, e - x0, s).item<float>(), 0.2f, 1e-6);
  EXPECT_NEAR(PredictionToX0(Prediction::kX0, x, x0, s).item<float>(), 0.2f, 1e-6);
}

TEST(Zoom, ChainedGuideFramesEndExactlyOnTheGuide) {
  auto rt = Runtime::Create({"cpu", 1, ""});
  ASSERT_TRUE(rt.ok());
  auto first = (*rt)->Render(Request(1, 0, 12));
  ASSERT_TRUE(first.ok());
  auto r = Request(2, 8, 12);
  Tensor guide = Tensor::Zeros({4, 4, 6, 8});  // frames 8..11 of the first segment
  for (int c = 0; c < 4; ++c)
    std::copy(first->data.begin() + (c * 12 + 8) * 48, first->data.begin() + (c * 12 + 12) * 48,
              guide.data.begin() + c * 4 * 48);
  r.guide = guide;
  auto second = (*rt)->Render(r);
  ASSERT_TRUE(second.ok()) << second.message();
  for (int c = 0; c < 4; ++c)
    for (int i = 0; i < 4 * 48; ++i)
      ASSERT_EQ(second->data[static_cast<size_t>(c * 12 * 48 + i)],
                guide.data[static_cast<size_t>(c * 4 * 48 + i)]);
  r.guide = Tensor::Zeros({4, 4, 5, 8});
  EXPECT_FALSE((*rt)->Render(r).ok());  // a guide of the wrong shape is an error, not a crash
}

// A causal video decoder that carries state, as causal 3D VAEs do: the frames of latent frame t
// depend on latent frames t, t - 1 and t - 2 of the call (zeros before its start), and the first
// latent frame of a call gives one frame, every other r. Its receptive field is two latent
// frames back: decode_context_before = 2.
class CausalDecoder final : public Model {
 public:
  explicit CausalDecoder(int r) {
    info_.name = "causal";
    info_.temporal_compression = r;
    info_.latent_channels = 2;
    info_.spatial_compression = 1;
    info_.native_frames = {1 + 4 * r};
    info_.decode_context_before = 2;
  }
  const ModelInfo& info() const override { return info_; }
  PromptEncoding EncodePrompt(const std::string&) override {
    return PooledPrompt(torch::zeros({1}));
  }
  torch::Tensor Denoise(const torch::Tensor& x, const torch::Tensor&,
                        const Conditioning&) override {
    return x;
  }
  torch::Tensor Decode(const torch::Tensor& x) override {
    const int r = info_.temporal_compression;
    const int64_t T = x.size(2);
    std::vector<torch::Tensor> frames;
    torch::Tensor prev1 = torch::zeros_like(x.select(2, 0)), prev2 = prev1.clone();
    for (int64_t t = 0; t < T; ++t) {
      torch::Tensor cur = x.select(2, t);
      torch::Tensor state = cur + 0.5 * prev1 - 0.25 * prev2;  // [B, C, h, w]
      for (int c = 0; c < (t == 0 ? 1 : r); ++c) {
        torch::Tensor rgb = torch::stack({state.select(1, 0), state.select(1, 1) + 0.1 * c,
                                          state.select(1, 0) * state.select(1, 1)},
                                         1);  // [B, 3, h, w]
        frames.push_back(rgb);
      }
      prev2 = prev1;
      prev1 = cur;
    }
    return torch::stack(frames, 2);
  }

 private:
  ModelInfo info_;
};

// Chunks decoded with the windows WindowFor gives (the model's context before them, whose frames
// are dropped) are the frames the whole video decodes to, for r = 1, 4 and 8; with less context
// than the decoder's receptive field, the frames after a join differ.
TEST(LatentTimeline, ChunkedDecodingWithContextIsWholeDecoding) {
  for (int r : {1, 4, 8}) {
    CausalDecoder model(r);
    const int64_t n = 1 + r * 29 - (r > 1 ? 2 : 0);  // the last latent frame padded
    Manifest m;
    m.frames = n;
    m.width = m.height = 4;
    m.segment_length = 1 + r * 4;
    m.segment_overlap = r;
    m.locations["segments.length"] = {1, 1};
    m.locations["segments.overlap"] = {1, 1};
    auto g = FitToModel(m, model.info());
    ASSERT_TRUE(g.ok()) << g.message();
    torch::Tensor latents = SeededNoise(9, {1, 2, g->latents, 4, 4});
    torch::Tensor whole = model.Decode(latents).narrow(2, 0, n);
    for (int before : {2, 1}) {
      std::vector<torch::Tensor> pieces;
      for (const ChunkSpan& c : PlanChunks(g->latents, 7)) {
        const DecodeWindow w = WindowFor(*g, c.start, c.end, before, 0);
        torch::Tensor window = latents.narrow(2, w.first, w.end_with_context - w.first);
        pieces.push_back(model.Decode(window).narrow(2, w.skip, w.keep));
      }
      torch::Tensor chunked = torch::cat(pieces, 2);
      ASSERT_EQ(chunked.sizes(), whole.sizes()) << "r = " << r;
      if (before == 2)
        EXPECT_TRUE(torch::equal(chunked, whole)) << "r = " << r;
      else
        EXPECT_FALSE(torch::equal(chunked, whole)) << "r = " << r << ": context 1 is too little";
    }
  }
}

// stamp4 and stamp8: every latent frame holds its frames' times, and a clip decodes to
// 1 + r (T - 1) frames showing exactly the times of the video frames they are.
TEST(Stamp, CompressedVariantsDecodeEveryFrameTime) {
  for (const char* name : {"stamp", "stamp4", "stamp8"}) {
    auto rt = Make(1);
    auto meta = rt->Metadata(name);
    ASSERT_TRUE(meta.ok()) << meta.message();
    const int r = meta->temporal_compression;
    const LatentTimeline t(r);
    SegmentRequest req = Request(3, 5, 6);
    req.model = name;
    req.steps = 2;
    req.fps = 24;
    req.frames.assign(6, {0, 0, 0.f});
    auto latents = rt->Render(req);
    ASSERT_TRUE(latents.ok()) << latents.message();
    EXPECT_EQ(latents->shape, (std::vector<int64_t>{meta->latent_channels, 6, 6, 8}));
    // Decoded with one latent frame of context before (latent frame 5's frames are dropped).
    auto rgb = rt->DecodeRgb(name, *latents, 64, 48, t.FramesOf(1), 5 * r);
    ASSERT_TRUE(rgb.ok()) << rgb.message();
    ASSERT_EQ(rgb->size(), static_cast<size_t>(5 * r) * 64 * 48 * 3);
    for (int64_t f = 0; f < 5 * r; ++f) {
      // Bar b of 20 is white when bit (19 - b) of the frame's time in ms is set.
      const uint8_t* px = rgb->data() + static_cast<size_t>(f) * 64 * 48 * 3;
      int64_t ms = 0;
      for (int b = 0; b < 20; ++b) ms = ms * 2 + (px[(b * 64 / 20 + 1) * 3] > 127 ? 1 : 0);
      EXPECT_EQ(ms, std::llround((t.FirstFrame(6) + f) * 1000.0 / 24)) << name << " frame " << f;
    }
  }
}

}  // namespace
}  // namespace segue::model
