// The model layer as the worker sees it: render a segment (alone, chained to a guide, or
// co-denoised with neighbours), decode latents to RGB. Torch-free interface (plain structs and
// segue::Tensor) so that only runtime.cc pays for libtorch headers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/model/metadata.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"

namespace segue::model {

// Per-frame conditioning: prompt `a` crossfading into `b` by `mix` (indices into prompts).
struct FrameConditioning {
  int a = 0;
  int b = 0;
  float mix = 0.f;
};

struct SegmentRequest {
  std::string model = "zoom";
  std::string sampler = "euler";  // euler | ddim | unipc
  int steps = 30;
  double shift = 1.0;
  std::vector<double> sigmas;      // euler, unipc: explicit levels (`steps` of them), unshifted
  bool shift_from_tokens = false;  // euler, unipc: DynamicShiftMu of the call's token count
  double eta = 0.0;
  double guidance = 1.0;
  std::string negative_prompt;
  int width = 0, height = 0;
  double fps = 24.0;
  // The segment in latent frames (common/plan/timeline.h): global index of its first latent
  // frame, and how many.
  int64_t latent_start = 0;
  int64_t latent_count = 0;
  uint64_t seed = 0;
  std::string camera_motion = "zoom-in";
  double camera_speed = 0.15;
  std::vector<std::string> prompts;
  std::vector<FrameConditioning> frames;  // frame_count entries
  // Chained strategy: final latents [C, G, h, w] of the previous segment for this segment's
  // first G frames; they replace the model's own values at every step (re-noised).
  std::optional<Tensor> guide;
  // Resume: the sampler's state after `resume_step` steps, from a checkpoint: the latents
  // [C, T, h, w], or for a multistep sampler [1 + H, C, T, h, w], the latents then its H
  // history tensors (LatentView). Sampling continues at that step; the result is bitwise what
  // an uninterrupted run gives.
  int resume_step = 0;
  std::optional<Tensor> resume_latents;
};

class Model;  // model.h

// Models served from outside the model layer (the worker's model hosts, worker/host_model.h).
struct ModelSource {
  std::function<std::vector<std::string>()> names;  // the models it serves
  // Opens one of names(); the runtime keeps what it returns.
  std::function<Result<std::unique_ptr<Model>>(const std::string& name)> open;
  // Models that cannot be served now, each with the reason ("model: why").
  std::function<std::vector<std::pair<std::string, std::string>>()> unavailable;
};

struct RuntimeOptions {
  std::string device = "cpu";
  int threads = 1;         // intra-op threads (at::get_num_threads() starts at 1 here: set it)
  std::string models_dir;  // TorchScript models: NAME resolves to models_dir/NAME.pt
  // Consulted after the built-ins and before models_dir's TorchScript files.
  std::vector<ModelSource> sources = {};
};

// A segment's latents between steps: [C, T, h, w] floats, contiguous, writable (co-denoising
// blends overlaps in place). `history`: a multistep sampler's state besides the latents
// (sampler.h, History), each shaped like the latents, read-only; a checkpoint holds both.
struct LatentView {
  float* data = nullptr;
  std::vector<int64_t> shape;
  std::vector<const float*> history;
};

class Runtime {
 public:
  static Result<std::unique_ptr<Runtime>> Create(const RuntimeOptions& options);
  virtual ~Runtime() = default;

  // Built-in models, the sources' and the TorchScript files of models_dir, by name.
  virtual std::vector<std::string> Models() const = 0;
  // The sources' models that cannot be served now, with the reason.
  virtual std::vector<std::pair<std::string, std::string>> UnavailableModels() const = 0;
  // Renders one segment; returns its final latents [C, T, h, w]. on_step(i, steps) after each step.
  virtual Result<Tensor> Render(const SegmentRequest& request,
                                const std::function<void(int, int)>& on_step = {}) = 0;
  // Co-denoising: advances all `requests` one step at a time; after each step calls
  // after_step(i, latents) which may change the latents in place (average overlaps) and may
  // return an error to abandon the run. Returns the final latents of every segment.
  virtual Result<std::vector<Tensor>> RenderTogether(
      const std::vector<SegmentRequest>& requests,
      const std::function<Status(int, std::vector<LatentView>&)>& after_step) = 0;
  // How many times a prompt was encoded: each distinct (model, prompt) once, however many
  // segments use it (a bounded cache; stats for logs and tests).
  virtual uint64_t prompt_encodings() const = 0;
  // What `model` declares (loading it if need be).
  virtual Result<ModelMetadata> Metadata(const std::string& model) = 0;
  // Decodes latents [C, T, h, w] of `model` as one clip (1 + r (T - 1) frames), drops the first
  // `skip` frames and returns the next `keep` as RGB24, keep * height * width * 3 bytes (keep < 0:
  // all the rest). The model's output range is mapped to [0, 255].
  virtual Result<std::vector<uint8_t>> DecodeRgb(const std::string& model, const Tensor& latents,
                                                 int width, int height, int64_t skip = 0,
                                                 int64_t keep = -1) = 0;
};

}  // namespace segue::model
