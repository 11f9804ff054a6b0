#include "tests/support/fake_worker.h"

#include <capnp/message.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <sstream>
#include <zmq.hpp>

#include "common/env/env.h"
#include "common/media/video.h"
#include "common/protocol/protocol.h"

namespace segue {
namespace {

std::optional<Tensor> TensorOf(wire::TensorData::Reader t) {
  if (t.getShape().size() == 0) return std::nullopt;
  auto r = GetTensor(t);
  if (!r.ok()) return std::nullopt;
  return std::move(*r);
}

FakeAssignment FromRender(wire::RenderTask::Reader t) {
  FakeAssignment a;
  a.kind = wire::TaskKind::RENDER;
  a.job = t.getJobId();
  a.index = t.getSegment();
  a.attempt = t.getAttempt();
  a.frame_start = t.getLatentStart();
  a.frame_count = t.getLatentCount();
  a.seed = t.getSeed();
  a.width = t.getWidth();
  a.height = t.getHeight();
  a.model = t.getModel().cStr();
  if (t.hasGuide()) a.guide = TensorOf(t.getGuide());
  a.resume_step = t.getResumeStep();
  return a;
}

}  // namespace

FakeWorker::FakeWorker(std::string name, std::vector<std::string> models,
                       std::vector<std::string> tags, std::string device, uint64_t memory)
    : name_(std::move(name)),
      device_(std::move(device)),
      models_(std::move(models)),
      tags_(std::move(tags)),
      memory_(memory) {}

std::string FakeWorker::Hello() const {
  capnp::MallocMessageBuilder b;
  auto h = b.initRoot<wire::Envelope>().initHello();
  h.setProtocolVersion(wire::PROTOCOL_VERSION);
  h.setName(name_);
  h.setHost("test");
  h.setDevice(device_);
  h.setMemoryBytes(memory_);
  auto models = h.initModels(static_cast<unsigned>(models_.size()));
  for (size_t i = 0; i < models_.size(); ++i) models.set(static_cast<unsigned>(i), models_[i]);
  auto tags = h.initTags(static_cast<unsigned>(tags_.size()));
  for (size_t i = 0; i < tags_.size(); ++i) tags.set(static_cast<unsigned>(i), tags_[i]);
  auto specs = h.initModelSpecs(static_cast<unsigned>(specs_.size()));
  for (size_t i = 0; i < specs_.size(); ++i)
    SetModelSpec(specs[static_cast<unsigned>(i)], specs_[i]);
  return Serialize(b);
}

std::string FakeWorker::WorkRequest(uint32_t credits) {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initWorkRequest().setCredits(credits);
  return Serialize(b);
}

std::string FakeWorker::Heartbeat() {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initHeartbeat().setBusy(true);
  return Serialize(b);
}

std::string FakeWorker::Goodbye(const std::string& reason) {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initGoodbye().setReason(reason);
  return Serialize(b);
}

std::string FakeWorker::RenderResult(const FakeAssignment& a, const Tensor& latents,
                                     uint64_t elapsed_ms, const std::string& thumbnail) {
  capnp::MallocMessageBuilder b;
  auto r = b.initRoot<wire::Envelope>().initRenderResult();
  r.setJobId(a.job);
  r.setSegment(a.index);
  r.setAttempt(a.attempt);
  SetTensor(r.initLatents(), latents);
  r.setElapsedMs(elapsed_ms);
  if (!thumbnail.empty())
    r.setThumbnail(
        kj::arrayPtr(reinterpret_cast<const kj::byte*>(thumbnail.data()), thumbnail.size()));
  return Serialize(b);
}

std::string FakeWorker::EncodeResult(const FakeAssignment& a, const std::string& container,
                                     uint32_t frames) {
  capnp::MallocMessageBuilder b;
  auto r = b.initRoot<wire::Envelope>().initEncodeResult();
  r.setJobId(a.job);
  r.setChunk(a.index);
  r.setAttempt(a.attempt);
  r.setContainer(
      kj::arrayPtr(reinterpret_cast<const kj::byte*>(container.data()), container.size()));
  r.setFrames(frames);
  return Serialize(b);
}

std::string FakeWorker::Failure(const FakeAssignment& a, const std::string& message) {
  capnp::MallocMessageBuilder b;
  auto f = b.initRoot<wire::Envelope>().initTaskFailure();
  f.setJobId(a.job);
  f.setKind(a.kind);
  f.setIndex(a.index);
  f.setAttempt(a.attempt);
  f.setMessage(message);
  return Serialize(b);
}

std::string FakeWorker::Checkpoint(const FakeAssignment& a, uint32_t step, const Tensor& latents) {
  capnp::MallocMessageBuilder b;
  auto c = b.initRoot<wire::Envelope>().initCheckpoint();
  c.setJobId(a.job);
  c.setSegment(a.index);
  c.setAttempt(a.attempt);
  c.setStep(step);
  SetTensor(c.initLatents(), latents);
  return Serialize(b);
}

std::optional<FakeAssignment> FakeWorker::AsAssignment(const std::string& bytes) {
  auto in = Incoming::Parse(bytes.data(), bytes.size());
  if (!in.ok()) return std::nullopt;
  auto env = (*in)->envelope();
  if (!env.isAssignment()) return std::nullopt;
  auto a = env.getAssignment();
  if (a.isRender()) return FromRender(a.getRender());
  FakeAssignment out;
  if (a.isEncode()) {
    auto t = a.getEncode();
    out.kind = wire::TaskKind::ENCODE;
    out.job = t.getJobId();
    out.index = t.getChunk();
    out.attempt = t.getAttempt();
    out.frame_start = t.getFrameStart();
    out.latents = TensorOf(t.getLatents()).value_or(Tensor{});
    out.frame_count = t.getKeepFrames();
    out.width = t.getWidth();
    out.height = t.getHeight();
    return out;
  }
  auto t = a.getCodenoise();
  out.kind = wire::TaskKind::CODENOISE;
  out.job = t.getJobId();
  out.attempt = t.getAttempt();
  for (auto s : t.getSegments()) out.segments.push_back(s.getSegment());
  out.index = out.segments.empty() ? 0 : out.segments.front();
  if (t.getSegments().size() > 0) out.resume_step = t.getSegments()[0].getResumeStep();
  return out;
}

wire::Envelope::Which FakeWorker::KindOf(const std::string& bytes) {
  auto in = Incoming::Parse(bytes.data(), bytes.size());
  if (!in.ok()) return wire::Envelope::ERROR;
  return (*in)->envelope().which();
}

struct FakeWorker::Connection::Rep {
  zmq::context_t ctx{1};
  zmq::socket_t sock{ctx, zmq::socket_type::dealer};
};

FakeWorker::Connection::Connection(const FakeWorker& worker, const std::string& endpoint)
    : rep_(std::make_unique<Rep>()) {
  rep_->sock.set(zmq::sockopt::linger, 0);
  rep_->sock.set(zmq::sockopt::routing_id, worker.name());
  rep_->sock.connect(endpoint);
  Send(worker.Hello());
}

FakeWorker::Connection::~Connection() = default;

void FakeWorker::Connection::Send(const std::string& bytes) {
  rep_->sock.send(zmq::buffer(bytes), zmq::send_flags::none);
}

std::optional<FakeAssignment> FakeWorker::Connection::NextAssignment(
    std::chrono::milliseconds wait) {
  const auto until = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < until) {
    zmq::pollitem_t item{rep_->sock.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(20));
    zmq::message_t msg;
    while (rep_->sock.recv(msg, zmq::recv_flags::dontwait)) {
      if (auto a = AsAssignment(msg.to_string())) return a;
    }
  }
  return std::nullopt;
}

