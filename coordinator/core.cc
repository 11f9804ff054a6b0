#include "coordinator/core.h"

#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <cctype>
#include <charconv>
#include <filesystem>
#include <set>

#include "common/net/url.h"
#include "common/protocol/protocol.h"
#include "common/security/curve.h"
#include "common/security/keyring.h"
#include "coordinator/api.h"
#include "coordinator/assignments.h"
#include "coordinator/audio_tracks.h"
#include "coordinator/dashboard.h"
#include "coordinator/events.h"
#include "coordinator/family.h"
#include "coordinator/handlers.h"
#include "coordinator/jobs.h"
#include "coordinator/journal.h"
#include "coordinator/reporting.h"
#include "coordinator/results.h"
#include "coordinator/scheduler.h"
#include "coordinator/state_machine.h"
#include "coordinator/transfers.h"
#include "coordinator/webhooks.h"
#include "coordinator/workers.h"

namespace segue {
namespace {
TransferOptions TransferOptionsOf(const CoordinatorOptions& o) {
  TransferOptions t;
  t.budget_bytes = static_cast<uint64_t>(std::max<int64_t>(1, o.receive_budget_mb)) << 20;
  t.max_message_bytes = WireLimits::kMaxMessageBytes;
  return t;
}
}  // namespace

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
        router(transport, this),
        outbox(&router),
        transfers(TransferOptionsOf(o)),
        audio_tracks(o.state_dir + "/tmp/songs"),
        ctx{options, assignment, admission, env,     *journal,  machine,      jobs, workers,
            models,  outbox,     nullptr,   metrics, transfers, audio_tracks, false},
        events(e->NowMillis() * 1000) {
    machine.set_events(&events);
  }

  // The outbox's transport: the farm port's messages go to the caller's transport, replies to
  // the HTTP API's writes to their connections, and the turn's events to their subscribers.
  struct Router final : Transport {
    Router(Transport* farm, Rep* rep) : farm(farm), rep(rep) {}
    void Send(const std::string& identity, std::string payload, bool req_envelope) override {
      if (identity.rfind(kHttpPeer, 0) == 0 || identity == kEventsPeer) {
        // From the outbox's sending: nothing here may stop the loop.
        try {
          if (identity == kEventsPeer) {
            rep->PublishEvents(std::stoull(payload));
          } else {
            rep->AnswerHttp(identity.substr(kHttpPeer.size()), payload);
          }
        } catch (const std::exception& e) {
          spdlog::error("http: cannot answer or publish: {}", e.what());
        }
      } else {
        farm->Send(identity, std::move(payload), req_envelope);
      }
    }
    Transport* const farm;
    Rep* const rep;
  };
  // Identities no ZeroMQ peer can have (a routing id a peer picks cannot start with a zero byte;
  // the ROUTER's own are 5 bytes): the HTTP API's connections, and the events' turn.
  static inline const std::string kHttpPeer = std::string("\0http/", 6);
  static inline const std::string kEventsPeer = std::string("\0events", 7);

  const CoordinatorOptions options;
  Env* const env;
  const AssignmentOptions assignment;
  const AdmissionOptions admission;
  std::unique_ptr<Journal> journal;
  StateMachine machine;
  JobTable jobs;  // every job, finished ones included
  WorkerRegistry workers;
  ModelCatalog models;
  Router router;
  Outbox outbox;
  std::unique_ptr<PoolManager> pools;
  FarmMetrics metrics;
  TransferTable transfers;
  AudioTracks audio_tracks;
  HandlerContext ctx;             // refers to the parts above
  uint64_t turn_started_us = 0;   // when this turn's messages began to be read
  uint64_t last_eviction_ms = 0;  // when the result cache was last brought under its limit
  // Jobs the restart found STITCHING or with every chunk stored: assembled in the first turn,
  // once the caller's socket is bound.
  std::vector<uint64_t> restored_to_assemble;
  // Who each key is (nullopt: no keys, every peer is LocalIdentity()). The keys file is read
  // again when its stamp (inode, size, modification time) changes.
  std::optional<KeyRing> keys;
  std::string keys_stamp;

