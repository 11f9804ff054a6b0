// The built-in reference model `zoom`: an endless zoom into a procedural world whose look follows
// the prompts. It needs no weights, so the whole farm runs, is tested and benchmarked on a CPU.
//
// Prior: K procedural "worlds" W_k (k < K). W_k depends on the per-frame conditioning (palette
// and pattern follow the prompt), the global frame time (the camera: zoom or pan) and k (small
// offsets to every layer's wave phases and a tint; directions and frequencies are shared, so
// worlds are variations of one look). Global time is cut into blocks kBlockSeconds long; each
// block b independently picks a world k_b, uniformly, and the clean latent video crossfades
// between the picks of neighbouring block centres:
//     x0(t) = c(t) W_{k_b}(t) + (1 - c(t)) W_{k_{b+1}}(t),  c = cos^2(pi/2 * (u - b)),
// u = time / kBlockSeconds, b = floor(u). A mixture, then, over the K^B block choices, local in
// global time: what a frame becomes depends on the noise of the frames near it, so segments
// rendered apart disagree where they overlap, and a segment that shares frames with its
// neighbour (co-denoised) or starts from its frames (chained) can agree with it, as with real
// video models. (A single world per segment decided everything at the sampler's second step from
// the whole segment, before any exchange could matter.)
//
// Denoiser: the exact posterior mean under flow matching x_t = (1 - s) x0 + s eps. Each frame
// t couples the picks of its two blocks through
//     log psi(k_b, k_{b+1}) += -|x_t - (1 - s_t)(c W_i + (1 - c) W_j)|^2 / (2 s_t^2),
// which expands into <x_t, W_k(t)> (per step) and the worlds' Gram matrix (cached); the forward-
// backward recursions over the chain of blocks give each block's posterior gamma_b, and
//     E[x0(t) | x] = sum_k (c gamma_b(k) + (1 - c) gamma_{b+1}(k)) W_k(t).
// s_t is the call's sigma, or the frame's own level from Conditioning::frame_sigma: frames at
// level 0 are observations (a chained segment's guide), which is what lets the rest follow them.
//
// Latents: 4 channels at 1/8 of the picture size, one latent frame per frame. Channels 0-2 hold
// colour, channel 3 a smooth "relief" field that the decoder turns into fine contour lines at
// full resolution, so the picture is sharp although the latents are small.
//
// Determinism: every loop writes each output element from inputs in a fixed order; reductions
// are per frame in double, summed in frame order. Results do not depend on the thread count.
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <mutex>
#include <vector>

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
// Seconds between the centres of consecutive world blocks (file comment).
constexpr double kBlockSeconds = 1.5;
// How far worlds stray from one another: the part of a full turn their wave phases may differ
// by, and the scale of their tints. Small enough that a block's world is settled over several
// sampler steps (so exchanged or guiding frames can still steer it), large enough that two
// worlds cut together show (segue seams: about 4-6 for independent segments without blending).
constexpr double kWorldSpread = 0.1;
// Noise levels below this count as this: a frame at level 0 is an exact observation.
constexpr double kMinSigma = 1e-3;

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
  explicit ZoomModel(const std::string& name = "zoom") {
    static_cast<ModelMetadata&>(info_) = *BuiltinMetadata(name);  // what the farm plans with
    TORCH_CHECK(info_.latent_channels == kChannels && info_.spatial_compression == kCompression);
    info_.prediction = Prediction::kX0;
    info_.default_steps = 30;
    info_.frame_noise_levels = true;
  }

  const ModelInfo& info() const override { return info_; }

  // The prior's worlds under batch item 0 of `cond`, [K, C, T, h, w] (ZoomPriorFor).
  torch::Tensor WorldsOf(const Conditioning& cond, int64_t h, int64_t w) {
    return Worlds(cond, 0, cond.frame_times.size(1), h, w).worlds.clone();
  }

  PromptEncoding EncodePrompt(const std::string& text) override {
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
    return PooledPrompt(e);
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
    torch::Tensor frame_sig;
    if (cond.frame_sigma.defined()) {
      frame_sig = cond.frame_sigma.to(torch::kFloat64).contiguous();
      TORCH_CHECK(frame_sig.dim() == 2 && frame_sig.size(0) == B && frame_sig.size(1) == T,
                  "zoom: frame_sigma must be [B, T]");
    }
    for (int64_t b = 0; b < B; ++b) {
      const CachedWorlds& cached = Worlds(cond, b, T, h, w);
      const float* W = cached.worlds.data_ptr<float>();  // [K, C, T, h, w]
      const float* xb = x.data_ptr<float>() + b * kChannels * T * h * w;
      float* ob = out.data_ptr<float>() + b * kChannels * T * h * w;
      std::vector<double> levels(static_cast<size_t>(T), sig.data_ptr<double>()[b]);
      if (frame_sig.defined()) std::copy_n(frame_sig.data_ptr<double>() + b * T, T, levels.begin());
      const int64_t per_world = kChannels * T * h * w;
      const int64_t frame = h * w;
      // <x_t, W_k(t)> per (world, frame); each a fixed-order sum.
      std::vector<double> dot(static_cast<size_t>(kWorlds * T), 0.0);
      at::parallel_for(0, kWorlds * T, 1, [&](int64_t begin, int64_t end) {
        for (int64_t kt = begin; kt < end; ++kt) {
          const int64_t k = kt / T, t = kt % T;
          double acc = 0;
          for (int c = 0; c < kChannels; ++c) {
            const float* wp = W + k * per_world + (c * T + t) * frame;
            const float* xp = xb + (c * T + t) * frame;
            for (int64_t i = 0; i < frame; ++i)
              acc += static_cast<double>(xp[i]) * static_cast<double>(wp[i]);
          }
          dot[static_cast<size_t>(kt)] = acc;
        }
      });
      const std::vector<float> r = FrameWeights(cached, dot, levels, T);  // [T, K]
      at::parallel_for(0, kChannels * T, 1, [&](int64_t begin, int64_t end) {
        for (int64_t ct = begin; ct < end; ++ct) {
          const float* rt = r.data() + (ct % T) * kWorlds;
          float* op = ob + ct * frame;
          for (int64_t i = 0; i < frame; ++i) {
            float v = 0.f;
            for (int k = 0; k < kWorlds; ++k) v += rt[k] * W[k * per_world + ct * frame + i];
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
    // Bilinear, half-pixel centres (as align_corners=false): each output column's two latent
    // columns and weight, and each row's, the same for every frame.
    struct Tap {
      int64_t i0, i1;
      float f;
    };
    auto taps = [](int64_t out_size, int64_t in_size) {
      std::vector<Tap> t(static_cast<size_t>(out_size));
      for (int64_t X = 0; X < out_size; ++X) {
        const float s = std::clamp((static_cast<float>(X) + 0.5f) / kCompression - 0.5f, 0.f,
                                   static_cast<float>(in_size - 1));
        const int64_t i0 = static_cast<int64_t>(s);
        t[static_cast<size_t>(X)] = {i0, std::min(i0 + 1, in_size - 1), s - static_cast<float>(i0)};
      }
      return t;
    };
    const std::vector<Tap> cols = taps(Wd, w), rows = taps(H, h);
    at::parallel_for(0, B * T, 1, [&](int64_t begin, int64_t end) {
      // The horizontal pass over the two latent rows an output row reads, per channel: shared by
      // the kCompression output rows between those latent rows. The arithmetic is the same, in
      // the same order, as interpolating each pixel on its own (the pictures do not change).
      std::vector<float> top(static_cast<size_t>(kChannels * Wd));
      std::vector<float> bot(top.size());
      for (int64_t bt = begin; bt < end; ++bt) {
        const int64_t b = bt / T, t = bt % T;
        int64_t filled = -1;  // the latent row `top` holds
        for (int64_t Y = 0; Y < H; ++Y) {
          const Tap& ry = rows[static_cast<size_t>(Y)];
          if (ry.i0 != filled) {
            for (int c = 0; c < kChannels; ++c) {
              const float* p = in + ((b * kChannels + c) * T + t) * h * w;
              const float* r0 = p + ry.i0 * w;
              const float* r1 = p + ry.i1 * w;
              float* tc = top.data() + c * Wd;
              float* bc = bot.data() + c * Wd;
              for (int64_t X = 0; X < Wd; ++X) {
                const Tap& cx = cols[static_cast<size_t>(X)];
                tc[X] = r0[cx.i0] * (1 - cx.f) + r0[cx.i1] * cx.f;
                bc[X] = r1[cx.i0] * (1 - cx.f) + r1[cx.i1] * cx.f;
              }
            }
            filled = ry.i0;
          }
          const float fy = ry.f;
          float* orow[3];
          for (int c = 0; c < 3; ++c) orow[c] = o + (((b * 3 + c) * T + t) * H + Y) * Wd;
          for (int64_t X = 0; X < Wd; ++X) {
            float v[kChannels];
            for (int c = 0; c < kChannels; ++c) {
              const size_t i = static_cast<size_t>(c * Wd + X);
              v[c] = (top[i] * (1 - fy) + bot[i] * fy) * (1.f / kLatentScale);
            }
            // Contour lines of the relief field, sharp at full resolution.
            const float line = 0.5f + 0.5f * std::cos(static_cast<float>(2.0 * M_PI) * 2.f * v[3]);
            const float shade = 0.78f + 0.22f * line * line * line * line;
            for (int c = 0; c < 3; ++c) {
              float px = (0.5f + 0.5f * v[c]) * shade;
              orow[c][X] = std::clamp(px, 0.f, 1.f);
            }
          }
        }
      }
    });
    return Causal(out);
  }

  // zoom4: each latent frame's picture is the last of its r frames; the frames before it blend
  // from the previous latent frame's picture (a causal decoder that carries one latent frame of
  // state: decode_context_before = 1). The first latent frame of a call is one frame.
  torch::Tensor Causal(const torch::Tensor& pictures) const {
    const int r = info_.temporal_compression;
    if (r == 1) return pictures;
    const int64_t T = pictures.size(2);
    std::vector<torch::Tensor> frames{pictures.narrow(2, 0, 1)};
    for (int64_t t = 1; t < T; ++t) {
      torch::Tensor prev = pictures.narrow(2, t - 1, 1), cur = pictures.narrow(2, t, 1);
      for (int c = 0; c < r; ++c) {
        const float w = static_cast<float>(c + 1) / static_cast<float>(r);
        frames.push_back(prev * (1.f - w) + cur * w);
      }
    }
    return torch::cat(frames, 2);
  }

 private:
  // The worlds under one conditioning, with what every denoise call under it needs.
  struct CachedWorlds {
    uint64_t key = 0;
    torch::Tensor worlds;        // [K, C, T, h, w] float32
    std::vector<double> gram;    // [T, K, K]: <W_i(t), W_j(t)>
    std::vector<int64_t> block;  // [T]: the world block whose centre is at or before frame t
    std::vector<double> fade;    // [T]: weight of `block` at frame t; block + 1 has the rest
  };

  // Posterior weight of each world at each frame, [T, K], given <x_t, W_k(t)> in `dot` [K, T].
  // Exact for the chain prior (file comment): pair potentials per block interval, then the
  // forward-backward recursions in log space, all in a fixed order.
  static std::vector<float> FrameWeights(const CachedWorlds& cw, const std::vector<double>& dot,
                                         const std::vector<double>& levels, int64_t T) {
    std::vector<float> r(static_cast<size_t>(T * kWorlds));
    const int64_t lo = cw.block.front(), blocks = cw.block.back() - lo + 2;
    // log psi[interval][i][j]: -|x_t - a (c W_i + (1 - c) W_j)|^2 / 2s^2 summed over the
    // interval's frames, less the |x_t|^2 term every state shares.
    std::vector<double> psi(static_cast<size_t>((blocks - 1) * kWorlds * kWorlds), 0.0);
    for (int64_t t = 0; t < T; ++t) {
      // A frame at level 0 is an exact observation; the floor keeps its evidence finite.
      const double s = std::max(levels[static_cast<size_t>(t)], kMinSigma);
      const double a = 1.0 - s, inv = 1.0 / (2.0 * s * s);
      const double c = cw.fade[static_cast<size_t>(t)], d = 1.0 - c;
      const double* g = cw.gram.data() + t * kWorlds * kWorlds;
      double* p = psi.data() + (cw.block[static_cast<size_t>(t)] - lo) * kWorlds * kWorlds;
      for (int i = 0; i < kWorlds; ++i) {
        for (int j = 0; j < kWorlds; ++j) {
          const double cross =
              c * dot[static_cast<size_t>(i * T + t)] + d * dot[static_cast<size_t>(j * T + t)];
          const double norm2 = c * c * g[i * kWorlds + i] + 2 * c * d * g[i * kWorlds + j] +
                               d * d * g[j * kWorlds + j];
          p[i * kWorlds + j] += (2 * a * cross - a * a * norm2) * inv;
        }
      }
    }
    auto log_sum_exp = [](const double* v, int n, int stride) {
      double m = -INFINITY, total = 0;
      for (int i = 0; i < n; ++i) m = std::max(m, v[i * stride]);
      for (int i = 0; i < n; ++i) total += std::exp(v[i * stride] - m);
      return m + std::log(total);
    };
    std::vector<double> alpha(static_cast<size_t>(blocks * kWorlds), 0.0), beta(alpha.size(), 0.0);
    double tmp[kWorlds];
    for (int64_t n = 0; n + 1 < blocks; ++n) {
      const double* p = psi.data() + n * kWorlds * kWorlds;
      for (int j = 0; j < kWorlds; ++j) {
        for (int i = 0; i < kWorlds; ++i) tmp[i] = alpha[n * kWorlds + i] + p[i * kWorlds + j];
        alpha[(n + 1) * kWorlds + j] = log_sum_exp(tmp, kWorlds, 1);
      }
    }
    for (int64_t n = blocks - 2; n >= 0; --n) {
      const double* p = psi.data() + n * kWorlds * kWorlds;
      for (int i = 0; i < kWorlds; ++i) {
        for (int j = 0; j < kWorlds; ++j) tmp[j] = p[i * kWorlds + j] + beta[(n + 1) * kWorlds + j];
        beta[n * kWorlds + i] = log_sum_exp(tmp, kWorlds, 1);
      }
    }
    std::vector<double> gamma(alpha.size());
    for (int64_t n = 0; n < blocks; ++n) {
      for (int k = 0; k < kWorlds; ++k) tmp[k] = alpha[n * kWorlds + k] + beta[n * kWorlds + k];
      const double z = log_sum_exp(tmp, kWorlds, 1);
      for (int k = 0; k < kWorlds; ++k) gamma[n * kWorlds + k] = std::exp(tmp[k] - z);
    }
    for (int64_t t = 0; t < T; ++t) {
      const double c = cw.fade[static_cast<size_t>(t)];
      const int64_t n = cw.block[static_cast<size_t>(t)] - lo;
      for (int k = 0; k < kWorlds; ++k)
        r[static_cast<size_t>(t * kWorlds + k)] =
            static_cast<float>(c * gamma[n * kWorlds + k] + (1 - c) * gamma[(n + 1) * kWorlds + k]);
    }
    return r;
  }

  // World latents for batch item b. Cached: a sampler calls Denoise with the same conditioning
  // at every step.
  const CachedWorlds& Worlds(const Conditioning& cond, int64_t b, int64_t T, int64_t h, int64_t w) {
    torch::Tensor emb = cond.embeddings[b].to(torch::kFloat32).contiguous();     // [T, D]
    torch::Tensor times = cond.frame_times[b].to(torch::kFloat64).contiguous();  // [T]
    TORCH_CHECK(emb.size(0) == T && emb.size(1) == kEmbedDim,
                "zoom: conditioning must be [B, T, 16]");
    TORCH_CHECK(times.size(0) == T, "zoom: frame_times must be [B, T]");
    for (int64_t t = 1; t < T; ++t)
      TORCH_CHECK(times.data_ptr<double>()[t] >= times.data_ptr<double>()[t - 1],
                  "zoom: frame_times must not decrease");
    uint64_t key = Hash(emb.data_ptr<float>(), static_cast<size_t>(emb.numel()) * 4, 1);
    key = Hash(times.data_ptr<double>(), static_cast<size_t>(T) * 8, key);
    double extra[5] = {static_cast<double>(cond.camera), cond.camera_speed, static_cast<double>(h),
                       static_cast<double>(w),
                       static_cast<double>(cond.width) / std::max(1, cond.height)};
    key = Hash(extra, sizeof extra, key);
    for (const CachedWorlds& c : cache_) {
      if (c.key == key) return c;
    }
    if (cache_.size() >= kCacheEntries) cache_.pop_front();  // oldest first
    CachedWorlds& cw = cache_.emplace_back();
    cw.key = key;
    cw.worlds = torch::empty({kWorlds, kChannels, T, h, w}, torch::kFloat32);
    float* out = cw.worlds.data_ptr<float>();
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
    const int64_t per_world = kChannels * T * h * w, frame = h * w;
    cw.gram.assign(static_cast<size_t>(T * kWorlds * kWorlds), 0.0);
    at::parallel_for(0, T, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        double* g = cw.gram.data() + t * kWorlds * kWorlds;
        for (int i = 0; i < kWorlds; ++i) {
          for (int j = i; j < kWorlds; ++j) {
            double acc = 0;
            for (int c = 0; c < kChannels; ++c) {
              const float* wi = out + i * per_world + (c * T + t) * frame;
              const float* wj = out + j * per_world + (c * T + t) * frame;
              for (int64_t q = 0; q < frame; ++q)
                acc += static_cast<double>(wi[q]) * static_cast<double>(wj[q]);
            }
            g[i * kWorlds + j] = g[j * kWorlds + i] = acc;
          }
        }
      }
    });
    cw.block.resize(static_cast<size_t>(T));
    cw.fade.resize(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      const double u = tt[t] / kBlockSeconds;
      const double f = std::floor(u);
      cw.block[static_cast<size_t>(t)] = static_cast<int64_t>(f);
      const double cosine = std::cos(M_PI / 2 * (u - f));
      cw.fade[static_cast<size_t>(t)] = cosine * cosine;
    }
    return cw;
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
      tint[c] =
          static_cast<float>(kWorldSpread) * 0.25f * (2.f * HashUnit(world_seed, 40 + c) - 1.f);
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
      p1[l] = 2 * M_PI * HashUnit(lh, 8) + kWorldSpread * 2 * M_PI * (HashUnit(ph, 3) - 0.5);
      p2[l] = 2 * M_PI * HashUnit(lh, 9) + kWorldSpread * 2 * M_PI * (HashUnit(ph, 4) - 0.5);
      p3[l] = 2 * M_PI * HashUnit(lh, 10) + kWorldSpread * 2 * M_PI * (HashUnit(ph, 5) - 0.5);
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
  std::deque<CachedWorlds> cache_;
};

}  // namespace

std::unique_ptr<Model> CreateZoomModel(const std::string& name) {
  return std::make_unique<ZoomModel>(name);
}

ZoomPrior ZoomPriorFor(const Conditioning& cond, int64_t h, int64_t w) {
  return {ZoomModel().WorldsOf(cond, h, w), kBlockSeconds};
}

std::vector<std::string> BuiltinModelNames() {
  return {"stamp", "stamp4", "stamp8", "zoom", "zoom4"};
}

std::unique_ptr<Model> CreateBuiltinModel(const std::string& name) {
  if (name == "zoom" || name == "zoom4") return CreateZoomModel(name);
  if (name == "stamp" || name == "stamp4" || name == "stamp8") return CreateStampModel(name);
  return nullptr;
}

}  // namespace segue::model
