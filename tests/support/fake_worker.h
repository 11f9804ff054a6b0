// A worker reduced to its messages, for tests that play workers by hand: it builds what a worker
// sends (Hello, WorkRequest, results, failures, checkpoints, Goodbye) and reads the assignments it
// receives. It runs no model; FakeLatents and FakeChunk make results that depend on the task
// alone, as a real model's do, so runs can be compared bit for bit. Tests hand its bytes to a
// coordinator core in memory (tests/unit) or send them over a DEALER socket (Connection).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/model/metadata.h"
#include "common/protocol/segue.capnp.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"

namespace segue {

// What an assignment asks of its worker.
struct FakeAssignment {
  wire::TaskKind kind = wire::TaskKind::RENDER;  // CODENOISE: a gang's group
  uint64_t job = 0;
  uint32_t index = 0;  // segment, chunk, or the group's first segment
  uint32_t attempt = 0;
  // Render: the segment, in latent frames. Encode: the chunk's video frames (frame_count: the
  // decoded frames it keeps).
  int64_t frame_start = 0;
  uint32_t frame_count = 0;
  uint64_t seed = 0;
  std::optional<Tensor> guide;  // chained
  uint32_t resume_step = 0;
  Tensor latents;                  // encode: the blended latents
  std::vector<uint32_t> segments;  // codenoise: the group's segments
  uint32_t width = 0, height = 0;  // the video's picture size
  std::string model;               // render
};

class FakeWorker {
 public:
  explicit FakeWorker(std::string name, std::vector<std::string> models = {"zoom"},
                      std::vector<std::string> tags = {}, std::string device = "cpu",
                      uint64_t memory = 0);
  const std::string& name() const { return name_; }
  // The models' metadata its Hello reports (none unless set).
  void set_specs(std::vector<model::ModelMetadata> specs) { specs_ = std::move(specs); }

  std::string Hello() const;
  static std::string WorkRequest(uint32_t credits = 1);
  static std::string Heartbeat();
  static std::string Goodbye(const std::string& reason);
  // `thumbnail`: the JPEG it carries (none if empty).
  static std::string RenderResult(const FakeAssignment& a, const Tensor& latents,
                                  uint64_t elapsed_ms = 1, const std::string& thumbnail = "");
  static std::string EncodeResult(const FakeAssignment& a, const std::string& container,
                                  uint32_t frames);
  static std::string Failure(const FakeAssignment& a, const std::string& message);
  static std::string Checkpoint(const FakeAssignment& a, uint32_t step, const Tensor& latents);

  // The assignment `bytes` carry, or nullopt when they are another message.
  static std::optional<FakeAssignment> AsAssignment(const std::string& bytes);
  // Which kind of Envelope `bytes` are (Envelope::ERROR for bytes that do not parse).
  static wire::Envelope::Which KindOf(const std::string& bytes);

  // A FakeWorker on a real DEALER socket (routing id = its name), connected to `endpoint`; says
  // Hello as it connects. No heartbeats.
  class Connection {
   public:
    Connection(const FakeWorker& worker, const std::string& endpoint);
    ~Connection();
    void Send(const std::string& bytes);
    // The next assignment within `wait`, skipping other messages; nullopt if none comes.
    std::optional<FakeAssignment> NextAssignment(std::chrono::milliseconds wait);

   private:
    struct Rep;
    std::unique_ptr<Rep> rep_;
  };

 private:
  std::string name_, device_;
  std::vector<std::string> models_, tags_;
  uint64_t memory_;
  std::vector<model::ModelMetadata> specs_;
};

// Latents of the shape the model makes, [C, frame_count, height / s, width / s] by `meta` (or,
// when it is null, by the built-in model's metadata), that depend on the segment's seed and
// frames alone; a chained segment's first frames are its guide, as the real sampler ends them.
Tensor FakeLatents(const FakeAssignment& render, const model::ModelMetadata* meta = nullptr);
// A real chunk (PNG frames in a MOV, which FFmpeg assembles) of an encode assignment's frames,
// each a gray picture whose level follows the frame's latents; built under `scratch`.
Result<std::string> FakeChunk(const FakeAssignment& encode, const std::string& scratch);

}  // namespace segue
