// How a coordinator is set up: segue-coordinator's flags (coordinator/main.cc) as one struct.
#pragma once

#include <string>
#include <vector>

namespace segue {

struct CoordinatorOptions {
  std::string listen = "tcp://127.0.0.1:7450";  // "tcp://127.0.0.1:*" picks a free port
  std::string state_dir = "segue-state";
  std::string output_root = ".";
  // Where to write the bound endpoint (default: STATE/coordinator.endpoint).
  std::string endpoint_file;
  int chunk_frames = 96;  // frames per encoded chunk
  int heartbeat_ms = 1000;
  int liveness_ms = 10000;  // a worker silent this long is presumed dead
  // A task with no checkpoint, co-denoising exchange or result for this long is taken back and
  // queued again (0: never).
  int task_timeout_s = 7200;
  int max_attempts = 3;  // a task failing this often fails its job
  std::string encoder_preset = "medium";
  int checkpoint_steps = 10;    // workers send a segment's latents every K steps ...
  int checkpoint_seconds = 60;  // ... or T seconds, whichever comes first (0: off)
  int gang_wait_ms = 2000;      // codenoise: wait this long for busy workers before a smaller gang
  std::string config_file;      // pools (configs/coordinator.yaml); empty: the built-in local pool
  std::string advertise;        // endpoint pool workers connect to (default: the bound one)
  std::string worker_binary;    // for local pools (default: segue-worker beside this binary)
  std::string http;             // HOST:PORT for /metrics, /api/v1/status and /; empty: none
  std::string curve_key;        // the coordinator's CURVE key file; empty: plain TCP
  std::string curve_clients;    // allowed client public keys (a .pub file or a folder); empty: any
  // The keys file: identities and roles (common/security/keyring.h); reloaded when it changes.
  // Without it (and without curve_clients) every peer is the local admin.
  std::string keys_file;
  // --insecure: without keys, the HTTP port takes writes even off loopback.
  bool insecure = false;
  // Told of every job's state changes (webhooks.h), beside those a manifest names.
  std::vector<std::string> webhooks;
  std::string webhook_secret_file;  // HMAC key for X-Segue-Signature; empty: unsigned
  // Under load the store's log is synced at most this often (0: as often as asked).
  int sync_interval_us = 2000;

  // ---- Limits that keep the farm serving (docs/OPERATIONS.md, Security) ----
  // A job planning more segments is refused at submit (or failed when a waiting job is planned):
  // the largest admitted job plans, stores and restores in well under a second.
  int64_t max_job_segments = 50000;
  // An owner's unfinished jobs, and their frames, at most (0: no limit).
  int max_owner_jobs = 1000;
  int64_t max_owner_frames = 10000000;
  // Connections to the farm port at once, in all and from one host (fewer in all when the
  // open-file limit leaves less room beside the store's reserve), and to the HTTP port.
  int max_connections = 4096;
  int max_connections_per_host = 256;
  int max_http_connections = 64;
  // Bytes that messages larger than a frame may hold, for all peers together, while they are
  // received (transfers.h).
  int64_t receive_budget_mb = 1024;
  // Bytes finished jobs' segment results may take before the least recently used are evicted
  // (results.h): what edited resubmissions can reuse.
  uint64_t result_cache_bytes = uint64_t{100} << 30;
};

}  // namespace segue
