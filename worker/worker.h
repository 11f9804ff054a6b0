// segue-worker: pulls tasks from a coordinator and runs them on one device. Render tasks run
// the model's sampler over a segment; encode tasks decode blended latents and encode a chunk.
// The socket lives on the main thread; a task runs on a second thread so heartbeats continue
// while the model works.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/security/curve.h"

namespace segue {

struct WorkerOptions {
  std::string coordinator = "tcp://127.0.0.1:7450";
  std::string name;  // default: HOST-PID-NONCE
  std::string device = "cpu";
  int threads = 1;
  std::string models_dir;         // TorchScript models (NAME.pt)
  std::vector<std::string> tags;  // matched against jobs' requirements.tags
  std::string pool;               // the pool that launched this worker (set by the coordinator)
  std::string curve_server_key;   // the coordinator's CURVE public key; empty: no CURVE
  CurveKeys curve_keys;           // this worker's own keypair (empty: a fresh one per connection)
  uint64_t memory_bytes = 0;      // advertised memory (0: the machine's physical memory)
  std::string work_dir;           // scratch for chunk files (default: system temp)
  int reconnect_max_ms = 5000;
  int max_tasks = 0;  // exit after this many tasks (0: never); for tests and drains
};

// Runs until `stop`; returns the process exit code.
int RunWorker(const WorkerOptions& options, const std::atomic<bool>& stop);

}  // namespace segue