  // ---- the HTTP side (AttachHttp): writes' answers, event streams, webhooks ----
  EventLog events;
  // Each turn's events wait in the outbox as a batch number (kEventsPeer) until durable.
  std::map<uint64_t, std::vector<FarmEvent>> event_batches;
  uint64_t next_batch = 0;
  HttpEndpoint* http = nullptr;
  std::map<std::string, uint64_t> streams;  // event streams: connection -> job (0: every job)
  uint64_t last_keepalive_ms = 0;
  // The coordinator's --webhook URLs, and the manifests': apart, so that receivers a submitter
  // names cannot hold up the operator's.
  std::unique_ptr<WebhookSender> webhooks, job_webhooks;

  void AnswerHttp(const std::string& connection, const std::string& payload);
  void PublishEvents(uint64_t batch);
  // Who a write comes from: its bearer token's identity; nullptr with the refusal in *refusal.
  const Identity* HttpWriter(const HttpRequest& request, HttpResponse* refusal);
  // Whether a read may be answered; if not, the refusal in *refusal.
  bool HttpReaderAllowed(const HttpRequest& request, HttpResponse* refusal);
  HttpResponse OpenStream(const HttpRequest& request);
  HttpResponse Download(const HttpRequest& request, const Job& j) const;

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
      outbox.SendAtTurnEnd(w.identity, RenderAssignment(j, d.index, attempt, inputs, assignment));
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
      outbox.SendAtTurnEnd(w.identity,
                           EncodeAssignment(j, d.index, attempt, std::get<Tensor>(in), assignment));
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
  // The turn's events leave with its replies: once its writes are durable.
  std::vector<FarmEvent> staged = events.TakeStaged();
  if (!staged.empty()) {
    event_batches[++next_batch] = std::move(staged);
    outbox.Send(kEventsPeer, std::to_string(next_batch));
  }
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
  LinkFamilies(rep->jobs);  // previews and takes wait as they did
  // The songs of unfinished jobs that are not waiting are encoded ahead again (the others' when
  // they are released).
  for (const auto& [id, j] : rep->jobs) {
    if (IsFinished(j.state) || !j.has_audio || j.waiting_for != 0) continue;
    if (auto audio = rep->journal->Audio(j.AudioJob()); audio.ok())
      rep->audio_tracks.Prepare(j, *audio);
  }
  // The models the unfinished jobs were planned with are the farm's: a worker that comes back
  // with other metadata for one of them is refused, as before the restart.
  for (const auto& [id, j] : rep->jobs) {
    if (IsFinished(j.state) || !j.planned()) continue;
    if (Status s = rep->models.Learn({j.model}, "job " + std::to_string(id) + "'s plan"); !s.ok())
      spdlog::warn("job {}: {}", id, s.message());
  }
  rep->restored_to_assemble = std::move(*due);
  rep->ctx.schedule_due = true;
  WebhookOptions hooks;
  if (!options.webhook_secret_file.empty()) {
    auto read = ReadFile(rep->env, options.webhook_secret_file);
    if (!read.ok()) return R::Error("--webhook-secret-file: " + read.message());
    std::string secret = std::move(*read);
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    if (secret.empty())
      return R::Error("--webhook-secret-file " + options.webhook_secret_file + ": empty");
    hooks.secret = secret;
  }
  rep->webhooks = std::make_unique<WebhookSender>(hooks);
  rep->job_webhooks = std::make_unique<WebhookSender>(hooks);
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
  TickTransfers(r.ctx);
  // The result cache back under its limit: every 30 s, as it walks every job's segments.
  if (now >= r.last_eviction_ms + 30000) {
    r.last_eviction_ms = now;
    const Evicted e = EvictResults(r.jobs, *r.journal, r.options.result_cache_bytes);
    r.metrics.results_evicted += e.segments + e.chunks;
    r.metrics.results_evicted_bytes += e.bytes;
  }
  r.ReloadKeysIfChanged();
  // Event streams hear something every 15 s, so that proxies keep them open and a client that
  // has gone is noticed.
  if (r.http && now - r.last_keepalive_ms >= 15000) {
    r.last_keepalive_ms = now;
    std::vector<std::string> gone;
    for (const auto& [connection, job] : r.streams)
      if (!r.http->Push(connection, ": keepalive\n\n")) gone.push_back(connection);
    for (const std::string& c : gone) r.streams.erase(c);
  }
  r.ctx.schedule_due = true;
}

