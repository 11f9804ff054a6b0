// The built-in reference model `zoom`: an endless zoom into a procedural world whose look follows
// the prompts. It needs no weights, so the whole farm runs, is tested and benchmarked on a CPU.
//
// Prior: the clean latent video x0 is one of K procedural "worlds" W_k (k < K), each equally
// likely. W_k depends on the per-frame conditioning (palette and pattern follow the prompt),
// the global frame time (the camera: zoom or pan) and k (the phases of every layer's waves and
// a tint; the waves' directions and frequencies are shared, so worlds are variations of one
// look). Under
// flow matching x_t = (1 - s) x0 + s eps, the denoiser returns the exact posterior mean
//     E[x0 | x_t] = sum_k r_k W_k,  r = softmax_k( -|x_t - (1 - s) W_k|^2 / (2 s^2) ),
// with the norm over the whole segment. Which world a segment ends in depends on its initial
// noise, so independently rendered neighbours disagree in their overlap, as with real models.
//
// Latents: 4 channels at 1/8 of the picture size, one latent frame per frame. Channels 0-2 hold
// colour, channel 3 a smooth "relief" field that the decoder turns into fine contour lines at
// full resolution, so the picture is sharp although the latents are small.
//
// Determinism: every loop writes each output element from inputs in a fixed order; reductions
// are per frame in double, summed in frame order. Results do not depend on the thread count.
#include <xxhash.h>

#include <cmath>
#include <deque>
#include <mutex>

#include "common/model/builtin.h"

namespace segue::model {
namespace {

constexpr int kChannels = 4;
constexpr int kCompression = 8;
constexpr int kWorlds = 4;
constexpr int kEmbedDim = 16;
constexpr int kLayers =
    6;  // octaves n = floor(L) - 1 ... floor(L) + 4 cover the bump (-1, 4) for any L
// Latents are the pictures' features times this, so that they stand out of unit noise as a
// trained VAE's scaled latents do; the decoder divides it out.
constexpr float kLatentScale = 3.f;

float HashUnit(uint64_t h, int lane) {  // deterministic value in [0, 1)
  uint64_t x = h ^ (0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(lane + 1));
  x = (x ^ (x >> 33)) * 0xff51afd7ed558ccdULL;
  x = (x ^ (x >> 33)) * 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return static_cast<float>(x >> 40) / static_cast<float>(1 << 24);
}

uint64_t Hash(const void* data, size_t n, uint64_t seed = 0) { return XXH64(data, n, seed); }

// Colour words nudge the palette so prompts read as they say.
struct ColourWord {
  const char* word;
  float r, g, b;
};
constexpr ColourWord kColourWords[] = {
    {"golden", 0.9f, 0.6f, -0.3f}, {"gold", 0.9f, 0.6f, -0.3f},    {"sunset", 0.9f, 0.2f, -0.2f},
    {"red", 0.9f, -0.5f, -0.5f},   {"blue", -0.5f, -0.1f, 0.9f},   {"night", -0.7f, -0.6f, 0.1f},
    {"green", -0.4f, 0.8f, -0.4f}, {"forest", -0.5f, 0.5f, -0.4f}, {"snow", 0.8f, 0.8f, 0.9f},
    {"winter", 0.4f, 0.5f, 0.8f},  {"sea", -0.6f, 0.2f, 0.7f},     {"ocean", -0.6f, 0.2f, 0.7f},
    {"neon", 0.6f, -0.6f, 0.9f},   {"grain", 0.2f, 0.1f, -0.1f},   {"sepia", 0.5f, 0.2f, -0.4f},
    {"rain", -0.3f, -0.2f, 0.2f},  {"fire", 0.95f, 0.3f, -0.7f},   {"spring", 0.2f, 0.8f, 0.1f},
};

class ZoomModel final : public Model {
 public:
  ZoomModel() {
    info_.name = "zoom";
    info_.latent_channels = kChannels;
    info_.spatial_compression = kCompression;
    info_.temporal_compression = 1;
    info_.native_clip_length = 48;
    info_.prediction = Prediction::kX0;
    info_.default_steps = 30;
  }

