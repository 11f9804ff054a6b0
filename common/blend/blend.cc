#include "common/blend/blend.h"

#include <cmath>

namespace segue {

Result<BlendMode> ParseBlendMode(const std::string& name) {
  if (name == "linear") return BlendMode::kLinear;
  if (name == "cosine") return BlendMode::kCosine;
  if (name == "none") return BlendMode::kNone;
  return Result<BlendMode>::Error("unknown blend mode '" + name + "' (linear, cosine, none)");
}

float EarlierWeight(BlendMode mode, int64_t i, int64_t overlap) {
  const double x = static_cast<double>(i + 1) / static_cast<double>(overlap + 1);  // in (0, 1)
  switch (mode) {
    case BlendMode::kLinear:
      return static_cast<float>(1.0 - x);
    case BlendMode::kCosine:
      return static_cast<float>(0.5 * (1.0 + std::cos(M_PI * x)));
    case BlendMode::kNone:
      return 2 * i + 1 < overlap ? 1.f : 0.f;
  }
  return 0.f;
}

Result<Tensor> BlendRange(const std::vector<SegmentSpan>& segments,
                          const std::vector<const Tensor*>& latents, BlendMode mode, int64_t start,
                          int64_t end) {
  if (segments.size() != latents.size())
    return Result<Tensor>::Error("blend: segments and latents differ in count");
  if (end <= start) return Result<Tensor>::Error("blend: empty frame range");
  std::vector<int> cover = SegmentsCovering(segments, start, end);
  if (cover.empty()) return Result<Tensor>::Error("blend: no segment covers the frame range");
  int64_t C = -1, h = -1, w = -1;
  for (int k : cover) {
    const Tensor* t = latents[static_cast<size_t>(k)];
    const SegmentSpan& s = segments[static_cast<size_t>(k)];
    if (t == nullptr || t->shape.size() != 4 || !t->Valid()) {
      return Result<Tensor>::Error("blend: latents of segment " + std::to_string(s.index) +
                                   " are missing or malformed");
    }
    if (t->shape[1] != s.length()) {
      return Result<Tensor>::Error("blend: segment " + std::to_string(s.index) + " has " +
                                   std::to_string(t->shape[1]) + " latent frames, expected " +
                                   std::to_string(s.length()));
    }
    if (C < 0) C = t->shape[0], h = t->shape[2], w = t->shape[3];
    if (t->shape[0] != C || t->shape[2] != h || t->shape[3] != w) {
      return Result<Tensor>::Error("blend: segment " + std::to_string(s.index) + " has shape " +
                                   t->ShapeString() + ", unlike its neighbours");
    }
  }
  const int64_t T = end - start, hw = h * w;
  Tensor out = Tensor::Zeros({C, T, h, w});
  std::vector<float> acc(static_cast<size_t>(hw));
  for (int64_t f = start; f < end; ++f) {
    for (int64_t c = 0; c < C; ++c) {
      bool first = true;
      int prev = -1;
      for (int k : cover) {
        const SegmentSpan& s = segments[static_cast<size_t>(k)];
        if (f < s.start || f >= s.end) continue;
        const float* src =
            latents[static_cast<size_t>(k)]->data.data() + (c * s.length() + (f - s.start)) * hw;
        if (first) {
          std::copy(src, src + hw, acc.begin());
          first = false;
        } else {
          const SegmentSpan& p = segments[static_cast<size_t>(prev)];
          const int64_t overlap = p.end - s.start;
          const float wa = EarlierWeight(mode, f - s.start, overlap);
          const float wb = 1.f - wa;
          for (int64_t i = 0; i < hw; ++i)
            acc[static_cast<size_t>(i)] = wa * acc[static_cast<size_t>(i)] + wb * src[i];
        }
        prev = k;
      }
      std::copy(acc.begin(), acc.end(), out.data.begin() + (c * T + (f - start)) * hw);
    }
  }
  return out;
}

}  // namespace segue