void Core::EndTurn() {
  Rep& r = *rep_;
  for (uint64_t id : r.restored_to_assemble) Assemble(r.ctx, r.jobs.at(id));
  r.restored_to_assemble.clear();
  if (r.ctx.schedule_due) {
    ReleaseWaitingJobs(r.ctx);
    r.ScheduleNow();
  }
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

// Whether HOST:PORT names this machine's loopback.
bool OnLoopback(const std::string& host_port) {
  return IsLoopbackHost(host_port.substr(0, host_port.rfind(':')));
}

// The host of a Host header ("127.0.0.1:8080", "[::1]:8080", "localhost").
std::string HostOf(const std::string& header) {
  if (!header.empty() && header[0] == '[') return header.substr(0, header.find(']') + 1);
  return header.substr(0, header.find(':'));
}

// A dashboard job page's path: /jobs/DIGITS.
bool IsJobPage(const std::string& path) {
  return path.rfind("/jobs/", 0) == 0 && path.size() > 6 &&
         path.find_first_not_of("0123456789", 6) == std::string::npos;
}

// The token of an `Authorization: Bearer TOKEN` header, or "".
std::string BearerToken(const HttpRequest& request) {
  const std::string auth = request.Header("authorization");
  return auth.rfind("Bearer ", 0) == 0 ? auth.substr(7) : "";
}

const char* VideoType(const std::string& path) {
  const std::string ext = std::filesystem::path(path).extension().string();
  if (ext == ".mp4" || ext == ".m4v") return "video/mp4";
  if (ext == ".mov") return "video/quicktime";
  if (ext == ".mkv") return "video/x-matroska";
  if (ext == ".webm") return "video/webm";
  return "application/octet-stream";
}

}  // namespace

void Core::AttachHttp(HttpEndpoint* http) { rep_->http = http; }

void Core::HttpClosed(const std::string& connection) { rep_->streams.erase(connection); }

void Core::Rep::AnswerHttp(const std::string& connection, const std::string& payload) {
  if (http)
    http->Respond(connection, WriteReply(payload.data(), payload.size(), jobs, env->NowMillis()));
}

void Core::Rep::PublishEvents(uint64_t batch) {
  auto it = event_batches.find(batch);
  if (it == event_batches.end()) return;
  std::vector<FarmEvent> published = std::move(it->second);
  event_batches.erase(it);
  events.Publish(published);
  if (http) {
    std::vector<std::string> gone;
    for (const auto& [connection, job] : streams) {
      std::string out;
      for (const FarmEvent& e : published)
        if (job == 0 || e.job == job) out += e.Sse();
      if (!out.empty() && !http->Push(connection, out)) gone.push_back(connection);
    }
    for (const std::string& c : gone) streams.erase(c);
  }
  // Webhooks hear of jobs' state changes, with the job as GET shows it.
  const uint64_t now = env->NowMillis();
  for (const FarmEvent& e : published) {
    if (e.type != "job") continue;
    auto j = jobs.find(e.job);
    if (j == jobs.end()) continue;
    const std::vector<std::string>& own = j->second.manifest.webhooks;
    if (options.webhooks.empty() && own.empty()) continue;
    const std::string body = nlohmann::json{{"schema_version", 1},
                                            {"event", e.ToJson()},
                                            {"job", ReportJob(j->second, now, false).ToJson()}}
                                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    for (const std::string& url : options.webhooks)
      webhooks->Enqueue(url, "job." + e.state, std::to_string(e.id), body);
    for (const std::string& url : own)
      job_webhooks->Enqueue(url, "job." + e.state, std::to_string(e.id), body);
  }
}

const Identity* Core::Rep::HttpWriter(const HttpRequest& request, HttpResponse* refusal) {
  static const Identity local = LocalIdentity();
  if (!keys) {
    // Without keys a loopback port trusts whoever reaches it, so the request must also name it
    // as loopback: a web page whose own name was made to point at 127.0.0.1 (DNS rebinding)
    // sends its own name as Host, and is refused.
    const std::string host = request.Header("host");
    if (OnLoopback(options.http) && !options.insecure && !IsLoopbackHost(HostOf(host))) {
      *refusal = JsonError(403, "denied",
                           "without --keys, writes must name the coordinator as localhost, "
                           "127.x.x.x or [::1] (Host: " +
                               host.substr(0, 100) + ")");
      return nullptr;
    }
    if (OnLoopback(options.http) || options.insecure) return &local;
    *refusal = JsonError(403, "denied",
                         "this coordinator has no --keys and its HTTP port is not on loopback: "
                         "writes need identities with tokens (docs/OPERATIONS.md, Security)");
    return nullptr;
  }
  const std::string auth = request.Header("authorization");
  const Identity* who = keys->FindToken(BearerToken(request));
  if (!who) {
    ++metrics.denied["unknown"];
    *refusal = JsonError(401, "unauthorized",
                         auth.empty() ? "send Authorization: Bearer TOKEN (a token_sha256 of the "
                                        "keys file; segue token makes one)"
                                      : "this token is not in the coordinator's keys file");
    refusal->headers.emplace_back("WWW-Authenticate", "Bearer realm=\"segue\"");
  }
  return who;
}

