#include "coordinator/coordinator.h"

#include "coordinator/codenoise.h"
#include "coordinator/dashboard.h"
#include "coordinator/http.h"
#include "coordinator/pools.h"
#include "coordinator/syncer.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/blend/blend.h"
#include "common/client/client.h"
#include "common/manifest/manifest.h"
#include "common/media/audio.h"
#include "common/media/video.h"
#include "common/plan/plan.h"
#include "common/protocol/protocol.h"
#include "common/security/curve.h"
#include "common/store/records.capnp.h"
#include "common/store/store.h"
#include "common/util/process.h"

namespace segue {
namespace {

namespace fs = std::filesystem;

uint64_t NowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

const char* JobStateName(rec::JobState s) {
  switch (s) {
    case rec::JobState::QUEUED:
      return "QUEUED";
    case rec::JobState::RUNNING:
      return "RUNNING";
    case rec::JobState::STITCHING:
      return "STITCHING";
    case rec::JobState::DONE:
      return "DONE";
    case rec::JobState::FAILED:
      return "FAILED";
    case rec::JobState::CANCELLED:
      return "CANCELLED";
  }
  return "UNKNOWN";
}

bool Finished(rec::JobState s) {
  return s == rec::JobState::DONE || s == rec::JobState::FAILED || s == rec::JobState::CANCELLED;
}

// One render or encode task of a job, as the scheduler tracks it.
struct Slot {
  rec::TaskState state = rec::TaskState::PENDING;
  uint32_t attempt = 0;  // attempt number of the latest assignment (0: never assigned)
  std::string worker;    // name of the worker holding it while RUNNING
  uint32_t failures = 0;
  std::string error;
  std::vector<std::string> failed_on;  // distinct workers it failed on, in order
  bool has_checkpoint = false;         // a render checkpoint of it is in the store
  // The attempt number in its latest record, and the number of the write that holds that record
  // (0: a synced write, or one before this process). An assignment is not recorded (the paths
  // that end one record it: PutSlot), so while RUNNING, attempt is recorded_attempt + 1.
  uint32_t recorded_attempt = 0;
  uint64_t recorded_in_write = 0;
};

struct Job {
  uint64_t id = 0;
  rec::JobState state = rec::JobState::QUEUED;
  int priority = 50;
  std::string name, manifest_text, manifest_name, output_path, error, audio_name;
  bool has_audio = false;
  uint64_t created_ms = 0, updated_ms = 0, finished_ms = 0, started_ms = 0;
  uint32_t chunk_frames = 96;
  Manifest manifest;
  BlendMode blend = BlendMode::kLinear;
  std::vector<SegmentSpan> segments;
  std::vector<Slot> seg;
  std::vector<ChunkSpan> chunks;
  std::vector<Slot> chunk;
  uint32_t segments_done = 0, chunks_done = 0;
  // Scheduling starts its walks here: every segment (chunk) below is DONE. Lowered wherever a
  // DONE task goes back to the queue.
  uint32_t segments_done_below = 0, chunks_done_below = 0;
  // codenoise: the running gang, if any.
  struct Gang {
    uint32_t attempt = 0;
    struct Group {
      uint32_t first = 0, end = 0;  // segments [first, end)
      std::string worker;
    };
    std::vector<Group> groups;
    std::unique_ptr<StepExchange> exchange;
    // Gang checkpoints: a step counts once every segment's latents after it have arrived.
    std::map<uint32_t, std::set<uint32_t>> checkpoint_arrivals;  // step -> segments
    uint64_t last_checkpoint_ms = 0;
    int GroupOf(const std::string& worker) const {
      for (size_t g = 0; g < groups.size(); ++g) {
        if (groups[g].worker == worker) return static_cast<int>(g);
      }
      return -1;
    }
  };
  std::optional<Gang> gang;
  uint64_t gang_wait_since = 0;  // when a gang could first have started with fewer workers
  std::map<std::string, uint32_t> worker_failures;  // tasks of this job each worker failed
  bool restored_stitching = false;                  // it was STITCHING when the coordinator started
};

struct TaskRef {
  uint64_t job = 0;
  wire::TaskKind kind = wire::TaskKind::RENDER;
  uint32_t index = 0;
};

struct Worker {
  std::string identity;  // ZeroMQ routing id
  std::string name, host, device;
  std::set<std::string> models;
  std::set<std::string> tags;
  uint64_t memory = 0;
  uint32_t credits = 0;
  std::optional<TaskRef> task;
  uint64_t last_seen_ms = 0;
  uint32_t tasks_done = 0, failures = 0;
  bool draining = false;          // finishes its task, gets no more
  std::string pool;               // the pool that launched it, if any
  uint64_t waiting_since_us = 0;  // when it last became idle with credit (dispatch latency)
};

// A co-denoising gang's checkpoint of one segment: keyed by step as well, since a gang's
// checkpoint at step s is only usable once every segment has one at s. kGangStepKey holds the
// newest step at which all of them did.
std::string GangCheckpointKey(uint64_t job, uint32_t segment, uint32_t step) {
  std::string key = TaskKey(job, segment);
  for (int shift = 24; shift >= 0; shift -= 8) key += static_cast<char>((step >> shift) & 0xff);
  return key;
}
const char* const kGangStepKey = "gang-step";

std::string EncodeStep(uint32_t step) {
  std::string v(4, '\0');
  std::memcpy(v.data(), &step, 4);
  return v;
}

uint32_t DecodeStep(const std::string& v) {
  uint32_t step = 0;
  if (v.size() >= 4) std::memcpy(&step, v.data(), 4);
  return step;
}

// A Prometheus histogram with fixed bucket bounds (seconds).
struct Histogram {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  // per bucket, not cumulative
  double sum = 0;
  uint64_t count = 0;
  explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size() + 1) {}
  void Observe(double v) {
    size_t i =
        static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin());
    ++counts[i];
    sum += v;
    ++count;
  }
  void Write(std::string& out, const std::string& name, const std::string& help) const {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds.size(); ++i) {
      cumulative += counts[i];
      out += name + "_bucket{le=\"" + fmt::format("{}", bounds[i]) + "\"} " +
             std::to_string(cumulative) + "\n";
    }
    out += name + "_bucket{le=\"+Inf\"} " + std::to_string(count) + "\n";
    out += name + "_sum " + fmt::format("{}", sum) + "\n" + name + "_count " +
           std::to_string(count) + "\n";
  }
};

uint64_t NowUs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

std::string FileExtension(const std::string& name) {
  std::string ext = fs::path(name).extension().string();
  if (ext.size() > 8) ext.clear();
  for (char c : ext) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.') return "";
  }
  return ext;
}

}  // namespace

struct Coordinator::Impl {
  CoordinatorOptions options;
  std::unique_ptr<Store> store;
  std::unique_ptr<Syncer> syncer;  // after store: destroyed (and done syncing) before it
  zmq::context_t ctx{1};
  zmq::socket_t sock{ctx, zmq::socket_type::router};
  std::string endpoint;
  std::map<uint64_t, Job> jobs;           // all jobs, finished ones included
  std::map<std::string, Worker> workers;  // by name
  std::map<std::string, std::string> name_of_identity;
  CoordinatorCounters counters;
  fs::path output_root;  // canonical
  std::unique_ptr<PoolManager> pools;
  std::unique_ptr<HttpEndpoint> http;
  // ZAP (ZeroMQ's authentication protocol): admits CURVE peers whose key is allowed.
  std::unique_ptr<zmq::socket_t> zap;
  std::set<std::string> allowed_keys;  // Z85
  Histogram dispatch_latency{{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}};
  Histogram step_seconds{{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}};
  std::vector<int64_t> exchange_shape_;  // [C, h, w] of the exchange being merged

  // ---- persistence -------------------------------------------------------------------------

  std::string EncodeJob(const Job& j) {
    capnp::MallocMessageBuilder b;
    auto r = b.initRoot<rec::Job>();
    r.setId(j.id);
    r.setName(j.name);
    r.setState(j.state);
    r.setPriority(j.priority);
    r.setManifestText(j.manifest_text);
    r.setManifestName(j.manifest_name);
    r.setOutputPath(j.output_path);
    r.setHasAudio(j.has_audio);
    r.setAudioName(j.audio_name);
    r.setError(j.error);
    r.setCreatedMs(j.created_ms);
    r.setUpdatedMs(j.updated_ms);
    r.setFinishedMs(j.finished_ms);
    r.setChunkFrames(j.chunk_frames);
    return Serialize(b);
  }

  static std::string EncodeSlot(const Slot& s) {
    capnp::MallocMessageBuilder b;
    auto r = b.initRoot<rec::Task>();
    r.setState(s.state);
    r.setAttempt(s.attempt);
    r.setWorker(s.worker);
    r.setError(s.error);
    r.setUpdatedMs(NowMs());
    r.setFailures(s.failures);
    auto list = r.initFailedOn(static_cast<unsigned>(s.failed_on.size()));
    for (size_t i = 0; i < s.failed_on.size(); ++i)
      list.set(static_cast<unsigned>(i), s.failed_on[i]);
    return Serialize(b);
  }

  static Family SlotFamily(wire::TaskKind kind) {
    return kind == wire::TaskKind::ENCODE ? Family::kChunks : Family::kSegments;
  }

  void AddEvent(Store::Batch& batch, uint64_t job, const std::string& text) {
    std::string key = JobKey(job) + JobKey(store->NextId("event", batch));
    batch.Put(Family::kEvents, key, std::to_string(NowMs()) + " " + text);
  }

  // Group commit. Every transition's writes go into one batch per turn of the event loop,
  // written unsynced at the end of the turn (FlushWrites) and made durable by the syncer's thread
  // while the loop goes on. What a message may say before that sync:
  // - an assignment leaves at once. A crash can forget it: the restart re-queues the task with
  //   its attempt number moved past the forgotten one (Restore), so the worker holding it is
  //   fenced off, and determinism makes anything computed from it again the same bits. For that
  //   one number to be enough, a task is only assigned again once its previous assignment is
  //   durable (MarkRunning).
  // - everything else (replies to clients, acks, welcomes, cancels) leaves once the writes of
  //   its turn are durable: nothing that a restart could contradict is said before it is on
  //   disk. Messages to one peer keep their order: once one is held, the later ones wait too.
  Store::Batch pending_writes;  // written by FlushWrites()
  uint64_t written = 0;         // writes so far, numbered from 1 (the syncer counts in these)
  struct Outgoing {
    std::string identity, payload;
    bool req_envelope = false;
    bool before_sync = false;  // an assignment: may leave before its turn's writes are durable
    uint64_t after_write = 0;  // held: leaves once write number after_write is durable
  };
  std::vector<Outgoing> outgoing;       // this turn's messages, sent or held by Flush()
  std::deque<Outgoing> held;            // waiting for the syncer, in the order they were sent
  std::map<std::string, int> held_for;  // identity -> messages of it in `held`
  bool schedule_due = false;            // Schedule() was asked for this turn
  uint64_t turn_started_us = 0;         // when this turn's messages began to be read

  // Adds `batch` to this turn's writes.
  void Commit(Store::Batch& batch) { pending_writes.Append(std::move(batch)); }

  // Writes this turn's writes so far (unsynced) or, if the disk refuses, stops the process:
  // continuing with memory ahead of the store would hand out work that a restart forgets. Reads
  // of the store call it first, so they see every write before them.
  void FlushWrites() {
    if (pending_writes.empty()) return;
    Status s = store->Write(pending_writes, Store::Sync::kLater);
    if (!s.ok()) StopOnStoreFailure(s);
    ++written;
    pending_writes = Store::Batch();
  }

  // Makes every write so far durable before it returns.
  void SyncAll() {
    FlushWrites();
    if (Status s = syncer->SyncNow(written); !s.ok()) StopOnStoreFailure(s);
  }

  [[noreturn]] void StopOnStoreFailure(const Status& s) {
    spdlog::critical("cannot write the state store: {}; stopping", s.message());
    std::_Exit(3);
  }

  // Ends a turn: the writes, then the messages they allow; asks the syncer for the rest.
  void Flush() {
    FlushWrites();
    ReleaseHeld();
    const bool synced = syncer->durable() >= written;
    for (auto& o : outgoing) {
      if ((synced || o.before_sync) && (held_for.empty() || !held_for.count(o.identity))) {
        SendNow(o.identity, std::move(o.payload), o.req_envelope);
      } else {
        o.after_write = written;
        ++held_for[o.identity];
        held.push_back(std::move(o));
      }
    }
    outgoing.clear();
    if (!synced) syncer->Request(written);
    WaitForHeld();
  }

  // Has the syncer wake the loop when the oldest held message may go.
  void WaitForHeld() {
    for (;;) {
      syncer->WakeAt(held.empty() ? 0 : held.front().after_write);
      if (held.empty() || held.front().after_write > syncer->durable()) return;
      ReleaseHeld();  // synced before the syncer could see what we wait for
    }
  }