Tensor FakeLatents(const FakeAssignment& render, const model::ModelMetadata* meta) {
  if (!meta) meta = model::BuiltinMetadata(render.model);
  const int64_t C = meta ? meta->latent_channels : 4;
  const int sc = meta ? std::max(1, meta->spatial_compression) : 8;
  const int64_t T = render.frame_count, cells = (render.height / sc) * (render.width / sc);
  Tensor t = Tensor::Zeros({C, T, render.height / sc, render.width / sc});
  const int64_t guided = render.guide ? render.guide->shape[1] : 0;
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t f = 0; f < T; ++f) {
      for (int64_t p = 0; p < cells; ++p) {
        float v;
        if (f < guided) {
          v = render.guide->data[static_cast<size_t>((c * guided + f) * cells + p)];
        } else {
          const uint64_t key[4] = {render.seed, static_cast<uint64_t>(render.frame_start + f),
                                   static_cast<uint64_t>(c), static_cast<uint64_t>(p)};
          v = static_cast<float>(XXH64(key, sizeof key, 0) % 2001) / 1000.0f - 1.0f;
        }
        t.data[static_cast<size_t>((c * T + f) * cells + p)] = v;
      }
    }
  }
  return t;
}

Result<std::string> FakeChunk(const FakeAssignment& encode, const std::string& scratch) {
  const int w = static_cast<int>(encode.width), h = static_cast<int>(encode.height);
  const int64_t frames = encode.frame_count;
  const Tensor& x = encode.latents;
  if (x.shape.size() != 4 || frames == 0) return Result<std::string>::Error("no latents");
  const int64_t T = x.shape[1], hw = x.shape[2] * x.shape[3];
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3 * static_cast<size_t>(frames));
  for (int64_t f = 0; f < frames; ++f) {
    const float v = x.data[static_cast<size_t>(f * hw)] + x.data[static_cast<size_t>((T + f) * hw)];
    const auto level = static_cast<uint8_t>(std::clamp(128.0f + 60.0f * v, 0.0f, 255.0f));
    std::fill(rgb.begin() + f * w * h * 3, rgb.begin() + (f + 1) * w * h * 3, level);
  }
  VideoSettings settings;
  settings.width = w;
  settings.height = h;
  settings.codec = "png";
  const std::string path = scratch + "/fake-chunk-" + std::to_string(encode.job) + "-" +
                           std::to_string(encode.index) + ChunkExtension("png");
  if (Status s = EncodeChunkFile(path, settings, rgb.data(), frames); !s.ok()) return s;
  return ReadFile(Env::Default(), path);
}

}  // namespace segue
