// The dispatcher, and what transitions mean for workers (handlers.h).
#include "coordinator/handlers.h"

#include <spdlog/spdlog.h>

#include <optional>

#include "common/protocol/protocol.h"
#include "common/protocol/transfer.h"
#include "coordinator/admission.h"
#include "coordinator/assembly.h"
#include "coordinator/scheduler.h"

namespace segue {
namespace {

// Counts and answers a message that cannot be read: `what` says what was wrong.
void DropBad(HandlerContext& c, const std::string& identity, bool req, const std::string& what,
             const std::string& detail) {
  ++c.metrics.bad_messages;
  spdlog::warn("dropped a {}: {} [{} so far]", what, detail, c.metrics.bad_messages);
  c.outbox.Send(
      identity,
      ErrorMessage(wire::ErrorCode::BAD_REQUEST, what.substr(0, what.find(" (")) + ": " + detail),
      req);
}

// What a request asks to do, as roles see it; nullopt for kinds no peer sends (dropped later).
std::optional<Action> ActionOf(wire::Envelope::Reader env) {
  switch (env.which()) {
    case wire::Envelope::HELLO:
    case wire::Envelope::WORK_REQUEST:
    case wire::Envelope::RENDER_RESULT:
    case wire::Envelope::ENCODE_RESULT:
    case wire::Envelope::TASK_FAILURE:
    case wire::Envelope::CHECKPOINT:
    case wire::Envelope::CODENOISE_EXCHANGE:
    case wire::Envelope::HEARTBEAT:
    case wire::Envelope::GOODBYE:
      return Action::kWork;
    case wire::Envelope::SUBMIT:
    case wire::Envelope::PICK_REQUEST:
      return Action::kSubmit;
    case wire::Envelope::STATUS_REQUEST:
    case wire::Envelope::PLAN_REQUEST:
    case wire::Envelope::THUMBNAIL_REQUEST:
    case wire::Envelope::LIST_JOBS:
    case wire::Envelope::LIST_WORKERS:
    case wire::Envelope::GET_LOGS:
      return Action::kRead;
    case wire::Envelope::JOB_ACTION:
      return Action::kActOnOwnJob;  // and on someone else's: checked against the job's owner
    case wire::Envelope::DRAIN_WORKER:
      return Action::kAdminFarm;
    case wire::Envelope::POOL_REQUEST:
      return env.getPoolRequest().isList() ? Action::kRead : Action::kAdminFarm;
    case wire::Envelope::TRANSFER_REQUEST:
      return Action::kSendLarge;  // the message inside is authorized as it comes out
    case wire::Envelope::CACHE_REQUEST:
      return env.getCacheRequest().isList() ? Action::kRead : Action::kAdminFarm;
    default:
      return std::nullopt;
  }
}

std::string Describe(const Identity& peer) {
  return "identity '" + peer.name + "' (" + RoleName(peer.role) + ")";
}

// Whether `peer` may send `env`; if not, it is denied here.
bool Authorize(HandlerContext& c, const std::string& identity, const Identity* peer,
               wire::Envelope::Reader env, bool req) {
  const std::optional<Action> action = ActionOf(env);
  if (!action) return true;
  if (!peer) {
    Deny(c, identity, peer, "denied: this key is not in the coordinator's keys file (any more)",
         req);
    return false;
  }
  if (!RoleAllows(peer->role, *action)) {
    Deny(c, identity, peer, "denied: " + Describe(*peer) + " may not " + ActionName(*action), req);
    return false;
  }
  if (env.which() == wire::Envelope::JOB_ACTION && !RoleAllows(peer->role, Action::kActOnAnyJob)) {
    auto it = c.jobs.find(env.getJobAction().getJobId());
    if (it != c.jobs.end() && it->second.owner != peer->name) {
      Deny(c, identity, peer,
           "denied: job " + std::to_string(it->first) + " belongs to '" + it->second.owner + "'; " +
               Describe(*peer) + " may act only on its own jobs",
           req);
      return false;
    }
  }
  // A worker's name is bound to the key it joined with: messages on its routing id with another
  // key (someone who took the name over at the socket) are not the worker's.
  if (*action == Action::kWork && env.which() != wire::Envelope::HELLO) {
    const Worker* w = c.workers.ByIdentity(identity);
    if (w && w->key != peer->public_key) {
      Deny(c, identity, peer,
           "denied: worker '" + w->name + "' joined as identity '" + w->principal + "', not '" +
               peer->name + "'",
           req);
      return false;
    }
  }
  return true;
}

void Handle(HandlerContext& c, const std::string& identity, const Identity* peer,
            const void* payload, size_t size, bool req, bool assembled);

void OnTransferRequest(HandlerContext& c, const std::string& identity,
                       wire::TransferRequest::Reader r, bool req) {
  const uint64_t id = r.getTransfer();
  const std::string refusal =
      c.transfers.Request(identity, id, r.getBytes(), req, c.env->NowMillis());
  if (!refusal.empty()) {
    spdlog::warn("refused a transfer of {} bytes: {}", r.getBytes(), refusal);
    c.outbox.SendAtTurnEnd(identity, TransferReplyMessage(id, refusal), req);
  }
  SendGrants(c);
}

// A part of a transfer. Parts of none granted to this peer are dropped without an answer: they
// may be the rest of one dropped a moment ago, and one answer said so.
void OnPart(HandlerContext& c, const std::string& identity, const Identity* peer,
            wire::MessagePart::Reader part, bool req) {
  const auto data = part.getData();
  TransferTable::PartOutcome out =
      c.transfers.Add(identity, part.getTransfer(), part.getOffset(),
                      std::string_view(reinterpret_cast<const char*>(data.begin()), data.size()),
                      c.env->NowMillis());
  switch (out.kind) {
    case TransferTable::PartOutcome::kIgnored: {
      const uint64_t n = c.transfers.counters().ignored_parts;
      if (n <= 10 || n % 1000 == 0)
        spdlog::warn("dropped a part of transfer {}, which is not granted to its sender [{}]",
                     part.getTransfer(), n);
      // A REQ socket waits for an answer to every part: it gets one, or it would hang.
      if (req)
        c.outbox.SendAtTurnEnd(
            identity, TransferReplyMessage(part.getTransfer(), "dropped: not granted"), true);
      return;
    }
    case TransferTable::PartOutcome::kDropped:
      spdlog::warn("dropped transfer {}: {}", part.getTransfer(), out.why);
      c.outbox.SendAtTurnEnd(identity,
                             TransferReplyMessage(part.getTransfer(), "dropped: " + out.why), req);
      SendGrants(c);
      return;
    case TransferTable::PartOutcome::kMore:
      if (req)  // a REQ socket sends its next part after an answer
        c.outbox.SendAtTurnEnd(identity, TransferReplyMessage(part.getTransfer(), "", out.received),
                               true);
      return;
    case TransferTable::PartOutcome::kComplete:
      SendGrants(c);
      return Handle(c, identity, peer, out.message.data(), out.message.size(), req, true);
  }
}

void Dispatch(HandlerContext& c, const std::string& identity, const Identity& peer,
              wire::Envelope::Reader env, bool req) {
  auto reply = [&](std::string payload) { c.outbox.Send(identity, std::move(payload), req); };
  switch (env.which()) {
    case wire::Envelope::HELLO:
      return OnHello(c, identity, peer, env.getHello());
    case wire::Envelope::WORK_REQUEST:
      return OnWorkRequest(c, identity, env.getWorkRequest());
    case wire::Envelope::RENDER_RESULT:
      return OnRenderResult(c, identity, env.getRenderResult());
    case wire::Envelope::ENCODE_RESULT:
      return OnEncodeResult(c, identity, env.getEncodeResult());
    case wire::Envelope::TASK_FAILURE:
      return OnTaskFailure(c, identity, env.getTaskFailure());
    case wire::Envelope::CHECKPOINT:
      return OnCheckpoint(c, identity, env.getCheckpoint());
    case wire::Envelope::CODENOISE_EXCHANGE:
      return OnCodenoiseExchange(c, identity, env.getCodenoiseExchange());
    case wire::Envelope::HEARTBEAT:
      return OnHeartbeat(c, identity, env.getHeartbeat());
    case wire::Envelope::GOODBYE:
      return OnGoodbye(c, identity, env.getGoodbye().getReason().cStr());
    case wire::Envelope::SUBMIT:
      return reply(OnSubmit(c, env.getSubmit(), peer.name));
    case wire::Envelope::PICK_REQUEST:
      return reply(OnPickRequest(c, env.getPickRequest(), peer.name));
    case wire::Envelope::STATUS_REQUEST:
      return reply(OnStatusRequest(c, env.getStatusRequest().getJobId()));
    case wire::Envelope::PLAN_REQUEST:
      return reply(OnPlanRequest(c, env.getPlanRequest()));
    case wire::Envelope::CACHE_REQUEST:
      return reply(OnCacheRequest(c, env.getCacheRequest()));
    case wire::Envelope::THUMBNAIL_REQUEST:
      return reply(OnThumbnailRequest(c, env.getThumbnailRequest()));
    case wire::Envelope::LIST_JOBS:
      return reply(OnListJobs(c, env.getListJobs()));
    case wire::Envelope::VERSION_REQUEST:
      return reply(OnVersionRequest(c, peer));
    case wire::Envelope::LIST_WORKERS:
      return reply(OnListWorkers(c));
    case wire::Envelope::JOB_ACTION:
      return reply(OnJobAction(c, env.getJobAction()));
    case wire::Envelope::DRAIN_WORKER:
      return reply(OnDrainWorker(c, env.getDrainWorker().getName().cStr()));
    case wire::Envelope::GET_LOGS:
      return reply(OnGetLogs(c, env.getGetLogs()));
    case wire::Envelope::POOL_REQUEST:
      return reply(OnPoolRequest(c, env.getPoolRequest()));
    case wire::Envelope::TRANSFER_REQUEST:
      return OnTransferRequest(c, identity, env.getTransferRequest(), req);
    default:
      ++c.metrics.bad_messages;
      spdlog::warn("dropped a message of unexpected type {} [{} bad so far]",
                   static_cast<int>(env.which()), c.metrics.bad_messages);
      c.outbox.Send(identity, ErrorMessage(wire::ErrorCode::BAD_REQUEST, "unexpected message type"),
                    req);
  }
}

}  // namespace

void Deny(HandlerContext& c, const std::string& identity, const Identity* peer,
          const std::string& why, bool req) {
  ++c.metrics.denied[peer ? RoleName(peer->role) : "unknown"];
  const uint64_t n = ++c.metrics.denied_total;
  if (n <= 100 || n % 1000 == 0)
    spdlog::warn("{} [{} denied so far]", why + (peer ? "" : " (" + identity + ")"), n);
  c.outbox.Send(identity, ErrorMessage(wire::ErrorCode::DENIED, why), req);
}

namespace {

void Handle(HandlerContext& c, const std::string& identity, const Identity* peer,
            const void* payload, size_t size, bool req, bool assembled) {
  auto in = Incoming::ParseInPlace(payload, size);
  if (!in.ok()) {
    DropBad(c, identity, req, "bad message (" + std::to_string(size) + " bytes)", in.message());
    return;
  }
  try {
    wire::Envelope::Reader env = (*in)->envelope();
    const bool transfer =
        env.which() == wire::Envelope::TRANSFER_REQUEST || env.which() == wire::Envelope::PART;
    if (assembled && transfer) {
      DropBad(c, identity, req, "transfer inside a transfer", "a transfer's message is itself one");
      return;
    }
    // Only a granted transfer's parts are kept; the request was authorized.
    if (env.which() == wire::Envelope::PART) return OnPart(c, identity, peer, env.getPart(), req);
    if (!Authorize(c, identity, peer, env, req)) return;
    // Kinds without an action (unexpected) get here with no identity: they are dropped.
    static const Identity kNobody{};
    Dispatch(c, identity, peer ? *peer : kNobody, env, req);
  } catch (const kj::Exception& e) {
    DropBad(c, identity, req, "malformed message", e.getDescription().cStr());
  }
}

}  // namespace

void HandleMessage(HandlerContext& c, const std::string& identity, const Identity* peer,
                   const void* payload, size_t size, bool req) {
  Handle(c, identity, peer, payload, size, req, false);
}

void SendGrants(HandlerContext& c) {
  for (const TransferTable::Grant& g : c.transfers.TakeGrants())
    c.outbox.SendAtTurnEnd(g.identity, TransferReplyMessage(g.id, ""), g.req);
}

void TickTransfers(HandlerContext& c) {
  for (const TransferTable::Dropped& d : c.transfers.Expire(c.env->NowMillis())) {
    spdlog::warn("dropped transfer {}: {}", d.id, d.why);
    c.outbox.SendAtTurnEnd(d.identity, TransferReplyMessage(d.id, "dropped: " + d.why), d.req);
  }
  SendGrants(c);
}

void StopGang(HandlerContext& c, Job& j, const std::string& why, const std::string& except) {
  if (!j.gang) return;
  const uint32_t attempt = j.gang->attempt;
  for (const Gang::Group& g : c.machine.AbortGang(j, why)) {
    Worker* member = c.workers.ByName(g.worker);
    if (!member || g.worker == except) continue;
    if (member->task && member->task->job == j.id)
      WorkerRegistry::Free(*member, c.env->NowMicros());
    capnp::MallocMessageBuilder b;
    auto cancel = b.initRoot<wire::Envelope>().initCancel();
    cancel.setJobId(j.id);
    cancel.setAttempt(attempt);
    cancel.setReason(why);
    c.outbox.Send(member->identity, Serialize(b));
  }
}

void FailTask(HandlerContext& c, Job& j, TaskKind kind, uint32_t index, Worker& w,
              const std::string& message) {
  WorkerRegistry::Free(w, c.env->NowMicros());
  ++w.failures;
  if (kind == TaskKind::kGang) {
    // Counted against the group's first segment; the next gang starts with a new attempt.
    index = 0;
    if (j.gang) {
      const int g = j.gang->GroupOf(w.name);
      if (g >= 0) index = j.gang->groups[static_cast<size_t>(g)].first;
    }
    StopGang(c, j, "co-denoising failed on " + w.name + ": " + message, "");
    kind = TaskKind::kRender;
  }
  c.machine.Fail(j, kind, index, w.name, message);
}

void ReleaseTask(HandlerContext& c, Worker& w, const std::string& why) {
  if (!w.task) return;
  const TaskRef task = *w.task;
  w.task.reset();
  auto it = c.jobs.find(task.job);
  if (it == c.jobs.end()) return;
  Job& j = it->second;
  if (task.kind == TaskKind::kGang) return StopGang(c, j, why + " (" + w.name + ")", w.name);
  if (IsFinished(j.state)) return;
  const Task& t = j.tasks(task.kind)[task.index];
  if (t.state == TaskState::kRunning && t.worker == w.name)
    c.machine.Requeue(j, task.kind, task.index, why + " (" + w.name + ")");
}

void Assemble(HandlerContext& c, Job& j) {
  c.machine.BeginStitching(j);
  Status inside = CheckOutputStillInRoot(c.admission.output_root, j.output_path);
  c.machine.EndStitching(
      j, inside.ok()
             ? AssembleJob(j, c.journal, c.env, c.options.state_dir + "/tmp", c.audio_tracks.Get(j))
             : inside);
}

void DrainWorker(HandlerContext& c, Worker& w) {
  w.draining = true;
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initDrain();
  c.outbox.Send(w.identity, Serialize(b));
  spdlog::info("draining worker {}", w.name);
}

PoolView ViewOfPools(const HandlerContext& c) {
  PoolView v;
  for (const auto& [name, w] : c.workers.all()) {
    if (!w.pool.empty()) v.connected[w.pool].push_back({name, !w.task.has_value(), w.draining});
  }
  v.demand = Demand(c.jobs);
  return v;
}

void TickPools(HandlerContext& c) {
  if (!c.pools) return;
  for (const std::string& name : c.pools->Tick(ViewOfPools(c), c.env->NowMillis())) {
    if (Worker* w = c.workers.ByName(name)) DrainWorker(c, *w);
  }
}

}  // namespace segue
