#include "common/tensor/tensor.h"

#include <cstring>

namespace segue {

std::string EncodeTensor(const Tensor& t) {
  std::string out = "SGT1";
  uint32_t rank = static_cast<uint32_t>(t.shape.size());
  out.append(reinterpret_cast<const char*>(&rank), 4);
  out.append(reinterpret_cast<const char*>(t.shape.data()), t.shape.size() * 8);
  out.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * 4);
  return out;
}

Result<Tensor> DecodeTensor(const std::string& b) {
  if (b.size() < 8 || b.compare(0, 4, "SGT1") != 0)
    return Result<Tensor>::Error("stored tensor has a bad header");
  uint32_t rank = 0;
  std::memcpy(&rank, b.data() + 4, 4);
  if (rank > 8 || b.size() < 8 + rank * 8)
    return Result<Tensor>::Error("stored tensor has a bad rank");
  Tensor t;
  t.shape.resize(rank);
  if (rank > 0) std::memcpy(t.shape.data(), b.data() + 8, rank * 8);  // never with nullptr
  size_t offset = 8 + rank * 8;
  const int64_t n = Tensor::CheckedNumElements(t.shape);
  if (n < 0 || static_cast<uint64_t>(n) > (b.size() - offset) / 4 ||
      b.size() - offset != static_cast<size_t>(n) * 4)
    return Result<Tensor>::Error("stored tensor is truncated");
  t.data.resize(static_cast<size_t>(n));
  if (n > 0) std::memcpy(t.data.data(), b.data() + offset, b.size() - offset);
  return t;
}

}  // namespace segue
