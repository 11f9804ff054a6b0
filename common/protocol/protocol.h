// Framing of Envelope messages (segue.capnp) for ZeroMQ, with the reading limits that keep a
// malformed or hostile message from costing more than a counter increment.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/model/metadata.h"
#include "common/protocol/segue.capnp.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"

namespace segue {

// Limits applied to every incoming message.
struct WireLimits {
  static constexpr size_t kMaxMessageBytes = 512u << 20;  // a 4K segment's latents fit
  static constexpr int kNestingLimit = 16;
};

// Serializes a built message to bytes ready for a ZeroMQ frame.
std::string Serialize(capnp::MessageBuilder& builder);

// A received message, checked against WireLimits. Owns a word-aligned copy of the bytes, or
// (ParseInPlace) reads them where they are.
class Incoming {
 public:
  // Returns an error (never throws) for empty, oversized, truncated or misaligned input.
  static Result<std::unique_ptr<Incoming>> Parse(const void* data, size_t size);
  // Like Parse, without the copy when `data` is word-aligned (large ZeroMQ frames are): for
  // megabyte messages such as co-denoising exchanges.
  // REQUIRES: the bytes stay valid and unchanged while the Incoming lives.
  static Result<std::unique_ptr<Incoming>> ParseInPlace(const void* data, size_t size);
  // May throw kj::Exception later when a field turns out malformed: callers wrap their handler.
  wire::Envelope::Reader envelope() { return reader_->getRoot<wire::Envelope>(); }

 private:
  Incoming() = default;
  static Result<std::unique_ptr<Incoming>> Read(std::unique_ptr<Incoming> in,
                                                kj::ArrayPtr<const capnp::word> words);
  kj::Array<capnp::word> words_;  // empty when parsed in place
  std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
};

void SetTensor(wire::TensorData::Builder out, const Tensor& t);
// The same values in half precision (dtype "f16", rounded as common/tensor/half.h says): half
// the bytes, for co-denoising's per-step exchange. `data` holds product(shape) floats.
void SetTensorHalf(wire::TensorData::Builder out, const std::vector<int64_t>& shape,
                   const float* data);
// Reads "f32" or "f16" (widened exactly to float).
Result<Tensor> GetTensor(wire::TensorData::Reader in);

// A model's metadata on the wire. ModelSpecFrom checks it (CheckMetadata): a peer's numbers are
// input like any other.
void SetModelSpec(wire::ModelSpec::Builder out, const model::ModelMetadata& m);
Result<model::ModelMetadata> ModelSpecFrom(wire::ModelSpec::Reader in);

// Builds an Error envelope.
std::string ErrorMessage(wire::ErrorCode code, const std::string& message);
// The code of a received Error (an unknown value reads as FAILURE).
wire::ErrorCode CodeOf(wire::Error::Reader error);

// Whether `endpoint` is a ZeroMQ address segue can connect to or listen on: tcp://HOST:PORT
// (PORT a number, or * to listen on any free port), ipc://PATH or inproc://NAME. The error says
// what is wrong and what is expected; ZeroMQ itself would only say "Invalid argument".
Status CheckEndpoint(const std::string& endpoint);

}  // namespace segue
