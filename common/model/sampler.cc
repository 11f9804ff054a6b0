#include "common/model/sampler.h"

#include <algorithm>
#include <cmath>

namespace segue::model {

std::vector<double> FlowMatchSigmas(int steps, double shift) {
  std::vector<double> s(static_cast<size_t>(steps) + 1);
  for (int i = 0; i <= steps; ++i) {
    double t = 1.0 - static_cast<double>(i) / steps;
    s[static_cast<size_t>(i)] = shift * t / (1.0 + (shift - 1.0) * t);
  }
  return s;
}

std::vector<double> FlowMatchSchedule(const SamplerConfig& config) {
  const bool unipc = config.kind == SamplerKind::kUniPc;
  if (config.sigmas.empty() && !config.mu && !unipc)
    return FlowMatchSigmas(config.steps, config.shift);
  std::vector<double> s = config.sigmas;
  if (s.empty()) {
    // UniPCMultistepScheduler (use_flow_sigmas): 1 - linspace(1, 1/1000, steps + 1), reversed,
    // without its final 0.
    const double top = unipc ? 1.0 - 1.0 / 1000 : 1.0;
    for (int i = 0; i < config.steps; ++i)
      s.push_back(top * (1.0 - static_cast<double>(i) / config.steps));
  }
  for (double& v : s) {
    if (config.mu)
      v = std::exp(*config.mu) / (std::exp(*config.mu) + (1.0 / v - 1.0));
    else
      v = config.shift * v / (1.0 + (config.shift - 1.0) * v);
  }
  s.push_back(0.0);
  return s;
}

double DynamicShiftMu(int64_t tokens) {
  constexpr double kBaseTokens = 1024, kMaxTokens = 4096, kBaseShift = 0.95, kMaxShift = 2.05;
  const double m = (kMaxShift - kBaseShift) / (kMaxTokens - kBaseTokens);
  const double b = kBaseShift - m * kBaseTokens;
  return static_cast<double>(tokens) * m + b;
}

DdimSchedule DdimSchedule::Make(int steps, int train_steps, double beta_start, double beta_end,
                                int steps_offset, bool set_alpha_to_one) {
  DdimSchedule d;
  d.alphas_cumprod.resize(static_cast<size_t>(train_steps));
  const double a = std::sqrt(beta_start), b = std::sqrt(beta_end);
  double prod = 1.0;
  for (int t = 0; t < train_steps; ++t) {
    // scaled_linear: betas = linspace(sqrt(start), sqrt(end), N) ** 2
    const double root = a + (b - a) * static_cast<double>(t) / (train_steps - 1);
    prod *= 1.0 - root * root;
    d.alphas_cumprod[static_cast<size_t>(t)] = prod;
  }
  d.final_alpha_cumprod = set_alpha_to_one ? 1.0 : d.alphas_cumprod[0];
  d.step_ratio = train_steps / steps;
  for (int i = steps - 1; i >= 0; --i) d.timesteps.push_back(i * d.step_ratio + steps_offset);
  return d;
}

double DdimSchedule::PrevAlpha(int i) const {
  const int prev = timesteps[static_cast<size_t>(i)] - step_ratio;
  return prev >= 0 ? alphas_cumprod[static_cast<size_t>(prev)] : final_alpha_cumprod;
}

torch::Tensor PredictionToX0(Prediction kind, const torch::Tensor& x, const torch::Tensor& pred,
                             double sigma) {
  switch (kind) {
    case Prediction::kX0:
      return pred;
    case Prediction::kVelocity:  // v = eps - x0  =>  x0 = x - s v
      return x - pred * sigma;
    case Prediction::kEpsilon:  // x = (1 - s) x0 + s eps
      return (x - pred * sigma) / std::max(1e-6, 1.0 - sigma);
  }
  return pred;
}

Sampler::Sampler(Model& model, const SamplerConfig& config, Conditioning cond,
                 std::optional<Conditioning> uncond)
    : model_(model), config_(config), cond_(std::move(cond)), uncond_(std::move(uncond)) {
  if (config_.kind == SamplerKind::kDdim)
    ddim_ = DdimSchedule::Make(config_.steps);
  else
    sigmas_ = FlowMatchSchedule(config_);
}

torch::Tensor Sampler::PredictX0(const torch::Tensor& x_fm, double sigma) {
  const int64_t batch = x_fm.size(0);
  torch::Tensor s = torch::full({batch}, sigma, torch::kFloat32);
  const bool held = guide_.defined() && model_.info().frame_noise_levels;
  torch::Tensor x_in = x_fm;
  const Conditioning* cond = &cond_;
  const Conditioning* uncond = uncond_ ? &*uncond_ : nullptr;
  Conditioning held_cond, held_uncond;  // copies with per-frame levels, when the guide is held
  if (held) {                           // the guide frames enter clean, at level 0
    const int64_t g = guide_.size(2);
    x_in = x_fm.clone();
    x_in.narrow(2, 0, g).copy_(guide_);
    torch::Tensor levels = torch::full({batch, x_fm.size(2)}, sigma, torch::kFloat64);
    levels.narrow(1, 0, g).zero_();
    held_cond = cond_;
    held_cond.frame_sigma = levels;
    cond = &held_cond;
    if (uncond) {
      held_uncond = *uncond_;
      held_uncond.frame_sigma = levels;
      uncond = &held_uncond;
    }
  }
  torch::Tensor pred = model_.Denoise(x_in, s, *cond);
  if (config_.guidance != 1.0 && uncond) {
    torch::Tensor un = model_.Denoise(x_in, s, *uncond);
    pred = un + (pred - un) * config_.guidance;
  }
  torch::Tensor x0 = PredictionToX0(model_.info().prediction, x_in, pred, sigma);
  // Known frames are their own clean estimate: then an Euler or DDIM step takes x's re-noised
  // guide frames exactly to the guide re-noised at the next level.
  if (held) x0.narrow(2, 0, guide_.size(2)).copy_(guide_);
  return x0;
}

namespace {
// UniPC's log signal-to-noise ratio of a flow-matching level: alpha = 1 - s, sigma = s.
double Lambda(double s) { return std::log(1.0 - s) - std::log(s); }
}  // namespace

int Sampler::UniPcOrder(int i) const {
  constexpr int kOrder = 2;  // solver_order
  return std::min({kOrder, config_.steps - i, std::min(i, kOrder) + 1});
}

// UniPCMultistepScheduler.step with predict_x0 and bh2. Coefficients are computed in double;
// the tensors are combined with plain mul/add, so every element rounds the same on every host.
torch::Tensor Sampler::UniPcStep(int i, torch::Tensor x) {
  const auto sig = [&](int k) { return sigmas_[static_cast<size_t>(k)]; };
  torch::Tensor m = PredictX0(x, sig(i));
  if (i > 0 && last_sample_.defined()) {
    // UniC: corrects x, made by the last predictor from last_sample_, with m, the model's view
    // of x. Its order is the order of the step that made x.
    const int order = UniPcOrder(i - 1);
    const double s_t = sig(i), s_0 = sig(i - 1), a_t = 1.0 - s_t;
    const double h = Lambda(s_t) - Lambda(s_0), hh = -h;
    const double h_phi_1 = std::expm1(hh), b_h = std::expm1(hh);
    const double b0 = (h_phi_1 / hh - 1.0) / b_h;  // h phi_2 / B(h)
    torch::Tensor corrected = last_sample_ * (s_t / s_0) - m1_ * (a_t * h_phi_1);
    if (order == 1) {
      corrected = corrected - (m - m1_) * (a_t * b_h * 0.5);
    } else {
      // rhos solve R rho = b with R = [[1, 1], [r1, 1]], r1 the earlier step's place in lambda,
      // b = [h phi_2, 2 h phi_3] / B(h).
      const double r1 = (Lambda(sig(i - 2)) - Lambda(s_0)) / h;
      const double b1 = ((h_phi_1 / hh - 1.0) / hh - 0.5) * 2.0 / b_h;
      const double rho0 = (b0 - b1) / (1.0 - r1), rho1 = b0 - rho0;
      torch::Tensor d1 = (m2_ - m1_) / r1;
      corrected = corrected - (d1 * rho0 + (m - m1_) * rho1) * (a_t * b_h);
    }
    x = corrected;
  }
  m2_ = m1_;
  m1_ = m;
  last_sample_ = x;
  // UniP: from x, the corrected sample, to the next level.
  const int order = UniPcOrder(i);
  const double s_t = sig(i + 1), s_0 = sig(i), a_t = 1.0 - s_t;
  const double h = Lambda(s_t) - Lambda(s_0), hh = -h;
  const double h_phi_1 = std::expm1(hh), b_h = std::expm1(hh);
  torch::Tensor next = x * (s_t / s_0) - m * (a_t * h_phi_1);
  if (order == 2) {  // rho_p = 0.5, D1 = (m_{i-1} - m_i) / r1
    const double r1 = (Lambda(sig(i - 1)) - Lambda(s_0)) / h;
    next = next - ((m2_ - m) / r1) * (a_t * b_h * 0.5);
  }
  return next;
}

std::vector<torch::Tensor> Sampler::History() const {
  if (config_.kind != SamplerKind::kUniPc || !last_sample_.defined()) return {};
  return {last_sample_, m1_, m2_.defined() ? m2_ : torch::zeros_like(m1_)};
}

void Sampler::SetHistory(int step, std::vector<torch::Tensor> history) {
  if (config_.kind != SamplerKind::kUniPc || step <= 0 || history.size() != 3) return;
  last_sample_ = std::move(history[0]);
  m1_ = std::move(history[1]);
  m2_ = step >= 2 ? std::move(history[2]) : torch::Tensor();
}

torch::Tensor Sampler::Step(int i, const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  if (config_.kind == SamplerKind::kUniPc) return UniPcStep(i, x);
  if (config_.kind == SamplerKind::kEuler) {
    const double s = sigmas_[static_cast<size_t>(i)], s_next = sigmas_[static_cast<size_t>(i) + 1];
    torch::Tensor x0 = PredictX0(x, s);
    if (s_next <= 0.0) return x0;
    // Euler along the velocity (x - x0) / s. Plain mul/add (no fused alpha) keeps every
    // element's rounding independent of vectorisation and thread count.
    torch::Tensor v = (x - x0) / s;
    return x + v * (s_next - s);
  }
  const double a_t =
      ddim_.alphas_cumprod[static_cast<size_t>(ddim_.timesteps[static_cast<size_t>(i)])];
  const double a_prev = ddim_.PrevAlpha(i);
  const double a = std::sqrt(a_t), b = std::sqrt(1.0 - a_t);
  torch::Tensor x0 = PredictX0(x / (a + b), b / (a + b));
  torch::Tensor eps = (x - x0 * a) / b;
  const double variance = (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev);
  const double std_dev = config_.eta * std::sqrt(variance);
  torch::Tensor out = x0 * std::sqrt(a_prev) + eps * std::sqrt(1.0 - a_prev - std_dev * std_dev);
  if (std_dev > 0) {
    out = out + SeededNoise(config_.seed ^ (0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(i + 1)),
                            x.sizes()) *
                    std_dev;
  }
  return out;
}

torch::Tensor Sampler::Renoise(const torch::Tensor& clean, const torch::Tensor& noise,
                               int i) const {
  if (i >= config_.steps) return clean;
  if (config_.kind != SamplerKind::kDdim) {
    const double s = sigmas_[static_cast<size_t>(i)];
    return clean * (1.0 - s) + noise * s;
  }
  const double a_t =
      ddim_.alphas_cumprod[static_cast<size_t>(ddim_.timesteps[static_cast<size_t>(i)])];
  return clean * std::sqrt(a_t) + noise * std::sqrt(1.0 - a_t);
}

torch::Tensor Sample(Model& model, const SamplerConfig& config, const torch::Tensor& noise,
                     const Conditioning& cond, const std::optional<Conditioning>& uncond,
                     const std::function<void(int)>& on_step) {
  Sampler sampler(model, config, cond, uncond);
  torch::Tensor x = sampler.Initial(noise);
  for (int i = 0; i < sampler.steps(); ++i) {
    x = sampler.Step(i, x);
    if (on_step) on_step(i);
  }
  return x;
}

torch::Tensor SampleFlowMatchEuler(Model& model, const torch::Tensor& noise,
                                   const Conditioning& cond, int steps, double shift,
                                   const std::function<void(int)>& on_step) {
  SamplerConfig c;
  c.steps = steps;
  c.shift = shift;
  return Sample(model, c, noise, cond, {}, on_step);
}

namespace {
inline uint64_t SplitMix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
}  // namespace

torch::Tensor SeededNoise(uint64_t seed, at::IntArrayRef shape) {
  torch::Tensor t = torch::empty(shape, torch::kFloat32);
  float* p = t.data_ptr<float>();
  const int64_t n = t.numel();
  const uint64_t key = SplitMix(seed);
  at::parallel_for(0, (n + 1) / 2, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t pair = begin; pair < end; ++pair) {
      uint64_t a = SplitMix(key ^ (2 * static_cast<uint64_t>(pair)));
      uint64_t b = SplitMix(key ^ (2 * static_cast<uint64_t>(pair) + 1));
      double u1 = (static_cast<double>(a >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
      double u2 = static_cast<double>(b >> 11) * 0x1.0p-53;          // [0, 1)
      double r = std::sqrt(-2.0 * std::log(u1));
      p[2 * pair] = static_cast<float>(r * std::cos(2.0 * M_PI * u2));
      if (2 * pair + 1 < n) p[2 * pair + 1] = static_cast<float>(r * std::sin(2.0 * M_PI * u2));
    }
  });
  return t;
}

}  // namespace segue::model
