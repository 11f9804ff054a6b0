// Framing of Envelope messages (segue.capnp) for ZeroMQ, with the reading limits that keep a
// malformed or hostile message from costing more than a counter increment.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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

// A received message, checked against WireLimits. Owns the (word-aligned) copy of the bytes.
class Incoming {
 public:
  // Returns an error (never throws) for empty, oversized, truncated or misaligned input.
  static Result<std::unique_ptr<Incoming>> Parse(const void* data, size_t size);
  // May throw kj::Exception later when a field turns out malformed: callers wrap their handler.
  wire::Envelope::Reader envelope() { return reader_->getRoot<wire::Envelope>(); }

 private:
  Incoming() = default;
  kj::Array<capnp::word> words_;
  std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
};

void SetTensor(wire::TensorData::Builder out, const Tensor& t);
Result<Tensor> GetTensor(wire::TensorData::Reader in);

// Builds an Error envelope.
std::string ErrorMessage(uint32_t code, const std::string& message);

}  // namespace segue
