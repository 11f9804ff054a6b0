// TorchScript models: a studio's own model, exported from PyTorch, served through the contract.
// See docs/MODELS.md for what the file must contain. Every call checks what comes back, so a
// broken model fails its job with a message that names the model and the problem instead of
// crashing the worker.
#include <torch/script.h>

#include <filesystem>
#include <sstream>

#include "common/model/model.h"
#include "common/util/digest.h"

namespace segue::model {
namespace {

std::string Shape(const torch::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

class TorchScriptModel final : public Model {
 public:
  TorchScriptModel(torch::jit::Module module, ModelInfo info, int contract, torch::Device device)
      : module_(std::move(module)), info_(std::move(info)), contract_(contract), device_(device) {}

  const ModelInfo& info() const override { return info_; }

  // Contract 1: [D]. Contract 2: [D], [L, D], or ([L, D], mask [L]).
  PromptEncoding EncodePrompt(const std::string& text) override {
    c10::IValue v = Invoke("encode_prompt", {text});
    torch::Tensor mask;
    if (v.isTuple()) {
      Require(contract_ >= 2,
              "encode_prompt returned a tuple: token sequences [L, D] need contract_version 2");
      Require(v.toTupleRef().elements().size() == 2 && v.toTupleRef().elements()[1].isTensor(),
              "encode_prompt returned a tuple, expected (tokens [L, D], mask [L])");
      mask = v.toTupleRef().elements()[1].toTensor().to(torch::kCPU);
      v = v.toTupleRef().elements()[0];
    }
    torch::Tensor e = Checked("encode_prompt", v);
    if (e.dim() == 1) {
      Require(e.size(0) > 0 && !mask.defined(),
              "encode_prompt returned shape " + Shape(e) + ", expected [D] or [L, D]");
      return PooledPrompt(e);
    }
    Require(
        contract_ >= 2 && e.dim() == 2 && e.size(0) > 0 && e.size(1) > 0,
        "encode_prompt returned shape " + Shape(e) +
            (contract_ >= 2 ? ", expected [D] or [L, D]"
                            : ", expected [D] (token sequences [L, D] need contract_version 2)"));
    if (!mask.defined()) return {e, torch::ones({e.size(0)}, torch::kBool)};
    Require(mask.dim() == 1 && mask.size(0) == e.size(0),
            "encode_prompt returned a mask of shape " + Shape(mask) + " for tokens of shape " +
                Shape(e) + ", expected [L]");
    return {e, mask.to(torch::kBool).contiguous()};
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
    torch::Tensor out;
    if (contract_ >= 2) {
      c10::Dict<std::string, torch::Tensor> in;
      in.insert("prompt_tokens", cond.prompt_tokens.to(torch::kFloat32));
      in.insert("prompt_mask", cond.prompt_mask.to(torch::kBool));
      in.insert("prompt_weights", cond.prompt_weights.to(torch::kFloat32));
      in.insert("frame_times", cond.frame_times.to(torch::kFloat64));
      in.insert("first_latent", torch::full({latents.size(0)}, cond.first_latent, torch::kInt64));
      in.insert("fps", torch::full({latents.size(0)}, cond.fps, torch::kFloat64));
      if (info_.guidance == Guidance::kEmbedded)
        in.insert("guidance", torch::full({latents.size(0)}, cond.guidance, torch::kFloat32));
      if (!device_.is_cpu()) {
        for (auto it = in.begin(); it != in.end(); ++it) it->setValue(it->value().to(device_));
      }
      out = Call("denoise", {latents, levels, in});
    } else {
      Require(cond.embeddings.defined(),
              "denoise of contract_version 1 takes pooled prompts ([D]); this job's prompts are "
              "token sequences");
      out = Call("denoise", {latents, levels, cond.embeddings.to(torch::kFloat32),
                             cond.frame_times.to(torch::kFloat64)});
    }
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
    return Checked(method, Invoke(method, std::move(args)));
  }

  c10::IValue Invoke(const char* method, std::vector<c10::IValue> args) {
    if (!device_.is_cpu()) {
      for (auto& a : args) {
        if (a.isTensor()) a = a.toTensor().to(device_);
      }
    }
    try {
      return module_.get_method(method)(std::move(args));
    } catch (const c10::Error& e) {
      throw std::runtime_error("model '" + info_.name + "': " + method +
                               " failed: " + e.what_without_backtrace());
    }
  }

  // A method's result as a float32 CPU tensor, or an error that says what came back instead.
  torch::Tensor Checked(const char* method, const c10::IValue& v) {
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
  int contract_;  // 1: denoise(latents, sigma, embeddings, frame_times); 2: a dict (MODELS.md)
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
  // The weights are the file: its digest tells a changed file from the one results came from.
  auto identity = DigestFile(path);
  if (!identity.ok()) return fail(identity.message());
  info.identity = *identity;
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
  int contract = 1;
  if (module.hasattr("contract_version")) {
    c10::IValue v = module.attr("contract_version");
    if (!v.isInt() || (v.toInt() != 1 && v.toInt() != 2))
      return fail("attribute 'contract_version' must be 1 or 2");
    contract = static_cast<int>(v.toInt());
  }
  // denoise's inputs besides self: latents, sigma, then the embeddings and frame times
  // (contract 1) or one dict (contract 2).
  const size_t inputs = module.get_method("denoise").function().getSchema().arguments().size() - 1;
  if (inputs != (contract == 1 ? 4u : 3u)) {
    return fail(contract == 1 ? "denoise must take (latents, sigma, embeddings, frame_times) "
                                "(contract_version 1)"
                              : "denoise must take (latents, sigma, cond: Dict[str, Tensor]) "
                                "(contract_version 2)");
  }
  if (module.hasattr("guidance")) {
    c10::IValue v = module.attr("guidance");
    const std::string g = v.isString() ? v.toStringRef() : "";
    if (g == "cfg")
      info.guidance = Guidance::kClassifierFree;
    else if (g == "embedded")
      info.guidance = Guidance::kEmbedded;
    else if (g == "none")
      info.guidance = Guidance::kNone;
    else
      return fail("attribute 'guidance' must be 'cfg', 'embedded' or 'none'");
    if (info.guidance == Guidance::kEmbedded && contract < 2)
      return fail("embedded guidance is an input of contract_version 2's denoise");
  }
  return R(std::unique_ptr<Model>(
      new TorchScriptModel(std::move(module), std::move(info), contract, device)));
}

}  // namespace segue::model
