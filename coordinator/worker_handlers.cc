// Workers joining, asking for work, keeping alive and leaving (handlers.h).
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "common/protocol/protocol.h"
#include "coordinator/handlers.h"

namespace segue {

namespace {

// A worker's list of models it cannot serve, bounded: a peer's text is not trusted.
Status UnavailableFrom(capnp::List<wire::UnavailableModel>::Reader list,
                       std::map<std::string, std::string>* out) {
  if (list.size() > 1024) return Status::Error("more than 1024 unavailable models");
  for (auto u : list) {
    std::string model = u.getModel().cStr(), why = u.getReason().cStr();
    if (model.empty() || model.size() > 200) return Status::Error("bad unavailable model name");
    if (why.size() > 2000) why = why.substr(0, 2000) + "...";
    (*out)[model] = why;
  }
  return Status::Ok();
}

}  // namespace

void OnHello(HandlerContext& c, const std::string& identity, wire::Hello::Reader h) {
  if (h.getProtocolVersion() != wire::PROTOCOL_VERSION) {
    c.outbox.Send(identity, ErrorMessage(wire::ErrorCode::VERSION_MISMATCH,
                                         "protocol version mismatch: worker speaks " +
                                             std::to_string(h.getProtocolVersion()) +
                                             ", coordinator speaks " +
                                             std::to_string(wire::PROTOCOL_VERSION)));
    return;
  }
  WorkerHello hello;
  hello.name = h.getName().cStr();
  if (hello.name.empty() || hello.name.size() > 200) {
    c.outbox.Send(identity, ErrorMessage(wire::ErrorCode::BAD_REQUEST,
                                         "hello: worker name must be 1 to 200 characters"));
    return;
  }
  // The models' metadata, checked against the farm's before anything of the worker is kept.
  std::vector<model::ModelMetadata> specs;
  if (h.getModelSpecs().size() > 1024) {
    c.outbox.Send(identity,
                  ErrorMessage(wire::ErrorCode::REFUSED, "hello: more than 1024 models' metadata"));
    return;
  }
  for (auto spec : h.getModelSpecs()) {
    auto meta = ModelSpecFrom(spec);
    if (!meta.ok()) {
      c.outbox.Send(identity, ErrorMessage(wire::ErrorCode::REFUSED,
                                           "hello: worker " + hello.name + ": " + meta.message()));
      return;
    }
    specs.push_back(std::move(*meta));
  }
  if (Status s = c.models.Learn(specs, "worker " + hello.name); !s.ok()) {
    spdlog::warn("worker {} refused: {}", hello.name, s.message());
    c.outbox.Send(identity, ErrorMessage(wire::ErrorCode::REFUSED, "hello: " + s.message()));
    return;
  }
  if (Worker* existing = c.workers.ByName(hello.name)) {
    // The same worker again (it reconnected): whatever it held goes back to the queue.
    ReleaseTask(c, *existing, "worker reconnected");
  }
  hello.host = h.getHost().cStr();
  hello.device = h.getDevice().cStr();
  for (auto m : h.getModels()) hello.models.insert(m.cStr());
  if (Status s = UnavailableFrom(h.getUnavailableModels(), &hello.unavailable); !s.ok()) {
    c.outbox.Send(identity, ErrorMessage(wire::ErrorCode::BAD_REQUEST, "hello: " + s.message()));
    return;
  }
  for (auto t : h.getTags()) hello.tags.insert(t.cStr());
  hello.memory = h.getMemoryBytes();
  hello.pool = h.getPool().cStr();
  Worker& w = c.workers.Join(identity, hello, c.env->NowMillis());
  spdlog::info("worker {} joined ({} on {}, models: {})", w.name, w.device, w.host,
               fmt::join(w.models, ","));
  // Jobs that waited for one of its models are planned now.
  for (const model::ModelMetadata& m : specs) {
    for (auto& [id, j] : c.jobs) {
      if (IsFinished(j.state) || j.planned() || j.manifest.model_name != m.name) continue;
      c.machine.Plan(j, *c.models.Find(m.name), c.admission.chunk_frames);
      c.schedule_due = true;
    }
  }
  capnp::MallocMessageBuilder b;
  auto welcome = b.initRoot<wire::Envelope>().initWelcome();
  welcome.setWorkerId(w.name);
  welcome.setHeartbeatMs(static_cast<uint32_t>(c.options.heartbeat_ms));
  welcome.setLivenessMs(static_cast<uint32_t>(c.options.liveness_ms));
  c.outbox.Send(identity, Serialize(b));
}

void OnWorkRequest(HandlerContext& c, const std::string& identity, wire::WorkRequest::Reader r) {
  Worker* w = c.workers.Heard(identity, c.env->NowMillis());
  if (!w) {
    c.outbox.Send(identity, ErrorMessage(wire::ErrorCode::BAD_REQUEST, "say hello first"));
    return;
  }
  WorkerRegistry::Ask(*w, r.getCredits(), c.env->NowMicros());
  c.schedule_due = true;
}

void OnHeartbeat(HandlerContext& c, const std::string& identity, wire::Heartbeat::Reader hb) {
  Worker* w = c.workers.Heard(identity, c.env->NowMillis());
  if (!w) {
    c.outbox.Send(identity,
                  ErrorMessage(wire::ErrorCode::NOT_FOUND, "unknown worker: say hello again"));
    return;
  }
  std::map<std::string, std::string> unavailable;
  if (UnavailableFrom(hb.getUnavailableModels(), &unavailable).ok()) {
    for (const auto& m : WorkerRegistry::MarkUnavailable(*w, unavailable)) {
      spdlog::warn("worker {} cannot serve model {} any more: {}", w->name, m, w->unavailable[m]);
    }
  } else {
    ++c.metrics.bad_messages;
  }
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initHeartbeat().setBusy(false);
  c.outbox.Send(identity, Serialize(b));
}

void OnGoodbye(HandlerContext& c, const std::string& identity, const std::string& reason) {
  Worker* w = c.workers.Heard(identity, c.env->NowMillis());
  if (!w) return;
  spdlog::info("worker {} left: {}", w->name, reason);
  ReleaseTask(c, *w, "worker left (" + reason + ")");
  c.workers.Remove(w->name);
  c.schedule_due = true;
}

}  // namespace segue
