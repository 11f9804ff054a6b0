// The event loop and the sockets; everything else is the core's (core.h).
#include "coordinator/coordinator.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/env/env.h"
#include "common/protocol/protocol.h"
#include "common/protocol/transfer.h"
#include "common/security/curve.h"
#include "common/util/process.h"
#include "coordinator/connections.h"
#include "coordinator/core.h"
#include "coordinator/http.h"
#include "coordinator/pools.h"
#include "coordinator/store/store.h"

namespace segue {
namespace {

// The CURVE key the message's connection was admitted with (ZAP's user id), or empty.
std::string KeyOf(const zmq::message_t& msg) {
  const char* user = zmq_msg_gets(msg.handle(), "User-Id");
  return user ? std::string(user) : std::string();
}

}  // namespace

struct Coordinator::Impl final : Transport {
  CoordinatorOptions options;
  Env* const env = Env::Default();
  zmq::context_t ctx{1};
  zmq::socket_t sock{ctx, zmq::socket_type::router};
  std::string endpoint;
  // ZAP (ZeroMQ's authentication protocol), asked for every connection: refuses those over the
  // connection caps, admits CURVE peers whose key the core knows, and names each connection by
  // its key (ZeroMQ's User-Id, on every message it brings).
  std::unique_ptr<zmq::socket_t> zap;
  // The socket's monitor: connections accepted and closed, counted per host.
  std::unique_ptr<zmq::socket_t> monitor;
  std::unique_ptr<ConnectionTable> connections;
  uint64_t refused_connections = 0;
  std::unique_ptr<HttpEndpoint> http;
  std::unique_ptr<Core> core;

  Status BindSocket();
  Status SetUpCurve();
  void SetUpLimits();
  void OnMonitorEvent();
  void RefuseOverCap(const std::string& host);
  Status SetUpPools();
  Status SetUpHttp();
  void OnZapRequest();

  // Transport: the ROUTER socket. Never blocks: a peer that cannot take more loses the message
  // (logged), the loop goes on.
  static constexpr size_t kZeroCopyBytes = 64 * 1024;
  void Send(const std::string& identity, std::string payload, bool req_envelope) override {
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
};

// REQUIRES: the core is open (it holds the identities).
Status Coordinator::Impl::SetUpCurve() {
  if (options.curve_key.empty()) return Status::Ok();
  auto keys = LoadCurveKeys(options.curve_key, true);
  if (!keys.ok()) return Status::Error("--curve-key: " + keys.message());
  MakeCurveServer(sock, *keys);
  if (!core->checks_keys()) {
    spdlog::warn(
        "CURVE without --keys: every peer that knows this coordinator's public key is "
        "an admin (docs/OPERATIONS.md, Security)");
  }
  spdlog::info("CURVE on: public key {}{}", keys->public_key,
               !options.keys_file.empty() ? ", identities from " + options.keys_file
               : core->checks_keys()      ? ", every key in --curve-clients an admin"
                                          : "");
  return Status::Ok();
}

// The connection caps, within what the open-file limit leaves beside the store's reserve, and the
// ZAP handler and monitor that apply them. REQUIRES: before the socket binds.
void Coordinator::Impl::SetUpLimits() {
  const uint64_t files = RaiseOpenFileLimit();
  // The store's open files, its log and lock, chunk files being assembled, the audio probe,
  // FFmpeg's output, the HTTP port's connections, pool workers' pipes: what peers never get.
  const uint64_t reserve = static_cast<uint64_t>(Store::kMaxOpenFiles) + 128 +
                           static_cast<uint64_t>(std::max(0, options.max_http_connections));
  const uint64_t room = files > reserve ? files - reserve : 0;
  uint64_t max_total = static_cast<uint64_t>(std::max(1, options.max_connections));
  if (room < max_total) {
    spdlog::warn(
        "the open-file limit ({}) leaves room for {} farm connections beside the {} "
        "kept for the store and the HTTP port, fewer than --max-connections {}: raise "
        "it (LimitNOFILE, ulimit -n)",
        files, room, reserve, max_total);
    max_total = std::max<uint64_t>(room, 8);
  }
  connections = std::make_unique<ConnectionTable>(
      max_total, static_cast<size_t>(std::max(1, options.max_connections_per_host)));
  // The handler must exist before the first peer connects; with a ZAP domain, ZeroMQ asks it of
  // plain (NULL) connections too.
  zap = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::rep);
  zap->set(zmq::sockopt::linger, 0);
  zap->bind("inproc://zeromq.zap.01");
  sock.set(zmq::sockopt::zap_domain, "segue");
  if (zmq_socket_monitor(sock.handle(), "inproc://segue-monitor",
                         ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) == 0) {
    monitor = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::pair);
    monitor->set(zmq::sockopt::linger, 0);
    monitor->connect("inproc://segue-monitor");
  }
  // Connections that do not finish their handshake in 10 s are dropped, and peers that stop
  // answering ZeroMQ's heartbeats for 30 s: neither holds a descriptor for long.
  sock.set(zmq::sockopt::handshake_ivl, 10000);
  sock.set(zmq::sockopt::heartbeat_ivl, 10000);
  sock.set(zmq::sockopt::heartbeat_timeout, 30000);
  spdlog::info(
      "connections: at most {} to the farm port ({} from one host), {} to HTTP; "
      "open-file limit {}",
      connections->max_total(), connections->max_per_host(), options.max_http_connections, files);
}

