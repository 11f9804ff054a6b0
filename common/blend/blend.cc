#include "common/blend/blend.h"

#include <algorithm>
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

void BlendFrame(const std::vector<SegmentSpan>& segments, int64_t f, BlendMode mode,
                const std::function<const float*(int)>& value, int64_t n, float* out) {
  const SegmentSpan* prev = nullptr;
  // Segments are sorted by start; the covering ones are a contiguous run.
  auto first = std::lower_bound(segments.begin(), segments.end(), f,
                                [](const SegmentSpan& s, int64_t frame) { return s.end <= frame; });
  for (auto it = first; it != segments.end() && it->start <= f; ++it) {
    if (f >= it->end) continue;
    const float* src = value(it->index);
    if (prev == nullptr) {
      std::copy(src, src + n, out);
    } else {
      const float wa = EarlierWeight(mode, f - it->start, prev->end - it->start);
      const float wb = 1.f - wa;
      for (int64_t i = 0; i < n; ++i) out[i] = wa * out[i] + wb * src[i];
    }
    prev = &*it;
  }
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
  std::vector<float> frame(static_cast<size_t>(C * hw));
  // The covering segments are a run of consecutive indices: gathered[k - cover[0]] is segment k's.
  std::vector<std::vector<float>> gathered(cover.size());
  size_t lo = 0;  // the first of `cover` still covering f (ends are non-decreasing)
  for (int64_t f = start; f < end; ++f) {
    while (segments[static_cast<size_t>(cover[lo])].end <= f) ++lo;
    // Segment tensors are [C, T, h, w]: gather frame f's planes, then blend them as one run.
    for (size_t i = lo; i < cover.size(); ++i) {
      const int k = cover[i];
      const SegmentSpan& s = segments[static_cast<size_t>(k)];
      if (s.start > f) break;
      if (f >= s.end) continue;
      auto& g = gathered[static_cast<size_t>(k - cover[0])];
      g.resize(static_cast<size_t>(C * hw));
      for (int64_t c = 0; c < C; ++c) {
        const float* src =
            latents[static_cast<size_t>(k)]->data.data() + (c * s.length() + (f - s.start)) * hw;
        std::copy(src, src + hw, g.begin() + c * hw);
      }
    }
    BlendFrame(
        segments, f, mode,
        [&](int k) { return gathered[static_cast<size_t>(k - cover[0])].data(); }, C * hw,
        frame.data());
    for (int64_t c = 0; c < C; ++c) {
      std::copy(frame.begin() + c * hw, frame.begin() + (c + 1) * hw,
                out.data.begin() + (c * T + (f - start)) * hw);
    }
  }
  return out;
}

}  // namespace segue
