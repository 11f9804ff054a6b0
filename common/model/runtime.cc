#include "common/model/runtime.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>

#include "common/model/model.h"
#include "common/model/sampler.h"
#include "common/plan/timeline.h"

namespace segue::model {

std::vector<uint8_t> PicturesToRgbBytes(const torch::Tensor& frames) {
  const int64_t T = frames.size(1), H = frames.size(2), W = frames.size(3);
  const int64_t sc = frames.stride(0), st = frames.stride(1), sy = frames.stride(2),
                sx = frames.stride(3);
  const float* in = frames.data_ptr<float>();
  std::vector<uint8_t> rgb(static_cast<size_t>(T * H * W * 3));
  at::parallel_for(0, T * H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t ty = begin; ty < end; ++ty) {
      const float* row = in + (ty / H) * st + (ty % H) * sy;
      uint8_t* out = rgb.data() + ty * W * 3;
      for (int64_t x = 0; x < W; ++x) {
        for (int64_t c = 0; c < 3; ++c) {
          // Clamped, scaled and offset in separate float operations, as the tensor expression.
          float v = row[c * sc + x * sx];
          v = v >= 0.f ? (v > 1.f ? 1.f : v) : 0.f;
          v = v * 255.0f;
          v = v + 0.5f;
          out[x * 3 + c] = static_cast<uint8_t>(v);
        }
      }
    }
  });
  return rgb;
}

namespace {

// The tensors a checkpoint after `step` steps holds besides the latents.
int SamplerHistorySize(SamplerKind kind, int step) {
  return kind == SamplerKind::kUniPc && step > 0 ? 3 : 0;
}

Result<CameraMotion> ParseCamera(const std::string& s) {
  if (s == "zoom-in") return CameraMotion::kZoomIn;
  if (s == "zoom-out") return CameraMotion::kZoomOut;
  if (s == "pan-left") return CameraMotion::kPanLeft;
  if (s == "pan-right") return CameraMotion::kPanRight;
  if (s == "static") return CameraMotion::kStatic;
  return Result<CameraMotion>::Error("unknown camera motion '" + s + "'");
}

// "cpu", "cuda" or "cuda:N", checked against what this libtorch and machine have.
Result<torch::Device> ParseDevice(const std::string& name) {
  using R = Result<torch::Device>;
  if (name == "cpu") return torch::Device(torch::kCPU);
  if (name.rfind("cuda", 0) != 0) return R::Error("unknown device '" + name + "' (cpu, cuda[:N])");
  std::optional<torch::Device> d;
  try {
    d.emplace(name);
  } catch (const c10::Error&) {
    return R::Error("unknown device '" + name + "' (cpu, cuda[:N])");
  }
  if (!torch::cuda::is_available())
    return R::Error("device '" + name + "' requested but this libtorch has no CUDA device");
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (d->has_index() && d->index() >= count) {
    return R::Error("device '" + name + "' requested but this machine has " +
                    std::to_string(count) + " CUDA device(s)");
  }
  return *d;
}

Tensor ToPlain(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kFloat32).contiguous();
  Tensor out;
  out.shape.assign(c.sizes().begin(), c.sizes().end());
  out.data.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return out;
}

// Everything a segment needs to sample, prepared from a request.
struct Prepared {
  Model* model = nullptr;
  SamplerConfig config;
  Conditioning cond;
  std::optional<Conditioning> uncond;
  torch::Tensor noise;                 // [1, C, T, h, w]
  torch::Tensor guide;                 // [1, C, G, h, w] or undefined
  torch::Tensor resume;                // [1, C, T, h, w] or undefined
  std::vector<torch::Tensor> history;  // the resumed sampler's, each [1, C, T, h, w]
};

class TorchRuntime final : public Runtime {
 public:
  TorchRuntime(const RuntimeOptions& o, torch::Device device) : options_(o), device_(device) {}

  std::vector<std::string> Models() const override {
    std::vector<std::string> out = BuiltinModelNames();
    const size_t builtins = out.size();
    auto add = [&](const std::string& name) {
      if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
    };
    for (const auto& source : options_.sources) {
      for (const auto& name : source.names()) add(name);  // built-ins win
    }
    std::error_code ec;
    if (!options_.models_dir.empty() && std::filesystem::is_directory(options_.models_dir, ec)) {
      for (const auto& e : std::filesystem::directory_iterator(options_.models_dir, ec)) {
        if (e.path().extension() == ".pt") add(e.path().stem().string());
      }
    }
    std::sort(out.begin() + static_cast<std::ptrdiff_t>(builtins), out.end());
    return out;
  }

