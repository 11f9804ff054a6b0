// The built-in models, one factory each (the registry is CreateBuiltinModel in model.h).
#pragma once

#include <memory>

#include "common/model/model.h"

namespace segue::model {

// zoom.cc: the reference model; `name` is zoom, or zoom4 (latent frames 4 frames apart, decoded
// causally).
std::unique_ptr<Model> CreateZoomModel(const std::string& name = "zoom");
// stamp.cc: frames that show their own time; `name` is stamp, stamp4 or stamp8.
std::unique_ptr<Model> CreateStampModel(const std::string& name);

// The zoom model's prior (zoom.cc), for tests that check its denoiser against a brute-force
// posterior: the worlds under batch item 0 of `cond`, [K, C, T, h, w], and the block length.
struct ZoomPrior {
  torch::Tensor worlds;
  double block_seconds = 0;
};
ZoomPrior ZoomPriorFor(const Conditioning& cond, int64_t h, int64_t w);

}  // namespace segue::model