  // Sends the held messages whose writes are durable now.
  void ReleaseHeld() {
    if (Status f = syncer->failure(); !f.ok()) StopOnStoreFailure(f);
    const uint64_t durable = syncer->durable();
    while (!held.empty() && held.front().after_write <= durable) {
      Outgoing& o = held.front();
      if (--held_for[o.identity] == 0) held_for.erase(o.identity);
      SendNow(o.identity, std::move(o.payload), o.req_envelope);
      held.pop_front();
    }
  }

  Result<std::string> Get(Family f, const std::string& key) {
    FlushWrites();
    return store->Get(f, key);
  }
  Status Scan(Family f, const std::string& begin, const std::string& end,
              const std::function<bool(const std::string&, const std::string&)>& fn) {
    FlushWrites();
    return store->Scan(f, begin, end, fn);
  }

  void SetJobState(Job& j, rec::JobState state, const std::string& error, Store::Batch& batch) {
    j.state = state;
    j.updated_ms = NowMs();
    if (!error.empty()) j.error = error;
    if (Finished(state)) j.finished_ms = j.updated_ms;
    batch.Put(Family::kJobs, JobKey(j.id), EncodeJob(j));
    AddEvent(batch, j.id,
             std::string("job ") + JobStateName(state) + (error.empty() ? "" : ": " + error));
  }

  // ---- start-up ----------------------------------------------------------------------------

  Status Restore() {
    std::vector<uint64_t> ids;
    Status s = Scan(Family::kJobs, "", "", [&](const std::string& key, const std::string& value) {
      Job j;
      try {
        capnp::FlatArrayMessageReader reader(
            kj::arrayPtr(reinterpret_cast<const capnp::word*>(value.data()),
                         value.size() / sizeof(capnp::word)));
        auto r = reader.getRoot<rec::Job>();
        j.id = r.getId();
        j.name = r.getName().cStr();
        j.state = r.getState();
        j.priority = r.getPriority();
        j.manifest_text = r.getManifestText().cStr();
        j.manifest_name = r.getManifestName().cStr();
        j.output_path = r.getOutputPath().cStr();
        j.has_audio = r.getHasAudio();
        j.audio_name = r.getAudioName().cStr();
        j.error = r.getError().cStr();
        j.created_ms = r.getCreatedMs();
        j.updated_ms = r.getUpdatedMs();
        j.finished_ms = r.getFinishedMs();
        j.chunk_frames = r.getChunkFrames();
      } catch (const kj::Exception& e) {
        spdlog::error("job record {} is unreadable: {}", JobOfKey(key), e.getDescription().cStr());
        return true;
      }
      auto m = ParseManifest(j.manifest_text, j.manifest_name, ManifestParseOptions{"", false});
      if (!m.ok()) {
        spdlog::error("job {}: stored manifest no longer parses: {}", j.id, m.message());
        return true;
      }
      PlanJob(j, *m);
      jobs.emplace(j.id, std::move(j));
      ids.push_back(JobOfKey(key));
      return true;
    });
    if (!s.ok()) return s;
    Store::Batch skips;  // the attempt numbers skipped (below)
    for (uint64_t id : ids) {
      Job& j = jobs.at(id);
      auto load = [&](Family f, std::vector<Slot>& slots) {
        return Scan(f, TaskKey(id, 0), JobKey(id + 1),
                    [&](const std::string& key, const std::string& value) {
                      uint32_t idx = IndexOfKey(key);
                      if (idx >= slots.size()) return true;
                      try {
                        capnp::FlatArrayMessageReader reader(
                            kj::arrayPtr(reinterpret_cast<const capnp::word*>(value.data()),
                                         value.size() / sizeof(capnp::word)));
                        auto r = reader.getRoot<rec::Task>();
                        Slot& sl = slots[idx];
                        sl.state = r.getState();
                        sl.attempt = r.getAttempt();
                        sl.recorded_attempt = sl.attempt;
                        sl.failures = r.getFailures();
                        sl.error = r.getError().cStr();
                        sl.failed_on.clear();
                        for (auto name : r.getFailedOn()) sl.failed_on.emplace_back(name.cStr());
                        // A task that was running when we stopped goes back to the queue;
                        // its worker, if alive, will be fenced off by the attempt number.
                        // (Only a co-denoising gang records RUNNING tasks.)
                        if (sl.state == rec::TaskState::RUNNING) sl.state = rec::TaskState::PENDING;
                        // A task's latest assignment is not on disk (assignments are not
                        // recorded; the record that ends one may be lost with the unsynced end
                        // of the log), and its worker may still hold it: that attempt number is
                        // skipped, so that worker is fenced off too. One is enough: MarkRunning
                        // makes an assignment only once the task's attempt is durable. The
                        // skip is written below, so that a second restart skips past it.
                        if (sl.state != rec::TaskState::DONE) ++sl.attempt;
                      } catch (const kj::Exception&) {
                      }
                      return true;
                    });
      };
      if (Status ls = load(Family::kSegments, j.seg); !ls.ok()) return ls;
      if (Status ls = load(Family::kChunks, j.chunk); !ls.ok()) return ls;
      const size_t task_key_size = TaskKey(id, 0).size();
      Status cs = Scan(Family::kCheckpoints, JobKey(id), JobKey(id + 1),
                       [&](const std::string& key, const std::string&) {
                         const uint32_t idx = IndexOfKey(key);
                         if (key.size() == task_key_size && idx < j.seg.size())
                           j.seg[idx].has_checkpoint = true;
                         return true;
                       });
      if (!cs.ok()) return cs;
      j.segments_done =
          static_cast<uint32_t>(std::count_if(j.seg.begin(), j.seg.end(), [](const Slot& x) {
            return x.state == rec::TaskState::DONE;
          }));
      j.chunks_done =
          static_cast<uint32_t>(std::count_if(j.chunk.begin(), j.chunk.end(), [](const Slot& x) {
            return x.state == rec::TaskState::DONE;
          }));
      if (!Finished(j.state)) {
        spdlog::info("job {} ({}) resumes: {}/{} segments, {}/{} chunks done", j.id, j.name,
                     j.segments_done, j.seg.size(), j.chunks_done, j.chunk.size());
        j.started_ms = NowMs();
        // The skipped attempt numbers, on disk before any new assignment: a crash after this
        // restart must not hand out again what this run hands out. (A finished job's tasks wait
        // for a retry, which records them.)
        for (auto [f, slots] :
             {std::pair{Family::kSegments, &j.seg}, {Family::kChunks, &j.chunk}}) {
          for (size_t i = 0; i < slots->size(); ++i) {
            Slot& sl = (*slots)[i];
            if (sl.state == rec::TaskState::DONE) continue;
            skips.Put(f, TaskKey(id, static_cast<uint32_t>(i)), EncodeSlot(sl));
            sl.recorded_attempt = sl.attempt;
          }
        }
      }
    }
    if (!skips.empty()) {
      if (Status ws = store->Write(skips); !ws.ok()) return ws;  // synced
    }
    for (auto& [id, j] : jobs) {
      j.restored_stitching = j.state == rec::JobState::STITCHING;
      if (j.state == rec::JobState::STITCHING ||
          (!Finished(j.state) && j.chunks_done == j.chunk.size())) {
        Finalize(j);
      }
    }
    return Status::Ok();
  }

  void PlanJob(Job& j, const Manifest& m) {
    j.manifest = m;
    j.blend = *ParseBlendMode(m.blend);
    j.segments = PlanSegments(m.frames, m.segment_length, m.segment_overlap, m.seed);
    j.seg.assign(j.segments.size(), Slot{});
    if (j.chunk_frames == 0) j.chunk_frames = static_cast<uint32_t>(options.chunk_frames);
    j.chunks = PlanChunks(m.frames, static_cast<int>(j.chunk_frames));
    j.chunk.assign(j.chunks.size(), Slot{});
  }

  // ---- messages ----------------------------------------------------------------------------

  // Queues a message; it leaves at the end of the turn once the turn's writes are durable
  // (Flush).
  void Send(const std::string& identity, std::string payload, bool req_envelope = false) {
    outgoing.push_back({identity, std::move(payload), req_envelope, false, 0});
  }
  // Queues an assignment; it leaves at the end of the turn, once the turn's writes are written.
  void SendAssignment(const std::string& identity, std::string payload) {
    outgoing.push_back({identity, std::move(payload), false, true, 0});
  }

  static constexpr size_t kZeroCopyBytes = 64 * 1024;
  void SendNow(const std::string& identity, std::string payload, bool req_envelope) {
    try {
      sock.send(zmq::buffer(identity), zmq::send_flags::sndmore);
      if (req_envelope) sock.send(zmq::message_t(), zmq::send_flags::sndmore);
      if (payload.size() < kZeroCopyBytes) {
        sock.send(zmq::buffer(payload), zmq::send_flags::dontwait);
      } else {  // ZeroMQ takes the string itself instead of a copy (exchanges are megabytes)
        auto* owned = new std::string(std::move(payload));
        zmq::message_t msg(
            owned->data(), owned->size(),
            [](void*, void* hint) { delete static_cast<std::string*>(hint); }, owned);
        sock.send(msg, zmq::send_flags::dontwait);
      }
    } catch (const zmq::error_t& e) {
      spdlog::warn("cannot send to {}: {}", identity, e.what());
    }
  }

  void HandleMessage(const std::string& identity, const zmq::message_t& payload, bool req) {
    auto in = Incoming::ParseInPlace(payload.data(), payload.size());
    if (!in.ok()) {
      ++counters.bad_messages;
      spdlog::warn("dropped a bad message ({} bytes): {} [{} so far]", payload.size(), in.message(),
                   counters.bad_messages);
      Send(identity, ErrorMessage(2, "bad message: " + in.message()), req);
      return;
    }
    try {
      auto env = (*in)->envelope();
      switch (env.which()) {
        case wire::Envelope::HELLO:
          return OnHello(identity, env.getHello());
        case wire::Envelope::WORK_REQUEST:
          return OnWorkRequest(identity, env.getWorkRequest());
        case wire::Envelope::RENDER_RESULT:
          return OnRenderResult(identity, env.getRenderResult());
        case wire::Envelope::ENCODE_RESULT:
          return OnEncodeResult(identity, env.getEncodeResult());
        case wire::Envelope::TASK_FAILURE:
          return OnTaskFailure(identity, env.getTaskFailure());
        case wire::Envelope::CHECKPOINT:
          return OnCheckpoint(identity, env.getCheckpoint());
        case wire::Envelope::CODENOISE_EXCHANGE:
          return OnCodenoiseExchange(identity, env.getCodenoiseExchange());
        case wire::Envelope::HEARTBEAT:
          return OnHeartbeat(identity);
        case wire::Envelope::GOODBYE:
          return OnGoodbye(identity, env.getGoodbye().getReason().cStr());
        case wire::Envelope::SUBMIT:
          return Send(identity, OnSubmit(env.getSubmit()), req);
        case wire::Envelope::STATUS_REQUEST:
          return Send(identity, OnStatus(env.getStatusRequest().getJobId()), req);
        case wire::Envelope::LIST_JOBS:
          return Send(identity, OnListJobs(), req);
        case wire::Envelope::LIST_WORKERS:
          return Send(identity, OnListWorkers(), req);
        case wire::Envelope::JOB_ACTION:
          return Send(identity, OnJobAction(env.getJobAction()), req);
        case wire::Envelope::DRAIN_WORKER:
          return Send(identity, OnDrainWorker(env.getDrainWorker().getName().cStr()), req);
        case wire::Envelope::GET_LOGS:
          return Send(identity, OnGetLogs(env.getGetLogs()), req);
        case wire::Envelope::POOL_REQUEST:
          return Send(identity, OnPoolRequest(env.getPoolRequest()), req);
        default:
          ++counters.bad_messages;
          spdlog::warn("dropped a message of unexpected type {} [{} bad so far]",
                       static_cast<int>(env.which()), counters.bad_messages);
          Send(identity, ErrorMessage(2, "unexpected message type"), req);
      }
    } catch (const kj::Exception& e) {
      ++counters.bad_messages;
      spdlog::warn("dropped a malformed message: {} [{} so far]", e.getDescription().cStr(),
                   counters.bad_messages);
      Send(identity,
           ErrorMessage(2, std::string("malformed message: ") + e.getDescription().cStr()), req);
    }
  }

  Worker* WorkerOf(const std::string& identity) {
    auto it = name_of_identity.find(identity);
    if (it == name_of_identity.end()) return nullptr;
    auto w = workers.find(it->second);
    if (w == workers.end()) return nullptr;
    w->second.last_seen_ms = NowMs();
    return &w->second;
  }

