// What an assignment asks of a worker, read and checked before any model runs or anything big is
// allocated: a task from a broken or hostile coordinator fails (the worker reports it and goes
// on) instead of the worker dying of bad_alloc or reading out of bounds. Torch-free, so that a
// fuzz target can run it (tests/fuzz/assignment_fuzz.cc).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/blend/blend.h"
#include "common/model/metadata.h"
#include "common/model/runtime.h"
#include "common/plan/plan.h"
#include "common/protocol/segue.capnp.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"

namespace segue {

// A model's metadata by name (the runtime's, or the built-ins' in a test).
using MetadataOf = std::function<Result<model::ModelMetadata>(const std::string& model)>;

// Limits on what one task may ask: far above any manifest the coordinator admits.
inline constexpr int64_t kMaxLatentStart = int64_t{1} << 32;
inline constexpr uint32_t kMaxKeyframes = 100000;
inline constexpr int64_t kMaxTotalLatents = int64_t{1} << 24;
inline constexpr int64_t kMaxPlannedSegments = 1000000;

// The model-layer request for a render task, with per-latent-frame conditioning from its
// keyframes: the prompts of each latent frame's first video frame. Refuses sizes no worker
// renders (latents over 16 GiB, pictures over 16384 on a side).
Result<model::SegmentRequest> ReadRenderTask(wire::RenderTask::Reader t,
                                             const MetadataOf& metadata);

// A co-denoising group: the job's plan, and the group's consecutive segments' requests.
struct CodenoiseGroup {
  uint32_t first = 0;                           // the group's first segment
  std::vector<SegmentSpan> spans;               // every segment of the job
  std::vector<model::SegmentRequest> requests;  // the group's, in order
  BlendMode blend = BlendMode::kLinear;
};
Result<CodenoiseGroup> ReadCodenoiseTask(wire::CodenoiseTask::Reader t, const MetadataOf& metadata);

// An encode task's latents [C, T, h, w], once its picture size and frame count are sane (at
// most 16 GiB of pictures).
Result<Tensor> ReadEncodeTask(wire::EncodeTask::Reader t);

}  // namespace segue