// Counts and logs (the first hundred, then every thousandth) a connection over a cap.
void Coordinator::Impl::RefuseOverCap(const std::string& host) {
  ++refused_connections;
  if (refused_connections <= 100 || refused_connections % 1000 == 0)
    spdlog::warn(
        "refused a connection from {}: {} open ({} from that host), the most allowed is "
        "{} ({} per host) [{} refused so far]",
        host, connections->open(), connections->from(host), connections->max_total(),
        connections->max_per_host(), refused_connections);
}

// Monitor events: [event (uint16) and value (uint32, the connection's descriptor), endpoint].
void Coordinator::Impl::OnMonitorEvent() {
  for (int n = 0; n < 256; ++n) {
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(*monitor, std::back_inserter(frames), zmq::recv_flags::dontwait))
      break;
    if (frames.empty() || frames[0].size() < 6) continue;
    uint16_t event = 0;
    uint32_t value = 0;
    std::memcpy(&event, frames[0].data(), 2);
    std::memcpy(&value, static_cast<const char*>(frames[0].data()) + 2, 4);
    const int fd = static_cast<int>(value);
    if (event == ZMQ_EVENT_DISCONNECTED) connections->Closed(fd);
    if (event != ZMQ_EVENT_ACCEPTED) continue;
    const std::string host = PeerHost(fd);
    connections->Opened(fd, host);
    if (connections->Allows(host) || host.empty()) continue;
    // Over a cap before it has said anything: shut down (not closed: the descriptor stays
    // ZeroMQ's, which sees the connection end and closes it). Idle connections cannot pile up.
    RefuseOverCap(host);
    ShutDownSocket(fd);
  }
  core->CountConnections(connections->open(), http ? http->connections() : 0,
                         refused_connections + (http ? http->refused() : 0));
}

Status Coordinator::Impl::BindSocket() {
  try {
    sock.set(zmq::sockopt::linger, 0);
    // Frames of at most a part: a peer makes the coordinator buffer no more than that before
    // it sees the message (ZeroMQ reads a frame into a buffer of its announced size). Larger
    // messages come as transfers, within the receive budget (transfers.h). A peer whose
    // messages wait unread may queue a few more before ZeroMQ stops reading its connection.
    sock.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(TransferLimits::kMaxFrameBytes));
    sock.set(zmq::sockopt::rcvhwm, 16);
    sock.set(zmq::sockopt::sndhwm, 10000);
    // A worker that reconnects (new socket, same name) takes its identity over at once; the
    // default would drop the new connection while the old one lingers.
    sock.set(zmq::sockopt::router_handover, 1);
    // A farm's workers all reconnect at once when the coordinator restarts. ZeroMQ's default
    // listen backlog (100) drops the connections beyond it, and each dropped one waits a second
    // for TCP to retry; the kernel caps this at net.core.somaxconn.
    sock.set(zmq::sockopt::backlog, 1024);
    sock.bind(options.listen);
    endpoint = sock.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Status::Error("cannot listen on '" + options.listen + "': " + e.what());
  }
  return Status::Ok();
}