  const ModelInfo& info() const override { return info_; }

  torch::Tensor EncodePrompt(const std::string& text) override {
    torch::Tensor e = torch::zeros({kEmbedDim}, torch::kFloat32);
    float* p = e.data_ptr<float>();
    float colour[3] = {0, 0, 0};
    int colour_hits = 0;
    std::string word;
    auto flush = [&] {
      if (word.empty()) return;
      uint64_t h = Hash(word.data(), word.size(), 0x2007);
      for (int i = 0; i < kEmbedDim; ++i) p[i] += 2.f * HashUnit(h, i) - 1.f;
      for (const auto& c : kColourWords) {
        if (word == c.word) colour[0] += c.r, colour[1] += c.g, colour[2] += c.b, ++colour_hits;
      }
      word.clear();
    };
    for (char ch : text) {
      if (std::isalnum(static_cast<unsigned char>(ch)))
        word.push_back(static_cast<char>(std::tolower(ch)));
      else
        flush();
    }
    flush();
    double norm = 0;
    for (int i = 0; i < kEmbedDim; ++i) norm += static_cast<double>(p[i]) * p[i];
    const float inv = norm > 0 ? static_cast<float>(1.0 / std::sqrt(norm)) * 2.f : 0.f;
    for (int i = 0; i < kEmbedDim; ++i) p[i] *= inv;
    if (colour_hits > 0) {
      for (int i = 0; i < 3; ++i)
        p[i] = 0.35f * p[i] + 1.6f * colour[i] / static_cast<float>(colour_hits);
    }
    return e;
  }

  torch::Tensor Denoise(const torch::Tensor& latents, const torch::Tensor& sigma,
                        const Conditioning& cond) override {
    TORCH_CHECK(latents.dim() == 5 && latents.size(1) == kChannels,
                "zoom: latents must be [B, 4, T, h, w]");
    TORCH_CHECK(latents.scalar_type() == torch::kFloat32, "zoom: latents must be float32");
    const int64_t B = latents.size(0), T = latents.size(2), h = latents.size(3),
                  w = latents.size(4);
    torch::Tensor x = latents.contiguous();
    torch::Tensor out = torch::empty_like(x);
    torch::Tensor sig = sigma.to(torch::kFloat64).contiguous();
    for (int64_t b = 0; b < B; ++b) {
      const torch::Tensor& worlds = Worlds(cond, b, T, h, w);  // [K, C, T, h, w]
      const float* W = worlds.data_ptr<float>();
      const float* xb = x.data_ptr<float>() + b * kChannels * T * h * w;
      float* ob = out.data_ptr<float>() + b * kChannels * T * h * w;
      const double s = sig.data_ptr<double>()[b];
      const int64_t per_world = kChannels * T * h * w;
      const int64_t frame = h * w;
      // Squared distances per world, reduced per (world, frame) then in a fixed order.
      std::vector<double> partial(static_cast<size_t>(kWorlds * T), 0.0);
      const float a = static_cast<float>(1.0 - s);
      at::parallel_for(0, kWorlds * T, 1, [&](int64_t begin, int64_t end) {
        for (int64_t kt = begin; kt < end; ++kt) {
          const int64_t k = kt / T, t = kt % T;
          double acc = 0;
          for (int c = 0; c < kChannels; ++c) {
            const float* wp = W + k * per_world + (c * T + t) * frame;
            const float* xp = xb + (c * T + t) * frame;
            for (int64_t i = 0; i < frame; ++i) {
              const double d = static_cast<double>(xp[i]) - static_cast<double>(a * wp[i]);
              acc += d * d;
            }
          }
          partial[static_cast<size_t>(kt)] = acc;
        }
      });
      double logw[kWorlds], best = -INFINITY;
      for (int k = 0; k < kWorlds; ++k) {
        double d2 = 0;
        for (int64_t t = 0; t < T; ++t) d2 += partial[static_cast<size_t>(k * T + t)];
        logw[k] = s > 0 ? -d2 / (2.0 * s * s) : 0.0;
        best = std::max(best, logw[k]);
      }
      double total = 0;
      for (double& l : logw) total += (l = std::exp(l - best));
      float r[kWorlds];
      for (int k = 0; k < kWorlds; ++k) r[k] = static_cast<float>(logw[k] / total);
      at::parallel_for(0, kChannels * T, 1, [&](int64_t begin, int64_t end) {
        for (int64_t ct = begin; ct < end; ++ct) {
          float* op = ob + ct * frame;
          for (int64_t i = 0; i < frame; ++i) {
            float v = 0.f;
            for (int k = 0; k < kWorlds; ++k) v += r[k] * W[k * per_world + ct * frame + i];
            op[i] = v;
          }
        }
      });
    }
    return out;
  }

