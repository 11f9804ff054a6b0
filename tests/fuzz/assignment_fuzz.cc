// A worker's reading of the assignments it receives (worker/tasks.h), on any bytes: a render,
// encode or co-denoising task is read and checked, or refused with a message; never a crash, an
// escaped exception or an allocation the task's sizes did not pass. The seeds are real
// assignments of a core in memory: renders (chained ones with a guide), encodes and a gang's.
#include <capnp/message.h>

#include "common/protocol/protocol.h"
#include "common/util/temp_dir.h"
#include "tests/fuzz/fuzz.h"
#include "tests/support/core_harness.h"
#include "tests/support/fake_worker.h"
#include "worker/tasks.h"

using namespace segue;

namespace {

Result<model::ModelMetadata> Builtin(const std::string& name) {
  const model::ModelMetadata* m = model::BuiltinMetadata(name);
  if (!m) return Result<model::ModelMetadata>::Error("no model " + name);
  return *m;
}

}  // namespace

std::vector<std::string> SegueFuzzSeeds() {
  std::vector<std::string> seeds;
  for (const char* strategy : {"independent", "chained", "codenoise"}) {
    TempDir dir;
    FaultEnv env;
    CoordinatorOptions options = TestOptions(dir.path());
    CoreHarness core(&env, options);
    if (!core.ok()) abort();
    core.Submit(TestManifest("fuzz", 28, 16, 4, strategy));
    std::vector<FakeWorker> workers = {FakeWorker("w0"), FakeWorker("w1")};
    for (const FakeWorker& w : workers) core.Deliver(w.name(), w.Hello());
    for (const FakeWorker& w : workers) core.Deliver(w.name(), FakeWorker::WorkRequest());
    // Answer every render until the encodes come; keep every assignment seen.
    for (int round = 0; round < 8; ++round) {
      for (const FakeWorker& w : workers) {
        for (const std::string& m : core.Take(w.name())) {
          auto a = FakeWorker::AsAssignment(m);
          if (!a) continue;
          seeds.push_back(m);
          if (a->kind == wire::TaskKind::RENDER) {
            core.Deliver(w.name(), FakeWorker::RenderResult(*a, FakeLatents(*a)));
            core.Deliver(w.name(), FakeWorker::WorkRequest());
          }
        }
      }
    }
  }
  return seeds;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto in = Incoming::Parse(data, size);
  if (!in.ok()) return 0;
  try {
    auto env = (*in)->envelope();
    if (!env.isAssignment()) return 0;
    auto a = env.getAssignment();
    if (a.isRender()) {
      (void)ReadRenderTask(a.getRender(), Builtin);
    } else if (a.isEncode()) {
      (void)ReadEncodeTask(a.getEncode());
    } else if (a.isCodenoise()) {
      (void)ReadCodenoiseTask(a.getCodenoise(), Builtin);
    }
  } catch (const kj::Exception&) {
    // A malformed message: the worker reports "malformed task" (worker.cc StartTask).
  }
  return 0;
}