  void OnHello(const std::string& identity, wire::Hello::Reader h) {
    if (h.getProtocolVersion() != wire::PROTOCOL_VERSION) {
      Send(identity,
           ErrorMessage(4, "protocol version mismatch: worker speaks " +
                               std::to_string(h.getProtocolVersion()) + ", coordinator speaks " +
                               std::to_string(wire::PROTOCOL_VERSION)));
      return;
    }
    std::string name = h.getName().cStr();
    if (name.empty() || name.size() > 200) {
      Send(identity, ErrorMessage(2, "hello: worker name must be 1 to 200 characters"));
      return;
    }
    auto existing = workers.find(name);
    if (existing != workers.end()) {
      // The same worker again (it reconnected): whatever it held goes back to the queue.
      ReleaseTask(existing->second, "worker reconnected");
      name_of_identity.erase(existing->second.identity);
    }
    Worker& w = workers[name];
    w.identity = identity;
    w.name = name;
    w.host = h.getHost().cStr();
    w.device = h.getDevice().cStr();
    w.models.clear();
    for (auto m : h.getModels()) w.models.insert(m.cStr());
    w.tags.clear();
    for (auto t : h.getTags()) w.tags.insert(t.cStr());
    w.memory = h.getMemoryBytes();
    w.pool = h.getPool().cStr();
    w.credits = 0;
    w.task.reset();
    w.last_seen_ms = NowMs();
    name_of_identity[identity] = name;
    spdlog::info("worker {} joined ({} on {}, models: {})", name, w.device, w.host,
                 fmt::join(w.models, ","));
    capnp::MallocMessageBuilder b;
    auto wel = b.initRoot<wire::Envelope>().initWelcome();
    wel.setWorkerId(name);
    wel.setHeartbeatMs(static_cast<uint32_t>(options.heartbeat_ms));
    wel.setLivenessMs(static_cast<uint32_t>(options.liveness_ms));
    Send(identity, Serialize(b));
  }

  void OnWorkRequest(const std::string& identity, wire::WorkRequest::Reader r) {
    Worker* w = WorkerOf(identity);
    if (!w) {
      Send(identity, ErrorMessage(2, "say hello first"));
      return;
    }
    w->credits = std::min<uint32_t>(r.getCredits(), 4);
    if (w->credits > 0 && !w->task && w->waiting_since_us == 0) w->waiting_since_us = NowUs();
    Schedule();
  }

  void OnGoodbye(const std::string& identity, const std::string& reason) {
    Worker* w = WorkerOf(identity);
    if (!w) return;
    spdlog::info("worker {} left: {}", w->name, reason);
    ReleaseTask(*w, "worker left (" + reason + ")");
    const std::string name = w->name;
    name_of_identity.erase(identity);
    workers.erase(name);
    Schedule();
  }

  void OnHeartbeat(const std::string& identity) {
    Worker* w = WorkerOf(identity);
    capnp::MallocMessageBuilder b;
    b.initRoot<wire::Envelope>().initHeartbeat().setBusy(false);
    if (!w) {
      Send(identity, ErrorMessage(3, "unknown worker: say hello again"));
      return;
    }
    Send(identity, Serialize(b));
  }

  // Returns the slot a result refers to if the sender holds its current attempt; otherwise
  // counts a fenced result and returns nullptr.
  Slot* Fence(Worker* w, uint64_t job_id, wire::TaskKind kind, uint32_t index, uint32_t attempt,
              Job** job_out) {
    auto it = jobs.find(job_id);
    Slot* slot = nullptr;
    if (it != jobs.end()) {
      auto& slots = kind == wire::TaskKind::ENCODE ? it->second.chunk : it->second.seg;
      if (index < slots.size()) slot = &slots[index];
    }
    if (!w || !slot || slot->state != rec::TaskState::RUNNING || slot->attempt != attempt ||
        slot->worker != w->name || Finished(it->second.state)) {
      ++counters.fenced_results;
      spdlog::warn("fenced off a stale result: job {} {} {} attempt {} from {} [{} fenced so far]",
                   job_id, kind == wire::TaskKind::RENDER ? "segment" : "chunk", index, attempt,
                   w ? w->name : "an unknown peer", counters.fenced_results);
      if (w && w->task && w->task->job == job_id && w->task->index == index &&
          w->task->kind == kind)
        w->task.reset();
      return nullptr;
    }
    *job_out = &it->second;
    return slot;
  }

  void OnRenderResult(const std::string& identity, wire::RenderResult::Reader r) {
    Worker* w = WorkerOf(identity);
    Job* job = nullptr;
    Slot* slot =
        Fence(w, r.getJobId(), wire::TaskKind::RENDER, r.getSegment(), r.getAttempt(), &job);
    if (!slot) return Schedule();
    const SegmentSpan& span = job->segments[r.getSegment()];
    auto latents = GetTensor(r.getLatents());
    if (latents.ok() && (latents->shape.size() != 4 || latents->shape[1] != span.length())) {
      latents = Result<Tensor>::Error("latents of shape " + latents->ShapeString() +
                                      " do not fit a segment of " + std::to_string(span.length()) +
                                      " frames");
    }
    const bool in_gang = w->task && w->task->kind == wire::TaskKind::CODENOISE;
    if (!in_gang) w->task.reset();
    if (!latents.ok()) {
      if (in_gang) return GangFailed(*job, *w, latents.message());
      return FailTask(*job, wire::TaskKind::RENDER, r.getSegment(), *w, latents.message());
    }
    Store::Batch batch;
    slot->state = rec::TaskState::DONE;
    batch.Put(Family::kLatents, TaskKey(job->id, r.getSegment()), EncodeTensor(*latents));
    PutSlot(batch, Family::kSegments, job->id, r.getSegment(), *slot);
    if (slot->has_checkpoint)  // done: not needed any more
      batch.Delete(Family::kCheckpoints, TaskKey(job->id, r.getSegment()));
    slot->has_checkpoint = false;
    AddEvent(batch, job->id,
             "segment " + std::to_string(r.getSegment()) + " done by " + w->name + " (attempt " +
                 std::to_string(r.getAttempt()) + ", " + std::to_string(r.getElapsedMs()) + " ms)");
    Commit(batch);
    ++job->segments_done;
    ++w->tasks_done;
    if (!in_gang && r.getElapsedMs() > 0)
      step_seconds.Observe(static_cast<double>(r.getElapsedMs()) / 1000.0 /
                           std::max(1, job->manifest.steps));
    if (in_gang) {
      int g = job->gang ? job->gang->GroupOf(w->name) : -1;
      const auto* group = g >= 0 ? &job->gang->groups[static_cast<size_t>(g)] : nullptr;
      bool group_done =
          !group || std::all_of(job->seg.begin() + group->first, job->seg.begin() + group->end,
                                [](const Slot& x) { return x.state == rec::TaskState::DONE; });
      if (group_done) w->task.reset();
      if (job->segments_done == job->segments.size()) {
        job->gang.reset();
        Store::Batch drop;  // the gang's checkpoints are of no use any more
        drop.DeleteRange(Family::kCheckpoints, JobKey(job->id), JobKey(job->id + 1));
        Commit(drop);
      }
    }
    Schedule();
  }

  void OnCheckpoint(const std::string& identity, wire::Checkpoint::Reader c) {
    Worker* w = WorkerOf(identity);
    Job* job = nullptr;
    Slot* slot =
        Fence(w, c.getJobId(), wire::TaskKind::RENDER, c.getSegment(), c.getAttempt(), &job);
    if (!slot) return;
    auto x = GetTensor(c.getLatents());
    const SegmentSpan& span = job->segments[c.getSegment()];
    if (!x.ok() || x->shape.size() != 4 || x->shape[1] != span.length() || c.getStep() == 0) {
      ++counters.bad_messages;
      spdlog::warn("job {}: dropped a malformed checkpoint of segment {}", job->id, c.getSegment());
      return;
    }
    const uint32_t step = c.getStep();
    counters.checkpoint_bytes += x->data.size() * sizeof(float);
    Store::Batch batch;
    if (job->gang) {
      AddGangCheckpoint(*job, c.getSegment(), step, *x, batch);
    } else {
      batch.Put(Family::kCheckpoints, TaskKey(job->id, c.getSegment()),
                EncodeStep(step) + EncodeTensor(*x));
      slot->has_checkpoint = true;
      AddEvent(batch, job->id,
               "segment " + std::to_string(c.getSegment()) + " checkpoint at step " +
                   std::to_string(step) + " from " + w->name);
    }
    Commit(batch);
    capnp::MallocMessageBuilder b;
    auto ack = b.initRoot<wire::Envelope>().initCheckpointAck();
    ack.setJobId(job->id);
    ack.setSegment(c.getSegment());
    ack.setStep(step);
    Send(identity, Serialize(b));
  }

  // Stores a gang member's checkpoint; once every segment has one at `step`, makes `step` the
  // gang's resume point in the same batch and drops the older ones.
  void AddGangCheckpoint(Job& j, uint32_t segment, uint32_t step, const Tensor& x,
                         Store::Batch& batch) {
    batch.Put(Family::kCheckpoints, GangCheckpointKey(j.id, segment, step), EncodeTensor(x));
    auto& arrivals = j.gang->checkpoint_arrivals;
    auto& got = arrivals[step];
    got.insert(segment);
    if (got.size() < j.segments.size()) return;
    batch.Put(Family::kCheckpoints, NamedKey(j.id, kGangStepKey), EncodeStep(step));
    for (uint32_t s = 0; s < j.segments.size(); ++s) {
      batch.DeleteRange(Family::kCheckpoints, GangCheckpointKey(j.id, s, 0),
                        GangCheckpointKey(j.id, s, step));
    }
    arrivals.erase(arrivals.begin(), arrivals.upper_bound(step));
    j.gang->last_checkpoint_ms = NowMs();
    AddEvent(batch, j.id,
             "co-denoising checkpoint at step " + std::to_string(step) + " (" +
                 std::to_string(j.segments.size()) + " segments)");
  }

  // The gang checkpoint to resume from: its step and every segment's latents; step 0 if none.
  uint32_t LoadGangCheckpoint(const Job& j, std::vector<Tensor>* latents) {
    auto v = Get(Family::kCheckpoints, NamedKey(j.id, kGangStepKey));
    const uint32_t step = v.ok() ? DecodeStep(*v) : 0;
    if (step == 0 || step >= static_cast<uint32_t>(j.manifest.steps)) return 0;
    latents->clear();
    for (uint32_t s = 0; s < j.segments.size(); ++s) {
      auto bytes = Get(Family::kCheckpoints, GangCheckpointKey(j.id, s, step));
      auto t = bytes.ok() ? DecodeTensor(*bytes) : Result<Tensor>(bytes.status());
      if (!t.ok()) {
        spdlog::error(
            "job {}: gang checkpoint of segment {} at step {} unreadable ({}); starting "
            "from step 0",
            j.id, s, step, t.message());
        return 0;
      }
      latents->push_back(std::move(*t));
    }
    return step;
  }

  void OnEncodeResult(const std::string& identity, wire::EncodeResult::Reader r) {
    Worker* w = WorkerOf(identity);
    Job* job = nullptr;
    Slot* slot = Fence(w, r.getJobId(), wire::TaskKind::ENCODE, r.getChunk(), r.getAttempt(), &job);
    if (!slot) return Schedule();
    w->task.reset();
    const ChunkSpan& span = job->chunks[r.getChunk()];
    if (r.getFrames() != static_cast<uint32_t>(span.end - span.start) ||
        r.getContainer().size() == 0) {
      return FailTask(*job, wire::TaskKind::ENCODE, r.getChunk(), *w,
                      "chunk came back with " + std::to_string(r.getFrames()) +
                          " frames, expected " + std::to_string(span.end - span.start));
    }
    auto data = r.getContainer();
    Store::Batch batch;
    slot->state = rec::TaskState::DONE;
    batch.Put(Family::kOutputs, TaskKey(job->id, r.getChunk()),
              std::string(reinterpret_cast<const char*>(data.begin()), data.size()));
    PutSlot(batch, Family::kChunks, job->id, r.getChunk(), *slot);
    AddEvent(batch, job->id, "chunk " + std::to_string(r.getChunk()) + " encoded by " + w->name);
    Commit(batch);
    ++job->chunks_done;
    ++w->tasks_done;
    if (job->chunks_done == job->chunks.size()) Finalize(*job);
    Schedule();
  }

  void OnTaskFailure(const std::string& identity, wire::TaskFailure::Reader r) {
    Worker* w = WorkerOf(identity);
    Job* job = nullptr;
    Slot* slot = Fence(w, r.getJobId(), r.getKind(), r.getIndex(), r.getAttempt(), &job);
    if (!slot) return Schedule();
    if (r.getKind() == wire::TaskKind::CODENOISE) {
      GangFailed(*job, *w, r.getMessage().cStr());
    } else {
      w->task.reset();
      FailTask(*job, r.getKind(), r.getIndex(), *w, r.getMessage().cStr());
    }
    Schedule();
  }

