#include "tools/cli/client.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <zmq.hpp>

#include "common/protocol/protocol.h"
#include "common/protocol/transfer.h"
#include "common/security/curve.h"

namespace segue {

struct Client::Rep {
  zmq::context_t ctx{1};
  zmq::socket_t sock{ctx, zmq::socket_type::dealer};
  // The socket's monitor: why a call got no answer (nothing listens, the port is not a
  // coordinator's, the key was refused, or the coordinator is silent).
  std::unique_ptr<zmq::socket_t> monitor;
  bool connected = false, handshaken = false, handshake_failed = false, auth_failed = false;
  std::string endpoint;
  int timeout_ms;
  segue::Status setup = segue::Status::Ok();
  uint32_t last_error_code = 0;

  void ReadMonitor();
  std::string WhyNoAnswer() const;
  // The next message within the timeout, or why none came.
  Result<std::string> Receive();
};

void Client::Rep::ReadMonitor() {
  if (!monitor) return;
  for (int n = 0; n < 1000; ++n) {
    zmq::message_t event, address;
    if (!monitor->recv(event, zmq::recv_flags::dontwait)) return;
    if (event.more()) (void)monitor->recv(address, zmq::recv_flags::dontwait);
    if (event.size() < 2) continue;
    uint16_t id = 0;
    std::memcpy(&id, event.data(), 2);
    if (id == ZMQ_EVENT_CONNECTED) connected = true;
    if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) handshaken = true;
    if (id == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL || id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
      handshake_failed = true;
    if (id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) auth_failed = true;
  }
}

std::string Client::Rep::WhyNoAnswer() const {
  const std::string waited = std::to_string(timeout_ms / 1000) + " s";
  if (auth_failed)
    return "the coordinator at " + endpoint + " refused this client's CURVE key (is its public " +
           "key in the coordinator's keys file?)";
  if (handshaken)
    return "no answer from the coordinator at " + endpoint + " within " + waited +
           " (it is connected but silent: busy, stopped in a debugger, or not a coordinator)";
  if (connected || handshake_failed)
    return "something listens at " + endpoint + " but does not speak segue's protocol (the " +
           "ZeroMQ handshake failed within " + waited + "): is it the coordinator's --listen " +
           "port, and do both sides agree on CURVE (SEGUE_CURVE_SERVER_KEY)?";
  return "no coordinator at " + endpoint + ": nothing accepted a connection within " + waited +
         " (is it running at that address?)";
}

Client::Client(std::string endpoint, int timeout_ms) : rep_(std::make_unique<Rep>()) {
  rep_->timeout_ms = timeout_ms;
  rep_->sock.set(zmq::sockopt::linger, 0);
  rep_->sock.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(WireLimits::kMaxMessageBytes));
  // CURVE when SEGUE_CURVE_SERVER_KEY names the coordinator's public key; a bad key file shows
  // up as the error of the first call.
  rep_->setup = CheckEndpoint(endpoint);
  if (rep_->setup.ok()) rep_->setup = ApplyClientCurveFromEnvironment(rep_->sock);
  if (!rep_->setup.ok()) return;
  rep_->endpoint = endpoint;
  try {
    const std::string monitor_at =
        "inproc://segue-client-monitor-" + std::to_string(reinterpret_cast<uintptr_t>(rep_.get()));
    if (zmq_socket_monitor(rep_->sock.handle(), monitor_at.c_str(), ZMQ_EVENT_ALL) == 0) {
      rep_->monitor = std::make_unique<zmq::socket_t>(rep_->ctx, zmq::socket_type::pair);
      rep_->monitor->set(zmq::sockopt::linger, 0);
      rep_->monitor->connect(monitor_at);
    }
    rep_->sock.connect(endpoint);
  } catch (const zmq::error_t& e) {
    rep_->setup = Status::Error("cannot connect to '" + endpoint + "': " + e.what());
  }
}

Client::~Client() {
  // The monitor's socket goes before the context; ZeroMQ stops the monitor with the socket.
  if (rep_->monitor) rep_->monitor.reset();
}

