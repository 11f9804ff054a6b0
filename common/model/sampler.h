// Samplers: turn a model's predictions into a trajectory from noise to clean latents. They live
// outside the model (DESIGN.md): any model of the contract works with any sampler.
//
// Three kinds, each as diffusers defines it:
//   euler  flow matching, x_s = (1 - s) x0 + s eps, Euler steps along the velocity, with the
//          timestep shift of FlowMatchEulerDiscreteScheduler: s' = shift s / (1 + (shift - 1) s).
//   unipc  UniPCMultistepScheduler on the same flow-matching levels (use_flow_sigmas,
//          flow_prediction: Wan's default sampler): order 2, predicting x0, B(h) = e^h - 1
//          ("bh2"), the corrector on every step after the first, first order on the last step.
//          Multistep: a step uses the model's previous predictions, which are part of its state
//          (History) and so of a step checkpoint.
//   ddim   DDIMScheduler over a 1000-step variance-preserving schedule (Stable Diffusion's:
//          scaled_linear betas 0.00085..0.012, "leading" spacing, steps_offset 1,
//          set_alpha_to_one false), eta 0 (deterministic) or > 0 (stochastic, seeded noise).
// Models speak flow matching (their `sigma`); DDIM's x_t = a x0 + b eps is the flow-matching
// point x_t / (a + b) at s = b / (a + b), so every model serves both samplers.
//
// Classifier-free guidance: pred = uncond + g (cond - uncond), when g != 1 and an unconditional
// (negative prompt) conditioning is given.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/model/model.h"

namespace segue::model {

enum class SamplerKind { kEuler, kDdim, kUniPc };

struct SamplerConfig {
  SamplerKind kind = SamplerKind::kEuler;
  int steps = 30;
  double shift = 1.0;  // euler and unipc
  // euler and unipc: the steps' noise levels before shifting (`steps` values, decreasing in
  // (0, 1]); empty: evenly spaced from 1 (FlowMatchEulerDiscreteScheduler's default), or from
  // 0.999 for unipc (UniPCMultistepScheduler's flow sigmas stop short of pure noise).
  std::vector<double> sigmas;
  // euler and unipc: set, the levels are time-shifted with this mu (LTX-Video's dynamic
  // shifting, DynamicShiftMu) instead of by `shift`.
  std::optional<double> mu;
  double eta = 0.0;       // ddim only
  double guidance = 1.0;  // classifier-free guidance scale; 1 = off
  uint64_t seed = 0;      // for ddim's eta > 0 noise
};

// Flow-matching noise levels s_i for i = 0..steps, from 1 to 0, shifted.
std::vector<double> FlowMatchSigmas(int steps, double shift = 1.0);

// The levels a sampler with `config` steps through: config.sigmas (or the even spacing) shifted,
// as FlowMatchEulerDiscreteScheduler.set_timesteps does (by `shift`: s' = shift s / (1 + (shift
// - 1) s); with `mu`: s' = e^mu / (e^mu + 1/s - 1)), then a final 0. steps + 1 values.
std::vector<double> FlowMatchSchedule(const SamplerConfig& config);

// LTX-Video's dynamic shift: mu grows linearly with the token count of a call (latent frames x
// patches per frame), from 0.95 at 1,024 tokens to 2.05 at 4,096 (its scheduler's base_shift,
// max_shift, base_image_seq_len and max_image_seq_len; diffusers' calculate_shift).
double DynamicShiftMu(int64_t tokens);

// DDIMScheduler's schedule.
struct DdimSchedule {
  std::vector<double> alphas_cumprod;  // 1000 entries
  std::vector<int> timesteps;          // `steps` entries, descending
  int step_ratio = 0;
  double final_alpha_cumprod = 0;
  static DdimSchedule Make(int steps, int train_steps = 1000, double beta_start = 0.00085,
                           double beta_end = 0.012, int steps_offset = 1,
                           bool set_alpha_to_one = false);
  // alpha_cumprod of the timestep before step i's (the level step i lands on).
  double PrevAlpha(int i) const;
};

// Converts a model prediction into x0 given x = (1 - s) x0 + s eps.
torch::Tensor PredictionToX0(Prediction kind, const torch::Tensor& x, const torch::Tensor& pred,
                             double sigma);

// One sampling run over latents [B, C, T, h, w]. Step-by-step so that strategies can act between
// steps (chained re-noises its guide frames, codenoise averages overlaps).
class Sampler {
 public:
  // `uncond` is used when config.guidance != 1.
  Sampler(Model& model, const SamplerConfig& config, Conditioning cond,
          std::optional<Conditioning> uncond = {});