// Pools, once the endpoint their workers join is known.
Status Coordinator::Impl::SetUpPools() {
  std::vector<PoolConfig> pool_configs = DefaultPools();
  if (!options.config_file.empty()) {
    auto loaded = LoadPoolsConfig(options.config_file);
    if (!loaded.ok()) return loaded.status();
    pool_configs = std::move(*loaded);
  }
  PoolEnvironment pool_env;
  pool_env.endpoint = options.advertise;
  if (pool_env.endpoint.empty()) {
    pool_env.endpoint = endpoint;
    const size_t any = pool_env.endpoint.find("0.0.0.0");
    if (any != std::string::npos) pool_env.endpoint.replace(any, 7, "127.0.0.1");
  }
  pool_env.worker_binary =
      options.worker_binary.empty() ? ExecutableDir() + "/segue-worker" : options.worker_binary;
  pool_env.log_dir = options.state_dir + "/logs";
  pool_env.curve_key_file = options.curve_key;
  (void)env->CreateDirs(pool_env.log_dir);
  // Provider commands run on the event loop: sbatch and kubectl answer in well under a second;
  // one that hangs is cut off after 10 s (and the pool rests before trying again).
  pool_env.run = [](const std::vector<std::string>& argv) { return RunAndCapture(argv, 10000); };
  return core->SetPools(
      std::make_unique<PoolManager>(std::move(pool_configs), std::move(pool_env)));
}

Status Coordinator::Impl::SetUpHttp() {
  if (options.http.empty()) return Status::Ok();
  Core* c = core.get();
  HttpLimits limits;
  limits.max_connections = static_cast<size_t>(std::max(1, options.max_http_connections));
  limits.max_connections_per_host = std::max<size_t>(1, limits.max_connections / 4);
  http = std::make_unique<HttpEndpoint>(
      ctx, [c](const HttpRequest& request) { return c->Http(request); }, limits,
      [c](const std::string& connection) { c->HttpClosed(connection); });
  c->AttachHttp(http.get());
  auto bound = http->Bind(options.http);
  if (!bound.ok()) return bound.status();
  (void)WriteFileAtomically(env, options.state_dir + "/coordinator.http", *bound + "\n", false);
  spdlog::info("HTTP on http://{} (/ dashboard, /api/v1 JSON API, /metrics)", *bound);
  return Status::Ok();
}

// Answers ZAP requests: [version, id, domain, address, identity, mechanism, key...].
void Coordinator::Impl::OnZapRequest() {
  for (int n = 0; n < 64; ++n) {
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(*zap, std::back_inserter(frames), zmq::recv_flags::dontwait)) return;
    if (frames.size() < 6) continue;
    bool ok = false;
    const std::string host = frames[3].to_string();
    std::string who = host;
    char z85[41] = {};
    if (monitor) OnMonitorEvent();  // the connection's own acceptance, counted first
    if (!connections->Allows(host)) {
      RefuseOverCap(host);
    } else if (frames[5].to_string() == "CURVE" && frames.size() >= 7 && frames[6].size() == 32) {
      zmq_z85_encode(z85, static_cast<const uint8_t*>(frames[6].data()), 32);
      ok = core->Admits(z85);
      who += " (key " + std::string(z85) + ")";
      if (!ok) {
        core->CountRefusedPeer();
        spdlog::warn("refused a connection from {}: key not in {}", who,
                     options.keys_file.empty() ? "--curve-clients" : options.keys_file);
      }
    } else {
      ok = !core->checks_keys();  // plain connections, where there are no keys
    }
    // The user id is the key: the core looks its identity up for each message, so a key's
    // role changed in the keys file applies to connections already open.
    std::vector<zmq::const_buffer> reply = {
        zmq::str_buffer("1.0"),
        zmq::buffer(frames[1].data(), frames[1].size()),
        zmq::buffer(std::string_view(ok ? "200" : "400")),
        zmq::buffer(std::string_view(ok ? "OK" : "key not allowed")),
        zmq::buffer(std::string_view(ok ? z85 : "")),
        zmq::str_buffer("")};
    zmq::send_multipart(*zap, reply);
  }
}