Result<std::string> Client::Rep::Receive() {
  zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms));
  if (!(item.revents & ZMQ_POLLIN)) {
    ReadMonitor();
    return Result<std::string>::Error(WhyNoAnswer());
  }
  zmq::message_t reply;
  (void)sock.recv(reply, zmq::recv_flags::none);
  return std::string(static_cast<const char*>(reply.data()), reply.size());
}

namespace {
// The refusal a reply carries when it is a transfer's answer; nullopt for any other reply.
std::optional<std::string> RefusalIn(const std::string& reply) {
  auto in = Incoming::Parse(reply.data(), reply.size());
  if (!in.ok()) return std::nullopt;
  try {
    auto env = (*in)->envelope();
    if (!env.isTransferReply()) return std::nullopt;
    return std::string(env.getTransferReply().getRefusal().cStr());
  } catch (const kj::Exception&) {
    return std::nullopt;
  }
}
}  // namespace

Result<std::string> Client::CallRaw(const std::string& bytes) {
  using R = Result<std::string>;
  if (!rep_->setup.ok()) return R::Error(rep_->setup.message());
  try {
    if (bytes.size() > TransferLimits::kPartBytes) {
      // A message larger than a frame: asked for, then sent in parts once granted.
      const std::string size = std::to_string(bytes.size() >> 20) + " MiB";
      OutgoingTransfers transfer;
      rep_->sock.send(zmq::buffer(transfer.Prepare(bytes)), zmq::send_flags::none);
      auto answer = rep_->Receive();
      if (!answer.ok())
        return R::Error(answer.message() + " (waiting for leave to send a message of " + size +
                        "; a busy coordinator's receive budget, --receive-budget-mb, may be " +
                        "in use)");
      auto in = Incoming::Parse(answer->data(), answer->size());
      if (!in.ok() || !(*in)->envelope().isTransferReply()) return answer;  // an error, say
      std::string why;
      const auto sent = transfer.OnReply(
          (*in)->envelope().getTransferReply(),
          [&](std::string part) { rep_->sock.send(zmq::buffer(part), zmq::send_flags::none); },
          &why);
      if (sent == OutgoingTransfers::Outcome::kRefused)
        return R::Error("the coordinator did not take a message of " + size + ": " + why);
    } else {
      rep_->sock.send(zmq::buffer(bytes), zmq::send_flags::none);
    }
    auto reply = rep_->Receive();
    if (reply.ok()) {
      if (auto refusal = RefusalIn(*reply))
        return R::Error("the coordinator did not take the message: " + *refusal);
    }
    return reply;
  } catch (const zmq::error_t& e) {
    return R::Error(std::string("network error: ") + e.what());
  } catch (const kj::Exception& e) {
    return R::Error(std::string("bad reply from the coordinator: ") + e.getDescription().cStr());
  }
}

namespace {
// Calls and decodes; maps an Error envelope to an error result.
template <typename T, typename F>
Result<T> Call(Client& c, const std::string& request, F&& take) {
  c.set_last_error_code(0);
  auto raw = c.CallRaw(request);
  if (!raw.ok()) return Result<T>::Error(raw.message());
  auto in = Incoming::Parse(raw->data(), raw->size());
  if (!in.ok()) return Result<T>::Error("bad reply from the coordinator: " + in.message());
  try {
    auto env = (*in)->envelope();
    if (env.isError()) {
      c.set_last_error_code(env.getError().getCode());
      return Result<T>::Error(env.getError().getMessage().cStr());
    }
    return take(env);
  } catch (const kj::Exception& e) {
    return Result<T>::Error(std::string("bad reply from the coordinator: ") +
                            e.getDescription().cStr());
  }
}

// A SubmitReply (the answer to a submit or a pick) as a SubmitInfo.
auto SubmitInfoOf(const char* request) {
  return [request](wire::Envelope::Reader env) -> Result<SubmitInfo> {
    if (!env.isSubmitReply())
      return Result<SubmitInfo>::Error(std::string("unexpected reply to ") + request);
    auto r = env.getSubmitReply();
    return SubmitInfo{r.getJobId(), r.getFrames(), r.getSegments(), r.getOutput().cStr(),
                      r.getExisting()};
  };
}
}  // namespace