  torch::Tensor Decode(const torch::Tensor& latents) override {
    TORCH_CHECK(latents.dim() == 5 && latents.size(1) == kChannels,
                "zoom: latents must be [B, 4, T, h, w]");
    torch::Tensor x = latents.to(torch::kFloat32).contiguous();
    const int64_t B = x.size(0), T = x.size(2), h = x.size(3), w = x.size(4);
    const int64_t H = h * kCompression, Wd = w * kCompression;
    torch::Tensor out = torch::empty({B, 3, T, H, Wd}, torch::kFloat32);
    const float* in = x.data_ptr<float>();
    float* o = out.data_ptr<float>();
    at::parallel_for(0, B * T, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bt = begin; bt < end; ++bt) {
        const int64_t b = bt / T, t = bt % T;
        for (int64_t Y = 0; Y < H; ++Y) {
          // Bilinear, half-pixel centres (as align_corners=false).
          const float sy = std::clamp((static_cast<float>(Y) + 0.5f) / kCompression - 0.5f, 0.f,
                                      static_cast<float>(h - 1));
          const int64_t y0 = static_cast<int64_t>(sy), y1 = std::min(y0 + 1, h - 1);
          const float fy = sy - static_cast<float>(y0);
          for (int64_t X = 0; X < Wd; ++X) {
            const float sx = std::clamp((static_cast<float>(X) + 0.5f) / kCompression - 0.5f, 0.f,
                                        static_cast<float>(w - 1));
            const int64_t x0 = static_cast<int64_t>(sx), x1 = std::min(x0 + 1, w - 1);
            const float fx = sx - static_cast<float>(x0);
            float v[kChannels];
            for (int c = 0; c < kChannels; ++c) {
              const float* p = in + ((b * kChannels + c) * T + t) * h * w;
              const float top = p[y0 * w + x0] * (1 - fx) + p[y0 * w + x1] * fx;
              const float bot = p[y1 * w + x0] * (1 - fx) + p[y1 * w + x1] * fx;
              v[c] = (top * (1 - fy) + bot * fy) * (1.f / kLatentScale);
            }
            // Contour lines of the relief field, sharp at full resolution.
            const float line = 0.5f + 0.5f * std::cos(static_cast<float>(2.0 * M_PI) * 2.f * v[3]);
            const float shade = 0.78f + 0.22f * line * line * line * line;
            for (int c = 0; c < 3; ++c) {
              float px = (0.5f + 0.5f * v[c]) * shade;
              o[(((b * 3 + c) * T + t) * H + Y) * Wd + X] = std::clamp(px, 0.f, 1.f);
            }
          }
        }
      }
    });
    return out;
  }

