// What a model tells the farm about itself: the numbers planning needs (how the model's latents
// map to video frames and pixels, the clip lengths it was made for, what its decoder needs around
// a chunk, how it takes prompts). Torch-free: the coordinator and the CLI plan with it; the model
// layer (model.h) extends it with what only a sampler needs.
//
// Workers report each model's metadata when they join; the coordinator keeps one copy per model
// name and refuses a worker whose copy differs (two workers rendering one job with different
// numbers would not agree on a single frame).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/status/status.h"

namespace segue::model {

// How a model takes its prompts (docs/MODELS.md, "Real models").
enum class ConditioningScope {
  kPerFrame,  // a conditioning for every latent frame (transitions are per frame)
  kPerClip,   // one context for the whole call (text-to-video models: Wan, LTX-Video)
};
const char* ConditioningScopeName(ConditioningScope s);  // "per-frame", "per-clip"
std::optional<ConditioningScope> ParseConditioningScope(const std::string& name);

struct ModelMetadata {
  std::string name;
  int latent_channels = 4;
  // r: video frames per latent frame. Causal video VAEs (Wan, HunyuanVideo, CogVideoX: 4; Mochi:
  // 6; LTX-Video: 8) keep the first frame alone, so K latent frames decode to 1 + r (K - 1)
  // video frames. 1: one latent frame per video frame.
  int temporal_compression = 1;
  int spatial_compression = 8;  // pixels per latent cell, each axis
  int patch_size = 1;           // latent cells per transformer patch, each axis
  // Clip lengths in video frames the model was made for (each 1 + r k), most preferred first.
  std::vector<int> native_frames = {48};
  double native_fps = 24;
  // What Decode returns before segue maps it to [0, 1]: [0, 1] or [-1, 1].
  double output_min = 0, output_max = 1;
  // Latent frames of context the decoder needs on each side of a chunk so that decoding the
  // chunk alone gives the frames decoding the whole video gives (a causal decoder carries state
  // forward, so it needs context before; a decoder that looks ahead needs it after).
  int decode_context_before = 0;
  int decode_context_after = 0;
  ConditioningScope conditioning = ConditioningScope::kPerFrame;
  // What tells this model's weights apart from others served under its name: "builtin/N" for
  // the built-ins (N moves when their output changes), "xxh3:HEX" (XXH3-128 of the file) for
  // a TorchScript model, what a model host's adapter says. Part of every result key
  // (coordinator/results.h): new weights are not mistaken for old. Empty: not known (an adapter
  // that says nothing, a job stored before identities were): it matches any other in the
  // farm's agreement on metadata, and nothing rendered with it is reused.
  std::string identity;

  // Picture sizes must be multiples of this: compression times patch size.
  int spatial_multiple() const { return spatial_compression * patch_size; }
  bool operator==(const ModelMetadata&) const = default;
};

// Checks the numbers make sense (r in {1, 4, 6, 8}, native lengths of the form 1 + r k, ...);
// the error names the model and the field.
Status CheckMetadata(const ModelMetadata& m);

// The first field in which `a` and `b` differ, as "temporal_compression 4 vs 8"; empty when
// they are equal.
std::string MetadataDifference(const ModelMetadata& a, const ModelMetadata& b);

// One line for logs and `segue workers`: "r=4, 8x8 (patch 2), 81 frames at 16 fps, ...".
std::string DescribeMetadata(const ModelMetadata& m);

// The built-in models' metadata (zoom, zoom4, stamp, stamp4, stamp8): the models themselves (model
// layer) return these very values, so that the coordinator, which does not link the model
// layer, plans their jobs before any worker has joined. nullptr for other names.
const ModelMetadata* BuiltinMetadata(const std::string& name);
const std::vector<ModelMetadata>& BuiltinMetadataList();

// What `segue plan` plans a job for `name` with when it is given no metadata (--model-info): a
// built-in model's, else one latent frame per video frame and the defaults. (The coordinator
// plans only from metadata a worker reported: coordinator/models.h.)
ModelMetadata PlanningMetadata(const std::string& name);

}  // namespace segue::model