Result<SubmitInfo> Client::Submit(const SubmitRequest& r) {
  capnp::MallocMessageBuilder b;
  auto s = b.initRoot<wire::Envelope>().initSubmit();
  s.setManifestText(r.manifest_text);
  s.setManifestName(r.manifest_name);
  s.setAudioData(
      kj::arrayPtr(reinterpret_cast<const kj::byte*>(r.audio_data.data()), r.audio_data.size()));
  s.setAudioName(r.audio_name);
  s.setOutputOverride(r.output_override);
  s.setSubmissionId(r.submission_id);
  return Call<SubmitInfo>(*this, Serialize(b), SubmitInfoOf("submit"));
}

Result<SubmitInfo> Client::Pick(uint64_t job,
                                const std::vector<std::pair<uint32_t, uint32_t>>& picks,
                                const std::string& output) {
  capnp::MallocMessageBuilder b;
  auto p = b.initRoot<wire::Envelope>().initPickRequest();
  p.setJobId(job);
  auto list = p.initPicks(static_cast<unsigned>(picks.size()));
  for (size_t i = 0; i < picks.size(); ++i) {
    list[static_cast<unsigned>(i)].setSection(picks[i].first);
    list[static_cast<unsigned>(i)].setTake(picks[i].second);
  }
  p.setOutput(output);
  return Call<SubmitInfo>(*this, Serialize(b), SubmitInfoOf("pick"));
}

Result<JobInfo> Client::Status(uint64_t job_id) {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initStatusRequest().setJobId(job_id);
  return Call<JobInfo>(*this, Serialize(b), [](wire::Envelope::Reader env) -> Result<JobInfo> {
    if (!env.isJobStatus()) return Result<JobInfo>::Error("unexpected reply to status");
    return FromWire(env.getJobStatus());
  });
}

Result<std::vector<JobInfo>> Client::Jobs(const JobFilter& f, uint64_t* next_after_id) {
  capnp::MallocMessageBuilder b;
  auto l = b.initRoot<wire::Envelope>().initListJobs();
  auto states = l.initStates(static_cast<unsigned>(f.states.size()));
  for (size_t i = 0; i < f.states.size(); ++i) states.set(static_cast<unsigned>(i), f.states[i]);
  l.setOwner(f.owner);
  l.setName(f.name);
  auto md = l.initMetadata(static_cast<unsigned>(f.metadata.size()));
  for (size_t i = 0; i < f.metadata.size(); ++i) {
    md[static_cast<unsigned>(i)].setKey(f.metadata[i].first);
    md[static_cast<unsigned>(i)].setValue(f.metadata[i].second);
  }
  l.setAfterId(f.after_id);
  l.setLimit(f.limit);
  l.setFamily(f.family);
  using V = std::vector<JobInfo>;
  return Call<V>(*this, Serialize(b), [next_after_id](wire::Envelope::Reader env) -> Result<V> {
    if (!env.isJobList()) return Result<V>::Error("unexpected reply to jobs");
    V out;
    for (auto j : env.getJobList().getJobs()) out.push_back(FromWire(j));
    if (next_after_id) *next_after_id = env.getJobList().getNextAfterId();
    return out;
  });
}

Result<VersionInfo> Client::Version() {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initVersionRequest();
  return Call<VersionInfo>(
      *this, Serialize(b), [](wire::Envelope::Reader env) -> Result<VersionInfo> {
        if (!env.isVersionReply())
          return Result<VersionInfo>::Error("unexpected reply to a version request");
        auto v = env.getVersionReply();
        return VersionInfo{v.getProtocolVersion(), v.getVersion().cStr(), v.getMaxMessageBytes(),
                           v.getIdentity().cStr(), v.getRole().cStr()};
      });
}

uint32_t Client::last_error_code() const { return rep_->last_error_code; }
void Client::set_last_error_code(uint32_t code) { rep_->last_error_code = code; }

