// The coordinator's handling of every envelope kind, on any bytes: one real core (its RocksDB
// store on a FaultEnv in a scratch folder) for the process, with a job and a worker holding a
// task, so that results, checkpoints, failures and control messages reach real state. Each input
// is one message: its first byte picks the peer it comes from (the worker or a stranger), the rest
// is the message. Whatever a peer sends, the core keeps serving: no crash, no escaped exception.
#include <capnp/message.h>

#include <memory>

#include "common/protocol/protocol.h"
#include "common/protocol/transfer.h"
#include "common/util/temp_dir.h"
#include "tests/fuzz/fuzz.h"
#include "tests/support/core_harness.h"
#include "tests/support/fake_worker.h"

using namespace segue;

namespace {

struct World {
  TempDir dir;
  FaultEnv env;
  std::unique_ptr<CoreHarness> core;
  FakeAssignment task;
  int inputs = 0;

  World() {
    CoordinatorOptions options = TestOptions(dir.path());
    options.receive_budget_mb = 16;  // transfers the fuzzer asks for stay small
    core = std::make_unique<CoreHarness>(&env, options);
    if (!core->ok()) abort();
    core->Submit(TestManifest("fuzz", 16, 16, 4));
    FakeWorker w("w0");
    core->Deliver("w0", w.Hello());
    core->Deliver("w0", FakeWorker::WorkRequest());
    for (const std::string& m : core->Take("w0"))
      if (auto a = FakeWorker::AsAssignment(m)) task = *a;
  }
};

World& TheWorld() {
  static World* world = new World();  // lives as long as the process: no teardown order
  return *world;
}

}  // namespace

std::vector<std::string> SegueFuzzSeeds() {
  World& w = TheWorld();
  FakeWorker other("w1");
  auto from = [](char peer, const std::string& bytes) { return std::string(1, peer) + bytes; };
  capnp::MallocMessageBuilder status, version, list, submit, plan, family, thumbnails;
  status.initRoot<wire::Envelope>().initStatusRequest();
  version.initRoot<wire::Envelope>().initVersionRequest();
  auto filter = list.initRoot<wire::Envelope>().initListJobs();
  filter.initStates(1).set(0, "QUEUED");
  auto pair = filter.initMetadata(1)[0];
  pair.setKey("shot");
  pair.setValue("010");
  filter.setLimit(1);
  auto s = submit.initRoot<wire::Envelope>().initSubmit();
  s.setManifestText(TestManifest("fuzz", 16, 16, 4, "independent", "metadata: {shot: \"010\"}\n"));
  s.setSubmissionId("take-1");
  auto p = plan.initRoot<wire::Envelope>().initPlanRequest();
  p.setManifestText(TestManifest("fuzz", 16, 16, 4, "chained"));
  p.setAgainstJob(1);
  family.initRoot<wire::Envelope>().initSubmit().setManifestText(
      TestManifest("family", 16, 16, 4, "independent", "preview: {steps: 1, scale: 0.5}\n"));
  filter.setFamily(1);
  auto t = thumbnails.initRoot<wire::Envelope>().initThumbnailRequest();
  t.setJobId(1);
  t.initSegments(2).set(1, 3);
  return {from(2, Serialize(family)), from(2, PickMessage(1, 0, 3)), from(2, Serialize(version)),
          from(2, Serialize(list)), from(2, Serialize(submit)), from(0, FakeWorker::Heartbeat()),
          from(0, FakeWorker::WorkRequest()),
          from(0, FakeWorker::Checkpoint(w.task, 2, FakeLatents(w.task))),
          from(0, FakeWorker::RenderResult(w.task, FakeLatents(w.task))),
          from(0, FakeWorker::Failure(w.task, "fuzz")), from(1, other.Hello()),
          from(1, FakeWorker::Goodbye("fuzz")), from(2, Serialize(status)),
          from(2, Serialize(plan)),
          // A transfer of a whole (small) message: its request, then its one part.
          from(2, TransferRequestMessage(1, Serialize(version).size())),
          from(2, PartMessage(1, 0, Serialize(version))), from(2, Serialize(thumbnails))};
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  World& w = TheWorld();
  static const char* const kPeers[] = {"w0", "w1", "client"};
  const std::string peer = kPeers[data[0] % 3];
  w.core->Deliver(peer, std::string(reinterpret_cast<const char*>(data + 1), size - 1));
  for (const char* p : kPeers) w.core->Take(p);  // replies are not looked at
  if (++w.inputs % 64 == 0) {
    w.core->Tick();
    w.core->Sync();
  }
  return 0;
}