  // A task failed on worker `w`: retry it, or fail the job after max_attempts failures.
  // A task failed on worker `w`: retry it elsewhere, or fail the job once it has failed on
  // max_attempts distinct workers (or 2 x max_attempts times in all, on a farm too small to have
  // that many), so that a task that cannot succeed does not cycle forever.
  void FailTask(Job& job, wire::TaskKind kind, uint32_t index, Worker& w,
                const std::string& message) {
    Slot& slot = (kind == wire::TaskKind::ENCODE ? job.chunk : job.seg)[index];
    ++w.failures;
    ++slot.failures;
    slot.error = message;
    slot.worker.clear();
    if (std::find(slot.failed_on.begin(), slot.failed_on.end(), w.name) == slot.failed_on.end()) {
      slot.failed_on.push_back(w.name);
    }
    const uint32_t by_worker = ++job.worker_failures[w.name];
    const std::string what =
        (kind == wire::TaskKind::ENCODE ? "chunk " : "segment ") + std::to_string(index);
    Store::Batch batch;
    AddEvent(batch, job.id, what + " failed on " + w.name + ": " + message);
    const auto limit = static_cast<uint32_t>(options.max_attempts);
    if (slot.failed_on.size() >= limit || slot.failures >= 2 * limit) {
      slot.state = rec::TaskState::FAILED;
      PutSlot(batch, SlotFamily(kind), job.id, index, slot);
      SetJobState(job, rec::JobState::FAILED,
                  what + " failed on " + std::to_string(slot.failed_on.size()) + " worker(s), " +
                      std::to_string(slot.failures) + " time(s); last error: " + message,
                  batch);
      spdlog::error("job {} failed: {} failed {} times: {}", job.id, what, slot.failures, message);
    } else {
      slot.state = rec::TaskState::PENDING;
      PutSlot(batch, SlotFamily(kind), job.id, index, slot);
      if (by_worker == kKeepOffAfter) {
        AddEvent(batch, job.id,
                 "worker " + w.name + " kept off this job after " + std::to_string(by_worker) +
                     " failures");
      }
      spdlog::warn("job {}: {} failed on {} ({}); retrying", job.id, what, w.name, message);
    }
    Commit(batch);
  }

  // A worker that failed this many of a job's tasks gets no more of them (while others can).
  static constexpr uint32_t kKeepOffAfter = 2;

  // The idle worker to give `slot` of `job`: one it has not failed on and that is not kept off
  // the job; when every idle worker is, any of them (a small farm must still make progress).
  Worker* PickWorker(const Job& job, const Slot& slot, const std::vector<Worker*>& idle) {
    auto eligible = [&](const std::string& name) {
      if (std::find(slot.failed_on.begin(), slot.failed_on.end(), name) != slot.failed_on.end())
        return false;
      auto it = job.worker_failures.find(name);
      return it == job.worker_failures.end() || it->second < kKeepOffAfter;
    };
    for (Worker* w : idle) {
      if (eligible(w->name)) return w;
    }
    // Only ineligible workers are idle. Wait for an eligible one if the farm has one.
    for (const auto& [name, w] : workers) {
      if (Capable(job, w) && eligible(name)) return nullptr;
    }
    return idle.empty() ? nullptr : idle.front();
  }

  // Puts a worker's task back in the queue (worker gone or reconnected).
  void ReleaseTask(Worker& w, const std::string& why) {
    if (!w.task) return;
    if (w.task->kind == wire::TaskKind::CODENOISE) {
      auto j = jobs.find(w.task->job);
      w.task.reset();
      if (j != jobs.end()) AbortGang(j->second, why + " (" + w.name + ")", w.name);
      return;
    }
    auto it = jobs.find(w.task->job);
    if (it != jobs.end() && !Finished(it->second.state)) {
      Job& j = it->second;
      Slot& s = (w.task->kind == wire::TaskKind::RENDER ? j.seg : j.chunk)[w.task->index];
      if (s.state == rec::TaskState::RUNNING && s.worker == w.name) {
        s.state = rec::TaskState::PENDING;
        s.worker.clear();
        Store::Batch batch;
        PutSlot(batch, SlotFamily(w.task->kind), j.id, w.task->index, s);
        AddEvent(batch, j.id,
                 std::string(w.task->kind == wire::TaskKind::RENDER ? "segment " : "chunk ") +
                     std::to_string(w.task->index) + " requeued: " + why + " (" + w.name + ")");
        Commit(batch);
      }
    }
    w.task.reset();
  }

  std::string OnSubmit(wire::Submit::Reader s) {
    const std::string name =
        s.getManifestName().size() ? s.getManifestName().cStr() : "manifest.yaml";
    const std::string text = s.getManifestText().cStr();
    auto m = ParseManifest(text, name, ManifestParseOptions{"", false});
    if (!m.ok()) return ErrorMessage(2, m.message());
    Manifest& manifest = *m;
    auto audio = s.getAudioData();
    if (manifest.audio_path && audio.size() == 0) {
      return ErrorMessage(2,
                          name + ": audio.path: the audio file's bytes did not come with the job");
    }
    // Where the output goes: inside the output root, never outside.
    std::string rel =
        s.getOutputOverride().size() ? s.getOutputOverride().cStr() : manifest.output_path;
    auto out = ResolveOutput(rel, manifest.output_codec == "png");
    if (!out.ok()) return ErrorMessage(2, name + ": output.path: " + out.message());
    std::error_code exists_ec;
    if (!manifest.output_overwrite && fs::exists(*out, exists_ec))
      return ErrorMessage(2, name + ": output.path: '" + *out +
                                 "' exists; set output.overwrite: true to replace it");

    Job j;
    j.name = manifest.name;
    j.priority = manifest.priority;
    j.manifest_text = text;
    j.manifest_name = name;
    j.output_path = *out;
    j.has_audio = manifest.audio_path.has_value();
    j.audio_name = s.getAudioName().cStr();
    j.created_ms = j.updated_ms = NowMs();
    j.chunk_frames = static_cast<uint32_t>(options.chunk_frames);
    if (j.has_audio) {
      // Probe what arrived before accepting it: a job must not fail at the very end over audio.
      fs::path probe = fs::path(options.state_dir) / "tmp" /
                       ("probe-" + std::to_string(getpid()) + FileExtension(j.audio_name));
      std::error_code ec;
      fs::create_directories(probe.parent_path(), ec);
      {
        std::ofstream f(probe, std::ios::binary);
        f.write(reinterpret_cast<const char*>(audio.begin()),
                static_cast<std::streamsize>(audio.size()));
      }
      Status ps = ProbeAudioFile(probe.string());
      fs::remove(probe, ec);
      if (!ps.ok())
        return ErrorMessage(
            2,
            name + ": audio.path: cannot read the audio that came with the job: " + ps.message());
    }
    PlanJob(j, manifest);
    Store::Batch batch;
    j.id = store->NextId("job", batch);
    batch.Put(Family::kJobs, JobKey(j.id), EncodeJob(j));
    // Synced below: the slots' recorded_attempt (0) and recorded_in_write (0) hold as they are.
    for (size_t i = 0; i < j.seg.size(); ++i)
      batch.Put(Family::kSegments, TaskKey(j.id, static_cast<uint32_t>(i)), EncodeSlot(j.seg[i]));
    for (size_t i = 0; i < j.chunk.size(); ++i)
      batch.Put(Family::kChunks, TaskKey(j.id, static_cast<uint32_t>(i)), EncodeSlot(j.chunk[i]));
    if (j.has_audio)
      batch.Put(Family::kInputs, NamedKey(j.id, "audio"),
                std::string(reinterpret_cast<const char*>(audio.begin()), audio.size()));
    AddEvent(batch, j.id,
             "submitted: " + std::to_string(manifest.frames) + " frames in " +
                 std::to_string(j.segments.size()) + " segments, output " + j.output_path);
    FlushWrites();  // a refused job is refused before anything else of this turn
    Status ws = store->Write(batch);
    if (!ws.ok()) return ErrorMessage(5, "cannot store the job: " + ws.message());
    spdlog::info("job {} ({}) accepted: {} frames, {} segments, {} chunks -> {}", j.id, j.name,
                 manifest.frames, j.segments.size(), j.chunks.size(), j.output_path);
    capnp::MallocMessageBuilder b;
    auto r = b.initRoot<wire::Envelope>().initSubmitReply();
    r.setJobId(j.id);
    r.setFrames(manifest.frames);
    r.setSegments(static_cast<uint32_t>(j.segments.size()));
    r.setOutput(j.output_path);
    uint64_t id = j.id;
    j.started_ms = NowMs();
    jobs.emplace(id, std::move(j));
    Schedule();
    return Serialize(b);
  }

  // `folder`: the output is a folder (png frames), so an existing file there is the conflict.
  Result<std::string> ResolveOutput(const std::string& rel, bool folder) {
    using R = Result<std::string>;
    if (rel.empty()) return R::Error("path is empty");
    fs::path p(rel);
    if (p.is_absolute())
      return R::Error("'" + rel +
                      "' is absolute; output paths are relative to the coordinator's output root");
    for (const auto& part : p) {
      if (part == "..")
        return R::Error("'" + rel + "' leaves the output root ('..' is not allowed)");
    }
    fs::path full = (output_root / p).lexically_normal();
    std::error_code ec;
    // Resolve symlinks of the parts that exist: a link inside the root must not point outside.
    fs::path resolved = fs::weakly_canonical(full, ec);
    if (ec) return R::Error("cannot resolve '" + rel + "': " + ec.message());
    auto [root_end, _] =
        std::mismatch(output_root.begin(), output_root.end(), resolved.begin(), resolved.end());
    if (root_end != output_root.end())
      return R::Error("'" + rel + "' resolves outside the output root (through a symlink)");
    if (!folder && fs::is_directory(resolved, ec)) return R::Error("'" + rel + "' is a folder");
    if (folder && fs::exists(resolved, ec) && !fs::is_directory(resolved, ec))
      return R::Error("'" + rel + "' is a file; png output is a folder of frames");
    return resolved.string();
  }

  // ---- status ------------------------------------------------------------------------------

  void FillStatus(const Job& j, wire::JobStatus::Builder s, bool with_segments = false) {
    s.setJobId(j.id);
    s.setName(j.name);
    s.setState(JobStateName(j.state));
    s.setPriority(j.priority);
    s.setFramesTotal(j.manifest.frames);
    int64_t covered = 0, reach = 0;
    uint32_t running = 0;
    for (size_t i = 0; i < j.segments.size(); ++i) {
      if (j.seg[i].state == rec::TaskState::RUNNING) ++running;
      if (j.seg[i].state != rec::TaskState::DONE) continue;
      const auto& sp = j.segments[i];
      covered += std::max<int64_t>(0, sp.end - std::max(sp.start, reach));
      reach = std::max(reach, sp.end);
    }
    s.setFramesDone(covered);
    s.setSegmentsTotal(static_cast<uint32_t>(j.segments.size()));
    s.setSegmentsDone(j.segments_done);
    s.setSegmentsRunning(running);
    s.setChunksTotal(static_cast<uint32_t>(j.chunks.size()));
    s.setChunksDone(j.chunks_done);
    double progress = j.state == rec::JobState::DONE
                          ? 1.0
                          : 0.85 * j.segments_done / std::max<size_t>(1, j.segments.size()) +
                                0.15 * j.chunks_done / std::max<size_t>(1, j.chunks.size());
    s.setProgress(progress);
    double eta = -1;
    if (!Finished(j.state) && progress > 0.02 && j.started_ms > 0) {
      double elapsed = static_cast<double>(NowMs() - j.started_ms) / 1000.0;
      eta = elapsed / progress * (1.0 - progress);
    } else if (j.state == rec::JobState::DONE) {
      eta = 0;
    }
    s.setEtaSeconds(eta);
    if (j.state == rec::JobState::DONE) s.setOutput(j.output_path);
    s.setError(j.error);
    s.setCreatedMs(j.created_ms);
    s.setUpdatedMs(j.updated_ms);
    if (with_segments) {
      std::string states(j.seg.size(), '.');
      for (size_t i = 0; i < j.seg.size(); ++i) {
        switch (j.seg[i].state) {
          case rec::TaskState::DONE:
            states[i] = '#';
            break;
          case rec::TaskState::RUNNING:
            states[i] = '>';
            break;
          case rec::TaskState::FAILED:
            states[i] = 'x';
            break;
          default:
            break;
        }
      }
      s.setSegmentStates(states);
    }
  }

  std::string OnStatus(uint64_t id) {
    auto it = jobs.find(id);
    if (it == jobs.end()) return ErrorMessage(3, "no job " + std::to_string(id));
    capnp::MallocMessageBuilder b;
    FillStatus(it->second, b.initRoot<wire::Envelope>().initJobStatus(), true);
    return Serialize(b);
  }

  std::string OnListJobs() {
    capnp::MallocMessageBuilder b;
    auto list =
        b.initRoot<wire::Envelope>().initJobList().initJobs(static_cast<unsigned>(jobs.size()));
    unsigned i = 0;
    for (const auto& [id, j] : jobs) FillStatus(j, list[i++]);
    return Serialize(b);
  }

  // ---- admin ----------------------------------------------------------------------------------

