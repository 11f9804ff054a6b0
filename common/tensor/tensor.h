// A plain float32 tensor in row-major order: what travels on the wire and sits in the store.
// The coordinator works with these and never links libtorch; the worker converts at the model
// boundary, inside common/model/runtime.cc (runtime.h speaks Tensor).
#pragma once

#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "common/status/status.h"

namespace segue {

struct Tensor {
  std::vector<int64_t> shape;  // latents: [C, T, h, w]
  std::vector<float> data;     // size == product(shape)

  static Tensor Zeros(std::vector<int64_t> shape) {
    Tensor t;
    t.shape = std::move(shape);
    t.data.assign(static_cast<size_t>(NumElements(t.shape)), 0.f);
    return t;
  }
  static int64_t NumElements(const std::vector<int64_t>& shape) {
    return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
  }
  // The element count of `shape`, or -1 when a dimension is negative or the product does not
  // fit in 63 bits: for shapes read from a peer or from the store.
  static int64_t CheckedNumElements(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) {
      if (d < 0 || (d != 0 && n > std::numeric_limits<int64_t>::max() / d)) return -1;
      n *= d;
    }
    return n;
  }
  bool Valid() const {
    for (int64_t d : shape) {
      if (d < 0) return false;
    }
    return static_cast<int64_t>(data.size()) == NumElements(shape);
  }
  std::string ShapeString() const {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
    return s + "]";
  }
};

// Tensor bytes as the coordinator stores them: "SGT1", u32 rank, i64 dims, f32 data, all
// little-endian. DecodeTensor checks the header, the rank and the length.
std::string EncodeTensor(const Tensor& t);
Result<Tensor> DecodeTensor(const std::string& bytes);

}  // namespace segue
