// The coordinator's HTTP side on any bytes: a request's line and headers (ParseRequestHead), its
// target, query and Range header, and whatever its method and body ask of a real core in memory
// (reads, the JSON API's writes turned into envelopes and handled, event streams, outputs,
// thumbnails, the dashboard). One input is one request as a client would send it. Whatever it
// is, the core keeps serving: no crash, no escaped exception.
#include <nlohmann/json.hpp>

#include <memory>

#include "common/net/url.h"
#include "common/util/temp_dir.h"
#include "coordinator/http.h"
#include "tests/fuzz/fuzz.h"
#include "tests/support/core_harness.h"
#include "tests/support/fake_worker.h"

using namespace segue;

namespace {

struct World {
  TempDir dir;
  FaultEnv env;
  std::unique_ptr<CoreHarness> core;
  int inputs = 0;

  World() {
    core = std::make_unique<CoreHarness>(&env, TestOptions(dir.path()));
    if (!core->ok()) abort();
    core->Submit(TestManifest("fuzz", 16, 16, 4, "independent", "metadata: {shot: \"010\"}\n"));
    FakeWorker w("w0");
    core->Deliver("w0", w.Hello());
    core->Deliver("w0", FakeWorker::WorkRequest());
    core->Take("w0");
  }
};

World& TheWorld() {
  static World* world = new World();  // lives as long as the process: no teardown order
  return *world;
}

std::string Post(const std::string& path, const std::string& body, const std::string& extra = "") {
  return "POST " + path +
         " HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n" + extra +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string Get(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n" + extra + "\r\n";
}

}  // namespace

std::vector<std::string> SegueFuzzSeeds() {
  const std::string manifest = TestManifest("seed", 16, 16, 4);
  return {Get("/api/v1/jobs?state=QUEUED&meta=shot%3D010&limit=1&after=0"),
          Get("/api/v1/jobs/1"),
          Get("/api/v1/jobs/1/logs"),
          Get("/api/v1/jobs/1/output", "Range: bytes=0-99\r\n"),
          Get("/api/v1/jobs/1/segments/0/thumbnail"),
          Get("/api/v1/events?job=1", "Last-Event-ID: 12345\r\n"),
          Get("/jobs/1"),
          Get("/metrics"),
          Get("/api/v1/status"),
          "HEAD /api/v1/health HTTP/1.1\r\n\r\n",
          Post("/api/v1/jobs", nlohmann::json{{"manifest", manifest},
                                              {"submission_id", "a"},
                                              {"audio", "UklGRg=="},
                                              {"audio_name", "x.wav"}}
                                   .dump()),
          Post("/api/v1/jobs/1/priority", R"({"priority": 70})"),
          Post("/api/v1/jobs/1/cancel", ""),
          Post("/api/v1/jobs/1/retry", "", "Origin: http://127.0.0.1:8080\r\n"),
          Post("/api/v1/workers/w0/drain", "", "Authorization: Bearer x\r\n"),
          Post("/api/v1/pools/local/scale", R"({"size": 2})"),
          Post("/api/v1/pools/local/autoscale", R"({"enabled": true, "min": 0, "max": 3})")};
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = TheWorld();
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const size_t end = bytes.find("\r\n\r\n");
  HttpRequest request;
  if (!ParseRequestHead(bytes.substr(0, end), &request).ok()) return 0;
  request.connection = "fuzz";
  if (end != std::string_view::npos) request.body = std::string(bytes.substr(end + 4));
  ByteRange range;
  (void)ParseRange(request.Header("range"), 1 << 20, &range);
  (void)ParseHttpUrl(request.target);
  (void)w.core->core().Http(request);
  w.core->Take("w0");
  if (++w.inputs % 64 == 0) {
    w.core->Tick();
    w.core->Sync();
  }
  return 0;
}
