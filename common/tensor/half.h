// IEEE 754 binary16 ("half"): how co-denoising latents travel between workers and the
// coordinator, at half the bytes of float32.
//
// Conversions round to nearest, ties to even, and are exact from half to float, so every host
// gets the same bits whether it uses the CPU's F16C instructions or the portable path. Values
// beyond half's range (|x| > 65504) become infinities and NaN stays NaN; latents live far inside.
#pragma once

#include <cstddef>
#include <cstdint>

namespace segue {

void FloatsToHalves(const float* in, uint16_t* out, size_t n);
void HalvesToFloats(const uint16_t* in, float* out, size_t n);
// x = float(half(x)) for each of the n values, in place.
void RoundToHalves(float* data, size_t n);

// The portable conversions, whatever the CPU has (tests compare them with the F16C path).
void FloatsToHalvesPortable(const float* in, uint16_t* out, size_t n);
void HalvesToFloatsPortable(const uint16_t* in, float* out, size_t n);

}  // namespace segue
