// The model contract (DESIGN.md): what any video model must provide for segue to render with it.
// Samplers, guidance and overlap blending live outside the model (sampler.h, common/blend).
//
// This header includes libtorch; only the model layer and its direct users include it. The
// worker talks to the model layer through runtime.h, which is torch-free.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/model/metadata.h"
#include "common/status/status.h"

namespace segue::model {

enum class Prediction { kVelocity, kEpsilon, kX0 };

// How a model is guided (docs/MODELS.md, "Guidance").
enum class Guidance {
  kClassifierFree,  // two calls per step, with the prompts and with the negative prompt, mixed
                    // as uncond + g (cond - uncond)
  kEmbedded,        // one call; the scale is an input of the model (HunyuanVideo's distilled
                    // guidance): Conditioning::guidance
  kNone,            // the model takes no guidance (a distilled model); the scale must be 1
};

// What planning needs (metadata.h), and what only the sampler needs.
struct ModelInfo : ModelMetadata {
  Prediction prediction = Prediction::kX0;
  int default_steps = 30;
  // Denoise honours Conditioning::frame_sigma: frames may sit at different noise levels, and
  // frames at level 0 are observations the others are conditioned on (chained segments use it).
  bool frame_noise_levels = false;
  Guidance guidance = Guidance::kClassifierFree;
};

// A prompt as the model's text encoder gives it: a sequence of L token embeddings and which of
// them are real (a T5 or umT5 encoder pads to a fixed length). Models that pool a prompt into
// one vector give L = 1.
struct PromptEncoding {
  torch::Tensor tokens;  // [L, D] float32
  torch::Tensor mask;    // [L] bool: true for a real token
};
// A prompt pooled into one vector [D]: one token.
inline PromptEncoding PooledPrompt(const torch::Tensor& vector) {
  return {vector.unsqueeze(0), torch::ones({1}, torch::kBool)};
}

enum class CameraMotion { kZoomIn, kZoomOut, kPanLeft, kPanRight, kStatic };

// Everything a denoise call is conditioned on besides the noisy latents.
struct Conditioning {
  // T counts latent frames: latent frame t of the window is global latent frame first_latent + t,
  // and holds video frames from LatentTimeline(info().temporal_compression).FirstFrame(...).
  //
  // The prompts, two ways (docs/MODELS.md, "Conditioning"):
  //  - the bank: the job's prompts that the window uses, as their encoders gave them, and each
  //    latent frame's weight of each (a transition is a change of weights; weights sum to 1).
  //    A model whose info().conditioning is per-clip gets the window's mean weights on every
  //    frame: one context for the call.
  //  - embeddings: the same weights applied to prompts pooled to one vector (L = 1), for models
  //    that mix prompts per frame themselves; undefined when a prompt has L > 1 tokens.
  torch::Tensor prompt_tokens;   // [P, L, D] float32, shorter prompts zero-padded to L
  torch::Tensor prompt_mask;     // [P, L] bool
  torch::Tensor prompt_weights;  // [B, T, P] float32
  torch::Tensor embeddings;      // [B, T, D] float32: sum over p of weight x tokens[p][0]
  torch::Tensor frame_times;     // [B, T] time of each latent frame's first video frame, seconds
                                 // (float64; LTX-Video's rule: latent j >= 1 at 1 + r (j - 1))
  CameraMotion camera = CameraMotion::kZoomIn;
  double camera_speed = 0.15;
  int width = 0;  // output picture size in pixels
  int height = 0;
  double fps = 24;           // the video's frame rate
  int64_t first_latent = 0;  // the window's first global latent frame
  // [B, T] float64, optional: each frame's own noise level, for models whose
  // info().frame_noise_levels is set. Undefined: every frame is at the call's sigma.
  torch::Tensor frame_sigma;
  // The guidance scale, for models whose info().guidance is embedded (0 otherwise).
  double guidance = 0;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelInfo& info() const = 0;
  // text -> its token embeddings. Deterministic: the runtime encodes a prompt once and reuses it.
  virtual PromptEncoding EncodePrompt(const std::string& text) = 0;
  // latents [B, C, T, h, w], sigma [B] (flow-matching noise level in [0, 1]) -> prediction of
  // the kind info().prediction says, same shape as latents.
  virtual torch::Tensor Denoise(const torch::Tensor& latents, const torch::Tensor& sigma,
                                const Conditioning& cond) = 0;
  // latents [B, C, T, h, w] -> frames [B, 3, 1 + r (T - 1), H, W], float32 in the model's
  // output range (info().output_min/max). The first latent frame of a call is one frame (a
  // causal decoder), whatever its place in the video: the caller gives context (WindowFor).
  virtual torch::Tensor Decode(const torch::Tensor& latents) = 0;
};

// Decoded pictures [3, T, H, W], float32 in [0, 1] (any strides) -> [T, H, W, 3] bytes, rounded
// to nearest: the bytes `(frames.clamp(0, 1) * 255 + 0.5).to(uint8)` gives, in one pass instead
// of four tensors the size of the chunk (96 frames at 512x288 are 170 MB of floats). NaN is 0.
std::vector<uint8_t> PicturesToRgbBytes(const torch::Tensor& frames);

// Built-in models by name ("zoom", "stamp"); nullptr when unknown. They compute on the CPU
// whatever the worker's --device (they are procedural, not networks).
std::unique_ptr<Model> CreateBuiltinModel(const std::string& name);
std::vector<std::string> BuiltinModelNames();

// A TorchScript file exposing the contract (docs/MODELS.md), loaded onto `device`. Its calls take
// and return CPU tensors (inputs move to the device and results back; the samplers run on the
// CPU). Errors name the model, the file and what is missing; calls that return the wrong shape
// or dtype throw std::runtime_error.
Result<std::unique_ptr<Model>> LoadTorchScriptModel(const std::string& path,
                                                    const std::string& name,
                                                    torch::Device device = torch::kCPU);

}  // namespace segue::model
