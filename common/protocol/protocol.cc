#include "common/protocol/protocol.h"

#include <algorithm>
#include <cstring>

#include "common/tensor/half.h"

namespace segue {

std::string Serialize(capnp::MessageBuilder& builder) {
  // Straight into the string: one copy of the message, not two (it can be megabytes).
  auto segments = builder.getSegmentsForOutput();
  std::string out(capnp::computeSerializedSizeInWords(segments) * sizeof(capnp::word), '\0');
  kj::ArrayOutputStream stream(kj::arrayPtr(reinterpret_cast<kj::byte*>(out.data()), out.size()));
  capnp::writeMessage(stream, segments);
  return out;
}

namespace {

Status CheckSize(size_t size) {
  if (size == 0) return Status::Error("empty message");
  if (size > WireLimits::kMaxMessageBytes)
    return Status::Error("message of " + std::to_string(size) + " bytes exceeds the limit");
  if (size % sizeof(capnp::word) != 0)
    return Status::Error("message size " + std::to_string(size) +
                         " is not a whole number of words");
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Incoming>> Incoming::Parse(const void* data, size_t size) {
  if (Status s = CheckSize(size); !s.ok()) return s;
  std::unique_ptr<Incoming> in(new Incoming());
  in->words_ = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
  std::memcpy(in->words_.begin(), data, size);
  const kj::ArrayPtr<const capnp::word> words = in->words_.asPtr();  // before `in` moves
  return Read(std::move(in), words);
}

Result<std::unique_ptr<Incoming>> Incoming::ParseInPlace(const void* data, size_t size) {
  if (reinterpret_cast<uintptr_t>(data) % alignof(capnp::word) != 0) return Parse(data, size);
  if (Status s = CheckSize(size); !s.ok()) return s;
  std::unique_ptr<Incoming> in(new Incoming());
  return Read(std::move(in),
              kj::arrayPtr(static_cast<const capnp::word*>(data), size / sizeof(capnp::word)));
}

Result<std::unique_ptr<Incoming>> Incoming::Read(std::unique_ptr<Incoming> in,
                                                 kj::ArrayPtr<const capnp::word> words) {
  using R = Result<std::unique_ptr<Incoming>>;
  capnp::ReaderOptions options;
  options.traversalLimitInWords = words.size() * 4 + 1024;
  options.nestingLimit = WireLimits::kNestingLimit;
  try {
    // The segment table is validated here; a truncated message throws.
    in->reader_ = std::make_unique<capnp::FlatArrayMessageReader>(words, options);
    auto end = in->reader_->getEnd();
    if (end != words.end()) return R::Error("message has trailing bytes");
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

void SetTensorHalf(wire::TensorData::Builder out, const std::vector<int64_t>& shape,
                   const float* data) {
  out.setDtype("f16");
  auto s = out.initShape(static_cast<unsigned>(shape.size()));
  for (size_t i = 0; i < shape.size(); ++i) s.set(static_cast<unsigned>(i), shape[i]);
  const size_t n = static_cast<size_t>(Tensor::NumElements(shape));
  auto bytes = out.initData(static_cast<unsigned>(n * sizeof(uint16_t)));
  FloatsToHalves(data, reinterpret_cast<uint16_t*>(bytes.begin()), n);
}

Result<Tensor> GetTensor(wire::TensorData::Reader in) {
  const std::string dtype = in.getDtype().cStr();
  if (dtype != "f32" && dtype != "f16")
    return Result<Tensor>::Error("unsupported tensor dtype '" + dtype + "' (f32, f16)");
  const size_t width = dtype == "f16" ? 2 : 4;
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
  if (data.size() != static_cast<size_t>(n) * width) {
    return Result<Tensor>::Error("tensor data has " + std::to_string(data.size()) +
                                 " bytes, shape " + t.ShapeString() + " needs " +
                                 std::to_string(static_cast<size_t>(n) * width));
  }
  t.data.resize(static_cast<size_t>(n));
  if (n == 0) return t;  // a zero dimension: no bytes to copy (and no pointers to copy them by)
  if (width == 2) {
    // Cap'n Proto blobs start on a word boundary of a word-aligned message (Incoming ensures
    // one), so the halves can be read where they are.
    HalvesToFloats(reinterpret_cast<const uint16_t*>(data.begin()), t.data.data(), t.data.size());
  } else {
    std::memcpy(t.data.data(), data.begin(), data.size());
  }
  return t;
}

void SetModelSpec(wire::ModelSpec::Builder out, const model::ModelMetadata& m) {
  out.setName(m.name);
  out.setLatentChannels(static_cast<uint32_t>(m.latent_channels));
  out.setTemporalCompression(static_cast<uint32_t>(m.temporal_compression));
  out.setSpatialCompression(static_cast<uint32_t>(m.spatial_compression));
  out.setPatchSize(static_cast<uint32_t>(m.patch_size));
  auto frames = out.initNativeFrames(static_cast<unsigned>(m.native_frames.size()));
  for (size_t i = 0; i < m.native_frames.size(); ++i)
    frames.set(static_cast<unsigned>(i), static_cast<uint32_t>(m.native_frames[i]));
  out.setNativeFps(m.native_fps);
  out.setOutputMin(m.output_min);
  out.setOutputMax(m.output_max);
  out.setDecodeContextBefore(static_cast<uint32_t>(m.decode_context_before));
  out.setDecodeContextAfter(static_cast<uint32_t>(m.decode_context_after));
  out.setConditioning(model::ConditioningScopeName(m.conditioning));
  out.setIdentity(m.identity);
}

Result<model::ModelMetadata> ModelSpecFrom(wire::ModelSpec::Reader in) {
  using R = Result<model::ModelMetadata>;
  model::ModelMetadata m;
  m.name = in.getName().cStr();
  if (m.name.empty() || m.name.size() > 200) return R::Error("model spec without a valid name");
  // Bounded before narrowing: CheckMetadata then checks the ranges that matter.
  auto small = [](uint32_t v) { return static_cast<int>(std::min<uint32_t>(v, 1u << 20)); };
  m.latent_channels = small(in.getLatentChannels());
  m.temporal_compression = small(in.getTemporalCompression());
  m.spatial_compression = small(in.getSpatialCompression());
  m.patch_size = small(in.getPatchSize());
  if (in.getNativeFrames().size() > 64)
    return R::Error("model '" + m.name + "': too many native lengths");
  m.native_frames.clear();
  for (uint32_t f : in.getNativeFrames()) m.native_frames.push_back(small(f));
  m.native_fps = in.getNativeFps();
  m.output_min = in.getOutputMin();
  m.output_max = in.getOutputMax();
  m.decode_context_before = small(in.getDecodeContextBefore());
  m.decode_context_after = small(in.getDecodeContextAfter());
  auto scope = model::ParseConditioningScope(in.getConditioning().cStr());
  if (!scope) return R::Error("model '" + m.name + "': conditioning must be per-frame or per-clip");
  m.conditioning = *scope;
  m.identity = in.getIdentity().cStr();
  if (Status s = model::CheckMetadata(m); !s.ok()) return s;
  return m;
}

std::string ErrorMessage(wire::ErrorCode code, const std::string& message) {
  capnp::MallocMessageBuilder b;
  auto e = b.initRoot<wire::Envelope>().initError();
  e.setCode(static_cast<uint32_t>(code));
  e.setMessage(message);
  return Serialize(b);
}

Status CheckEndpoint(const std::string& endpoint) {
  auto bad = [&](const std::string& why) {
    return Status::Error("'" + endpoint + "' is not a ZeroMQ endpoint (" + why +
                         "): expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:7450, or ipc://PATH");
  };
  if (endpoint.rfind("ipc://", 0) == 0)
    return endpoint.size() > 6 ? Status::Ok() : bad("no path after ipc://");
  if (endpoint.rfind("inproc://", 0) == 0)
    return endpoint.size() > 9 ? Status::Ok() : bad("no name after inproc://");
  if (endpoint.rfind("tcp://", 0) != 0) {
    const size_t scheme = endpoint.find("://");
    return bad(scheme == std::string::npos
                   ? "no tcp:// before it"
                   : "'" + endpoint.substr(0, scheme) + "://' is not tcp://, ipc:// or inproc://");
  }
  const std::string rest = endpoint.substr(6);
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0) return bad("no HOST:PORT after tcp://");
  const std::string port = rest.substr(colon + 1);
  if (port == "*") return Status::Ok();
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) > 65535)
    return bad("the port '" + port + "' is not a number from 0 to 65535");
  return Status::Ok();
}

wire::ErrorCode CodeOf(wire::Error::Reader error) {
  const uint32_t code = error.getCode();
  return code <= static_cast<uint32_t>(wire::ErrorCode::OVER_LIMIT)
             ? static_cast<wire::ErrorCode>(code)
             : wire::ErrorCode::FAILURE;
}

}  // namespace segue