  // Tells every worker holding one of the job's tasks to stop it.
  void StopJobTasks(Job& j, const std::string& why) {
    for (auto& [name, w] : workers) {
      if (!w.task || w.task->job != j.id) continue;
      capnp::MallocMessageBuilder b;
      auto c = b.initRoot<wire::Envelope>().initCancel();
      c.setJobId(j.id);
      c.setReason(why);
      Send(w.identity, Serialize(b));
      w.task.reset();
    }
    j.gang.reset();
  }

  std::string OnJobAction(wire::JobAction::Reader a) {
    auto it = jobs.find(a.getJobId());
    if (it == jobs.end()) return ErrorMessage(3, "no job " + std::to_string(a.getJobId()));
    Job& j = it->second;
    Store::Batch batch;
    switch (a.getAction()) {
      case wire::JobActionKind::CANCEL: {
        if (Finished(j.state))
          return ErrorMessage(
              2, "job " + std::to_string(j.id) + " is already " + JobStateName(j.state));
        StopJobTasks(j, "job cancelled");
        for (auto* slots : {&j.seg, &j.chunk}) {
          for (size_t i = 0; i < slots->size(); ++i) {
            Slot& sl = (*slots)[i];
            if (sl.state != rec::TaskState::RUNNING) continue;
            sl.state = rec::TaskState::PENDING;
            sl.worker.clear();
            PutSlot(batch, slots == &j.seg ? Family::kSegments : Family::kChunks, j.id,
                    static_cast<uint32_t>(i), sl);
          }
        }
        SetJobState(j, rec::JobState::CANCELLED, "", batch);
        spdlog::info("job {} cancelled", j.id);
        break;
      }
      case wire::JobActionKind::RETRY: {
        if (j.state != rec::JobState::FAILED && j.state != rec::JobState::CANCELLED) {
          return ErrorMessage(2, "job " + std::to_string(j.id) + " is " + JobStateName(j.state) +
                                     "; only FAILED or CANCELLED jobs can be retried");
        }
        for (auto* slots : {&j.seg, &j.chunk}) {
          for (size_t i = 0; i < slots->size(); ++i) {
            Slot& sl = (*slots)[i];
            if (sl.state == rec::TaskState::DONE) continue;
            sl.state = rec::TaskState::PENDING;
            sl.failures = 0;
            sl.failed_on.clear();
            sl.error.clear();
            sl.worker.clear();
            PutSlot(batch, slots == &j.seg ? Family::kSegments : Family::kChunks, j.id,
                    static_cast<uint32_t>(i), sl);
          }
        }
        j.error.clear();
        j.worker_failures.clear();
        j.finished_ms = 0;
        j.started_ms = NowMs();
        SetJobState(j, j.segments_done > 0 ? rec::JobState::RUNNING : rec::JobState::QUEUED, "",
                    batch);
        spdlog::info("job {} retried", j.id);
        break;
      }
      case wire::JobActionKind::PRIORITY: {
        if (a.getPriority() < 0 || a.getPriority() > 100)
          return ErrorMessage(2, "priority must be between 0 and 100");
        j.priority = a.getPriority();
        j.updated_ms = NowMs();
        batch.Put(Family::kJobs, JobKey(j.id), EncodeJob(j));
        AddEvent(batch, j.id, "priority set to " + std::to_string(j.priority));
        break;
      }
    }
    Commit(batch);
    Schedule();
    return OnStatus(j.id);
  }

  std::string OnDrainWorker(const std::string& name) {
    auto it = workers.find(name);
    if (it == workers.end())
      return ErrorMessage(3, "no worker named '" + name + "' (see segue workers)");
    DrainWorker(it->second);
    return OnListWorkers(name);
  }

  void DrainWorker(Worker& w) {
    w.draining = true;
    capnp::MallocMessageBuilder b;
    b.initRoot<wire::Envelope>().initDrain();
    Send(w.identity, Serialize(b));
    spdlog::info("draining worker {}", w.name);
  }

  // ---- pools ---------------------------------------------------------------------------------

  PoolView ViewOfPools() {
    PoolView v;
    for (const auto& [name, w] : workers) {
      if (!w.pool.empty()) v.connected[w.pool].push_back({name, !w.task.has_value(), w.draining});
    }
    // Demand: what could run now or runs. A chained job runs one segment at a time.
    for (Job* j : RunnableJobs()) {
      const int64_t left = static_cast<int64_t>(j->segments.size() - j->segments_done);
      v.demand += j->manifest.strategy == "chained" ? std::min<int64_t>(left, 1) : left;
      if (left == 0) v.demand += static_cast<int64_t>(j->chunks.size() - j->chunks_done);
    }
    return v;
  }

  void TickPools() {
    if (!pools) return;
    for (const std::string& name : pools->Tick(ViewOfPools(), NowMs())) {
      auto it = workers.find(name);
      if (it != workers.end()) DrainWorker(it->second);
    }
  }

  std::string OnPoolRequest(wire::PoolRequest::Reader r) {
    if (!pools) return ErrorMessage(3, "this coordinator has no pools");
    Status s = Status::Ok();
    switch (r.which()) {
      case wire::PoolRequest::LIST:
        break;
      case wire::PoolRequest::SCALE:
        s = pools->Scale(r.getScale().getName().cStr(), static_cast<int>(r.getScale().getSize()));
        break;
      case wire::PoolRequest::AUTOSCALE: {
        auto a = r.getAutoscale();
        s = pools->Autoscale(a.getName().cStr(), a.getEnabled(), static_cast<int>(a.getMin()),
                             static_cast<int>(a.getMax()));
        break;
      }
    }
    if (!s.ok()) return ErrorMessage(2, s.message());
    if (r.which() != wire::PoolRequest::LIST) TickPools();  // act now, not in a second
    return PoolListMessage();
  }

  std::string PoolListMessage() {
    const auto list = pools ? pools->List(ViewOfPools()) : std::vector<PoolStatus>{};
    capnp::MallocMessageBuilder b;
    auto out =
        b.initRoot<wire::Envelope>().initPoolList().initPools(static_cast<unsigned>(list.size()));
    for (size_t i = 0; i < list.size(); ++i) {
      const PoolStatus& p = list[i];
      auto o = out[static_cast<unsigned>(i)];
      o.setName(p.config.name);
      o.setProvider(p.config.provider);
      o.setSize(static_cast<uint32_t>(p.config.size));
      o.setMembers(static_cast<uint32_t>(p.members));
      o.setIdle(static_cast<uint32_t>(p.idle));
      o.setBusy(static_cast<uint32_t>(p.busy));
      o.setMin(static_cast<uint32_t>(p.config.min));
      o.setMax(static_cast<uint32_t>(p.config.max));
      o.setAutoscale(p.config.autoscale);
      o.setCooldownS(static_cast<uint32_t>(p.config.cooldown_s));
      o.setLastChange(p.last_change);
    }
    return Serialize(b);
  }

  std::string OnGetLogs(wire::GetLogs::Reader r) {
    if (!jobs.count(r.getJobId())) return ErrorMessage(3, "no job " + std::to_string(r.getJobId()));
    std::vector<std::string> lines;
    const std::string needle = "segment " + std::to_string(r.getSegment()) + " ";
    Status s = Scan(Family::kEvents, JobKey(r.getJobId()), JobKey(r.getJobId() + 1),
                    [&](const std::string&, const std::string& v) {
                      if (r.getSegment() < 0 || v.find(needle) != std::string::npos)
                        lines.push_back(v);
                      return lines.size() < 100000;
                    });
    if (!s.ok()) return ErrorMessage(5, s.message());
    capnp::MallocMessageBuilder b;
    auto out =
        b.initRoot<wire::Envelope>().initLogs().initLines(static_cast<unsigned>(lines.size()));
    for (size_t i = 0; i < lines.size(); ++i) out.set(static_cast<unsigned>(i), lines[i]);
    return Serialize(b);
  }

  std::string OnListWorkers(const std::string& only = "") {
    capnp::MallocMessageBuilder b;
    auto list = b.initRoot<wire::Envelope>().initWorkerList().initWorkers(
        static_cast<unsigned>(only.empty() ? workers.size() : workers.count(only)));
    unsigned i = 0;
    for (const auto& [name, w] : workers) {
      if (!only.empty() && name != only) continue;
      auto o = list[i++];
      o.setName(w.name);
      o.setHost(w.host);
      o.setDevice(w.device);
      o.setState(w.draining ? "draining" : w.task ? "busy" : "idle");
      if (w.task) {
        const char* what = w.task->kind == wire::TaskKind::ENCODE      ? " chunk "
                           : w.task->kind == wire::TaskKind::CODENOISE ? " segments from "
                                                                       : " segment ";
        o.setTask("job " + std::to_string(w.task->job) + what + std::to_string(w.task->index));
      }
      o.setTasksDone(w.tasks_done);
      o.setFailures(w.failures);
      o.setLastSeenMs(w.last_seen_ms);
      o.setPool(w.pool);
    }
    return Serialize(b);
  }

