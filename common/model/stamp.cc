// The built-in diagnostic models `stamp`, `stamp4` and `stamp8`: every frame shows its own time,
// so that a delivered video can be checked frame by frame (docs/MODELS.md). `stamp` has one
// latent frame per video frame; `stamp4` and `stamp8` compress time 4x and 8x as causal video
// VAEs do (Wan, LTX-Video): latent frame j >= 1 holds r frames, latent frame 0 one.
//
// The prior is a point mass: channel c of a latent frame holds the time in seconds of its c-th
// video frame (zeros past the frames it holds), so the sampler lands exactly on it whatever the
// noise, and overlapping segments agree (blending leaves the value as it is). Decode is causal
// like those VAEs': the first latent frame of a call gives one frame (channel 0), every other r
// frames (channels 0..r-1). It draws each frame's time in milliseconds as kBars vertical bars
// over the whole picture, most significant bit first, white = 1: a reader needs only the frame's
// pixels and the fps to know which frame it is. A chunk decoded without the latent frame before
// it comes out one frame short, with the wrong times: the test of chunk context.
#include "common/model/builtin.h"
#include "common/plan/timeline.h"

namespace segue::model {
namespace {

constexpr int kBars = 20;  // milliseconds up to 2^20: 17 minutes

class StampModel final : public Model {
 public:
  explicit StampModel(const std::string& name) {
    static_cast<ModelMetadata&>(info_) = *BuiltinMetadata(name);  // what the farm plans with
    info_.prediction = Prediction::kX0;
    info_.default_steps = 2;
  }

  const ModelInfo& info() const override { return info_; }

  PromptEncoding EncodePrompt(const std::string&) override {
    return PooledPrompt(torch::zeros({8}, torch::kFloat32));
  }

  torch::Tensor Denoise(const torch::Tensor& latents, const torch::Tensor&,
                        const Conditioning& cond) override {
    const int C = info_.latent_channels, r = info_.temporal_compression;
    TORCH_CHECK(latents.dim() == 5 && latents.size(1) == C, "stamp: latents must be [B, ", C,
                ", T, h, w]");
    TORCH_CHECK(cond.fps > 0, "stamp: needs the frame rate");
    torch::Tensor x0 = torch::zeros_like(latents, torch::kFloat32);
    const int64_t B = latents.size(0), T = latents.size(2);
    const LatentTimeline timeline(r);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < T; ++t) {
        const int64_t g = cond.first_latent + t;
        const int64_t held = g == 0 ? 1 : r;
        for (int64_t c = 0; c < held; ++c) {
          const double seconds = static_cast<double>(timeline.FirstFrame(g) + c) / cond.fps;
          x0[b][c][t].fill_(static_cast<float>(seconds));
        }
      }
    }
    return x0;
  }

  torch::Tensor Decode(const torch::Tensor& latents) override {
    const int C = info_.latent_channels, r = info_.temporal_compression;
    TORCH_CHECK(latents.dim() == 5 && latents.size(1) == C, "stamp: latents must be [B, ", C,
                ", T, h, w]");
    const int64_t B = latents.size(0), T = latents.size(2), F = 1 + r * (T - 1);
    const int64_t H = latents.size(3) * info_.spatial_compression;
    const int64_t W = latents.size(4) * info_.spatial_compression;
    // [B, C, T] seconds: each channel's plane averaged.
    torch::Tensor seconds = latents.to(torch::kFloat64).mean({3, 4}).contiguous();
    torch::Tensor out = torch::zeros({B, 3, F, H, W}, torch::kFloat32);
    auto o = out.accessor<float, 5>();
    auto s = seconds.accessor<double, 3>();
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t f = 0; f < F; ++f) {
        // Frame f of the call: latent frame 0 gives frame 0, latent t >= 1 frames 1 + r (t - 1)..
        const int64_t t = f == 0 ? 0 : 1 + (f - 1) / r;
        const int64_t c = f == 0 ? 0 : (f - 1) % r;
        const int64_t ms = std::llround(s[b][c][t] * 1000.0);
        for (int64_t x = 0; x < W; ++x) {
          const int64_t bar = x * kBars / W;
          if (!((ms >> (kBars - 1 - bar)) & 1)) continue;
          for (int k = 0; k < 3; ++k)
            for (int64_t y = 0; y < H; ++y) o[b][k][f][y][x] = 1.f;
        }
      }
    }
    return out;
  }

 private:
  ModelInfo info_;
};

}  // namespace

std::unique_ptr<Model> CreateStampModel(const std::string& name) {
  return std::make_unique<StampModel>(name);
}

}  // namespace segue::model
