// segue-worker: see worker.h.
#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>

#include "common/manifest/manifest.h"
#include "common/protocol/protocol.h"
#include "common/util/log.h"
#include "common/util/memory.h"
#include "worker/worker.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }
}  // namespace

int main(int argc, char** argv) {
  segue::KeepFreedMemoryForReuse();
  segue::WorkerOptions o;
  std::string log_level = "info";
  CLI::App app{"segue-worker: renders segments and encodes chunks for a segue coordinator.",
               "segue-worker"};
  app.add_option("--coordinator", o.coordinator,
                 "the coordinator's endpoint (or SEGUE_COORDINATOR)")
      ->envname("SEGUE_COORDINATOR")
      ->capture_default_str();
  app.add_option("--name", o.name, "worker name, unique in the farm (default HOST-PID-NONCE)");
  app.add_option("--device", o.device,
                 "where models run, one task slot per device: cpu, cuda, cuda:N, a list "
                 "(cuda:0,cuda:1) or a count of GPUs (4: cuda:0-3). With several, the worker "
                 "joins as NAME.0, NAME.1, ... and starts a model host per device. TorchScript "
                 "on CUDA needs a libtorch with CUDA; the built-in models compute on the CPU")
      ->capture_default_str();
  app.add_option("--threads", o.threads, "intra-op threads for the model")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--models", o.models_dir,
                 "folder of models: a manifest's model NAME loads NAME.pt (TorchScript) or is "
                 "served by a model host that NAME.host.yaml says how to start (docs/MODELS.md)")
      ->check(CLI::ExistingDirectory);
  app.add_option("--pool", o.pool,
                 "the pool this worker belongs to (set when a coordinator's pool launches it)");
  app.add_option("--tags", o.tags,
                 "tags jobs can require (requirements.tags), e.g. --tags gpu-a100,studio-b")
      ->delimiter(',');
  std::string memory;
  app.add_option("--memory", memory,
                 "memory to advertise, e.g. 80GiB (default: the machine's physical memory)");
  app.add_option("--work-dir", o.work_dir,
                 "scratch folder for chunk files (default: the system temp folder)");
  app.add_option("--max-tasks", o.max_tasks, "leave after this many tasks (0: never)")
      ->check(CLI::NonNegativeNumber);
  std::string curve_server, curve_key;
  app.add_option("--curve-server-key", curve_server,
                 "the coordinator's public key file (CURVE encryption and authentication)")
      ->envname("SEGUE_CURVE_SERVER_KEY");
  app.add_option("--curve-key", curve_key,
                 "this worker's key file, for coordinators that only admit known keys")
      ->envname("SEGUE_CURVE_KEY");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (segue::Status s = segue::CheckEndpoint(o.coordinator); !s.ok()) {
    std::cerr << "segue-worker: --coordinator: " << s.message() << "\n";
    return 2;
  }
  if (!memory.empty()) {
    auto bytes = segue::ParseBytes(memory);
    if (!bytes.ok()) {
      std::cerr << "segue-worker: --memory: " << bytes.message() << "\n";
      return 2;
    }
    o.memory_bytes = *bytes;
  }
  if (!curve_server.empty()) {
    auto server = segue::LoadCurveKeys(curve_server, false);
    if (!server.ok()) {
      std::cerr << "segue-worker: --curve-server-key: " << server.message() << "\n";
      return 2;
    }
    o.curve_server_key = server->public_key;
  }
  if (!curve_key.empty()) {
    auto own = segue::LoadCurveKeys(curve_key, true);
    if (!own.ok()) {
      std::cerr << "segue-worker: --curve-key: " << own.message() << "\n";
      return 2;
    }
    o.curve_keys = *own;
  }
  if (!segue::SetUpLogging("worker", log_level)) {
    std::cerr << "segue-worker: --log-level: unknown level '" << log_level << "'\n";
    return 2;
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);
  return segue::RunWorker(o, g_stop);
}