  // Answers ZAP requests: [version, id, domain, address, identity, mechanism, key...].
  void OnZapRequest() {
    for (int n = 0; n < 64; ++n) {
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(*zap, std::back_inserter(frames), zmq::recv_flags::dontwait)) return;
      if (frames.size() < 6) continue;
      bool ok = false;
      std::string who = frames[3].to_string();
      if (frames[5].to_string() == "CURVE" && frames.size() >= 7 && frames[6].size() == 32) {
        char z85[41];
        zmq_z85_encode(z85, static_cast<const uint8_t*>(frames[6].data()), 32);
        ok = allowed_keys.count(z85) > 0;
        who += " (key " + std::string(z85) + ")";
      }
      if (!ok) {
        ++counters.bad_messages;
        spdlog::warn("refused a connection from {}: key not in --curve-clients", who);
      }
      std::vector<zmq::const_buffer> reply = {
          zmq::str_buffer("1.0"),
          zmq::buffer(frames[1].data(), frames[1].size()),
          zmq::buffer(std::string_view(ok ? "200" : "400")),
          zmq::buffer(std::string_view(ok ? "OK" : "key not allowed")),
          zmq::str_buffer(""),
          zmq::str_buffer("")};
      zmq::send_multipart(*zap, reply);
    }
  }

  // ---- HTTP: metrics, status, dashboard ------------------------------------------------------

  HttpResponse OnHttp(const std::string& path) {
    if (path == "/metrics") return {200, "text/plain; version=0.0.4; charset=utf-8", Metrics()};
    if (path == "/api/v1/status") return {200, "application/json", StatusJson().dump(2) + "\n"};
    if (path == "/" || path == "/index.html")
      return {200, "text/html; charset=utf-8", DashboardHtml()};
    return {404, "text/plain; charset=utf-8", "not found: " + path + "\n"};
  }

  // Jobs, workers and pools as `segue status --json`, `segue workers --json` and
  // `segue pool ls --json` show them.
  nlohmann::json StatusJson() {
    nlohmann::json out = {{"jobs", nlohmann::json::array()},
                          {"workers", nlohmann::json::array()},
                          {"pools", nlohmann::json::array()}};
    for (const auto& [id, j] : jobs) {
      capnp::MallocMessageBuilder b;
      auto s = b.initRoot<wire::JobStatus>();
      FillStatus(j, s, true);
      out["jobs"].push_back(FromWire(s.asReader()).ToJson());
    }
    auto add = [&](const std::string& bytes, const char* key) {
      auto in = Incoming::Parse(bytes.data(), bytes.size());
      if (!in.ok()) return;
      auto env = (*in)->envelope();
      if (env.isWorkerList()) {
        for (auto w : env.getWorkerList().getWorkers()) out[key].push_back(FromWire(w).ToJson());
      } else if (env.isPoolList()) {
        for (auto p : env.getPoolList().getPools()) out[key].push_back(FromWire(p).ToJson());
      }
    };
    add(OnListWorkers(), "workers");
    add(PoolListMessage(), "pools");
    return out;
  }

  std::string Metrics() {
    std::string out;
    auto gauge = [&](const std::string& name, const std::string& help) {
      out += "# HELP " + name + " " + help + "\n# TYPE " + name + " gauge\n";
    };
    auto counter = [&](const std::string& name, const std::string& help, uint64_t v) {
      out += "# HELP " + name + " " + help + "\n# TYPE " + name + " counter\n" + name + " " +
             std::to_string(v) + "\n";
    };
    std::map<std::string, int> job_states = {{"QUEUED", 0}, {"RUNNING", 0}, {"STITCHING", 0},
                                             {"DONE", 0},   {"FAILED", 0},  {"CANCELLED", 0}};
    std::map<std::string, int64_t> seg_states = {
        {"done", 0}, {"running", 0}, {"waiting", 0}, {"failed", 0}};
    int64_t queue = 0;
    for (const auto& [id, j] : jobs) {
      ++job_states[JobStateName(j.state)];
      if (Finished(j.state)) continue;  // segments of live jobs
      for (const Slot& s : j.seg) {
        const char* k = s.state == rec::TaskState::DONE      ? "done"
                        : s.state == rec::TaskState::RUNNING ? "running"
                        : s.state == rec::TaskState::FAILED  ? "failed"
                                                             : "waiting";
        ++seg_states[k];
        if (s.state == rec::TaskState::PENDING) ++queue;
      }
      for (const Slot& c : j.chunk) queue += c.state == rec::TaskState::PENDING ? 1 : 0;
    }
    gauge("segue_jobs", "Jobs by state.");
    for (const auto& [k, v] : job_states)
      out += "segue_jobs{state=\"" + k + "\"} " + std::to_string(v) + "\n";
    gauge("segue_segments", "Segments of unfinished jobs by state.");
    for (const auto& [k, v] : seg_states)
      out += "segue_segments{state=\"" + k + "\"} " + std::to_string(v) + "\n";
    gauge("segue_queue_depth", "Tasks (segments and chunks) of unfinished jobs not yet started.");
    out += "segue_queue_depth " + std::to_string(queue) + "\n";
    std::map<std::string, int> worker_states = {{"idle", 0}, {"busy", 0}, {"draining", 0}};
    for (const auto& [name, w] : workers)
      ++worker_states[w.draining ? "draining" : w.task ? "busy" : "idle"];
    gauge("segue_workers", "Connected workers by state.");
    for (const auto& [k, v] : worker_states)
      out += "segue_workers{state=\"" + k + "\"} " + std::to_string(v) + "\n";
    if (pools) {
      gauge("segue_pool_size", "Workers each pool wants.");
      const auto list = pools->List(ViewOfPools());
      for (const auto& p : list)
        out += "segue_pool_size{pool=\"" + p.config.name + "\"} " + std::to_string(p.config.size) +
               "\n";
      gauge("segue_pool_members", "Workers each pool has launched or counts as its own.");
      for (const auto& p : list)
        out += "segue_pool_members{pool=\"" + p.config.name + "\"} " + std::to_string(p.members) +
               "\n";
    }
    dispatch_latency.Write(out, "segue_dispatch_latency_seconds",
                           "From a worker asking for work to its task being sent.");
    step_seconds.Write(out, "segue_step_seconds",
                       "Sampler step time of finished segments (segment time / steps).");
    counter("segue_checkpoint_bytes_total", "Bytes of step checkpoints received.",
            counters.checkpoint_bytes);
    counter("segue_fenced_results_total", "Results from stale attempts, dropped.",
            counters.fenced_results);
    counter("segue_bad_messages_total", "Malformed or unexpected messages, dropped.",
            counters.bad_messages);
    counter("segue_store_syncs_total",
            "Syncs of the store's write-ahead log (one serves every write since the last).",
            syncer->syncs());
    out +=
        "# HELP segue_store_sync_seconds_total Time the syncs took: over segue_store_syncs_total, "
        "the disk's flush time.\n# TYPE segue_store_sync_seconds_total counter\n"
        "segue_store_sync_seconds_total " +
        fmt::format("{}", syncer->sync_seconds()) + "\n";
    gauge("segue_held_messages", "Replies and acknowledgements waiting for their writes' sync.");
    out += "segue_held_messages " + std::to_string(held.size()) + "\n";
    return out;
  }

  // ---- scheduling --------------------------------------------------------------------------

  // Jobs in dispatch order: higher priority first, then first come.
  std::vector<Job*> RunnableJobs() {
    std::vector<Job*> out;
    for (auto& [id, j] : jobs) {
      if (!Finished(j.state) && j.state != rec::JobState::STITCHING) out.push_back(&j);
    }
    std::stable_sort(out.begin(), out.end(), [](const Job* a, const Job* b) {
      return a->priority != b->priority ? a->priority > b->priority : a->id < b->id;
    });
    return out;
  }

  bool ChunkReady(const Job& j, size_t c) {
    if (j.chunk[c].state != rec::TaskState::PENDING) return false;
    const int64_t start = j.chunks[c].start, end = j.chunks[c].end;
    // The covering segments are a run (see SegmentsCovering), walked without allocating, from
    // the first one not known to be DONE.
    auto it = std::partition_point(j.segments.begin(), j.segments.end(),
                                   [&](const SegmentSpan& s) { return s.end <= start; });
    it = std::max(it, j.segments.begin() + j.segments_done_below);
    for (; it != j.segments.end() && it->start < end; ++it) {
      if (j.seg[static_cast<size_t>(it->index)].state != rec::TaskState::DONE) return false;
    }
    return true;
  }

  // A worker can take the job's tasks: it has the model and meets the job's requirements.
  static bool Capable(const Job& j, const Worker& w) {
    const Manifest& m = j.manifest;
    if (!w.models.count(m.model_name)) return false;
    if (!m.require_device.empty() && w.device.substr(0, w.device.find(':')) != m.require_device)
      return false;
    if (m.require_memory > 0 && w.memory < m.require_memory) return false;
    for (const auto& t : m.require_tags) {
      if (!w.tags.count(t)) return false;
    }
    return true;
  }

  std::vector<Worker*> IdleWorkers(const Job& j) {
    std::vector<Worker*> out;
    for (auto& [name, w] : workers) {
      if (w.credits > 0 && !w.task && !w.draining && Capable(j, w)) {
        // Freed this turn by a result that came after its request (segue-worker asks first).
        if (w.waiting_since_us == 0) w.waiting_since_us = turn_started_us;
        out.push_back(&w);
      }
    }
    return out;
  }

  // Handlers ask for a scheduling pass; it runs once per turn of the event loop, after the turn's
  // messages (a pass walks every runnable job's tasks).
  void Schedule() { schedule_due = true; }

  void ScheduleNow() {
    schedule_due = false;
    std::vector<Job*> order = RunnableJobs();
    if (order.empty()) return;
    // Encodes first: they finish jobs and free the store of latents.
    for (Job* j : order) {
      while (j->chunks_done_below < j->chunks.size() &&
             j->chunk[j->chunks_done_below].state == rec::TaskState::DONE)
        ++j->chunks_done_below;
      for (size_t c = j->chunks_done_below; c < j->chunks.size(); ++c) {
        if (j->chunk[c].state != rec::TaskState::PENDING) continue;
        auto idle = IdleWorkers(*j);
        if (idle.empty()) break;
        if (!ChunkReady(*j, c)) continue;
        if (Worker* w = PickWorker(*j, j->chunk[c], idle))
          AssignEncode(*j, static_cast<uint32_t>(c), *w);
      }
    }
    for (Job* j : order) {
      if (j->manifest.strategy == "codenoise") {
        if (!j->gang && j->segments_done < j->segments.size()) {
          auto idle = IdleWorkers(*j);
          if (idle.empty()) continue;
          // Give busy workers a moment to free up: a gang cannot grow once started.
          size_t able = 0;
          for (const auto& [name, w] : workers) able += Capable(*j, w) ? 1 : 0;
          const uint64_t now = NowMs();
          if (j->gang_wait_since == 0) j->gang_wait_since = now;
          if (idle.size() < std::min(able, j->segments.size()) &&
              now - j->gang_wait_since < static_cast<uint64_t>(options.gang_wait_ms)) {
            continue;
          }
          j->gang_wait_since = 0;
          StartGang(*j, idle);
        }
        continue;
      }
      while (j->segments_done_below < j->segments.size() &&
             j->seg[j->segments_done_below].state == rec::TaskState::DONE)
        ++j->segments_done_below;
      for (size_t s = j->segments_done_below; s < j->segments.size(); ++s) {
        if (!SegmentRunnable(*j, s)) continue;
        auto idle = IdleWorkers(*j);
        if (idle.empty()) break;
        if (Worker* w = PickWorker(*j, j->seg[s], idle))
          AssignRender(*j, static_cast<uint32_t>(s), *w);
      }
    }
  }

  // ---- co-denoising ------------------------------------------------------------------------

  // Splits the job's segments over `idle` workers (at most one group per segment) and starts
  // them all at step 0.
  void StartGang(Job& j, const std::vector<Worker*>& idle) {
    const auto groups = SplitIntoGroups(static_cast<uint32_t>(j.segments.size()),
                                        static_cast<uint32_t>(idle.size()));
    // As for MarkRunning: the gang's attempt number is one past every segment's, and may be lost
    // in a crash with the gang's records, so every segment's own number must be durable first.
    Store::Batch record;
    for (size_t s = 0; s < j.seg.size(); ++s) {
      if (j.seg[s].recorded_attempt != j.seg[s].attempt)
        PutSlot(record, Family::kSegments, j.id, static_cast<uint32_t>(s), j.seg[s]);
    }
    Commit(record);
    if (std::any_of(j.seg.begin(), j.seg.end(),
                    [&](const Slot& x) { return x.recorded_in_write > syncer->durable(); }))
      SyncAll();
    Job::Gang gang;
    for (const Slot& s : j.seg) gang.attempt = std::max(gang.attempt, s.attempt);
    ++gang.attempt;
    gang.last_checkpoint_ms = NowMs();
    std::vector<Tensor> resume_latents;
    const uint32_t resume_step = LoadGangCheckpoint(j, &resume_latents);
    Store::Batch batch;
    for (size_t g = 0; g < groups.size(); ++g) {
      gang.groups.push_back({groups[g].first, groups[g].second, idle[g]->name});
      for (uint32_t s = groups[g].first; s < groups[g].second; ++s) {
        Slot& slot = j.seg[s];
        // A gang always runs every segment: ones a failed gang finished are done again (the
        // same bits), so the gang's steps stay in lockstep.
        if (slot.state == rec::TaskState::DONE) --j.segments_done;
        j.segments_done_below = 0;
        slot.state = rec::TaskState::RUNNING;
        slot.attempt = gang.attempt;
        slot.worker = idle[g]->name;
        PutSlot(batch, Family::kSegments, j.id, s, slot);
      }
    }
    if (j.state == rec::JobState::QUEUED) SetJobState(j, rec::JobState::RUNNING, "", batch);
    AddEvent(batch, j.id,
             "co-denoising on " + std::to_string(groups.size()) + " worker(s), attempt " +
                 std::to_string(gang.attempt));
    if (resume_step > 0)
      AddEvent(batch, j.id, "co-denoising resumes at step " + std::to_string(resume_step));
    Commit(batch);
    gang.exchange = std::make_unique<StepExchange>(j.segments, j.blend,
                                                   static_cast<int>(groups.size()), resume_step);
    for (size_t g = 0; g < groups.size(); ++g) {
      Worker& w = *idle[g];
      capnp::MallocMessageBuilder b;
      auto t = b.initRoot<wire::Envelope>().initAssignment().initCodenoise();
      t.setJobId(j.id);
      t.setAttempt(gang.attempt);
      t.setTotalFrames(j.manifest.frames);
      t.setLength(static_cast<uint32_t>(j.manifest.segment_length));
      t.setOverlap(static_cast<uint32_t>(j.manifest.segment_overlap));
      t.setJobSeed(j.manifest.seed);
      t.setBlend(j.manifest.blend);
      auto list = t.initSegments(groups[g].second - groups[g].first);
      for (uint32_t s = groups[g].first; s < groups[g].second; ++s) {
        auto task = list[s - groups[g].first];
        FillRenderTask(j, s, gang.attempt, task);
        if (resume_step > 0) {
          task.setResumeStep(resume_step);
          SetTensor(task.initResumeLatents(), resume_latents[s]);
        }
      }
      w.task = TaskRef{j.id, wire::TaskKind::CODENOISE, groups[g].first};
      --w.credits;
      ObserveDispatch(w);
      Send(w.identity, Serialize(b));
    }
    spdlog::info("job {}: co-denoising {} segments on {} worker(s), attempt {}", j.id,
                 j.segments.size(), groups.size(), gang.attempt);
    j.gang = std::move(gang);
  }

  void OnCodenoiseExchange(const std::string& identity, wire::CodenoiseExchange::Reader x) {
    Worker* w = WorkerOf(identity);
    auto it = jobs.find(x.getJobId());
    Job* j = it == jobs.end() ? nullptr : &it->second;
    int group =
        (w && j && j->gang && j->gang->attempt == x.getAttempt()) ? j->gang->GroupOf(w->name) : -1;
    if (group < 0 || x.getStep() < j->gang->exchange->step()) {
      ++counters.fenced_results;
      spdlog::warn(
          "fenced off a stale co-denoising exchange for job {} attempt {} [{} fenced so far]",
          x.getJobId(), x.getAttempt(), counters.fenced_results);
      return;
    }
    if (x.getStep() > j->gang->exchange->step())
      return GangFailed(*j, *w, "exchange arrived out of step");
    std::vector<FrameValues> values;
    for (auto sl : x.getSlices()) {
      auto t = GetTensor(sl.getLatents());
      if (!t.ok()) return GangFailed(*j, *w, "bad exchange: " + t.message());
      values.push_back({sl.getSegment(), sl.getFrame(), std::move(t->data)});
      if (values.size() == 1) exchange_shape_ = t->shape;
    }
    Status s = j->gang->exchange->Add(group, std::move(values));
    if (!s.ok()) return GangFailed(*j, *w, "bad exchange: " + s.message());
    if (!j->gang->exchange->Complete()) return;
    const uint32_t step = j->gang->exchange->step();
    auto merged = j->gang->exchange->Merge();
    if (!merged.ok()) return GangFailed(*j, *w, merged.message());
    // The time trigger, decided here so that every group checkpoints after the same step.
    const uint64_t every_ms = static_cast<uint64_t>(CheckpointSeconds(*j)) * 1000;
    const bool checkpoint = every_ms > 0 && NowMs() - j->gang->last_checkpoint_ms >= every_ms &&
                            step + 1 < static_cast<uint32_t>(j->manifest.steps);
    if (checkpoint) j->gang->last_checkpoint_ms = NowMs();
    for (size_t g = 0; g < merged->size(); ++g) {
      auto member = workers.find(j->gang->groups[g].worker);
      if (member == workers.end()) continue;
      // One first segment big enough for the whole reply: no segment chain to walk and copy.
      const size_t half_words = (Tensor::NumElements(exchange_shape_) * 2 + 7) / 8;
      capnp::MallocMessageBuilder b(
          static_cast<unsigned>((*merged)[g].size() * (half_words + 16) + 64));
      auto m = b.initRoot<wire::Envelope>().initCodenoiseMerged();
      m.setJobId(j->id);
      m.setAttempt(j->gang->attempt);
      m.setStep(step);
      m.setCheckpoint(checkpoint);
      auto slices = m.initSlices(static_cast<unsigned>((*merged)[g].size()));
      for (size_t i = 0; i < (*merged)[g].size(); ++i) {
        auto& v = (*merged)[g][i];
        slices[static_cast<unsigned>(i)].setFrame(v.frame);
        SetTensorHalf(slices[static_cast<unsigned>(i)].initLatents(), exchange_shape_,
                      v.data->data());
      }
      Send(member->second.identity, Serialize(b));
    }
  }

  // A gang member reported a failure: count it against the job, then restart the gang.
  void GangFailed(Job& j, Worker& w, const std::string& message) {
    w.task.reset();
    uint32_t first = 0;
    if (j.gang) {
      int g = j.gang->GroupOf(w.name);
      if (g >= 0) first = j.gang->groups[static_cast<size_t>(g)].first;
    }
    AbortGang(j, "co-denoising failed on " + w.name + ": " + message, "");
    FailTask(j, wire::TaskKind::RENDER, first, w, message);
  }

  // Stops every member of the job's gang except `except` and puts its segments back in the
  // queue; the next gang starts from step 0 with a higher attempt number.
  void AbortGang(Job& j, const std::string& why, const std::string& except) {
    if (!j.gang) return;
    for (const auto& g : j.gang->groups) {
      auto member = workers.find(g.worker);
      if (member == workers.end() || g.worker == except) continue;
      if (member->second.task && member->second.task->job == j.id) member->second.task.reset();
      capnp::MallocMessageBuilder b;
      auto c = b.initRoot<wire::Envelope>().initCancel();
      c.setJobId(j.id);
      c.setAttempt(j.gang->attempt);
      c.setReason(why);
      Send(member->second.identity, Serialize(b));
    }
    Store::Batch batch;
    for (size_t s = 0; s < j.seg.size(); ++s) {
      if (j.seg[s].state != rec::TaskState::RUNNING) continue;
      j.seg[s].state = rec::TaskState::PENDING;
      j.seg[s].worker.clear();
      PutSlot(batch, Family::kSegments, j.id, static_cast<uint32_t>(s), j.seg[s]);
    }
    AddEvent(batch, j.id, "co-denoising stopped: " + why);
    Commit(batch);
    spdlog::warn("job {}: co-denoising stopped: {}", j.id, why);
    j.gang.reset();
  }

  // Puts a task's record in `batch`, which then holds the task's attempt number.
  // REQUIRES: `batch` is committed before the turn's writes are next flushed.
  void PutSlot(Store::Batch& batch, Family f, uint64_t job, uint32_t index, Slot& slot) {
    batch.Put(f, TaskKey(job, index), EncodeSlot(slot));
    slot.recorded_attempt = slot.attempt;
    slot.recorded_in_write = written + 1;
  }

  // An assignment is not written: the record of every task started was a tenth of the loop's
  // time under load (docs/PERFORMANCE.md, fourth pass). Instead, every path that ends an
  // assignment (result, failure, release, cancel, abort) records the task with its attempt
  // number, and Restore skips one attempt number past the stored one, which is safe while at
  // most one assignment of a task is not on disk: this one. So the task's current attempt must
  // be durable before it is made.
  // REQUIRES: `batch` is committed before the turn's writes are next flushed.
  void MarkRunning(Job& j, Slot& slot, wire::TaskKind kind, uint32_t index, Worker& w,
                   Store::Batch& batch) {
    if (slot.recorded_attempt != slot.attempt) {
      // Not a path of this coordinator's; should one end an assignment without a record, the
      // record is made here.
      spdlog::error("job {} {} {}: attempt {} was not recorded; recording it", j.id,
                    kind == wire::TaskKind::ENCODE ? "chunk" : "segment", index, slot.attempt);
      Store::Batch record;
      PutSlot(record, SlotFamily(kind), j.id, index, slot);
      Commit(record);
    }
    if (slot.recorded_in_write > syncer->durable()) SyncAll();
    slot.state = rec::TaskState::RUNNING;
    ++slot.attempt;
    slot.worker = w.name;
    if (j.state == rec::JobState::QUEUED) SetJobState(j, rec::JobState::RUNNING, "", batch);
    w.task = TaskRef{j.id, kind, index};
    --w.credits;
    ObserveDispatch(w);
  }

  void ObserveDispatch(Worker& w) {
    if (w.waiting_since_us == 0) return;
    dispatch_latency.Observe(static_cast<double>(NowUs() - w.waiting_since_us) / 1e6);
    w.waiting_since_us = 0;
  }

  // Checkpoint triggers: the manifest's when it sets them, else the coordinator's.
  int CheckpointSteps(const Job& j) const {
    return j.manifest.checkpoint_steps.value_or(options.checkpoint_steps);
  }
  int CheckpointSeconds(const Job& j) const {
    return j.manifest.checkpoint_seconds.value_or(options.checkpoint_seconds);
  }

  // Everything a worker needs to render segment `index` of `j`, except the guide.
  void FillRenderTask(const Job& j, uint32_t index, uint32_t attempt, wire::RenderTask::Builder t) {
    const SegmentSpan& span = j.segments[index];
    const Manifest& m = j.manifest;
    t.setJobId(j.id);
    t.setSegment(index);
    t.setAttempt(attempt);
    t.setModel(m.model_name);
    t.setSteps(static_cast<uint32_t>(m.steps));
    t.setSampler(m.sampler);
    t.setShift(m.shift);
    t.setEta(m.eta);
    t.setGuidance(m.guidance);
    t.setNegativePrompt(m.negative_prompt);
    t.setWidth(static_cast<uint32_t>(m.width));
    t.setHeight(static_cast<uint32_t>(m.height));
    t.setFpsNum(m.fps.num);
    t.setFpsDen(m.fps.den);
    t.setFrameStart(span.start);
    t.setFrameCount(static_cast<uint32_t>(span.length()));
    t.setTotalFrames(m.frames);
    t.setSeed(span.seed);
    t.setCameraMotion(m.camera_motion);
    t.setCameraSpeed(m.camera_speed);
    t.setCheckpointEverySteps(static_cast<uint32_t>(CheckpointSteps(j)));
    t.setCheckpointEverySeconds(static_cast<uint32_t>(CheckpointSeconds(j)));
    // Only the keyframes that matter to this segment travel: from the one before the keyframe in
    // force at its start (a transition needs its predecessor) to the last one inside it.
    size_t first = 0;
    for (size_t i = 0; i < m.timeline.size() && m.timeline[i].frame <= span.start; ++i) first = i;
    if (first > 0) --first;
    size_t last = first;
    for (size_t i = first; i < m.timeline.size() && m.timeline[i].frame < span.end; ++i) last = i;
    auto tl = t.initTimeline(static_cast<unsigned>(last - first + 1));
    for (size_t i = first; i <= last; ++i) {
      auto k = tl[static_cast<unsigned>(i - first)];
      k.setFrame(m.timeline[i].frame);
      k.setTransitionFrames(m.timeline[i].transition_frames);
      k.setPrompt(m.timeline[i].prompt);
    }
  }

  // Chained: the previous segment's final latents over the frames it shares with `index`.
  Result<Tensor> GuideFor(const Job& j, uint32_t index) {
    const SegmentSpan& prev = j.segments[index - 1];
    const SegmentSpan& cur = j.segments[index];
    auto bytes = Get(Family::kLatents, TaskKey(j.id, index - 1));
    if (!bytes.ok()) return bytes.status();
    auto t = DecodeTensor(*bytes);
    if (!t.ok()) return t;
    const int64_t C = t->shape[0], T = t->shape[1], hw = t->shape[2] * t->shape[3];
    const int64_t from = cur.start - prev.start, count = prev.end - cur.start;
    Tensor g = Tensor::Zeros({C, count, t->shape[2], t->shape[3]});
    for (int64_t c = 0; c < C; ++c) {
      const float* src = t->data.data() + (c * T + from) * hw;
      std::copy(src, src + count * hw, g.data.begin() + c * count * hw);
    }
    return g;
  }

  void AssignRender(Job& j, uint32_t index, Worker& w) {
    std::optional<Tensor> guide;
    if (j.manifest.strategy == "chained" && index > 0) {
      auto g = GuideFor(j, index);
      if (!g.ok()) {
        // The previous segment's latents are gone (store damage): render it again first.
        Rerender(j, index - 1, g.message());
        return;
      }
      guide = std::move(*g);
    }
    Slot& slot = j.seg[index];
    Store::Batch batch;
    MarkRunning(j, slot, wire::TaskKind::RENDER, index, w, batch);
    Commit(batch);
    capnp::MallocMessageBuilder b;
    auto t = b.initRoot<wire::Envelope>().initAssignment().initRender();
    FillRenderTask(j, index, slot.attempt, t);
    if (guide) SetTensor(t.initGuide(), *guide);
    // Resume from the newest checkpoint: at most one checkpoint interval is redone.
    // (Only when there is one: a read flushes this turn's writes.)
    auto cp = slot.has_checkpoint ? Get(Family::kCheckpoints, TaskKey(j.id, index))
                                  : Result<std::string>::Error("not found");
    if (cp.ok() && cp->size() > 4) {
      const uint32_t step = DecodeStep(*cp);
      auto x = DecodeTensor(cp->substr(4));
      if (x.ok() && step > 0 && step < static_cast<uint32_t>(j.manifest.steps)) {
        t.setResumeStep(step);
        SetTensor(t.initResumeLatents(), *x);
        Store::Batch ev;
        AddEvent(ev, j.id,
                 "segment " + std::to_string(index) + " resumes at step " + std::to_string(step) +
                     " on " + w.name);
        Commit(ev);
      }
    }
    SendAssignment(w.identity, Serialize(b));
    spdlog::debug("job {} segment {} attempt {} -> {}", j.id, index, slot.attempt, w.name);
  }

  // A DONE segment whose latents cannot be read goes back to the queue.
  void Rerender(Job& j, uint32_t index, const std::string& why) {
    spdlog::error("job {}: latents of segment {} unreadable ({}); re-rendering it", j.id, index,
                  why);
    Slot& s = j.seg[index];
    s.state = rec::TaskState::PENDING;
    --j.segments_done;
    j.segments_done_below = std::min(j.segments_done_below, index);
    Store::Batch batch;
    PutSlot(batch, Family::kSegments, j.id, index, s);
    AddEvent(batch, j.id, "segment " + std::to_string(index) + " requeued: " + why);
    Commit(batch);
  }

  // A segment may start: always for independent; for chained once its predecessor is done.
  bool SegmentRunnable(const Job& j, size_t s) {
    if (j.seg[s].state != rec::TaskState::PENDING) return false;
    if (j.manifest.strategy == "chained" && s > 0)
      return j.seg[s - 1].state == rec::TaskState::DONE;
    return j.manifest.strategy != "codenoise";  // codenoise segments start together, as a gang
  }

  bool AssignEncode(Job& j, uint32_t index, Worker& w) {
    const ChunkSpan& span = j.chunks[index];
    std::vector<int> cover = SegmentsCovering(j.segments, span.start, span.end);
    std::vector<Tensor> owned(cover.size());
    std::vector<const Tensor*> latents(j.segments.size(), nullptr);
    for (size_t i = 0; i < cover.size(); ++i) {
      auto bytes = Get(Family::kLatents, TaskKey(j.id, static_cast<uint32_t>(cover[i])));
      auto t = bytes.ok() ? DecodeTensor(*bytes) : Result<Tensor>(bytes.status());
      if (!t.ok()) {
        // The latents vanished (store damage): render that segment again.
        Rerender(j, static_cast<uint32_t>(cover[i]), t.message());
        return false;
      }
      owned[i] = std::move(*t);
      latents[static_cast<size_t>(cover[i])] = &owned[i];
    }
    auto blended = BlendRange(j.segments, latents, j.blend, span.start, span.end);
    if (!blended.ok()) {
      Store::Batch batch;
      SetJobState(j, rec::JobState::FAILED,
                  "cannot blend chunk " + std::to_string(index) + ": " + blended.message(), batch);
      Commit(batch);
      return false;
    }
    Slot& slot = j.chunk[index];
    Store::Batch batch;
    MarkRunning(j, slot, wire::TaskKind::ENCODE, index, w, batch);
    Commit(batch);
    const Manifest& m = j.manifest;
    capnp::MallocMessageBuilder b;
    auto t = b.initRoot<wire::Envelope>().initAssignment().initEncode();
    t.setJobId(j.id);
    t.setChunk(index);
    t.setAttempt(slot.attempt);
    t.setModel(m.model_name);
    t.setWidth(static_cast<uint32_t>(m.width));
    t.setHeight(static_cast<uint32_t>(m.height));
    t.setFpsNum(m.fps.num);
    t.setFpsDen(m.fps.den);
    t.setFrameStart(span.start);
    SetTensor(t.initLatents(), *blended);
    t.setCodec(m.output_codec);
    t.setCrf(static_cast<uint32_t>(m.output_crf));
    t.setProfile(m.output_profile);
    t.setPreset(options.encoder_preset);
    SendAssignment(w.identity, Serialize(b));
    return true;
  }

  // ---- assembly ----------------------------------------------------------------------------

  void Finalize(Job& j) {
    Store::Batch batch;
    SetJobState(j, rec::JobState::STITCHING, "", batch);
    Commit(batch);
    fs::path tmp = fs::path(options.state_dir) / "tmp" / ("job-" + std::to_string(j.id));
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    AssembleSpec spec;
    spec.frames = j.manifest.frames;
    spec.fps = j.manifest.fps;
    spec.codec = j.manifest.output_codec;
    spec.audio_offset_seconds = j.manifest.audio_offset_seconds;
    spec.output_path = j.output_path;
    // A job caught in STITCHING by a restart may have put its own output in place already.
    spec.replace = j.manifest.output_overwrite || j.restored_stitching;
    Status s = Status::Ok();
    for (const auto& c : j.chunks) {
      auto bytes = Get(Family::kOutputs, TaskKey(j.id, static_cast<uint32_t>(c.index)));
      if (!bytes.ok()) {
        s = Status::Error("chunk " + std::to_string(c.index) + " is missing from the store");
        break;
      }
      fs::path f =
          tmp / ("chunk-" + std::to_string(c.index) + ChunkExtension(j.manifest.output_codec));
      std::ofstream(f, std::ios::binary)
          .write(bytes->data(), static_cast<std::streamsize>(bytes->size()));
      spec.chunk_files.push_back(f.string());
      spec.chunk_starts.push_back(c.start);
    }
    if (s.ok() && j.has_audio) {
      auto audio = Get(Family::kInputs, NamedKey(j.id, "audio"));
      if (!audio.ok()) {
        s = Status::Error("the job's audio is missing from the store");
      } else {
        fs::path f = tmp / ("audio" + FileExtension(j.audio_name));
        std::ofstream(f, std::ios::binary)
            .write(audio->data(), static_cast<std::streamsize>(audio->size()));
        spec.audio_file = f.string();
      }
    }
    if (s.ok()) s = AssembleOutput(spec);
    fs::remove_all(tmp, ec);
    Store::Batch done;
    if (s.ok()) {
      SetJobState(j, rec::JobState::DONE, "", done);
      spdlog::info("job {} ({}) done: {}", j.id, j.name, j.output_path);
    } else {
      SetJobState(j, rec::JobState::FAILED, "assembling the output failed: " + s.message(), done);
      spdlog::error("job {} failed while assembling: {}", j.id, s.message());
    }
    Commit(done);
  }

  // ---- liveness ----------------------------------------------------------------------------

  void CheckLiveness() {
    const uint64_t now = NowMs();
    for (auto it = workers.begin(); it != workers.end();) {
      Worker& w = it->second;
      if (now - w.last_seen_ms > static_cast<uint64_t>(options.liveness_ms)) {
        spdlog::warn("worker {} silent for {} ms: presumed dead", w.name, now - w.last_seen_ms);
        ReleaseTask(w, "worker presumed dead");
        name_of_identity.erase(w.identity);
        it = workers.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Whatever was written (a coordinator created and never run, say) is durable when it goes.
  ~Impl() {
    if (syncer) (void)syncer->SyncNow(written);
  }
};

Coordinator::Coordinator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Coordinator::~Coordinator() = default;

std::string Coordinator::endpoint() const { return impl_->endpoint; }

Result<std::unique_ptr<Coordinator>> Coordinator::Create(const CoordinatorOptions& options) {
  using R = Result<std::unique_ptr<Coordinator>>;
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  std::error_code ec;
  fs::create_directories(options.output_root, ec);
  if (ec)
    return R::Error("cannot create the output root '" + options.output_root + "': " + ec.message());
  impl->output_root = fs::canonical(options.output_root, ec);
  if (ec)
    return R::Error("cannot resolve the output root '" + options.output_root +
                    "': " + ec.message());
  auto store = Store::Open(options.state_dir);
  if (!store.ok()) return R::Error(store.message());
  impl->store = std::move(*store);
  impl->syncer = std::make_unique<Syncer>(impl->store.get(),
                                          std::chrono::microseconds(options.sync_interval_us));
  if (Status s = impl->Restore(); !s.ok()) return R::Error("cannot restore jobs: " + s.message());
  impl->FlushWrites();
  if (!options.curve_clients.empty() && options.curve_key.empty())
    return R::Error("--curve-clients needs --curve-key");
  if (!options.curve_key.empty()) {
    auto keys = LoadCurveKeys(options.curve_key, true);
    if (!keys.ok()) return R::Error("--curve-key: " + keys.message());
    MakeCurveServer(impl->sock, *keys);
    if (!options.curve_clients.empty()) {
      auto allowed = LoadAllowedKeys(options.curve_clients);
      if (!allowed.ok()) return R::Error("--curve-clients: " + allowed.message());
      impl->allowed_keys.insert(allowed->begin(), allowed->end());
      impl->allowed_keys.insert(keys->public_key);  // its own local pool workers
      // The handler must exist before the first peer connects.
      impl->zap = std::make_unique<zmq::socket_t>(impl->ctx, zmq::socket_type::rep);
      impl->zap->set(zmq::sockopt::linger, 0);
      impl->zap->bind("inproc://zeromq.zap.01");
    }
    spdlog::info("CURVE on: public key {}{}", keys->public_key,
                 options.curve_clients.empty()
                     ? ""
                     : ", " + std::to_string(impl->allowed_keys.size()) + " allowed client keys");
  }
  try {
    impl->sock.set(zmq::sockopt::linger, 0);
    impl->sock.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(WireLimits::kMaxMessageBytes));
    impl->sock.set(zmq::sockopt::sndhwm, 10000);
    // A worker that reconnects (new socket, same name) takes its identity over at once; the
    // default would drop the new connection while the old one lingers.
    impl->sock.set(zmq::sockopt::router_handover, 1);
    // A farm's workers all reconnect at once when the coordinator restarts. ZeroMQ's default
    // listen backlog (100) drops the connections beyond it, and each dropped one waits a second
    // for TCP to retry; the kernel caps this at net.core.somaxconn.
    impl->sock.set(zmq::sockopt::backlog, 1024);
    impl->sock.bind(options.listen);
    impl->endpoint = impl->sock.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return R::Error("cannot listen on '" + options.listen + "': " + e.what());
  }
  // Pools, once the endpoint their workers join is known.
  {
    std::vector<PoolConfig> pool_configs = DefaultPools();
    if (!options.config_file.empty()) {
      auto loaded = LoadPoolsConfig(options.config_file);
      if (!loaded.ok()) return R::Error(loaded.message());
      pool_configs = std::move(*loaded);
    }
    PoolEnvironment env;
    env.endpoint = options.advertise;
    if (env.endpoint.empty()) {
      env.endpoint = impl->endpoint;
      const size_t any = env.endpoint.find("0.0.0.0");
      if (any != std::string::npos) env.endpoint.replace(any, 7, "127.0.0.1");
    }
    env.worker_binary =
        options.worker_binary.empty() ? ExecutableDir() + "/segue-worker" : options.worker_binary;
    env.log_dir = (fs::path(options.state_dir) / "logs").string();
    env.curve_key_file = options.curve_key;
    fs::create_directories(env.log_dir, ec);
    // Provider commands run on the event loop: sbatch and kubectl answer in well under a second;
    // one that hangs is cut off after 10 s (and the pool rests before trying again).
    env.run = [](const std::vector<std::string>& argv) { return RunAndCapture(argv, 10000); };
    impl->pools = std::make_unique<PoolManager>(std::move(pool_configs), std::move(env));
    Impl* m = impl.get();
    Status ps = impl->Scan(Family::kMeta, "pool/", "pool0",
                           [&](const std::string& k, const std::string& v) {
                             m->pools->Restore(k.substr(5), v);
                             return true;
                           });
    if (!ps.ok()) return R::Error(ps.message());
    impl->pools->OnChange([m](const std::string& pool, const std::string& settings) {
      Store::Batch b;
      b.Put(Family::kMeta, "pool/" + pool, settings);
      m->Commit(b);
    });
  }
  if (!options.http.empty()) {
    Impl* m = impl.get();
    impl->http = std::make_unique<HttpEndpoint>(
        impl->ctx, [m](const std::string& path) { return m->OnHttp(path); });
    auto bound = impl->http->Bind(options.http);
    if (!bound.ok()) return R::Error(bound.message());
    const fs::path file = fs::path(options.state_dir) / "coordinator.http";
    std::ofstream(file.string() + ".tmp") << *bound << "\n";
    fs::rename(file.string() + ".tmp", file, ec);
    spdlog::info("HTTP on http://{} (/metrics, /api/v1/status, / dashboard)", *bound);
  }
  std::string endpoint_file = options.endpoint_file.empty()
                                  ? (fs::path(options.state_dir) / "coordinator.endpoint").string()
                                  : options.endpoint_file;
  {
    std::string tmp = endpoint_file + ".tmp";
    std::ofstream(tmp) << impl->endpoint << "\n";
    fs::rename(tmp, endpoint_file, ec);
  }
  spdlog::info("coordinator listening on {} (state {}, output root {})", impl->endpoint,
               options.state_dir, impl->output_root.string());
  return R(std::unique_ptr<Coordinator>(new Coordinator(std::move(impl))));
}

void Coordinator::Run(const std::atomic<bool>& stop) {
  Impl& m = *impl_;
  uint64_t last_check = NowMs();
  m.ScheduleNow();
  m.Flush();
  while (!stop.load()) {
    std::vector<zmq::pollitem_t> items = {{m.sock.handle(), 0, ZMQ_POLLIN, 0},
                                          {nullptr, m.syncer->fd(), ZMQ_POLLIN, 0}};
    if (m.http) items.push_back({m.http->socket().handle(), 0, ZMQ_POLLIN, 0});
    if (m.zap) items.push_back({m.zap->handle(), 0, ZMQ_POLLIN, 0});
    try {
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(100));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    if (items[1].revents & ZMQ_POLLIN) {  // writes became durable: their messages may go
      m.syncer->Clear();
      m.ReleaseHeld();
      m.WaitForHeld();
    }
    if (m.http && (items[2].revents & ZMQ_POLLIN)) m.http->OnReadable();
    if (m.zap && (items.back().revents & ZMQ_POLLIN)) m.OnZapRequest();
    zmq::pollitem_t& item = items[0];
    m.turn_started_us = NowUs();
    if (item.revents & ZMQ_POLLIN) {
      // Drain what is waiting, but come back to the clock now and then.
      for (int n = 0; n < 256; ++n) {
        std::vector<zmq::message_t> frames;
        auto got =
            zmq::recv_multipart(m.sock, std::back_inserter(frames), zmq::recv_flags::dontwait);
        if (!got) break;
        if (frames.size() == 2) {
          m.HandleMessage(frames[0].to_string(), frames[1], false);
        } else if (frames.size() == 3 && frames[1].size() == 0) {
          m.HandleMessage(frames[0].to_string(), frames[2], true);  // a REQ client
        } else {
          ++m.counters.bad_messages;
          spdlog::warn("dropped a message of {} frames [{} bad so far]", frames.size(),
                       m.counters.bad_messages);
        }
      }
    }
    uint64_t now = NowMs();
    if (now - last_check >= 500) {
      last_check = now;
      m.CheckLiveness();
      m.TickPools();
      m.schedule_due = true;
    }
    if (m.schedule_due) m.ScheduleNow();
    m.Flush();
  }
  m.Flush();
  m.SyncAll();
  m.ReleaseHeld();
  spdlog::info("coordinator stopping ({} bad messages, {} fenced results)", m.counters.bad_messages,
               m.counters.fenced_results);
}

}  // namespace segue
