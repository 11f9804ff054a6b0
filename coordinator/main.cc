// segue-coordinator: the farm's single address. See coordinator.h.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>

#include "common/manifest/manifest.h"
#include "common/net/url.h"
#include "common/protocol/protocol.h"
#include "common/security/keyring.h"
#include "common/util/log.h"
#include "common/util/memory.h"
#include "coordinator/coordinator.h"
#include "coordinator/pools.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }
}  // namespace

namespace {
// Whether `endpoint` can only be reached from this machine: ipc:// and inproc://, or tcp:// on
// a loopback address (127.0.0.0/8, ::1, localhost, the lo interface).
bool ListensOnlyLocally(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return true;
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  std::string host = endpoint.substr(6);
  const size_t colon = host.rfind(':');
  if (colon != std::string::npos) host = host.substr(0, colon);
  return host == "lo" || segue::IsLoopbackHost(host);
}
}  // namespace

int main(int argc, char** argv) {
  segue::KeepFreedMemoryForReuse();
  segue::CoordinatorOptions o;
  std::string log_level = "info";
  CLI::App app{
      "segue-coordinator: accepts render jobs, schedules segments on workers, keeps state in "
      "RocksDB,\n"
      "and assembles finished videos.",
      "segue-coordinator"};
  app.add_option("--listen", o.listen,
                 "ZeroMQ endpoint to bind; tcp://127.0.0.1:* picks a free port")
      ->capture_default_str();
  app.add_option("--state-dir", o.state_dir,
                 "folder of the RocksDB state store (created if missing)")
      ->capture_default_str();
  app.add_option("--output-root", o.output_root, "folder every job's output is written under")
      ->capture_default_str();
  app.add_option("--endpoint-file", o.endpoint_file,
                 "write the bound endpoint here (default STATE-DIR/coordinator.endpoint)");
  app.add_option("--chunk-frames", o.chunk_frames, "frames per encoded chunk")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--heartbeat-ms", o.heartbeat_ms, "heartbeat interval asked of workers")
      ->check(CLI::Range(50, 600000))
      ->capture_default_str();
  app.add_option("--liveness-ms", o.liveness_ms,
                 "a worker silent this long is presumed dead and its task requeued")
      ->check(CLI::Range(200, 3600000))
      ->capture_default_str();
  app.add_option("--task-timeout-s", o.task_timeout_s,
                 "a task with no checkpoint, exchange or result for this long is taken back and "
                 "queued again (0: never); keep it above a segment's checkpoint interval")
      ->check(CLI::Range(0, 30 * 86400))
      ->capture_default_str();
  app.add_option("--max-attempts", o.max_attempts,
                 "distinct workers one task may fail on before its job fails")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_option("--encoder-preset", o.encoder_preset,
                 "x264 preset for chunks (ultrafast ... veryslow)")
      ->capture_default_str();
  app.add_option("--checkpoint-steps", o.checkpoint_steps,
                 "workers checkpoint a segment every K sampler steps (0: off)")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--checkpoint-seconds", o.checkpoint_seconds,
                 "... or every T seconds, whichever comes first (0: off)")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  app.add_option("--gang-wait-ms", o.gang_wait_ms,
                 "codenoise: how long to wait for busy workers before starting a smaller gang")
      ->check(CLI::Range(0, 3600000))
      ->capture_default_str();
  app.add_option("--sync-interval-us", o.sync_interval_us,
                 "sync the state store's log at most this often under load: replies and acks "
                 "wait for their sync, assignments do not (0: sync as often as asked)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  app.add_option("--config", o.config_file,
                 "the coordinator's config file: worker pools (configs/coordinator.yaml); "
                 "without one there is a `local` pool of size 0");
  app.add_option("--advertise", o.advertise,
                 "endpoint that pool workers connect to (default: the bound --listen endpoint)");
  app.add_option("--worker-binary", o.worker_binary,
                 "segue-worker for local pools (default: the one beside this binary)");
  app.add_option("--http", o.http,
                 "serve / (a live dashboard), the JSON API (/api/v1/...: jobs, submit, cancel, "
                 "retry, priority, outputs, workers, pools, events; docs/API.md) and /metrics "
                 "(Prometheus) on HOST:PORT, e.g. 127.0.0.1:8080 (port 0: any free port, written "
                 "to STATE-DIR/coordinator.http). Reads are open to whoever reaches the port; "
                 "writes need a bearer token of the keys file (token_sha256), or, without keys, "
                 "a loopback HOST (or --insecure)");
  app.add_option("--webhook", o.webhooks,
                 "an http:// URL told of every job's state changes (POST, JSON; retried with "
                 "backoff; docs/API.md, Webhooks); repeatable. Manifests may name their own "
                 "(webhooks:)");
  app.add_option("--webhook-secret-file", o.webhook_secret_file,
                 "a file holding the secret that signs webhook requests (X-Segue-Signature: "
                 "sha256=HMAC of the body)");
  app.add_option("--curve-key", o.curve_key,
                 "the coordinator's CURVE key file (segue keygen): workers and clients must know "
                 "its public key, and the traffic is encrypted");
  app.add_option("--keys", o.keys_file,
                 "the keys file: each CURVE public key's identity and role (admin, submitter, "
                 "worker, viewer; docs/OPERATIONS.md, Security). Only its keys may connect; it "
                 "is read again when it changes. Needs --curve-key");
  app.add_option("--curve-clients", o.curve_clients,
                 "older than --keys: only admit workers and clients whose public key is here (a "
                 ".pub file or a folder of them), every one an admin; needs --curve-key");
  app.add_option("--max-job-segments", o.max_job_segments,
                 "refuse a job that plans more segments (its planning, storing and a restart "
                 "with it stay well under a second)")
      ->check(CLI::Range(int64_t{1}, int64_t{10000000}))
      ->capture_default_str();
  app.add_option("--max-owner-jobs", o.max_owner_jobs,
                 "unfinished jobs one owner (an identity of --keys) may have queued (0: no limit)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  app.add_option("--max-owner-frames", o.max_owner_frames,
                 "frames of one owner's unfinished jobs, at most (0: no limit)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--max-connections", o.max_connections,
                 "connections to the farm port at once; beyond it new ones are closed at their "
                 "handshake (fewer when the open-file limit leaves less room beside the store's "
                 "reserve)")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--max-connections-per-host", o.max_connections_per_host,
                 "connections to the farm port from one address at once")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--max-http-connections", o.max_http_connections,
                 "connections to the HTTP port at once (a quarter of them from one address); a "
                 "request not complete 10 s after connecting is closed")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--receive-budget-mb", o.receive_budget_mb,
                 "MiB that messages larger than a frame (1 MiB: results, submissions with their "
                 "song) may hold while they are received, for all peers together; a sender waits "
                 "its turn beyond it, and a message larger than it is refused")
      ->check(CLI::Range(int64_t{4}, int64_t{1} << 20))
      ->capture_default_str();
  std::string result_cache = "100GiB";
  app.add_option("--result-cache", result_cache,
                 "size finished jobs' segment results may take (edited resubmissions reuse them; "
                 "the least recently used are evicted beyond it), e.g. 500GiB; 0 keeps none")
      ->capture_default_str();
  bool insecure = false;
  app.add_flag("--insecure", insecure,
               "allow --listen on an address other hosts can reach without --curve-key and "
               "--keys: anyone who can connect may then submit, cancel, drain workers and join "
               "as a worker; likewise writes on an --http port other hosts can reach");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (!segue::SetUpLogging("coordinator", log_level)) {
    std::cerr << "segue-coordinator: --log-level: unknown level '" << log_level << "'\n";
    return 2;
  }
  if (segue::Status s = segue::CheckEndpoint(o.listen); !s.ok()) {
    std::cerr << "segue-coordinator: --listen: " << s.message() << "\n";
    return 2;
  }
  if (auto bytes = segue::ParseBytes(result_cache); bytes.ok()) {
    o.result_cache_bytes = *bytes;
  } else {
    std::cerr << "segue-coordinator: --result-cache: " << bytes.message() << "\n";
    return 2;
  }
  if (!o.advertise.empty()) {
    if (segue::Status s = segue::CheckEndpoint(o.advertise); !s.ok()) {
      std::cerr << "segue-coordinator: --advertise: " << s.message() << "\n";
      return 2;
    }
  }
  if (!o.keys_file.empty() && !o.curve_clients.empty()) {
    std::cerr << "segue-coordinator: give --keys or --curve-clients, not both (--keys has "
                 "roles)\n";
    return 2;
  }
  const bool keyed = !o.keys_file.empty() || !o.curve_clients.empty();
  if (keyed && o.curve_key.empty()) {
    std::cerr << "segue-coordinator: " << (o.keys_file.empty() ? "--curve-clients" : "--keys")
              << " needs --curve-key (the keys are CURVE keys; segue keygen makes one)\n";
    return 2;
  }
  // Secure by default: a port other hosts can reach needs CURVE and identities, unless asked.
  if ((o.curve_key.empty() || !keyed) && !ListensOnlyLocally(o.listen)) {
    if (!insecure) {
      std::cerr << "segue-coordinator: --listen " << o.listen
                << ": other hosts can reach this address and there is "
                << (o.curve_key.empty() ? "no --curve-key" : "no --keys")
                << ", so anyone who can connect could submit, cancel, drain workers and join as "
                   "a worker. Give --curve-key and --keys (segue keygen; docs/OPERATIONS.md, "
                   "Security), listen on 127.0.0.1, or say --insecure\n";
      return 2;
    }
    spdlog::warn("--insecure: listening on {} without {}; anyone who can connect is an admin",
                 o.listen, o.curve_key.empty() ? "CURVE" : "--keys");
  }
  o.insecure = insecure;
  for (const std::string& url : o.webhooks) {
    if (auto ok = segue::ParseHttpUrl(url); !ok.ok()) {
      std::cerr << "segue-coordinator: --webhook: " << ok.message() << "\n";
      return 2;
    }
  }
  if (!o.keys_file.empty()) {  // a bad keys file is bad input: say where, exit 2
    auto keys = segue::KeyRing::Load(o.keys_file);
    if (!keys.ok()) {
      std::cerr << "segue-coordinator: --keys " << keys.message() << "\n";
      return 2;
    }
  }
  if (!o.config_file.empty()) {  // a bad config is bad input: say where, exit 2
    auto pools = segue::LoadPoolsConfig(o.config_file);
    if (!pools.ok()) {
      std::cerr << "segue-coordinator: " << pools.message() << "\n";
      return 2;
    }
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);
  auto c = segue::Coordinator::Create(o);
  if (!c.ok()) {
    spdlog::error("{}", c.message());
    return 1;
  }
  (*c)->Run(g_stop);
  return 0;
}