// Reads show what a viewer may see. On a loopback port whoever reaches it may read. Off loopback,
// with keys, a read needs an identity that may read: its token as a bearer token or, for what a
// browser fetches by itself (thumbnails, the video), in the segue_token cookie the dashboard
// sets. The pages themselves, /metrics, health, version and the API's documents stay open.
bool Core::Rep::HttpReaderAllowed(const HttpRequest& request, HttpResponse* refusal) {
  if (!keys || OnLoopback(options.http)) return true;
  const std::string& path = request.parsed.path;
  static const std::set<std::string> open = {"/",
                                             "/index.html",
                                             "/metrics",
                                             "/api/v1/health",
                                             "/api/v1/version",
                                             "/api/v1/openapi.json",
                                             "/api/v1/schema/job.schema.json"};
  if (open.count(path) || IsJobPage(path)) return true;
  std::string token = BearerToken(request);
  if (token.empty()) {
    const std::string cookies = "; " + request.Header("cookie");
    const size_t at = cookies.find("; segue_token=");
    if (at != std::string::npos) {
      const size_t from = at + 14;
      token = cookies.substr(from, cookies.find(';', from) - from);
    }
  }
  const Identity* who = keys->FindToken(token);
  if (!who) {
    ++metrics.denied["unknown"];
    *refusal = JsonError(401, "unauthorized",
                         token.empty() ? "this HTTP port is not on loopback: reads need a token "
                                         "(Authorization: Bearer TOKEN)"
                                       : "this token is not in the coordinator's keys file");
    refusal->headers.emplace_back("WWW-Authenticate", "Bearer realm=\"segue\"");
    return false;
  }
  if (!RoleAllows(who->role, Action::kRead)) {
    ++metrics.denied[RoleName(who->role)];
    *refusal = JsonError(403, "denied",
                         "denied: identity '" + who->name + "' (" + RoleName(who->role) +
                             ") may not read the farm's jobs");
    return false;
  }
  return true;
}

HttpResponse Core::Rep::OpenStream(const HttpRequest& request) {
  if (!http) return JsonError(503, "unavailable", "no event streams here");
  uint64_t job = 0;
  if (const std::string* j = request.parsed.Get("job")) {
    job = IdOf(*j);
    if (!jobs.count(job)) return JsonError(404, "not_found", "no job " + j->substr(0, 40));
  }
  std::string last = request.Header("last-event-id");
  if (const std::string* q = request.parsed.Get("last_event_id")) last = *q;
  HttpResponse r{200, "text/event-stream; charset=utf-8", "retry: 2000\n\n"};
  r.kind = HttpResponse::Kind::kStream;
  r.headers.emplace_back("X-Accel-Buffering", "no");
  if (!last.empty()) {
    const uint64_t after = IdOf(last);
    std::vector<const FarmEvent*> missed;
    if (!events.Since(after, job, &missed))
      r.body += "event: reset\ndata: " +
                nlohmann::json{
                    {"reason", "events after " + last.substr(0, 40) +
                                   " are no longer kept (or the coordinator restarted): read the "
                                   "jobs again"}}
                    .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                "\n\n";
    for (const FarmEvent* e : missed) r.body += e->Sse();
  } else if (job != 0) {  // where the job stands now, before its changes
    r.body += "event: snapshot\ndata: " +
              ReportJob(jobs.at(job), env->NowMillis(), true)
                  .ToJson()
                  .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
              "\n\n";
  }
  streams[request.connection] = job;
  return r;
}

