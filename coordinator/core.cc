#include "coordinator/core.h"

#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <charconv>
#include <filesystem>

#include "common/protocol/protocol.h"
#include "common/security/curve.h"
#include "common/security/keyring.h"
#include "coordinator/api_docs.h"
#include "coordinator/assignments.h"
#include "coordinator/dashboard.h"
#include "coordinator/handlers.h"
#include "coordinator/jobs.h"
#include "coordinator/journal.h"
#include "coordinator/reporting.h"
#include "coordinator/scheduler.h"
#include "coordinator/state_machine.h"
#include "coordinator/workers.h"

namespace segue {

struct Core::Rep {
  Rep(const CoordinatorOptions& o, Env* e, std::unique_ptr<Journal> j, Transport* transport,
      std::string output_root)
      : options(o),
        env(e),
        assignment{o.checkpoint_steps, o.checkpoint_seconds, o.encoder_preset},
        admission{std::move(output_root), o.state_dir + "/tmp",
                  static_cast<uint32_t>(o.chunk_frames), o.max_job_segments},
        journal(std::move(j)),
        machine(journal.get(), e, o.max_attempts),
        outbox(transport),
        ctx{options, assignment, admission, env,     *journal, machine, jobs,
            workers, models,     outbox,    nullptr, metrics,  false} {}

  const CoordinatorOptions options;
  Env* const env;
  const AssignmentOptions assignment;
  const AdmissionOptions admission;
  std::unique_ptr<Journal> journal;
  StateMachine machine;
  JobTable jobs;  // every job, finished ones included
  WorkerRegistry workers;
  ModelCatalog models;
  Outbox outbox;
  std::unique_ptr<PoolManager> pools;
  FarmMetrics metrics;
  HandlerContext ctx;            // refers to the parts above
  uint64_t turn_started_us = 0;  // when this turn's messages began to be read
  // Jobs the restart found STITCHING or with every chunk stored: assembled in the first turn,
  // once the caller's socket is bound.
  std::vector<uint64_t> restored_to_assemble;
  // Who each key is (nullopt: no keys, every peer is LocalIdentity()). The keys file is read
  // again when its stamp (inode, size, modification time) changes.
  std::optional<KeyRing> keys;
  std::string keys_stamp;

  // ---- identities ----

  Result<KeyRing> ReadKeys() const;
  void ReloadKeysIfChanged();

  // ---- the scheduling pass ----

  void ScheduleNow();
  bool Carry(const Decision& d);
  void Give(Worker& w, const TaskRef& task);

  // ---- group commit: the journal writes, the outbox sends or holds ----

