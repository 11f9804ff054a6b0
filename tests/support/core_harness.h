// A coordinator core driven by hand, for unit tests: no sockets, no threads of its own. Its
// messages go to one inbox per peer; a test plays workers and clients with FakeWorker's bytes
// and steps the turns itself. The store is real (RocksDB, through the test's FaultEnv), the
// syncer on demand: writes become durable only at Sync() or when the core needs them to, so a
// test decides where the syncs fall, and a crash (FaultEnv) silences the core at once: nothing it
// sends after the crash reaches anyone.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/protocol/reports.h"
#include "coordinator/core.h"
#include "coordinator/options.h"
#include "tests/support/fault_env.h"

namespace segue {

// Options for a core under test in `dir`: state in DIR/state, outputs under DIR/root, workers
// presumed dead after 10 s of fake time, no sync interval.
CoordinatorOptions TestOptions(const std::string& dir);

// A manifest for small jobs of tests: 64x32 at 12 fps, `frames` frames in segments of `length`
// with `overlap`, the given strategy, PNG output at out/NAME. `extra`: more top-level YAML.
std::string TestManifest(const std::string& name, int frames, int length, int overlap,
                         const std::string& strategy = "independent",
                         const std::string& extra = "");
// A Submit message of `manifest_text`.
std::string SubmitMessage(const std::string& manifest_text, const std::string& name = "job.yaml");
// A PickRequest (segue pick): job `job` with `take` of `section`.
std::string PickMessage(uint64_t job, uint32_t section, uint32_t take);

class CoreHarness final : public Transport {
 public:
  // Opens a core on `env` with `options`; ok() says whether it opened.
  CoreHarness(FaultEnv* env, const CoordinatorOptions& options);
  ~CoreHarness() override;
  bool ok() const { return core_ != nullptr; }
  const std::string& error() const { return error_; }
  Core& core() { return *core_; }

  // Transport: into `identity`'s inbox, unless the machine has crashed.
  void Send(const std::string& identity, std::string payload, bool req_envelope) override;

  // One turn with one message from `identity`, connected with the CURVE public key `key` (Z85;
  // empty: no keys).
  void Deliver(const std::string& identity, const std::string& bytes, const std::string& key = "");
  // One turn of the clock's work (liveness, pools, scheduling).
  void Tick();
  // Every write durable; what waited for it sent.
  void Sync();
  // What `identity` received since the last Take.
  std::vector<std::string> Take(const std::string& identity);
  // A client's request: its reply (after a Sync, as replies wait for their writes), or "" when
  // none came (a crash).
  std::string Call(const std::string& bytes, const std::string& key = "");

  // Submits `manifest_text`; the job id (0 if refused, `why` says why).
  uint64_t Submit(const std::string& manifest_text, std::string* why = nullptr);
  // The job's report (its state "" if the coordinator does not know it).
  JobInfo Status(uint64_t job, const std::string& key = "");

 private:
  FaultEnv* const env_;
  std::string error_;
  std::map<std::string, std::vector<std::string>> inbox_;
  std::unique_ptr<Core> core_;  // last: it sends into the inboxes until it is gone
};

}  // namespace segue