HttpResponse Core::Rep::Download(const HttpRequest& request, const Job& j) const {
  if (j.state != JobState::kDone)
    return JsonError(409, "not_ready",
                     "job " + std::to_string(j.id) + " is " + JobStateName(j.state) +
                         ": its output exists once it is DONE");
  std::error_code ec;
  const auto st = std::filesystem::symlink_status(j.output_path, ec);
  if (ec || !std::filesystem::is_regular_file(st))
    return JsonError(404, "not_found", "the output " + j.output_path + " is not there any more");
  const uint64_t size = std::filesystem::file_size(j.output_path, ec);
  if (ec) return JsonError(404, "not_found", "cannot read the output " + j.output_path);
  HttpResponse r{200, VideoType(j.output_path), ""};
  r.kind = HttpResponse::Kind::kFile;
  r.file = j.output_path;
  r.file_length = size;
  r.headers.emplace_back("Accept-Ranges", "bytes");
  // The file's name as the browser saves it: letters, digits, '.', '-', '_' (others become '_'),
  // so that nothing in an output path can reach the header.
  std::string name = std::filesystem::path(j.output_path).filename().string();
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '-' && ch != '_')
      ch = '_';
  r.headers.emplace_back("Content-Disposition", "inline; filename=\"" + name + "\"");
  // Its version, for a client resuming a download (If-Range): size and modification time.
  const auto mtime = std::filesystem::last_write_time(j.output_path, ec);
  const std::string etag =
      "\"" + std::to_string(size) + "-" +
      std::to_string(ec ? 0 : static_cast<long long>(mtime.time_since_epoch().count())) + "\"";
  r.headers.emplace_back("ETag", etag);
  ByteRange range;
  // A Range with an If-Range of another version gets the whole file (RFC 9110, 13.1.5).
  const std::string if_range = request.Header("if-range");
  const std::string range_header =
      if_range.empty() || if_range == etag ? request.Header("range") : "";
  switch (ParseRange(range_header, size, &range)) {
    case RangeResult::kWhole:
      break;
    case RangeResult::kRange:
      r.status = 206;
      r.file_offset = range.first;
      r.file_length = range.last - range.first + 1;
      r.headers.emplace_back("Content-Range", "bytes " + std::to_string(range.first) + "-" +
                                                  std::to_string(range.last) + "/" +
                                                  std::to_string(size));
      break;
    case RangeResult::kUnsatisfiable: {
      HttpResponse bad =
          JsonError(416, "bad_range", "the output has " + std::to_string(size) + " bytes");
      bad.headers.emplace_back("Content-Range", "bytes */" + std::to_string(size));
      return bad;
    }
  }
  return r;
}

HttpResponse Core::Http(const std::string& target) {
  HttpRequest request;
  request.method = "GET";
  request.target = target;
  request.parsed = ParseTarget(target);
  return Http(request);
}