Result<std::vector<WorkerInfo>> Client::Workers() {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initListWorkers();
  using V = std::vector<WorkerInfo>;
  return Call<V>(*this, Serialize(b), [](wire::Envelope::Reader env) -> Result<V> {
    if (!env.isWorkerList()) return Result<V>::Error("unexpected reply to workers");
    V out;
    for (auto w : env.getWorkerList().getWorkers()) out.push_back(FromWire(w));
    return out;
  });
}

namespace {
Result<JobInfo> Action(Client& c, uint64_t job, wire::JobActionKind kind, int priority) {
  capnp::MallocMessageBuilder b;
  auto a = b.initRoot<wire::Envelope>().initJobAction();
  a.setJobId(job);
  a.setAction(kind);
  a.setPriority(priority);
  return Call<JobInfo>(c, Serialize(b), [](wire::Envelope::Reader env) -> Result<JobInfo> {
    if (!env.isJobStatus()) return Result<JobInfo>::Error("unexpected reply");
    return FromWire(env.getJobStatus());
  });
}
}  // namespace

Result<JobInfo> Client::Cancel(uint64_t job) {
  return Action(*this, job, wire::JobActionKind::CANCEL, 0);
}
Result<JobInfo> Client::Retry(uint64_t job) {
  return Action(*this, job, wire::JobActionKind::RETRY, 0);
}
Result<JobInfo> Client::SetPriority(uint64_t job, int priority) {
  return Action(*this, job, wire::JobActionKind::PRIORITY, priority);
}

Result<WorkerInfo> Client::Drain(const std::string& worker) {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initDrainWorker().setName(worker);
  return Call<WorkerInfo>(*this, Serialize(b),
                          [](wire::Envelope::Reader env) -> Result<WorkerInfo> {
                            if (!env.isWorkerList() || env.getWorkerList().getWorkers().size() != 1)
                              return Result<WorkerInfo>::Error("unexpected reply");
                            return FromWire(env.getWorkerList().getWorkers()[0]);
                          });
}

namespace {

Result<std::vector<PoolInfo>> PoolCall(Client& c, capnp::MallocMessageBuilder& b) {
  using V = std::vector<PoolInfo>;
  return Call<V>(c, Serialize(b), [](wire::Envelope::Reader env) -> Result<V> {
    if (!env.isPoolList()) return Result<V>::Error("unexpected reply to a pool request");
    V out;
    for (auto p : env.getPoolList().getPools()) out.push_back(FromWire(p));
    return out;
  });
}

}  // namespace

Result<std::vector<PoolInfo>> Client::Pools() {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initPoolRequest().setList();
  return PoolCall(*this, b);
}

Result<std::vector<PoolInfo>> Client::ScalePool(const std::string& pool, uint32_t size) {
  capnp::MallocMessageBuilder b;
  auto s = b.initRoot<wire::Envelope>().initPoolRequest().initScale();
  s.setName(pool);
  s.setSize(size);
  return PoolCall(*this, b);
}

Result<std::vector<PoolInfo>> Client::AutoscalePool(const std::string& pool, bool enabled,
                                                    uint32_t min, uint32_t max) {
  capnp::MallocMessageBuilder b;
  auto a = b.initRoot<wire::Envelope>().initPoolRequest().initAutoscale();
  a.setName(pool);
  a.setEnabled(enabled);
  a.setMin(min);
  a.setMax(max);
  return PoolCall(*this, b);
}

Result<std::vector<std::string>> Client::Logs(uint64_t job, int segment) {
  capnp::MallocMessageBuilder b;
  auto g = b.initRoot<wire::Envelope>().initGetLogs();
  g.setJobId(job);
  g.setSegment(segment);
  using V = std::vector<std::string>;
  return Call<V>(*this, Serialize(b), [](wire::Envelope::Reader env) -> Result<V> {
    if (!env.isLogs()) return Result<V>::Error("unexpected reply to logs");
    V out;
    for (auto l : env.getLogs().getLines()) out.push_back(l.cStr());
    return out;
  });
}