Coordinator::Coordinator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Coordinator::~Coordinator() = default;

std::string Coordinator::endpoint() const { return impl_->endpoint; }

Result<std::unique_ptr<Coordinator>> Coordinator::Create(const CoordinatorOptions& options) {
  using R = Result<std::unique_ptr<Coordinator>>;
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  auto core = Core::Open(options, impl->env, impl.get());
  if (!core.ok()) return core.status();
  impl->core = std::move(*core);
  if (Status s = impl->SetUpCurve(); !s.ok()) return s;
  impl->SetUpLimits();
  if (Status s = impl->BindSocket(); !s.ok()) return s;
  if (Status s = impl->SetUpPools(); !s.ok()) return s;
  if (Status s = impl->SetUpHttp(); !s.ok()) return s;
  const std::string endpoint_file = options.endpoint_file.empty()
                                        ? options.state_dir + "/coordinator.endpoint"
                                        : options.endpoint_file;
  (void)WriteFileAtomically(impl->env, endpoint_file, impl->endpoint + "\n", false);
  spdlog::info("coordinator listening on {} (state {}, output root {})", impl->endpoint,
               options.state_dir, options.output_root);
  return R(std::unique_ptr<Coordinator>(new Coordinator(std::move(impl))));
}

void Coordinator::Run(const std::atomic<bool>& stop) {
  Impl& m = *impl_;
  Core& core = *m.core;
  uint64_t last_tick = m.env->NowMillis();
  core.BeginTurn();
  core.EndTurn();          // jobs the restart left to assemble, a first scheduling pass
  bool downloads = false;  // files going out on the HTTP port: come back soon to send more
  while (!stop.load()) {
    std::vector<zmq::pollitem_t> items = {{m.sock.handle(), 0, ZMQ_POLLIN, 0},
                                          {nullptr, core.sync_fd(), ZMQ_POLLIN, 0}};
    if (m.http) items.push_back({m.http->socket().handle(), 0, ZMQ_POLLIN, 0});
    if (m.zap) items.push_back({m.zap->handle(), 0, ZMQ_POLLIN, 0});
    if (m.monitor) items.push_back({m.monitor->handle(), 0, ZMQ_POLLIN, 0});
    try {
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(downloads ? 2 : 100));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    if (items[1].revents & ZMQ_POLLIN) core.Durable();  // held messages may go
    const uint64_t polled = m.env->NowMillis();
    if (m.http && (items[2].revents & ZMQ_POLLIN)) m.http->OnReadable(polled);
    if (m.http) downloads = m.http->Pump(polled);
    if (m.monitor && (items.back().revents & ZMQ_POLLIN)) m.OnMonitorEvent();
    if (m.zap && (items[items.size() - (m.monitor ? 2 : 1)].revents & ZMQ_POLLIN)) m.OnZapRequest();
    core.BeginTurn();
    if (items[0].revents & ZMQ_POLLIN) {
      // Drain what is waiting, but come back to the clock now and then.
      for (int n = 0; n < 256; ++n) {
        std::vector<zmq::message_t> frames;
        auto got =
            zmq::recv_multipart(m.sock, std::back_inserter(frames), zmq::recv_flags::dontwait);
        if (!got) break;
        if (frames.size() == 2) {
          core.Receive(frames[0].to_string(), KeyOf(frames[1]), frames[1].data(), frames[1].size(),
                       false);
        } else if (frames.size() == 3 && frames[1].size() == 0) {  // a REQ client
          core.Receive(frames[0].to_string(), KeyOf(frames[2]), frames[2].data(), frames[2].size(),
                       true);
        } else {
          core.CountBadFrames(frames.size());
        }
      }
    }
    const uint64_t now = m.env->NowMillis();
    if (now - last_tick >= 500) {
      last_tick = now;
      if (m.http) m.http->CloseStale(now);
      if (m.monitor) m.OnMonitorEvent();
      core.Tick();
    }
    core.EndTurn();
  }
  core.Sync();
  spdlog::info("coordinator stopping ({} bad messages, {} fenced results)", core.bad_messages(),
               core.fenced_results());
}

}  // namespace segue
