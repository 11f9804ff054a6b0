// The built-in diagnostic model `stamp`: every frame shows its own time, so that a delivered
// video can be checked frame by frame (docs/MODELS.md).
//
// The prior is a point mass: the clean latents of a frame are its global time in seconds in
// channel 0 and zeros elsewhere, so the sampler lands exactly on them whatever the noise, and
// overlapping segments agree (blending leaves the value as it is). Decode draws the time in
// milliseconds as kBars vertical bars over the whole picture, most significant bit first,
// white = 1: a reader needs only the frame's pixels and the fps to know which frame it is.
#include "common/model/builtin.h"

namespace segue::model {
namespace {

constexpr int kChannels = 4;
constexpr int kCompression = 8;
constexpr int kBars = 20;  // milliseconds up to 2^20: 17 minutes

class StampModel final : public Model {
 public:
  StampModel() {
    info_.name = "stamp";
    info_.latent_channels = kChannels;
    info_.spatial_compression = kCompression;
    info_.native_clip_length = 48;
    info_.prediction = Prediction::kX0;
    info_.default_steps = 2;
  }

  const ModelInfo& info() const override { return info_; }

  torch::Tensor EncodePrompt(const std::string&) override {
    return torch::zeros({8}, torch::kFloat32);
  }

  torch::Tensor Denoise(const torch::Tensor& latents, const torch::Tensor&,
                        const Conditioning& cond) override {
    TORCH_CHECK(latents.dim() == 5 && latents.size(1) == kChannels,
                "stamp: latents must be [B, 4, T, h, w]");
    torch::Tensor x0 = torch::zeros_like(latents, torch::kFloat32);
    const int64_t B = latents.size(0), T = latents.size(2);
    torch::Tensor times = cond.frame_times.to(torch::kFloat64).contiguous();
    TORCH_CHECK(times.size(0) == B && times.size(1) == T, "stamp: frame_times must be [B, T]");
    const double* tp = times.data_ptr<double>();
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < T; ++t) x0[b][0][t].fill_(static_cast<float>(tp[b * T + t]));
    }
    return x0;
  }

  torch::Tensor Decode(const torch::Tensor& latents) override {
    TORCH_CHECK(latents.dim() == 5 && latents.size(1) == kChannels,
                "stamp: latents must be [B, 4, T, h, w]");
    const int64_t B = latents.size(0), T = latents.size(2);
    const int64_t H = latents.size(3) * kCompression, W = latents.size(4) * kCompression;
    torch::Tensor seconds = latents.select(1, 0).to(torch::kFloat64).mean({2, 3}).contiguous();
    torch::Tensor out = torch::zeros({B, 3, T, H, W}, torch::kFloat32);
    auto o = out.accessor<float, 5>();
    const double* s = seconds.data_ptr<double>();
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < T; ++t) {
        const int64_t ms = std::llround(s[b * T + t] * 1000.0);
        for (int64_t x = 0; x < W; ++x) {
          const int64_t bar = x * kBars / W;
          if (!((ms >> (kBars - 1 - bar)) & 1)) continue;
          for (int c = 0; c < 3; ++c)
            for (int64_t y = 0; y < H; ++y) o[b][c][t][y][x] = 1.f;
        }
      }
    }
    return out;
  }

 private:
  ModelInfo info_;
};

}  // namespace

std::unique_ptr<Model> CreateStampModel() { return std::make_unique<StampModel>(); }

}  // namespace segue::model