// The HTTP port: /metrics, the dashboard, the JSON API (api.h), event streams and outputs. Reads
// show what a viewer may see to whoever reaches the port; writes need a bearer token's identity
// (or, without keys, a port on loopback), come as JSON (which a browser cannot send to another
// site's port without asking it first) and from no other site's page (Origin).
HttpResponse Core::Http(const HttpRequest& request) {
  Rep& r = *rep_;
  const std::string& path = request.parsed.path;
  const uint64_t now = r.env->NowMillis();
  if (request.method == "POST") {
    if (!IsWritePath(path)) {
      if (path.rfind("/api/", 0) != 0)
        return JsonError(405, "method_not_allowed", path + " is read with GET");
      HttpResponse no = JsonError(405, "method_not_allowed", path + " is read with GET");
      no.headers.emplace_back("Allow", "GET, HEAD");
      return no;
    }
    const std::string type = request.Header("content-type");
    if (!request.body.empty() && type.rfind("application/json", 0) != 0)
      return JsonError(415, "unsupported_media_type",
                       "send the body as Content-Type: application/json");
    const std::string origin = request.Header("origin");
    if (!origin.empty() && origin != "http://" + request.Header("host"))
      return JsonError(403, "denied",
                       "a request from another site's page (Origin " + origin.substr(0, 100) + ")");
    HttpResponse refusal;
    const Identity* who = r.HttpWriter(request, &refusal);
    if (!who) return refusal;
    auto write = WriteRequest(request);
    if (auto* answer = std::get_if<HttpResponse>(&*write)) return *answer;
    const std::string& payload = std::get<std::string>(*write);
    HandleMessage(r.ctx, Rep::kHttpPeer + request.connection, who, payload.data(), payload.size(),
                  false);
    HttpResponse later;
    later.kind = HttpResponse::Kind::kDeferred;
    return later;
  }
  if (request.method != "GET" && request.method != "HEAD") {
    HttpResponse no = JsonError(405, "method_not_allowed", "GET, HEAD or POST");
    no.headers.emplace_back("Allow", IsWritePath(path) ? "POST" : "GET, HEAD");
    return no;
  }
  if (HttpResponse refusal; !r.HttpReaderAllowed(request, &refusal)) return refusal;
  if (path == "/metrics") {
    const std::vector<PoolStatus> pools =
        r.pools ? r.pools->List(ViewOfPools(r.ctx)) : std::vector<PoolStatus>{};
    const SyncFigures sync{r.journal->syncer().syncs(), r.journal->syncer().sync_seconds(),
                           r.outbox.held()};
    r.metrics.event_streams = r.streams.size();
    const WebhookCounters farm = r.webhooks->counters(), job = r.job_webhooks->counters();
    r.metrics.webhooks_delivered = farm.delivered + job.delivered;
    r.metrics.webhook_retries = farm.retries + job.retries;
    r.metrics.webhooks_given_up = farm.given_up + farm.dropped + job.given_up + job.dropped;
    r.metrics.webhooks_queued = farm.queued + job.queued;
    r.metrics.receive_budget_bytes = r.transfers.budget_bytes();
    r.metrics.receive_held_bytes = r.transfers.held_bytes();
    r.metrics.transfers_waiting = r.transfers.waiting();
    r.metrics.transfers_receiving = r.transfers.receiving();
    const TransferTable::Counters& t = r.transfers.counters();
    r.metrics.transfers_completed = t.completed;
    r.metrics.transfers_refused = t.refused;
    r.metrics.transfers_dropped = t.dropped;
    r.metrics.transfer_parts_ignored = t.ignored_parts;
    r.metrics.transfer_bytes = t.bytes;
    const CacheContents cache = CachedResults(r.jobs);
    r.metrics.result_cache_bytes = cache.bytes;
    r.metrics.result_cache_live_bytes = cache.live_bytes;
    r.metrics.result_cache_limit = r.options.result_cache_bytes;
    return {200, "text/plain; version=0.0.4; charset=utf-8",
            MetricsText(r.jobs, r.workers.all(), r.pools ? &pools : nullptr, r.metrics, sync)};
  }
  if (path == "/api/v1/status")
    return {200, "application/json",
            StatusJson(r.jobs, r.workers.all(),
                       r.pools ? r.pools->List(ViewOfPools(r.ctx)) : std::vector<PoolStatus>{}, now)
                    .dump(2, ' ', false, nlohmann::json::error_handler_t::replace) +
                "\n"};
  if (path == "/" || path == "/index.html")
    return {200, "text/html; charset=utf-8", DashboardHtml()};
  if (IsJobPage(path)) return {200, "text/html; charset=utf-8", JobPageHtml()};
  if (path == "/api/v1/events") {
    if (request.method == "HEAD") return {200, "text/event-stream; charset=utf-8", ""};
    return r.OpenStream(request);
  }
  const std::string output_prefix = "/api/v1/jobs/";
  if (path.rfind(output_prefix, 0) == 0 && path.size() > 7 &&
      path.compare(path.size() - 7, 7, "/output") == 0) {
    const std::string id_text =
        path.substr(output_prefix.size(), path.size() - 7 - output_prefix.size());
    auto it = r.jobs.find(IdOf(id_text));
    if (it == r.jobs.end()) return JsonError(404, "not_found", "no job " + id_text.substr(0, 40));
    return r.Download(request, it->second);
  }
  if (auto answer = ReadRequest(request.parsed, r.ctx, now)) return *answer;
  if (IsWritePath(path)) {
    HttpResponse no = JsonError(405, "method_not_allowed", path + " is a POST");
    no.headers.emplace_back("Allow", "POST");
    return no;
  }
  if (path.rfind("/api/", 0) == 0) return JsonError(404, "not_found", "no such endpoint: " + path);
  return {404, "text/plain; charset=utf-8", "not found: " + path + "\n"};
}

uint64_t Core::bad_messages() const { return rep_->metrics.bad_messages; }
uint64_t Core::fenced_results() const { return rep_->metrics.fenced_results; }

}  // namespace segue