  std::vector<std::pair<std::string, std::string>> UnavailableModels() const override {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& source : options_.sources) {
      for (auto& u : source.unavailable()) out.push_back(std::move(u));
    }
    return out;
  }

  Result<Tensor> Render(const SegmentRequest& r,
                        const std::function<void(int, int)>& on_step) override {
    auto out = RenderTogether({r}, [&](int i, std::vector<LatentView>&) {
      if (on_step) on_step(i, r.steps);
      return Status::Ok();
    });
    if (!out.ok()) return out.status();
    return std::move((*out)[0]);
  }

  Result<std::vector<Tensor>> RenderTogether(
      const std::vector<SegmentRequest>& requests,
      const std::function<Status(int, std::vector<LatentView>&)>& after_step) override {
    using R = Result<std::vector<Tensor>>;
    if (requests.empty()) return std::vector<Tensor>{};
    try {
      torch::NoGradGuard no_grad;
      std::vector<Prepared> prepared;
      for (const auto& r : requests) {
        auto p = Prepare(r);
        if (!p.ok()) return p.status();
        prepared.push_back(std::move(*p));
      }
      const int steps = requests[0].steps;
      const int first_step = requests[0].resume_step;
      if (first_step < 0 || first_step > steps) return R::Error("resume step out of range");
      for (const auto& r : requests) {
        if (r.resume_step != first_step)
          return R::Error("segments rendered together must resume at the same step");
        if (r.steps != steps)
          return R::Error("segments rendered together must use the same number of steps");
      }
      std::vector<Sampler> samplers;
      std::vector<torch::Tensor> x;
      for (auto& p : prepared) {
        samplers.emplace_back(*p.model, p.config, p.cond, p.uncond);
        if (p.guide.defined()) samplers.back().SetGuide(p.guide);
        x.push_back(p.resume.defined() ? p.resume : samplers.back().Initial(p.noise));
        if (p.resume.defined()) samplers.back().SetHistory(first_step, std::move(p.history));
      }
      std::vector<LatentView> views(x.size());
      for (int i = first_step; i < steps; ++i) {
        for (size_t k = 0; k < x.size(); ++k) {
          ApplyGuide(prepared[k], samplers[k], x[k], i);
          x[k] = samplers[k].Step(i, x[k]).contiguous();
        }
        std::vector<std::vector<torch::Tensor>> history(x.size());  // alive until the callback
        for (size_t k = 0; k < x.size(); ++k) {
          views[k].data = x[k].data_ptr<float>();
          views[k].shape.assign(x[k].sizes().begin() + 1, x[k].sizes().end());
          views[k].history.clear();
          for (torch::Tensor& t : history[k] = samplers[k].History()) {
            t = t.contiguous();
            views[k].history.push_back(t.data_ptr<float>());
          }
        }
        if (after_step) {
          Status s = after_step(i, views);
          if (!s.ok()) return s;
        }
      }
      std::vector<Tensor> out;
      for (size_t k = 0; k < x.size(); ++k) {
        ApplyGuide(prepared[k], samplers[k], x[k], steps);  // the guide frames end exactly clean
        out.push_back(ToPlain(x[k][0]));
      }
      return out;
    } catch (const c10::Error& e) {
      return R::Error("model '" + requests[0].model + "' failed: " + e.what_without_backtrace());
    } catch (const std::exception& e) {
      return R::Error("model '" + requests[0].model + "' failed: " + e.what());
    }
  }

  uint64_t prompt_encodings() const override { return prompt_encodings_; }

  // A model that is not loaded yet is loaded on the CPU for its metadata and let go: a worker
  // reports every model of its folder when it joins, and keeping them all (real models are
  // gigabytes) would hold memory for models it may never render with. The metadata is kept.
  Result<ModelMetadata> Metadata(const std::string& name) override {
    if (auto it = metadata_.find(name); it != metadata_.end()) return it->second;
    if (auto it = models_.find(name); it != models_.end())
      return metadata_[name] = it->second->info();
    if (const ModelMetadata* builtin = BuiltinMetadata(name)) return metadata_[name] = *builtin;
    if (SourceOf(name)) {  // a host: started once, and kept (its model loads in its own process)
      auto m = Load(name);
      if (!m.ok()) return m.status();
      return metadata_[name] = (*m)->info();
    }
    const std::string file = options_.models_dir + "/" + name + ".pt";
    std::error_code ec;
    if (options_.models_dir.empty() || !std::filesystem::is_regular_file(file, ec)) {
      auto m = Load(name);  // for its error
      if (!m.ok()) return m.status();
      return metadata_[name] = (*m)->info();
    }
    auto loaded = LoadTorchScriptModel(file, name, torch::kCPU);
    if (!loaded.ok()) return loaded.status();
    return metadata_[name] = (*loaded)->info();
  }

  Result<std::vector<uint8_t>> DecodeRgb(const std::string& name, const Tensor& latents, int width,
                                         int height, int64_t skip, int64_t keep) override {
    using R = Result<std::vector<uint8_t>>;
    try {
      auto m = Load(name);
      if (!m.ok()) return m.status();
      if (latents.shape.size() != 4 || !latents.Valid())
        return R::Error("latents must be [C, T, h, w]");
      torch::NoGradGuard no_grad;
      torch::Tensor x =
          torch::from_blob(const_cast<float*>(latents.data.data()), latents.shape, torch::kFloat32)
              .unsqueeze(0);
      torch::Tensor frames = (*m)->Decode(x)[0];  // [3, F, H, W]
      const int64_t decoded = frames.size(1);
      if (keep < 0) keep = decoded - skip;
      if (skip < 0 || skip + keep > decoded) {
        return R::Error("model '" + name + "' decoded " + std::to_string(decoded) +
                        " frames, fewer than the " + std::to_string(skip + keep) +
                        " the chunk needs");
      }
      frames = frames.narrow(1, skip, keep);
      if (frames.size(2) != height || frames.size(3) != width) {
        return R::Error("model '" + name + "' decoded " + std::to_string(frames.size(3)) + "x" +
                        std::to_string(frames.size(2)) + " frames, expected " +
                        std::to_string(width) + "x" + std::to_string(height));
      }
      // [3, T, H, W] in the model's output range -> [T, H, W, 3] bytes, rounding to nearest.
      const ModelInfo& info = (*m)->info();
      if (info.output_min != 0 || info.output_max != 1) {
        frames = (frames - static_cast<float>(info.output_min)) /
                 static_cast<float>(info.output_max - info.output_min);
      }
      if (frames.scalar_type() == torch::kFloat32) return PicturesToRgbBytes(frames);
      torch::Tensor rgb =
          (frames.clamp(0, 1) * 255.0f + 0.5f).to(torch::kUInt8).permute({1, 2, 3, 0}).contiguous();
      return std::vector<uint8_t>(rgb.data_ptr<uint8_t>(), rgb.data_ptr<uint8_t>() + rgb.numel());
    } catch (const c10::Error& e) {
      return R::Error("model '" + name + "' failed to decode: " + e.what_without_backtrace());
    }
  }

 private:
  // Chained: the first G frames follow the guide, re-noised to the level x has before step i.
  static void ApplyGuide(const Prepared& p, const Sampler& sampler, torch::Tensor& x, int i) {
    if (!p.guide.defined()) return;
    const int64_t g = p.guide.size(2);
    torch::Tensor head = sampler.Renoise(p.guide, p.noise.narrow(2, 0, g), i);
    x.narrow(2, 0, g).copy_(head);
  }

  Result<Prepared> Prepare(const SegmentRequest& r) {
    using R = Result<Prepared>;
    auto m = Load(r.model);
    if (!m.ok()) return m.status();
    Model& model = **m;
    const ModelInfo& info = model.info();
    if (r.width % info.spatial_compression || r.height % info.spatial_compression) {
      return R::Error("picture size must be a multiple of " +
                      std::to_string(info.spatial_compression));
    }
    if (static_cast<int64_t>(r.frames.size()) != r.latent_count || r.prompts.empty() ||
        r.steps < 1 || r.latent_start < 0 || !(r.fps > 0)) {
      return R::Error("segment conditioning does not match its latent frame count");
    }
    auto camera = ParseCamera(r.camera_motion);
    if (!camera.ok()) return camera.status();
    Prepared p;
    p.model = &model;
    if (r.sampler == "euler")
      p.config.kind = SamplerKind::kEuler;
    else if (r.sampler == "ddim")
      p.config.kind = SamplerKind::kDdim;
    else if (r.sampler == "unipc")
      p.config.kind = SamplerKind::kUniPc;
    else
      return R::Error("unknown sampler '" + r.sampler + "' (euler, ddim, unipc)");
    p.config.steps = r.steps;
    p.config.shift = r.shift;
    if (!r.sigmas.empty()) {
      if (p.config.kind == SamplerKind::kDdim || static_cast<int>(r.sigmas.size()) != r.steps)
        return R::Error("sigmas: one level per step, for the euler and unipc samplers only");
      for (size_t i = 0; i < r.sigmas.size(); ++i) {
        if (!(r.sigmas[i] > 0 && r.sigmas[i] <= 1) || (i > 0 && !(r.sigmas[i] < r.sigmas[i - 1])))
          return R::Error("sigmas must decrease within (0, 1]");
      }
      p.config.sigmas = r.sigmas;
    }
    p.config.eta = r.eta;
    p.config.guidance = r.guidance;
    p.config.seed = r.seed;
    const int64_t T = r.latent_count;
    for (const FrameConditioning& f : r.frames) {
      if (f.a < 0 || f.b < 0 || f.a >= static_cast<int>(r.prompts.size()) ||
          f.b >= static_cast<int>(r.prompts.size())) {
        return R::Error("frame conditioning points at a missing prompt");
      }
    }
    if (info.guidance == Guidance::kNone && r.guidance != 1.0) {
      return R::Error("model '" + r.model + "' takes no guidance (it declares guidance: none); " +
                      "model.guidance must be 1");
    }
    const LatentTimeline timeline(info.temporal_compression);
    torch::Tensor times = torch::empty({1, T}, torch::kFloat64);
    for (int64_t t = 0; t < T; ++t)
      times[0][t] = static_cast<double>(timeline.FirstFrame(r.latent_start + t)) / r.fps;
    auto cond = Condition(model, r.prompts, r.frames);
    if (!cond.ok()) return cond.status();
    p.cond = std::move(*cond);
    p.cond.frame_times = times;
    p.cond.camera = *camera;
    p.cond.camera_speed = r.camera_speed;
    p.cond.width = r.width, p.cond.height = r.height;
    p.cond.fps = r.fps;
    p.cond.first_latent = r.latent_start;
    if (info.guidance == Guidance::kEmbedded) p.cond.guidance = r.guidance;
    if (r.guidance != 1.0 && info.guidance == Guidance::kClassifierFree) {
      // The negative prompt alone on every frame.
      auto un = Condition(model, {r.negative_prompt},
                          std::vector<FrameConditioning>(static_cast<size_t>(T)));
      if (!un.ok()) return un.status();
      Conditioning neg = p.cond;
      neg.prompt_tokens = un->prompt_tokens;
      neg.prompt_mask = un->prompt_mask;
      neg.prompt_weights = un->prompt_weights;
      neg.embeddings = un->embeddings;
      p.uncond = std::move(neg);
    }
    const int64_t h = r.height / info.spatial_compression, w = r.width / info.spatial_compression;
    if (r.shift_from_tokens) {  // the call's tokens: latent frames x patches per frame
      const int64_t tokens = T * (h / info.patch_size) * (w / info.patch_size);
      p.config.mu = DynamicShiftMu(tokens);
    }
    p.noise = SeededNoise(r.seed, {1, info.latent_channels, T, h, w});
    if (r.resume_latents) {
      // [C, T, h, w], or [1 + H, C, T, h, w] with the sampler's history.
      const Tensor& x = *r.resume_latents;
      const std::vector<int64_t> one = {info.latent_channels, T, h, w};
      const int64_t slots = x.shape.size() == 5 ? x.shape[0] : 1;
      const int history = SamplerHistorySize(p.config.kind, r.resume_step);
      const bool fits = (x.shape.size() == 4 || x.shape.size() == 5) && x.Valid() &&
                        slots == 1 + history &&
                        std::vector<int64_t>(x.shape.end() - 4, x.shape.end()) == one;
      if (!fits) {
        return R::Error("checkpoint of shape " + x.ShapeString() + " does not fit this segment (" +
                        std::to_string(1 + history) + " tensors of " +
                        Tensor{one, {}}.ShapeString() + " for the " + r.sampler +
                        " sampler at step " + std::to_string(r.resume_step) + ")");
      }
      torch::Tensor all = torch::from_blob(const_cast<float*>(x.data.data()),
                                           {slots, one[0], T, h, w}, torch::kFloat32)
                              .clone();
      p.resume = all[0].unsqueeze(0);
      for (int64_t k = 1; k < slots; ++k) p.history.push_back(all[k].unsqueeze(0));
    }
    if (r.guide) {
      const Tensor& g = *r.guide;
      if (g.shape.size() != 4 || !g.Valid() || g.shape[0] != info.latent_channels ||
          g.shape[1] < 1 || g.shape[1] > T || g.shape[2] != h || g.shape[3] != w) {
        return R::Error("guide latents of shape " + g.ShapeString() + " do not fit this segment");
      }
      p.guide = torch::from_blob(const_cast<float*>(g.data.data()), g.shape, torch::kFloat32)
                    .clone()
                    .unsqueeze(0);
    }
    return p;
  }

  // A prompt's conditioning, encoded once per model and text on this worker: a job's segments
  // share its prompts, and a text encoder (umT5, T5-XXL) costs far more than a lookup. Encoding
  // is deterministic, so a cached tensor is the one encoding again would give.
  const PromptEncoding& Encode(Model& model, const std::string& text) {
    auto key = std::make_pair(model.info().name, text);
    auto it = prompts_.find(key);
    if (it != prompts_.end()) return it->second;
    if (prompts_.size() >= kMaxCachedPrompts) prompts_.clear();  // a bound, not a policy
    ++prompt_encodings_;
    PromptEncoding e = model.EncodePrompt(text);
    return prompts_.emplace(std::move(key), std::move(e)).first->second;
  }

  // The window's prompt bank and weights (model.h, Conditioning): `prompts` are the prompts the
  // window uses, `frames` each latent frame's crossfade between two of them.
  Result<Conditioning> Condition(Model& model, const std::vector<std::string>& prompts,
                                 const std::vector<FrameConditioning>& frames) {
    using R = Result<Conditioning>;
    const int64_t P = static_cast<int64_t>(prompts.size()), T = static_cast<int64_t>(frames.size());
    std::vector<PromptEncoding> bank;  // copies (shared tensors): Encode may clear its cache
    int64_t L = 0, D = 0;
    for (const auto& text : prompts) {
      bank.push_back(Encode(model, text));
      const torch::Tensor& tokens = bank.back().tokens;
      if (D != 0 && tokens.size(1) != D) {
        return R::Error("model '" + model.info().name + "' encoded prompts of " +
                        std::to_string(D) + " and " + std::to_string(tokens.size(1)) +
                        " dimensions");
      }
      D = tokens.size(1);
      L = std::max(L, tokens.size(0));
    }
    Conditioning c;
    c.prompt_tokens = torch::zeros({P, L, D}, torch::kFloat32);
    c.prompt_mask = torch::zeros({P, L}, torch::kBool);
    for (int64_t i = 0; i < P; ++i) {
      const PromptEncoding& e = bank[static_cast<size_t>(i)];
      c.prompt_tokens[i].narrow(0, 0, e.tokens.size(0)).copy_(e.tokens);
      c.prompt_mask[i].narrow(0, 0, e.mask.size(0)).copy_(e.mask);
    }
    // Weights: (1 - mix) on a, mix on b. A per-clip model gets the window's mean on every frame
    // (summed in frame order: the same on every host).
    std::vector<float> w(static_cast<size_t>(T * P), 0.f);
    for (int64_t t = 0; t < T; ++t) {
      const FrameConditioning& f = frames[static_cast<size_t>(t)];
      w[static_cast<size_t>(t * P + f.a)] += 1.0f - f.mix;
      w[static_cast<size_t>(t * P + f.b)] += f.mix;
    }
    const bool per_clip = model.info().conditioning == ConditioningScope::kPerClip;
    if (per_clip && T > 0) {
      std::vector<double> mean(static_cast<size_t>(P), 0.0);
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t p = 0; p < P; ++p)
          mean[static_cast<size_t>(p)] += w[static_cast<size_t>(t * P + p)];
      }
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t p = 0; p < P; ++p)
          w[static_cast<size_t>(t * P + p)] =
              static_cast<float>(mean[static_cast<size_t>(p)] / static_cast<double>(T));
      }
    }
    c.prompt_weights = torch::from_blob(w.data(), {1, T, P}, torch::kFloat32).clone();
    // Pooled prompts: the per-frame mix, (1 - mix) a + mix b elementwise in float (the same on
    // every host); per-clip: the weighted sum in bank order.
    if (L == 1) {
      c.embeddings = torch::empty({1, T, D}, torch::kFloat32);
      for (int64_t t = 0; t < T; ++t) {
        const FrameConditioning& f = frames[static_cast<size_t>(t)];
        if (per_clip) {
          torch::Tensor sum = torch::zeros({D}, torch::kFloat32);
          for (int64_t p = 0; p < P; ++p)
            sum = sum + bank[static_cast<size_t>(p)].tokens[0] * w[static_cast<size_t>(t * P + p)];
          c.embeddings[0][t] = sum;
        } else {
          c.embeddings[0][t] = bank[static_cast<size_t>(f.a)].tokens[0] * (1.0f - f.mix) +
                               bank[static_cast<size_t>(f.b)].tokens[0] * f.mix;
        }
      }
    }
    return c;
  }

  Result<Model*> Load(const std::string& name) {
    auto it = models_.find(name);
    if (it != models_.end()) return it->second.get();
    std::unique_ptr<Model> m = CreateBuiltinModel(name);
    if (!m) {
      if (const ModelSource* source = SourceOf(name)) {
        auto opened = source->open(name);
        if (!opened.ok()) return Result<Model*>::Error(opened.message());  // not cached
        Model* raw = opened->get();
        models_.emplace(name, std::move(*opened));
        return raw;
      }
      const std::string file =
          options_.models_dir.empty() ? "" : options_.models_dir + "/" + name + ".pt";
      std::error_code ec;
      if (file.empty() || !std::filesystem::is_regular_file(file, ec)) {
        return Result<Model*>::Error(
            "unknown model '" + name + "' (built-in: zoom, zoom4, stamp, stamp4, stamp8" +
            (file.empty() ? "; this worker has no --models folder)" : "; no " + file + ")"));
      }
      auto loaded = LoadTorchScriptModel(file, name, device_);
      if (!loaded.ok())
        return Result<Model*>::Error(loaded.message());  // not cached: a fixed file loads next time
      m = std::move(*loaded);
    }
    Model* raw = m.get();
    models_.emplace(name, std::move(m));
    return raw;
  }

  const ModelSource* SourceOf(const std::string& name) const {
    if (BuiltinMetadata(name)) return nullptr;
    for (const auto& source : options_.sources) {
      const auto names = source.names();
      if (std::find(names.begin(), names.end(), name) != names.end()) return &source;
    }
    return nullptr;
  }

  static constexpr size_t kMaxCachedPrompts = 4096;
  std::map<std::pair<std::string, std::string>, PromptEncoding> prompts_;  // (model, text)
  std::map<std::string, ModelMetadata> metadata_;                          // by model name
  uint64_t prompt_encodings_ = 0;
  RuntimeOptions options_;
  torch::Device device_;  // where TorchScript models run
  std::map<std::string, std::unique_ptr<Model>> models_;
};

}  // namespace

Result<std::unique_ptr<Runtime>> Runtime::Create(const RuntimeOptions& options) {
  using R = Result<std::unique_ptr<Runtime>>;
  auto device = ParseDevice(options.device);
  if (!device.ok()) return device.status();
  if (options.threads < 1) return R::Error("threads must be at least 1");
  at::set_num_threads(options.threads);
  return R(std::unique_ptr<Runtime>(new TorchRuntime(options, *device)));
}

}  // namespace segue::model
