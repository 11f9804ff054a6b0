// The coordinator's reading of its own store (coordinator/journal.h), on any bytes: a damaged or
// hostile record is an error that Load logs and skips, never a crash. The first byte picks the
// record: a job, a task, or stored latents (a segment's, or a checkpoint's); the rest is its
// value. The seeds are the records of a real store after a job has rendered a segment.
#include "common/tensor/tensor.h"
#include "common/util/temp_dir.h"
#include "coordinator/journal.h"
#include "coordinator/store/store.h"
#include "tests/fuzz/fuzz.h"
#include "tests/support/core_harness.h"
#include "tests/support/fake_worker.h"

using namespace segue;

std::vector<std::string> SegueFuzzSeeds() {
  TempDir dir;
  const CoordinatorOptions options = TestOptions(dir.path());
  {
    FaultEnv env;
    CoreHarness core(&env, options);
    if (!core.ok()) abort();
    core.Submit(TestManifest("fuzz", 28, 16, 4, "chained"));
    // A family: a preview's record and a pick's (with its picks).
    core.Submit(TestManifest("family", 28, 16, 4, "independent", "preview: {steps: 1}\n"));
    core.Deliver("client", PickMessage(1, 0, 2));
    FakeWorker w("w0");
    core.Deliver("w0", w.Hello());
    core.Deliver("w0", FakeWorker::WorkRequest());
    for (const std::string& m : core.Take("w0")) {
      if (auto a = FakeWorker::AsAssignment(m)) {
        core.Deliver("w0", FakeWorker::Checkpoint(*a, 2, FakeLatents(*a)));
        core.Deliver("w0", FakeWorker::RenderResult(*a, FakeLatents(*a)));
      }
    }
    core.Sync();
  }
  std::vector<std::string> seeds;
  auto store = Store::Open(options.state_dir);
  if (!store.ok()) abort();
  const std::pair<Family, char> families[] = {{Family::kJobs, 0},
                                              {Family::kSegments, 1},
                                              {Family::kChunks, 1},
                                              {Family::kLatents, 2},
                                              {Family::kCheckpoints, 2}};
  for (const auto& entry : families) {
    const char kind = entry.second;  // not a structured binding: clang 14 cannot capture one
    (void)(*store)->Scan(entry.first, "", "", [&](const std::string&, const std::string& value) {
      seeds.push_back(std::string(1, kind) + value);
      return true;
    });
  }
  return seeds;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string value(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0:
      (void)DecodeJobRecord(value, 96);
      break;
    case 1: {
      Task t;
      (void)DecodeTaskRecord(value, &t);
      break;
    }
    default:
      (void)DecodeTensor(value.size() > 4 && data[0] % 2 ? value.substr(4) : value);
  }
  return 0;
}
