// Workers joining, asking for work, keeping alive and leaving (handlers.h).
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <set>

#include "common/protocol/protocol.h"
#include "coordinator/handlers.h"
#include "coordinator/results.h"

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

// Everything a Hello says, checked and copied out: nothing of the farm changes until it is whole.
Result<WorkerHello> ReadHello(wire::Hello::Reader h, std::vector<model::ModelMetadata>* specs) {
  using R = Result<WorkerHello>;
  WorkerHello hello;
  hello.name = h.getName().cStr();
  if (hello.name.empty() || hello.name.size() > 200)
    return R::Error("worker name must be 1 to 200 characters");
  auto text = [](capnp::Text::Reader t, const char* what, size_t max) -> Result<std::string> {
    if (t.size() > max)
      return Result<std::string>::Error(std::string(what) + " longer than " + std::to_string(max) +
                                        " characters");
    return std::string(t.cStr());
  };
  auto host = text(h.getHost(), "host", 1000), device = text(h.getDevice(), "device", 1000),
       pool = text(h.getPool(), "pool", 200);
  for (auto* r : {&host, &device, &pool})
    if (!r->ok()) return R::Error(r->message());
  hello.host = *host, hello.device = *device, hello.pool = *pool;
  if (h.getModels().size() > 1024 || h.getTags().size() > 1024)
    return R::Error("more than 1024 models or tags");
  for (auto m : h.getModels()) {
    if (m.size() == 0 || m.size() > 200)
      return R::Error("a model name of 0 or over 200 characters");
    hello.models.insert(m.cStr());
  }
  for (auto t : h.getTags()) {
    if (t.size() > 200) return R::Error("a tag longer than 200 characters");
    hello.tags.insert(t.cStr());
  }
  if (Status s = UnavailableFrom(h.getUnavailableModels(), &hello.unavailable); !s.ok())
    return R::Error(s.message());
  hello.memory = h.getMemoryBytes();
  if (h.getModelSpecs().size() > 1024) return R::Error("more than 1024 models' metadata");
  std::set<std::string> seen;
  for (auto spec : h.getModelSpecs()) {
    auto meta = ModelSpecFrom(spec);
    if (!meta.ok()) return R::Error(meta.message());
    if (!seen.insert(meta->name).second)
      return R::Error("model '" + meta->name + "' has metadata twice");
    specs->push_back(std::move(*meta));
  }
  return hello;
}

}  // namespace

void OnHello(HandlerContext& c, const std::string& identity, const Identity& peer,
             wire::Hello::Reader h) {
  if (h.getProtocolVersion() != wire::PROTOCOL_VERSION) {
    c.outbox.Send(identity, ErrorMessage(wire::ErrorCode::VERSION_MISMATCH,
                                         "protocol version mismatch: worker speaks " +
                                             std::to_string(h.getProtocolVersion()) +
                                             ", coordinator speaks " +
                                             std::to_string(wire::PROTOCOL_VERSION)));
    return;
  }
  std::vector<model::ModelMetadata> specs;
  auto read = ReadHello(h, &specs);
  if (!read.ok()) {
    const std::string name = std::string(h.getName().cStr()).substr(0, 200);
    c.outbox.Send(identity, ErrorMessage(wire::ErrorCode::REFUSED,
                                         "hello: worker '" + name + "': " + read.message()));
    return;
  }
  WorkerHello& hello = *read;
  // The name is the key's: one its identity may use, and not a live worker's of another key.
  if (!peer.MayNameWorker(hello.name)) {
    std::string names;
    for (const std::string& p : peer.worker_names) names += (names.empty() ? "" : ", ") + p;
    return Deny(c, identity, &peer,
                "denied: identity '" + peer.name + "' may not name a worker '" + hello.name +
                    "' (its workers' names: " + (names.empty() ? "none" : names) +
                    "; the keys file's `workers:`)",
                false);
  }
  Worker* existing = c.workers.ByName(hello.name);
  if (existing && existing->key != peer.public_key) {
    return Deny(c, identity, &peer,
                "denied: worker name '" + hello.name + "' belongs to identity '" +
                    existing->principal + "', which is connected",
                false);
  }
  // The models' metadata, checked against the farm's: the last check, and the first change.
  if (Status s = c.models.Learn(specs, "worker " + hello.name); !s.ok()) {
    spdlog::warn("worker {} refused: {}", hello.name, s.message());
    c.outbox.Send(identity, ErrorMessage(wire::ErrorCode::REFUSED, "hello: " + s.message()));
    return;
  }
  // The same worker again (it reconnected): whatever it held goes back to the queue.
  if (existing) ReleaseTask(c, *existing, "worker reconnected");
  hello.key = peer.public_key;
  hello.principal = peer.name;
  Worker& w = c.workers.Join(identity, hello, c.env->NowMillis());
  spdlog::info("worker {} joined ({} on {}, identity {}, models: {})", w.name, w.device, w.host,
               w.principal, fmt::join(w.models, ","));
  // Jobs that waited for one of its models are planned now.
  for (const model::ModelMetadata& m : specs) {
    for (auto& [id, j] : c.jobs) {
      if (IsFinished(j.state) || j.planned() || j.manifest.model_name != m.name) continue;
      c.machine.Plan(j, *c.models.Find(m.name), c.admission.chunk_frames,
                     c.admission.max_job_segments);
      if (j.waiting_for == 0) ReuseResults(c, j);
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
