// segue-worker: pulls tasks from a coordinator and runs them. Render tasks run the model's
// sampler over a segment; encode tasks decode blended latents and encode a chunk. One task slot
// per device: a worker given several devices joins as one farm worker per device (NAME.0,
// NAME.1, ...), each with its own connection, runtime and model hosts, so a GPU never waits for
// another's task. In a slot the socket lives on one thread and a task runs on a second, so
// heartbeats continue while the model works.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/security/curve.h"
#include "common/status/status.h"

namespace segue {

struct WorkerOptions {
  std::string coordinator = "tcp://127.0.0.1:7450";
  std::string name;            // default: HOST-PID-NONCE
  std::string device = "cpu";  // one device or several (ParseDeviceList)
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

// The devices a --device value names, one task slot each: "cpu", "cuda", "cuda:N", a
// comma-separated list of those ("cuda:0,cuda:2"), or a count of GPUs ("4": cuda:0 .. cuda:3).
// A GPU may be named once; "cpu" any number of times (CPU slots share the machine's cores).
// Whether the machine has the GPUs is checked later, by each slot's model runtime.
Result<std::vector<std::string>> ParseDeviceList(std::string_view spec);

// Runs until `stop`; returns the process exit code.
int RunWorker(const WorkerOptions& options, const std::atomic<bool>& stop);

}  // namespace segue
