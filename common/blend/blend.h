// Overlap blending in latent space: how two neighbouring segments become one stretch of frames.
//
// For a frame f inside the overlap of segments A (earlier) and B (later), the output latent is
//   w(f) * A[f] + (1 - w(f)) * B[f]
// where w falls from 1 to 0 across the overlap: `linear` a ramp, `cosine` a raised-cosine ease,
// `none` a hard cut at the overlap's middle. Outside overlaps exactly one segment covers a frame.
// All arithmetic is float32 in a fixed order, so the result is bitwise reproducible.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/plan/plan.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"

namespace segue {

enum class BlendMode { kLinear, kCosine, kNone };
Result<BlendMode> ParseBlendMode(const std::string& name);

// Weight of the EARLIER segment for overlap frame `i` of `overlap` frames (0 <= i < overlap).
// Monotonically non-increasing in i, in [0, 1]; w(i) + w'(overlap-1-i) == 1 (symmetric).
float EarlierWeight(BlendMode mode, int64_t i, int64_t overlap);

// The consensus of one frame f: the values of the segments covering f (in index order) folded
// pairwise with EarlierWeight over each consecutive pair's overlap. `value(k)` returns segment
// k's `n` floats at frame f (one channel plane or a whole frame, as the caller lays them out).
// This one function is the stitch-time blend and co-denoising's per-step average, wherever it
// runs (coordinator or worker), so both give bitwise the same numbers.
// REQUIRES: at least one segment covers f.
void BlendFrame(const std::vector<SegmentSpan>& segments, int64_t f, BlendMode mode,
                const std::function<const float*(int)>& value, int64_t n, float* out);

// Builds frames [start, end) of the video from the segments' latents.
// `latents[k]` holds segment `segments[k]`'s latents, shape [C, T, h, w] with T == its length;
// only the segments covering [start, end) need to be present (others may be empty tensors).
// Frames covered by more than two segments (tiny strides) blend pairwise in segment order.
// Returns [C, end-start, h, w].
Result<Tensor> BlendRange(const std::vector<SegmentSpan>& segments,
                          const std::vector<const Tensor*>& latents, BlendMode mode, int64_t start,
                          int64_t end);

}  // namespace segue
