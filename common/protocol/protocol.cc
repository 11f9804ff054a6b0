#include "common/protocol/protocol.h"

#include <cstring>

namespace segue {

std::string Serialize(capnp::MessageBuilder& builder) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

Result<std::unique_ptr<Incoming>> Incoming::Parse(const void* data, size_t size) {
  using R = Result<std::unique_ptr<Incoming>>;
  if (size == 0) return R::Error("empty message");
  if (size > WireLimits::kMaxMessageBytes)
    return R::Error("message of " + std::to_string(size) + " bytes exceeds the limit");
  if (size % sizeof(capnp::word) != 0)
    return R::Error("message size " + std::to_string(size) + " is not a whole number of words");
  std::unique_ptr<Incoming> in(new Incoming());
  in->words_ = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
  std::memcpy(in->words_.begin(), data, size);
  capnp::ReaderOptions options;
  options.traversalLimitInWords = size / sizeof(capnp::word) * 4 + 1024;
  options.nestingLimit = WireLimits::kNestingLimit;
  try {
    // The segment table is validated here; a truncated message throws.
    in->reader_ = std::make_unique<capnp::FlatArrayMessageReader>(in->words_.asPtr(), options);
    auto end = in->reader_->getEnd();
    if (end != in->words_.end()) return R::Error("message has trailing bytes");
    in->reader_->getRoot<wire::Envelope>().which();
  } catch (const kj::Exception& e) {
    return R::Error(std::string("malformed message: ") + e.getDescription().cStr());
  }
  return R(std::move(in));
}

void SetTensor(wire::TensorData::Builder out, const Tensor& t) {
  out.setDtype("f32");
  auto shape = out.initShape(static_cast<unsigned>(t.shape.size()));
  for (size_t i = 0; i < t.shape.size(); ++i) shape.set(static_cast<unsigned>(i), t.shape[i]);
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "segue assumes a little-endian host");
  out.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(t.data.data()),
                           t.data.size() * sizeof(float)));
}

Result<Tensor> GetTensor(wire::TensorData::Reader in) {
  if (std::string(in.getDtype().cStr()) != "f32") {
    return Result<Tensor>::Error("unsupported tensor dtype '" + std::string(in.getDtype().cStr()) +
                                 "'");
  }
  Tensor t;
  auto shape = in.getShape();
  if (shape.size() > 8) return Result<Tensor>::Error("tensor has more than 8 dimensions");
  int64_t n = 1;
  for (auto d : shape) {
    if (d < 0 || d > (int64_t{1} << 31))
      return Result<Tensor>::Error("tensor dimension out of range");
    t.shape.push_back(d);
    n *= d;
    if (n > (int64_t{1} << 34)) return Result<Tensor>::Error("tensor too large");
  }
  auto data = in.getData();
  if (data.size() != static_cast<size_t>(n) * sizeof(float)) {
    return Result<Tensor>::Error("tensor data has " + std::to_string(data.size()) +
                                 " bytes, shape " + t.ShapeString() + " needs " +
                                 std::to_string(n * 4));
  }
  t.data.resize(static_cast<size_t>(n));
  std::memcpy(t.data.data(), data.begin(), data.size());
  return t;
}

std::string ErrorMessage(uint32_t code, const std::string& message) {
  capnp::MallocMessageBuilder b;
  auto e = b.initRoot<wire::Envelope>().initError();
  e.setCode(code);
  e.setMessage(message);
  return Serialize(b);
}

}  // namespace segue
