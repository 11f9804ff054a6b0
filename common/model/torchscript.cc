// TorchScript models: a studio's own model, exported from PyTorch, served through the contract.
// See docs/MODELS.md for what the file must contain. Every call checks what comes back, so a
// broken model fails its job with a message that names the model and the problem instead of
// crashing the worker.
#include <torch/script.h>

#include <filesystem>
#include <sstream>

#include "common/model/model.h"

namespace segue::model {
namespace {

std::string Shape(const torch::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

class TorchScriptModel final : public Model {
 public:
  TorchScriptModel(torch::jit::Module module, ModelInfo info, torch::Device device)
      : module_(std::move(module)), info_(std::move(info)), device_(device) {}

  const ModelInfo& info() const override { return info_; }

  torch::Tensor EncodePrompt(const std::string& text) override {
    torch::Tensor e = Call("encode_prompt", {text});
    Require(e.dim() == 1 && e.size(0) > 0,
            "encode_prompt returned shape " + Shape(e) + ", expected [D]");
    return e;
  }

  torch::Tensor Denoise(const torch::Tensor& latents, const torch::Tensor& sigma,
                        const Conditioning& cond) override {
    // Models with per-frame noise levels get sigma as [B, T]: the frames' own levels where the
    // sampler gives them (a chained guide at 0), else the call's level for every frame.
    torch::Tensor levels = sigma;
    if (info_.frame_noise_levels) {
      levels =
          cond.frame_sigma.defined()
              ? cond.frame_sigma.to(torch::kFloat32)
              : sigma.to(torch::kFloat32).unsqueeze(1).expand({latents.size(0), latents.size(2)});
      levels = levels.contiguous();
    }
    torch::Tensor out = Call("denoise", {latents, levels, cond.embeddings.to(torch::kFloat32),
                                         cond.frame_times.to(torch::kFloat64)});
    Require(out.sizes() == latents.sizes(),
            "denoise returned shape " + Shape(out) + " for latents of shape " + Shape(latents));
    return out;
  }

  torch::Tensor Decode(const torch::Tensor& latents) override {
    torch::Tensor out = Call("decode", {latents});
    const int64_t frames = 1 + info_.temporal_compression * (latents.size(2) - 1);
    Require(out.dim() == 5 && out.size(0) == latents.size(0) && out.size(1) == 3 &&
                out.size(2) == frames,
            "decode returned shape " + Shape(out) + ", expected [B, 3, " + std::to_string(frames) +
                ", H, W] (1 + r (T - 1) frames for T latent frames)");
    return out;
  }

 private:
  // Runs `method` on the model's device; returns its tensor on the CPU, where the samplers and
  // the strategies' arithmetic run (so results do not depend on which device a worker has,
  // beyond the model's own arithmetic).
  torch::Tensor Call(const char* method, std::vector<c10::IValue> args) {
    if (!device_.is_cpu()) {
      for (auto& a : args) {
        if (a.isTensor()) a = a.toTensor().to(device_);
      }
    }
    c10::IValue v;
    try {
      v = module_.get_method(method)(std::move(args));
    } catch (const c10::Error& e) {
      throw std::runtime_error("model '" + info_.name + "': " + method +
                               " failed: " + e.what_without_backtrace());
    }
    Require(v.isTensor(), std::string(method) + " returned " + v.tagKind() + ", expected a Tensor");
    torch::Tensor t = v.toTensor();
    Require(t.scalar_type() == torch::kFloat32, std::string(method) + " returned " +
                                                    std::string(c10::toString(t.scalar_type())) +
                                                    ", expected float32");
    return t.to(torch::kCPU).contiguous();
  }

  void Require(bool ok, const std::string& what) const {
    if (!ok) throw std::runtime_error("model '" + info_.name + "': " + what);
  }

  torch::jit::Module module_;
  ModelInfo info_;
  torch::Device device_;
};

}  // namespace

Result<std::unique_ptr<Model>> LoadTorchScriptModel(const std::string& path,
                                                    const std::string& name, torch::Device device) {
  using R = Result<std::unique_ptr<Model>>;
  auto fail = [&](const std::string& why) {
    return R::Error("model '" + name + "' (" + path + "): " + why);
  };
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, device);
  } catch (const c10::Error& e) {
    return fail("not a TorchScript file: " +
                std::string(e.what_without_backtrace()).substr(0, 300));
  } catch (const std::exception& e) {
    return fail(std::string("cannot load: ") + e.what());
  }
  module.eval();
  for (const char* method : {"encode_prompt", "denoise", "decode"}) {
    if (!module.find_method(method)) return fail(std::string("has no method '") + method + "'");
  }
  ModelInfo info;
  info.name = name;
  auto int_attr = [&](const char* attr, int* out) -> bool {
    if (!module.hasattr(attr)) return false;
    c10::IValue v = module.attr(attr);
    if (!v.isInt() || v.toInt() <= 0) return false;
    *out = static_cast<int>(v.toInt());
    return true;
  };
  int clip_length = 0;
  for (auto [attr, out] : std::vector<std::pair<const char*, int*>>{
           {"latent_channels", &info.latent_channels},
           {"spatial_compression", &info.spatial_compression},
           {"temporal_compression", &info.temporal_compression},
           {"clip_length", &clip_length},
           {"default_steps", &info.default_steps}}) {
    if (!int_attr(attr, out))
      return fail(std::string("needs a positive int attribute '") + attr + "'");
  }
  info.native_frames = {clip_length};
  // Optional: what planning needs beyond the required attributes (docs/MODELS.md).
  for (auto [attr, out] : std::vector<std::pair<const char*, int*>>{
           {"patch_size", &info.patch_size},
           {"decode_context_before", &info.decode_context_before},
           {"decode_context_after", &info.decode_context_after}}) {
    if (!module.hasattr(attr)) continue;
    c10::IValue v = module.attr(attr);
    if (!v.isInt() || v.toInt() < 0 || v.toInt() > 1024)
      return fail(std::string("attribute '") + attr + "' must be a non-negative int");
    *out = static_cast<int>(v.toInt());
  }
  for (auto [attr, out] :
       std::vector<std::pair<const char*, double*>>{{"native_fps", &info.native_fps},
                                                    {"output_min", &info.output_min},
                                                    {"output_max", &info.output_max}}) {
    if (!module.hasattr(attr)) continue;
    c10::IValue v = module.attr(attr);
    if (!v.isDouble() && !v.isInt())
      return fail(std::string("attribute '") + attr + "' must be a number");
    *out = v.isDouble() ? v.toDouble() : static_cast<double>(v.toInt());
  }
  if (module.hasattr("conditioning")) {
    c10::IValue v = module.attr("conditioning");
    auto scope = v.isString() ? ParseConditioningScope(v.toStringRef()) : std::nullopt;
    if (!scope) return fail("attribute 'conditioning' must be 'per-frame' or 'per-clip'");
    info.conditioning = *scope;
  }
  if (Status s = CheckMetadata(info); !s.ok()) return fail(s.message());
  if (!module.hasattr("prediction") || !module.attr("prediction").isString()) {
    return fail("needs a str attribute 'prediction' (x0, epsilon or velocity)");
  }
  const std::string p = module.attr("prediction").toStringRef();
  if (p == "x0")
    info.prediction = Prediction::kX0;
  else if (p == "epsilon")
    info.prediction = Prediction::kEpsilon;
  else if (p == "velocity")
    info.prediction = Prediction::kVelocity;
  else
    return fail("prediction '" + p + "' is not one of x0, epsilon, velocity");
  if (module.hasattr("frame_noise_levels")) {
    c10::IValue v = module.attr("frame_noise_levels");
    if (!v.isBool()) return fail("attribute 'frame_noise_levels' must be a bool");
    info.frame_noise_levels = v.toBool();
  }
  return R(
      std::unique_ptr<Model>(new TorchScriptModel(std::move(module), std::move(info), device)));
}

}  // namespace segue::model