 private:
  // World latents for batch item b: [K, C, T, h, w]. Cached: a sampler calls Denoise with the
  // same conditioning at every step.
  const torch::Tensor& Worlds(const Conditioning& cond, int64_t b, int64_t T, int64_t h,
                              int64_t w) {
    torch::Tensor emb = cond.embeddings[b].to(torch::kFloat32).contiguous();     // [T, D]
    torch::Tensor times = cond.frame_times[b].to(torch::kFloat64).contiguous();  // [T]
    TORCH_CHECK(emb.size(0) == T && emb.size(1) == kEmbedDim,
                "zoom: conditioning must be [B, T, 16]");
    TORCH_CHECK(times.size(0) == T, "zoom: frame_times must be [B, T]");
    uint64_t key = Hash(emb.data_ptr<float>(), static_cast<size_t>(emb.numel()) * 4, 1);
    key = Hash(times.data_ptr<double>(), static_cast<size_t>(T) * 8, key);
    double extra[5] = {static_cast<double>(cond.camera), cond.camera_speed, static_cast<double>(h),
                       static_cast<double>(w),
                       static_cast<double>(cond.width) / std::max(1, cond.height)};
    key = Hash(extra, sizeof extra, key);
    for (auto& [k, worlds] : cache_) {
      if (k == key) return worlds;
    }
    if (cache_.size() >= kCacheEntries) cache_.pop_front();  // oldest first
    cache_.emplace_back(key, torch::empty({kWorlds, kChannels, T, h, w}, torch::kFloat32));
    float* out = cache_.back().second.data_ptr<float>();
    const float* e = emb.data_ptr<float>();
    const double* tt = times.data_ptr<double>();
    const double aspect = cond.height > 0 ? static_cast<double>(cond.width) / cond.height
                                          : static_cast<double>(w) / h;
    at::parallel_for(0, kWorlds * T, 1, [&](int64_t begin, int64_t end) {
      for (int64_t kt = begin; kt < end; ++kt) {
        const int k = static_cast<int>(kt / T);
        const int64_t t = kt % T;
        RenderWorldFrame(k, e + t * kEmbedDim, tt[t], cond.camera, cond.camera_speed, aspect, T, t,
                         h, w, out + static_cast<int64_t>(k) * kChannels * T * h * w);
      }
    });
    return cache_.back().second;
  }