  int steps() const { return config_.steps; }
  // The latents sampling starts from, given standard normal noise.
  torch::Tensor Initial(const torch::Tensor& noise) const { return noise.clone(); }
  // Advances x from step i to i + 1 (i in [0, steps)).
  torch::Tensor Step(int i, const torch::Tensor& x);
  // A multistep sampler's state besides x after its last Step (unipc: the corrected sample the
  // last step started from, its x0 prediction and the one before, each shaped like x); empty
  // for euler and ddim, and before the first step.
  std::vector<torch::Tensor> History() const;
  // Resumes at step `step` > 0 with the History() the sampler had after step `step` - 1 (a
  // checkpoint): the next Step(step, x) is then bitwise the uninterrupted run's.
  void SetHistory(int step, std::vector<torch::Tensor> history);
  // How many tensors History() holds once a step has run: 3 for unipc, 0 otherwise.
  int history_size() const { return config_.kind == SamplerKind::kUniPc ? 3 : 0; }
  // `clean` latents brought to the noise level x has before step i (i == steps: clean), with
  // the given noise: what a chained segment's guide frames are set to.
  torch::Tensor Renoise(const torch::Tensor& clean, const torch::Tensor& noise, int i) const;
  // Chained: the first G frames are known, `clean_head` [B, C, G, h, w]; the caller keeps
  // setting them in x to Renoise(clean_head, ...) before every step. A model with
  // info().frame_noise_levels sees them clean (level 0) in every prediction, so the rest of the
  // segment is conditioned on them; other models see only the re-noised frames (the
  // "replacement" method, which ties the rest of the segment to the guide more loosely).
  void SetGuide(torch::Tensor clean_head) { guide_ = std::move(clean_head); }

 private:
  torch::Tensor PredictX0(const torch::Tensor& x_fm, double sigma);
  torch::Tensor UniPcStep(int i, torch::Tensor x);
  // The order of unipc's step i: 2, but 1 on the first step (no history yet) and the last.
  int UniPcOrder(int i) const;

  Model& model_;
  SamplerConfig config_;
  Conditioning cond_;
  std::optional<Conditioning> uncond_;
  torch::Tensor guide_;         // undefined unless SetGuide
  std::vector<double> sigmas_;  // euler and unipc
  DdimSchedule ddim_;           // ddim
  // unipc: the sample step i - 1 started from (after its correction), and the x0 predictions
  // of steps i - 1 and i - 2 (undefined until made).
  torch::Tensor last_sample_, m1_, m2_;
};

// Runs a whole sampling: Initial, then every Step; on_step(i) after step i.
torch::Tensor Sample(Model& model, const SamplerConfig& config, const torch::Tensor& noise,
                     const Conditioning& cond, const std::optional<Conditioning>& uncond = {},
                     const std::function<void(int)>& on_step = {});

// Flow-matching Euler without guidance (kept for tests and benchmarks).
torch::Tensor SampleFlowMatchEuler(Model& model, const torch::Tensor& noise,
                                   const Conditioning& cond, int steps, double shift,
                                   const std::function<void(int)>& on_step = {});

// Standard normal noise from a 64-bit seed, identical on every machine and thread count
// (counter-based: element i depends only on (seed, i)).
torch::Tensor SeededNoise(uint64_t seed, at::IntArrayRef shape);

}  // namespace segue::model