  void Flush();
  void ReleaseHeld();
  void WaitForHeld();
};

// Handlers ask for a pass; it runs once per turn, after the turn's messages (a pass walks every
// runnable job's running window). A decision that cannot be carried out (a task's inputs are
// unreadable: the state machine queued what it needs first) leaves its worker idle, so the pass
// runs again, a few times at most.
void Core::Rep::ScheduleNow() {
  ctx.schedule_due = false;
  const SchedulerOptions so{static_cast<uint64_t>(options.gang_wait_ms)};
  for (int pass = 0; pass < 4; ++pass) {
    bool again = false;
    for (const Decision& d : Schedule(jobs, workers.all(), env->NowMillis(), so))
      again = !Carry(d) || again;
    if (!again) return;
  }
}

bool Core::Rep::Carry(const Decision& d) {
  Job& j = jobs.at(d.job);
  if (!StillHolds(j, d)) return false;  // an earlier decision of the pass changed the job
  switch (d.kind) {
    case Decision::Kind::kGangWait:
      j.gang_wait_since = d.since_ms;
      return true;
    case Decision::Kind::kRender: {
      Worker& w = *workers.ByName(d.workers[0]);
      auto in = ReadRenderInputs(j, d.index, *journal);
      if (auto* f = std::get_if<ReadFailure>(&in)) {
        machine.Rerender(j, *f->rerender, f->message);
        return false;
      }
      const RenderInputs& inputs = std::get<RenderInputs>(in);
      const uint32_t attempt = machine.Assign(j, TaskKind::kRender, d.index, w.name);
      if (inputs.resume_step > 0)
        journal->AddEvent(j.id, TaskName(TaskKind::kRender, d.index) + " resumes at step " +
                                    std::to_string(inputs.resume_step) + " on " + w.name);
      Give(w, {j.id, TaskKind::kRender, d.index});
      outbox.SendAssignment(w.identity, RenderAssignment(j, d.index, attempt, inputs, assignment));
      spdlog::debug("job {} segment {} attempt {} -> {}", j.id, d.index, attempt, w.name);
      return true;
    }
    case Decision::Kind::kEncode: {
      Worker& w = *workers.ByName(d.workers[0]);
      auto in = ReadEncodeInputs(j, d.index, *journal);
      if (auto* f = std::get_if<ReadFailure>(&in)) {
        if (f->rerender) {
          machine.Rerender(j, *f->rerender, f->message);
        } else {
          machine.FailJob(j, f->message);
        }
        return false;
      }
      const uint32_t attempt = machine.Assign(j, TaskKind::kEncode, d.index, w.name);
      Give(w, {j.id, TaskKind::kEncode, d.index});
      outbox.SendAssignment(
          w.identity, EncodeAssignment(j, d.index, attempt, std::get<Tensor>(in), assignment));
      return true;
    }
    case Decision::Kind::kGang: {
      std::vector<Tensor> resume_latents;
      const uint32_t resume_step = ReadGangResume(j, *journal, &resume_latents);
      std::vector<Gang::Group> groups;
      const auto split = SplitIntoGroups(static_cast<uint32_t>(j.segments.size()),
                                         static_cast<uint32_t>(d.workers.size()));
      for (size_t g = 0; g < split.size(); ++g)
        groups.push_back({split[g].first, split[g].second, d.workers[g]});
      const uint32_t attempt = machine.StartGang(j, groups, resume_step);
      for (const Gang::Group& g : groups) {
        Worker& w = *workers.ByName(g.worker);
        Give(w, {j.id, TaskKind::kGang, g.first});
        // Unlike a single task's, a gang's start is written (every segment RUNNING): its
        // assignments wait for that write to be durable.
        outbox.Send(w.identity,
                    GangAssignment(j, g, attempt, resume_step, resume_latents, assignment));
      }
      return true;
    }
  }
  return true;
}

// Gives `w` its task: the worker is busy, its credit spent, its wait measured.
void Core::Rep::Give(Worker& w, const TaskRef& task) {
  w.task = task;
  w.task_progress_ms = env->NowMillis();
  --w.credits;
  const uint64_t since = w.waiting_since_us != 0 ? w.waiting_since_us : turn_started_us;
  metrics.dispatch_latency.Observe(static_cast<double>(env->NowMicros() - since) / 1e6);
  w.waiting_since_us = 0;
}

// The keys file's stamp: what changes when it is rewritten or replaced.
std::string KeysStamp(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "missing";
  return std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

// The identities: the keys file's, or every allowed key an admin (--curve-clients, which has no
// roles), and the coordinator's own key an admin (its local pools' workers use it).
Result<KeyRing> Core::Rep::ReadKeys() const {
  using R = Result<KeyRing>;
  KeyRing ring;
  if (!options.keys_file.empty()) {
    auto loaded = KeyRing::Load(options.keys_file);
    if (!loaded.ok()) return R::Error("--keys " + loaded.message());
    ring = std::move(*loaded);
  } else {
    auto allowed = LoadAllowedKeys(options.curve_clients);
    if (!allowed.ok()) return R::Error("--curve-clients: " + allowed.message());
    for (const std::string& key : *allowed)  // named by the whole key: names stay distinct
      ring.Add(Identity{"key-" + key, Role::kAdmin, key, {"*"}});
  }
  auto own = LoadCurveKeys(options.curve_key, true);
  if (!own.ok()) return R::Error("--curve-key: " + own.message());
  if (!ring.Find(own->public_key) &&
      !ring.Add(Identity{"coordinator", Role::kAdmin, own->public_key, {"*"}}))
    return R::Error("--keys " + options.keys_file +
                    ": the name 'coordinator' is the coordinator's own key's (its local pool "
                    "workers use it); give that identity another name");
  return ring;
}

void Core::Rep::ReloadKeysIfChanged() {
  if (options.keys_file.empty()) return;
  const std::string stamp = KeysStamp(options.keys_file);
  if (stamp == keys_stamp) return;
  keys_stamp = stamp;
  auto ring = ReadKeys();
  if (!ring.ok()) {
    ++metrics.keys_reload_failures;
    spdlog::error("the keys file changed but cannot be used; the previous keys stay: {}",
                  ring.message());
    return;
  }
  keys = std::move(*ring);
  metrics.identities = keys->size();
  spdlog::info("keys file {} reloaded: {} identities", options.keys_file, keys->size());
}

void Core::Rep::Flush() {
  journal->Flush();
  if (Status f = journal->syncer().failure(); !f.ok()) Journal::StopOnStoreFailure(f);
  const uint64_t written = journal->written(), durable = journal->syncer().durable();
  outbox.EndTurn(written, durable);
  if (durable < written) journal->syncer().Request(written);
  WaitForHeld();
}

void Core::Rep::ReleaseHeld() {
  if (Status f = journal->syncer().failure(); !f.ok()) Journal::StopOnStoreFailure(f);
  outbox.Release(journal->syncer().durable());
}

// Has the syncer wake the loop when the oldest held message may go.
void Core::Rep::WaitForHeld() {
  for (;;) {
    const uint64_t wait = outbox.oldest_wait();
    journal->syncer().WakeAt(wait);
    if (wait == 0 || wait > journal->syncer().durable()) return;
    ReleaseHeld();  // synced before the syncer could see what we wait for
  }
}

Result<std::unique_ptr<Core>> Core::Open(const CoordinatorOptions& options, Env* env,
                                         Transport* transport, Syncer::Mode mode) {
  using R = Result<std::unique_ptr<Core>>;
  if (!options.keys_file.empty() && !options.curve_clients.empty())
    return R::Error("give --keys or --curve-clients, not both (--keys has roles)");
  if ((!options.keys_file.empty() || !options.curve_clients.empty()) && options.curve_key.empty())
    return R::Error(std::string(options.keys_file.empty() ? "--curve-clients" : "--keys") +
                    " needs --curve-key (keys are CURVE keys)");
  // The output root is where FFmpeg writes outputs, not state: it is not the Env's.
  std::error_code ec;
  std::filesystem::create_directories(options.output_root, ec);
  if (ec)
    return R::Error("cannot create the output root '" + options.output_root + "': " + ec.message());
  const std::string output_root = std::filesystem::canonical(options.output_root, ec).string();
  if (ec)
    return R::Error("cannot resolve the output root '" + options.output_root +
                    "': " + ec.message());
  auto journal = Journal::Open(options.state_dir, env,
                               std::chrono::microseconds(options.sync_interval_us), mode);
  if (!journal.ok()) return journal.status();
  auto rep = std::make_unique<Rep>(options, env, std::move(*journal), transport, output_root);
  if (!options.keys_file.empty() || !options.curve_clients.empty()) {
    rep->keys_stamp = KeysStamp(options.keys_file);
    auto ring = rep->ReadKeys();
    if (!ring.ok()) return ring.status();
    rep->keys = std::move(*ring);
    rep->metrics.identities = rep->keys->size();
  }
  if (Status s = rep->journal->Load(rep->jobs, static_cast<uint32_t>(options.chunk_frames));
      !s.ok())
    return R::Error("cannot restore jobs: " + s.message());
  auto due = rep->machine.Recover(rep->jobs);
  if (!due.ok()) return R::Error("cannot restore jobs: " + due.message());
  // The models the unfinished jobs were planned with are the farm's: a worker that comes back
  // with other metadata for one of them is refused, as before the restart.
  for (const auto& [id, j] : rep->jobs) {
    if (IsFinished(j.state) || !j.planned()) continue;
    if (Status s = rep->models.Learn({j.model}, "job " + std::to_string(id) + "'s plan"); !s.ok())
      spdlog::warn("job {}: {}", id, s.message());
  }
  rep->restored_to_assemble = std::move(*due);
  rep->ctx.schedule_due = true;
  return std::unique_ptr<Core>(new Core(std::move(rep)));
}

Core::Core(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
Core::~Core() = default;

Status Core::SetPools(std::unique_ptr<PoolManager> pools) {
  Rep& r = *rep_;
  r.pools = std::move(pools);
  r.ctx.pools = r.pools.get();
  Status s = r.journal->ForEachPoolSettings(
      [&](const std::string& pool, const std::string& saved) { r.pools->Restore(pool, saved); });
  Journal* journal = r.journal.get();
  r.pools->OnChange([journal](const std::string& pool, const std::string& settings) {
    journal->PutPoolSettings(pool, settings);
  });
  return s;
}

void Core::BeginTurn() { rep_->turn_started_us = rep_->env->NowMicros(); }

void Core::Receive(const std::string& identity, const std::string& key, const void* payload,
                   size_t size, bool req) {
  Rep& r = *rep_;
  static const Identity local = LocalIdentity();
  const Identity* peer = r.keys ? r.keys->Find(key) : &local;
  HandleMessage(r.ctx, identity, peer, payload, size, req);
}

bool Core::Admits(const std::string& key) const {
  return !rep_->keys || rep_->keys->Find(key) != nullptr;
}

bool Core::checks_keys() const { return rep_->keys.has_value(); }

void Core::CountBadFrames(size_t frames) {
  ++rep_->metrics.bad_messages;
  spdlog::warn("dropped a message of {} frames [{} bad so far]", frames,
               rep_->metrics.bad_messages);
}

void Core::CountRefusedPeer() { ++rep_->metrics.bad_messages; }

void Core::CountConnections(size_t farm, size_t http, uint64_t refused) {
  rep_->metrics.connections = farm;
  rep_->metrics.http_connections = http;
  rep_->metrics.refused_connections = refused;
}

void Core::Tick() {
  Rep& r = *rep_;
  const uint64_t now = r.env->NowMillis();
  for (const std::string& name :
       r.workers.Lost(now, static_cast<uint64_t>(r.options.liveness_ms))) {
    Worker& w = *r.workers.ByName(name);
    spdlog::warn("worker {} silent for {} ms: presumed dead", name, now - w.last_seen_ms);
    ReleaseTask(r.ctx, w, "worker presumed dead");
    r.workers.Remove(name);
  }
  // A task that shows no progress (no checkpoint, exchange or result) for the task timeout is
  // taken back and queued again under a new attempt, so a worker that heartbeats but never
  // answers cannot hold a job forever; whatever it sends later is fenced off.
  if (r.options.task_timeout_s > 0) {
    const uint64_t limit = static_cast<uint64_t>(r.options.task_timeout_s) * 1000;
    for (auto& [name, w] : r.workers.all()) {
      if (!w.task || now - w.task_progress_ms <= limit) continue;
      spdlog::warn("worker {}: no progress on its task for {} s; taking it back", name,
                   (now - w.task_progress_ms) / 1000);
      ReleaseTask(r.ctx, w, "no progress for " + std::to_string(r.options.task_timeout_s) + " s");
    }
  }
  TickPools(r.ctx);
  r.ReloadKeysIfChanged();
  r.ctx.schedule_due = true;
}

void Core::EndTurn() {
  Rep& r = *rep_;
  for (uint64_t id : r.restored_to_assemble) Assemble(r.ctx, r.jobs.at(id));
  r.restored_to_assemble.clear();
  if (r.ctx.schedule_due) r.ScheduleNow();
  r.Flush();
}

void Core::Durable() {
  rep_->journal->syncer().Clear();
  rep_->ReleaseHeld();
  rep_->WaitForHeld();
}

void Core::Sync() {
  rep_->Flush();
  rep_->journal->SyncAll();
  rep_->ReleaseHeld();
}

int Core::sync_fd() { return rep_->journal->syncer().fd(); }

namespace {

HttpResponse Json(int status, const nlohmann::json& body) {
  return {status, "application/json", body.dump(2) + "\n"};
}

// An error of the JSON API: {"error": {"code": CODE, "message": ...}}, CODE stable
// (docs/PROTOCOL.md has the same names for the wire's codes).
HttpResponse JsonError(int status, const std::string& code, const std::string& message) {
  return Json(status, {{"error", {{"code", code}, {"message", message}}}});
}

// A positive 64-bit number from a path or query part, or 0.
uint64_t IdOf(const std::string& s) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() ? v : 0;
}

}  // namespace

// The read side of the JSON API on the HTTP port (GET; docs/PROTOCOL.md, "HTTP"): what a viewer
// may see, nothing more.
HttpResponse Core::Http(const std::string& target) {
  Rep& r = *rep_;
  const HttpTarget t = ParseTarget(target);
  const std::string& path = t.path;
  // Only the two pages that show pools pay for their view (a walk of every runnable job).
  auto list_pools = [&r] {
    return r.pools ? r.pools->List(ViewOfPools(r.ctx)) : std::vector<PoolStatus>{};
  };
  if (path == "/metrics") {
    const std::vector<PoolStatus> pools = list_pools();
    const SyncFigures sync{r.journal->syncer().syncs(), r.journal->syncer().sync_seconds(),
                           r.outbox.held()};
    return {200, "text/plain; version=0.0.4; charset=utf-8",
            MetricsText(r.jobs, r.workers.all(), r.pools ? &pools : nullptr, r.metrics, sync)};
  }
  if (path == "/api/v1/status")
    return {200, "application/json",
            StatusJson(r.jobs, r.workers.all(), list_pools(), r.env->NowMillis()).dump(2) + "\n"};
  if (path == "/" || path == "/index.html")
    return {200, "text/html; charset=utf-8", DashboardHtml()};
  const uint64_t now = r.env->NowMillis();
  if (path == "/api/v1/openapi.json") return {200, "application/json", OpenApiJson()};
  if (path == "/api/v1/schema/job.schema.json")
    return {200, "application/schema+json", JobSchemaJson()};
  if (path == "/api/v1/version")
    return Json(200, {{"version", SEGUE_VERSION},
                      {"protocol_version", wire::PROTOCOL_VERSION},
                      {"max_message_bytes", std::to_string(WireLimits::kMaxMessageBytes)}});
  if (path == "/api/v1/health") {
    size_t unfinished = 0;
    for (const auto& [id, j] : r.jobs) unfinished += IsFinished(j.state) ? 0 : 1;
    return Json(200, {{"status", "ok"},
                      {"unfinished_jobs", unfinished},
                      {"workers", r.workers.all().size()},
                      {"held_messages", r.outbox.held()}});
  }
  if (path == "/api/v1/workers") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [name, w] : r.workers.all()) list.push_back(ReportWorker(w).ToJson());
    return Json(200, {{"workers", list}});
  }
  if (path == "/api/v1/pools") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& p : list_pools()) list.push_back(ReportPool(p).ToJson());
    return Json(200, {{"pools", list}});
  }
  if (path == "/api/v1/jobs") {
    JobQuery q;
    for (const auto& [k, v] : t.query) {
      if (k == "state") {
        q.states.insert(v);
      } else if (k == "owner") {
        q.owner = v;
      } else if (k == "name") {
        q.name = v;
      } else if (k == "meta") {
        const size_t eq = v.find('=');
        if (eq == std::string::npos || eq == 0)
          return JsonError(400, "bad_request", "meta: expected KEY=VALUE, got '" + v + "'");
        q.metadata.emplace_back(v.substr(0, eq), v.substr(eq + 1));
      } else if (k == "after") {
        q.after_id = IdOf(v);
      } else if (k == "limit") {
        q.limit = static_cast<uint32_t>(std::min<uint64_t>(IdOf(v), 1000000));
      } else {
        return JsonError(
            400, "bad_request",
            "unknown parameter '" + k + "' (known: state, owner, name, meta, after, limit)");
      }
    }
    uint64_t next = 0;
    nlohmann::json list = nlohmann::json::array();
    for (const Job* j : FindJobs(r.jobs, q, &next))
      list.push_back(ReportJob(*j, now, true).ToJson());
    return Json(200, {{"jobs", list},
                      {"next_after",
                       next ? nlohmann::json(std::to_string(next)) : nlohmann::json(nullptr)}});
  }
  const std::string jobs_prefix = "/api/v1/jobs/";
  if (path.rfind(jobs_prefix, 0) == 0) {
    const std::string rest = path.substr(jobs_prefix.size());
    const size_t slash = rest.find('/');
    const uint64_t id = IdOf(rest.substr(0, slash));
    auto it = id ? r.jobs.find(id) : r.jobs.end();
    if (it == r.jobs.end())
      return JsonError(404, "not_found", "no job " + rest.substr(0, slash).substr(0, 40));
    if (slash == std::string::npos) return Json(200, ReportJob(it->second, now, true).ToJson());
    if (rest.substr(slash) == "/logs") {
      auto lines = r.journal->Events(
          id, [](const std::string&) { return true; }, 100000);
      if (!lines.ok()) return JsonError(500, "internal", lines.message());
      nlohmann::json out = nlohmann::json::array();
      for (const std::string& l : *lines) {
        const size_t sp = l.find(' ');
        out.push_back({{"ms", IdOf(l.substr(0, sp))},
                       {"text", sp == std::string::npos ? "" : l.substr(sp + 1)}});
      }
      return Json(200, {{"lines", out}});
    }
  }
  if (path.rfind("/api/", 0) == 0) return JsonError(404, "not_found", "no such endpoint: " + path);
  return {404, "text/plain; charset=utf-8", "not found: " + path + "\n"};
}

uint64_t Core::bad_messages() const { return rep_->metrics.bad_messages; }
uint64_t Core::fenced_results() const { return rep_->metrics.fenced_results; }

}  // namespace segue