Result<PlanInfo> Client::Plan(const std::string& manifest_text, const std::string& manifest_name,
                              uint64_t against_job) {
  capnp::MallocMessageBuilder b;
  auto r = b.initRoot<wire::Envelope>().initPlanRequest();
  r.setManifestText(manifest_text);
  r.setManifestName(manifest_name);
  r.setAgainstJob(against_job);
  return Call<PlanInfo>(*this, Serialize(b), [](wire::Envelope::Reader env) -> Result<PlanInfo> {
    if (!env.isPlanReply()) return Result<PlanInfo>::Error("unexpected reply to plan");
    auto p = env.getPlanReply();
    PlanInfo out;
    out.strategy = p.getStrategy().cStr();
    out.against_job = p.getAgainstJob();
    for (auto s : p.getSegments()) {
      SegmentPlanInfo i;
      i.index = s.getIndex();
      i.frame_start = s.getFrameStart();
      i.frame_end = s.getFrameEnd();
      i.reuse = s.getReuse();
      i.from_job = s.getFromJob();
      i.from_segment = s.getFromSegment();
      for (auto why : s.getReasons()) i.reasons.push_back(why.cStr());
      i.key = s.getKey().cStr();
      out.segments.push_back(std::move(i));
    }
    return out;
  });
}

Result<std::vector<std::string>> Client::Thumbnails(uint64_t job_id,
                                                    const std::vector<uint32_t>& segments) {
  using R = Result<std::vector<std::string>>;
  capnp::MallocMessageBuilder b;
  auto r = b.initRoot<wire::Envelope>().initThumbnailRequest();
  r.setJobId(job_id);
  auto list = r.initSegments(static_cast<unsigned>(segments.size()));
  for (size_t i = 0; i < segments.size(); ++i) list.set(static_cast<unsigned>(i), segments[i]);
  const size_t asked = segments.size();
  return Call<std::vector<std::string>>(
      *this, Serialize(b), [asked](wire::Envelope::Reader env) -> R {
        if (!env.isThumbnails()) return R::Error("unexpected reply to thumbnails");
        std::vector<std::string> out;
        for (auto jpeg : env.getThumbnails().getJpegs())
          out.emplace_back(reinterpret_cast<const char*>(jpeg.begin()), jpeg.size());
        if (out.size() != asked)
          return R::Error("thumbnails: a reply of " + std::to_string(out.size()) + " for " +
                          std::to_string(asked));
        return out;
      });
}

namespace {
Result<CacheInfo> CacheCall(Client& client, const std::string& request) {
  return Call<CacheInfo>(client, request, [](wire::Envelope::Reader env) -> Result<CacheInfo> {
    if (!env.isCacheReply()) return Result<CacheInfo>::Error("unexpected reply to cache");
    auto r = env.getCacheReply();
    CacheInfo out;
    for (auto j : r.getJobs())
      out.jobs.push_back({j.getJobId(), j.getName().cStr(), j.getState().cStr(), j.getSegments(),
                          j.getBytes(), j.getLastUsedMs(), j.getChunks()});
    out.bytes = r.getBytes();
    out.live_bytes = r.getLiveBytes();
    out.limit_bytes = r.getLimitBytes();
    out.hits = r.getHits();
    out.misses = r.getMisses();
    out.evicted_segments = r.getEvictedSegments();
    out.evicted_bytes = r.getEvictedBytes();
    out.evicted_chunks = r.getEvictedChunks();
    return out;
  });
}
}  // namespace

Result<CacheInfo> Client::Cache() {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initCacheRequest().setList();
  return CacheCall(*this, Serialize(b));
}

Result<CacheInfo> Client::PruneCache(uint64_t to_bytes, uint64_t older_than_ms) {
  capnp::MallocMessageBuilder b;
  auto p = b.initRoot<wire::Envelope>().initCacheRequest().initPrune();
  p.setBySize(to_bytes != UINT64_MAX);
  p.setToBytes(to_bytes);
  p.setOlderThanMs(older_than_ms);
  return CacheCall(*this, Serialize(b));
}

std::string CoordinatorAddress(const std::string& flag) {
  if (!flag.empty()) return flag;
  const char* env = std::getenv("SEGUE_COORDINATOR");
  return env && *env ? env : "tcp://127.0.0.1:7450";
}

}  // namespace segue
