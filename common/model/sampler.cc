#include "common/model/sampler.h"

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

torch::Tensor PredictionToX0(Prediction kind, const torch::Tensor& x, const torch::Tensor& pred,
                             double sigma) {
  switch (kind) {
    case Prediction::kX0:
      return pred;
    case Prediction::kVelocity:  // v = eps - x0  =>  x0 = x - sigma * v
      return x - pred * sigma;
    case Prediction::kEpsilon:  // x = (1 - s) x0 + s eps
      return (x - pred * sigma) / std::max(1e-6, 1.0 - sigma);
  }
  return pred;
}

torch::Tensor SampleFlowMatchEuler(Model& model, const torch::Tensor& noise,
                                   const Conditioning& cond, int steps, double shift,
                                   const std::function<void(int)>& on_step) {
  torch::NoGradGuard no_grad;
  const std::vector<double> sigmas = FlowMatchSigmas(steps, shift);
  torch::Tensor x = noise.clone();
  const int64_t batch = x.size(0);
  for (int i = 0; i < steps; ++i) {
    const double s = sigmas[static_cast<size_t>(i)], s_next = sigmas[static_cast<size_t>(i) + 1];
    torch::Tensor sigma = torch::full({batch}, s, torch::kFloat32);
    torch::Tensor x0 = PredictionToX0(model.info().prediction, x, model.Denoise(x, sigma, cond), s);
    if (s_next <= 0.0) {
      x = x0;
    } else {
      // Euler along the velocity (x - x0) / sigma. Plain mul/add (no fused alpha) keeps every
      // element's rounding independent of vectorisation and thread count.
      torch::Tensor v = (x - x0) / s;
      x = x + v * (s_next - s);
    }
    if (on_step) on_step(i);
  }
  return x;
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
