#include "common/model/runtime.h"

#include <map>

#include "common/model/model.h"
#include "common/model/sampler.h"

namespace segue::model {
namespace {

Result<CameraMotion> ParseCamera(const std::string& s) {
  if (s == "zoom-in") return CameraMotion::kZoomIn;
  if (s == "zoom-out") return CameraMotion::kZoomOut;
  if (s == "pan-left") return CameraMotion::kPanLeft;
  if (s == "pan-right") return CameraMotion::kPanRight;
  if (s == "static") return CameraMotion::kStatic;
  return Result<CameraMotion>::Error("unknown camera motion '" + s + "'");
}

class TorchRuntime final : public Runtime {
 public:
  explicit TorchRuntime(const RuntimeOptions& o) : options_(o) {}

  std::vector<std::string> Models() const override { return {"zoom"}; }

  Result<Tensor> Render(const SegmentRequest& r,
                        const std::function<void(int, int)>& on_step) override {
    try {
      auto m = Load(r.model);
      if (!m.ok()) return m.status();
      Model& model = **m;
      const ModelInfo& info = model.info();
      if (r.width % info.spatial_compression || r.height % info.spatial_compression) {
        return Result<Tensor>::Error("picture size must be a multiple of " +
                                     std::to_string(info.spatial_compression));
      }
      if (static_cast<int64_t>(r.frames.size()) != r.frame_count || r.prompts.empty()) {
        return Result<Tensor>::Error("segment conditioning does not match its frame count");
      }
      auto camera = ParseCamera(r.camera_motion);
      if (!camera.ok()) return camera.status();
      torch::NoGradGuard no_grad;
      std::vector<torch::Tensor> prompt_emb;
      for (const auto& p : r.prompts) prompt_emb.push_back(model.EncodePrompt(p));
      const int64_t T = r.frame_count;
      const int64_t D = prompt_emb[0].size(0);
      torch::Tensor emb = torch::empty({1, T, D}, torch::kFloat32);
      torch::Tensor times = torch::empty({1, T}, torch::kFloat64);
      for (int64_t t = 0; t < T; ++t) {
        const FrameConditioning& f = r.frames[static_cast<size_t>(t)];
        if (f.a < 0 || f.b < 0 || f.a >= static_cast<int>(prompt_emb.size()) ||
            f.b >= static_cast<int>(prompt_emb.size())) {
          return Result<Tensor>::Error("frame conditioning points at a missing prompt");
        }
        // (1 - mix) * a + mix * b, elementwise in float: same on every host.
        emb[0][t] = prompt_emb[static_cast<size_t>(f.a)] * (1.0f - f.mix) +
                    prompt_emb[static_cast<size_t>(f.b)] * f.mix;
        times[0][t] = static_cast<double>(r.frame_start + t) / r.fps;
      }
      Conditioning cond{emb, times, *camera, r.camera_speed, r.width, r.height};
      const int64_t h = r.height / info.spatial_compression, w = r.width / info.spatial_compression;
      torch::Tensor noise = SeededNoise(r.seed, {1, info.latent_channels, T, h, w});
      torch::Tensor x = SampleFlowMatchEuler(model, noise, cond, r.steps, r.shift, [&](int i) {
        if (on_step) on_step(i, r.steps);
      });
      torch::Tensor out = x[0].contiguous();
      Tensor t;
      t.shape.assign(out.sizes().begin(), out.sizes().end());
      t.data.assign(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
      return t;
    } catch (const c10::Error& e) {
      return Result<Tensor>::Error("model '" + r.model + "' failed: " + e.what_without_backtrace());
    } catch (const std::exception& e) {
      return Result<Tensor>::Error("model '" + r.model + "' failed: " + e.what());
    }
  }

  Result<std::vector<uint8_t>> DecodeRgb(const std::string& name, const Tensor& latents, int width,
                                         int height) override {
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
      torch::Tensor frames = (*m)->Decode(x)[0];  // [3, T, H, W]
      if (frames.size(2) != height || frames.size(3) != width) {
        return R::Error("model '" + name + "' decoded " + std::to_string(frames.size(3)) + "x" +
                        std::to_string(frames.size(2)) + " frames, expected " +
                        std::to_string(width) + "x" + std::to_string(height));
      }
      // [3, T, H, W] float -> [T, H, W, 3] bytes, rounding to nearest.
      torch::Tensor rgb =
          (frames.clamp(0, 1) * 255.0f + 0.5f).to(torch::kUInt8).permute({1, 2, 3, 0}).contiguous();
      return std::vector<uint8_t>(rgb.data_ptr<uint8_t>(), rgb.data_ptr<uint8_t>() + rgb.numel());
    } catch (const c10::Error& e) {
      return R::Error("model '" + name + "' failed to decode: " + e.what_without_backtrace());
    }
  }

 private:
  Result<Model*> Load(const std::string& name) {
    auto it = models_.find(name);
    if (it != models_.end()) return it->second.get();
    auto m = CreateBuiltinModel(name);
    if (!m) return Result<Model*>::Error("unknown model '" + name + "' (this worker has: zoom)");
    Model* raw = m.get();
    models_.emplace(name, std::move(m));
    return raw;
  }

  RuntimeOptions options_;
  std::map<std::string, std::unique_ptr<Model>> models_;
};

}  // namespace

Result<std::unique_ptr<Runtime>> Runtime::Create(const RuntimeOptions& options) {
  using R = Result<std::unique_ptr<Runtime>>;
  if (options.device != "cpu") {
    if (options.device.rfind("cuda", 0) == 0 && !torch::cuda::is_available()) {
      return R::Error("device '" + options.device +
                      "' requested but this libtorch has no CUDA device");
    }
    if (options.device.rfind("cuda", 0) != 0)
      return R::Error("unknown device '" + options.device + "' (cpu, cuda[:N])");
  }
  if (options.threads < 1) return R::Error("threads must be at least 1");
  at::set_num_threads(options.threads);
  return R(std::unique_ptr<Runtime>(new TorchRuntime(options)));
}

}  // namespace segue::model
