// Samplers: turn a model's predictions into a trajectory from noise to clean latents.
#pragma once

#include <functional>
#include <vector>

#include "common/model/model.h"

namespace segue::model {

// Flow-matching noise levels: sigma_i for i = 0..steps, from 1 to 0, with timestep shift
// (diffusers FlowMatchEulerDiscreteScheduler): s' = shift * s / (1 + (shift - 1) * s).
std::vector<double> FlowMatchSigmas(int steps, double shift = 1.0);

// Converts a model prediction into x0 given x_t = (1 - sigma) x0 + sigma * eps.
torch::Tensor PredictionToX0(Prediction kind, const torch::Tensor& x, const torch::Tensor& pred,
                             double sigma);

// Flow-matching Euler from `noise` ([B, C, T, h, w]); calls on_step(i) after step i.
torch::Tensor SampleFlowMatchEuler(Model& model, const torch::Tensor& noise,
                                   const Conditioning& cond, int steps, double shift,
                                   const std::function<void(int)>& on_step = {});

// Standard normal noise from a 64-bit seed, identical on every machine and thread count
// (counter-based: element i depends only on (seed, i)).
torch::Tensor SeededNoise(uint64_t seed, at::IntArrayRef shape);

}  // namespace segue::model