  // Writes world k's latents for one frame (time `time`) into channel planes of `dst`.
  static void RenderWorldFrame(int k, const float* e, double time, CameraMotion camera,
                               double speed, double aspect, int64_t T, int64_t t, int64_t h,
                               int64_t w, float* dst) {
    double L = 0, ox = 0;
    switch (camera) {
      case CameraMotion::kZoomIn:
        L = speed * time;
        break;
      case CameraMotion::kZoomOut:
        L = -speed * time;
        break;
      case CameraMotion::kPanLeft:
        ox = -speed * time * 2.0 * aspect;
        break;
      case CameraMotion::kPanRight:
        ox = speed * time * 2.0 * aspect;
        break;
      case CameraMotion::kStatic:
        break;
    }
    const uint64_t world_seed = 0x5e9e000ULL + static_cast<uint64_t>(k);
    float base[3], accent[3], tint[3];
    for (int c = 0; c < 3; ++c) {
      base[c] = 0.8f * std::tanh(1.5f * e[c]);
      accent[c] = 0.9f * std::tanh(2.f * e[3 + c]);
      tint[c] = 0.25f * (2.f * HashUnit(world_seed, 40 + c) - 1.f);
    }
    const double freq = 1.0 + 0.4 * std::tanh(static_cast<double>(e[6]));
    const double swirl = 0.6 * std::tanh(static_cast<double>(e[7]));
    const int64_t n0 = static_cast<int64_t>(std::floor(L)) - 1;
    double weight[kLayers], scale[kLayers], d1x[kLayers], d1y[kLayers], d2x[kLayers], d2y[kLayers],
        p1[kLayers], p2[kLayers], p3[kLayers];
    // How much of each world is rings around the centre of the zoom (the zoom reads at a glance)
    // and how much a woven texture.
    const double rings = 0.35 + 0.5 * HashUnit(0x5e9e, 50);
    for (int l = 0; l < kLayers; ++l) {
      const int64_t n = n0 + l;
      const double u = static_cast<double>(n) - L;  // in (-2, 5): the bump is zero outside (-1, 4)
      const double v = (u - 1.5) / 2.5;
      weight[l] = std::abs(v) < 1 ? std::pow(std::cos(M_PI * v / 2), 2) : 0.0;
      scale[l] = std::exp2(u - 2.0) * freq * 2.0 * M_PI;  // 1/8 to 4 cycles per unit
      // Directions and frequencies belong to the layer (shared by all worlds), phases to the
      // world.
      const uint64_t lh = 0x5e9e1a7e5ULL ^ static_cast<uint64_t>(n) * 0x9e3779b97f4a7c15ULL;
      const uint64_t ph =
          world_seed * 0x100000001b3ULL ^ static_cast<uint64_t>(n) * 0xc2b2ae3d27d4eb4fULL;
      const double a1 = 2 * M_PI * HashUnit(lh, 1), a2 = 2 * M_PI * HashUnit(lh, 2) + swirl;
      d1x[l] = std::cos(a1), d1y[l] = std::sin(a1);
      d2x[l] = std::cos(a2), d2y[l] = std::sin(a2);
      p1[l] = 2 * M_PI * HashUnit(ph, 3);
      p2[l] = 2 * M_PI * HashUnit(ph, 4);
      p3[l] = 2 * M_PI * HashUnit(ph, 5);
    }
    const double zoom = std::exp2(L);
    for (int64_t i = 0; i < h; ++i) {
      const double y = ((static_cast<double>(i) + 0.5) / h * 2.0 - 1.0);
      for (int64_t j = 0; j < w; ++j) {
        const double x = ((static_cast<double>(j) + 0.5) / w * 2.0 - 1.0) * aspect;
        // Layer n sees the world at 2^n: q = (screen / zoom + pan) * 2^n = (screen + pan * zoom) *
        // scale.
        const double wx = x + ox * zoom, wy = y;
        double v = 0, relief = 0, wsum2 = 0;
        for (int l = 0; l < kLayers; ++l) {
          if (weight[l] == 0) continue;
          const double qx = wx * scale[l], qy = wy * scale[l];
          const double g1 = std::sin(qx * d1x[l] + qy * d1y[l] + p1[l]);
          const double g2 = std::sin(qx * d2x[l] + qy * d2y[l] + p2[l]);
          const double ring = std::sin(std::sqrt(qx * qx + qy * qy) + p3[l]);
          v += weight[l] * (rings * ring + (1 - rings) * g1 * g2);
          relief += weight[l] * (rings * ring + (1 - rings) * 0.5 * (g1 + g2));
          wsum2 += weight[l] * weight[l];
        }
        // Normalised by the weights' energy, not their sum: the mix keeps its contrast.
        const double norm = 1.0 / std::sqrt(wsum2);
        v = std::tanh(1.4 * v * norm);
        relief = std::tanh(1.2 * relief * norm);
        const float m = static_cast<float>(0.3 + 0.3 * v);
        const float light = static_cast<float>(0.25 * relief);
        const int64_t at = t * h * w + i * w + j;
        for (int c = 0; c < 3; ++c)
          dst[c * T * h * w + at] =
              kLatentScale * (base[c] * (1 - m) + accent[c] * m + tint[c] + light);
        dst[3 * T * h * w + at] = kLatentScale * static_cast<float>(relief);
      }
    }
  }

  // Worlds of the last few conditionings: co-denoised segments and guidance alternate between
  // several at every step.
  static constexpr size_t kCacheEntries = 16;
  ModelInfo info_;
  std::deque<std::pair<uint64_t, torch::Tensor>> cache_;
};

}  // namespace

std::unique_ptr<Model> CreateZoomModel() { return std::make_unique<ZoomModel>(); }

std::vector<std::string> BuiltinModelNames() { return {"stamp", "zoom"}; }

std::unique_ptr<Model> CreateBuiltinModel(const std::string& name) {
  if (name == "zoom") return CreateZoomModel();
  if (name == "stamp") return CreateStampModel();
  return nullptr;
}

}  // namespace segue::model
