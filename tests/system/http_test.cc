// The coordinator's HTTP side on a running render: Prometheus metrics, the status API, the
// dashboard (driven by Debian's headless Chromium, which must see the progress advance), and bad
// HTTP requests that change nothing.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "tests/support/test_util.h"
#include "tools/cli/client.h"

namespace segue {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// A job long enough to watch: 4 s at 256x144, 9 segments on one worker.
uint64_t SubmitJob(const TempDir& dir, const LocalFarm& farm, int steps) {
  std::ofstream(dir / "job.yaml") << "version: 1\nname: watched\n"
                                  << "video: {width: 256, height: 144, fps: 24, duration: 4s}\n"
                                  << "model: {name: zoom, steps: " << steps << "}\n"
                                  << "segments: {length: 16, overlap: 4}\n"
                                  << "timeline: [{at: 0s, prompt: golden hour}]\n";
  std::string out;
  EXPECT_EQ(RunCommand(Cli("submit '" + dir / "job.yaml" + "' --coordinator " + farm.endpoint()),
                       &out, true),
            0)
      << out;
  return std::stoull(SubmittedJobId(out));
}

std::string HttpAddress(const TempDir& dir) {
  std::ifstream f(dir / "farm/state/coordinator.http");
  std::string a;
  std::getline(f, a);
  return a;
}

bool HasChromium() {
  std::string out;
  return RunCommand("command -v chromium", &out) == 0;
}
constexpr const char* kNoChromium =
    "chromium is not installed (tools/scripts/install-deps.sh --test installs it)";

// Headless Chromium for a job's page (videos may play without a gesture), its profile in `dir`,
// bounded: a browser that hangs fails the test instead of stalling the suite.
std::string PageBrowser(const TempDir& dir) {
  return "timeout 90 chromium --headless --no-sandbox --disable-gpu --no-first-run "
         "--autoplay-policy=no-user-gesture-required --user-data-dir='" +
         dir / "profile" + "' ";
}

double Metric(const std::string& metrics, const std::string& series) {
  const size_t at = metrics.find("\n" + series + " ");
  return at == std::string::npos ? -1 : std::stod(metrics.substr(at + series.size() + 2));
}

// The JSON API's read side: every GET endpoint answers JSON, jobs in the one job shape
// (docs/schema/job.schema.json), errors as {"error": {"code", "message"}}.
TEST(Http, TheJsonApiReadsJobsWorkersPoolsHealthAndVersion) {
  TempDir dir;
  LocalFarm farm(dir / "farm", 0, {"--http", "127.0.0.1:0"});
  ASSERT_TRUE(farm.ok());
  const uint64_t first = SubmitJob(dir, farm, 2);
  std::ofstream(dir / "tagged.yaml") << "version: 1\nname: tagged\n"
                                     << "video: {width: 64, height: 64, fps: 24, frames: 24}\n"
                                     << "timeline: [{at: 0, prompt: a}]\n"
                                     << "metadata: {shot: \"010\", show: hardest}\n";
  std::string out;
  ASSERT_EQ(RunCommand(Cli("submit '" + dir / "tagged.yaml" + "' --coordinator " + farm.endpoint()),
                       &out, true),
            0)
      << out;
  const std::string tagged = SubmittedJobId(out);
  const std::string http = HttpAddress(dir);
  int status = 0;
  auto get = [&](const std::string& path) {
    const std::string body = HttpGet(http, path, &status);
    return nlohmann::json::parse(body, nullptr, false);
  };
  auto j = get("/api/v1/jobs?meta=shot%3D010");
  ASSERT_EQ(status, 200);
  ASSERT_EQ(j["jobs"].size(), 1u) << j.dump();
  EXPECT_EQ(j["jobs"][0]["id"], tagged);
  EXPECT_EQ(j["jobs"][0]["metadata"]["show"], "hardest");
  EXPECT_TRUE(j["next_after"].is_null());
  j = get("/api/v1/jobs?limit=1");
  ASSERT_EQ(j["jobs"].size(), 1u);
  EXPECT_EQ(j["next_after"], std::to_string(first));
  j = get("/api/v1/jobs?after=" + std::to_string(first) + "&state=QUEUED");
  ASSERT_EQ(j["jobs"].size(), 1u);
  EXPECT_EQ(j["jobs"][0]["id"], tagged);
  // One job, the same object as the list's; its log.
  const auto job = get("/api/v1/jobs/" + tagged);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(job["name"], "tagged");
  EXPECT_EQ(job["schema_version"], 1);
  const auto logs = get("/api/v1/jobs/" + tagged + "/logs");
  EXPECT_EQ(status, 200);
  ASSERT_FALSE(logs["lines"].empty());
  EXPECT_NE(logs["lines"][0]["text"].get<std::string>().find("submitted by local"),
            std::string::npos);
  EXPECT_EQ(get("/api/v1/workers")["workers"].size(), 0u);
  EXPECT_TRUE(get("/api/v1/pools")["pools"].is_array());
  EXPECT_EQ(get("/api/v1/health")["status"], "ok");
  EXPECT_EQ(get("/api/v1/version")["protocol_version"].get<int>() > 0, true);
  // Errors: JSON with a stable code.
  auto e = get("/api/v1/jobs/999");
  EXPECT_EQ(status, 404);
  EXPECT_EQ(e["error"]["code"], "not_found");
  e = get("/api/v1/jobs?colour=red");
  EXPECT_EQ(status, 400);
  EXPECT_EQ(e["error"]["code"], "bad_request");
  EXPECT_NE(e["error"]["message"].get<std::string>().find("unknown parameter 'colour'"),
            std::string::npos);
  e = get("/api/v1/nothing");
  EXPECT_EQ(status, 404);
  EXPECT_EQ(e["error"]["code"], "not_found");
}

// docs/openapi.json holds: every endpoint of a real coordinator, with a worker and a finished
// job, answers what the document says (tests/support/check_openapi.py, python3-jsonschema).
TEST(Http, EveryEndpointAnswersWhatTheOpenApiDocumentSays) {
  TempDir dir;
  LocalFarm farm(dir / "farm", 1, {"--http", "127.0.0.1:0"});
  ASSERT_TRUE(farm.ok());
  ASSERT_TRUE(farm.WaitForWorkers());
  std::ofstream(dir / "small.yaml") << "version: 1\nname: small\n"
                                    << "video: {width: 64, height: 64, fps: 24, frames: 24}\n"
                                    << "model: {name: zoom, steps: 2}\n"
                                    << "timeline: [{at: 0, prompt: a}]\n"
                                    << "metadata: {shot: \"010\"}\n";
  std::string out;
  ASSERT_EQ(
      RunCommand(Cli("submit '" + dir / "small.yaml" + "' --wait --coordinator " + farm.endpoint()),
                 &out, true),
      0)
      << out;
  const std::string job = SubmittedJobId(out);
  EXPECT_EQ(RunCommand("/usr/bin/python3 '" + SourceDir() + "/tests/support/check_openapi.py' '" +
                           SourceDir() + "/docs/openapi.json' http://" + HttpAddress(dir) + " " +
                           job + " 2>&1",
                       &out),
            0)
      << out;
}

TEST(Http, MetricsStatusAndBadRequests) {
  TempDir dir;
  LocalFarm farm(dir / "farm", 1, {"--http", "127.0.0.1:0"});
  ASSERT_TRUE(farm.ok());
  const std::string http = HttpAddress(dir);
  ASSERT_FALSE(http.empty());
  const uint64_t job = SubmitJob(dir, farm, 80);
  Client client(farm.endpoint(), 5000);
  for (int i = 0; i < 400; ++i) {  // until it is running, two segments done
    auto st = client.Status(job);
    if (st.ok() && st->segments_done >= 2) break;
    std::this_thread::sleep_for(25ms);
  }
  int status = 0;
  std::string metrics = HttpGet(http, "/metrics", &status);
  ASSERT_EQ(status, 200) << metrics;
  for (const char* family :
       {"segue_jobs", "segue_segments", "segue_queue_depth", "segue_workers",
        "segue_dispatch_latency_seconds", "segue_step_seconds", "segue_checkpoint_bytes_total",
        "segue_fenced_results_total", "segue_bad_messages_total", "segue_pool_size",
        "segue_store_syncs_total", "segue_store_sync_seconds_total", "segue_held_messages"}) {
    EXPECT_NE(metrics.find("# TYPE " + std::string(family) + " "), std::string::npos) << family;
  }
  EXPECT_EQ(Metric(metrics, "segue_jobs{state=\"RUNNING\"}"), 1) << metrics;
  EXPECT_EQ(Metric(metrics, "segue_workers{state=\"busy\"}") +
                Metric(metrics, "segue_workers{state=\"idle\"}"),
            1);
  // Every assignment is timed, also those of a worker that asked before its result came.
  EXPECT_GE(Metric(metrics, "segue_segments{state=\"done\"}"), 2);
  EXPECT_GE(Metric(metrics, "segue_dispatch_latency_seconds_count"),
            Metric(metrics, "segue_segments{state=\"done\"}"));

  std::string body = HttpGet(http, "/api/v1/status", &status);
  ASSERT_EQ(status, 200);
  auto j = nlohmann::json::parse(body);
  ASSERT_EQ(j["jobs"].size(), 1u);
  EXPECT_EQ(j["jobs"][0]["id"], std::to_string(job));  // 64-bit values are strings
  EXPECT_EQ(j["jobs"][0]["segments"]["states"].get<std::string>().size(),
            j["jobs"][0]["segments"]["total"].get<size_t>());
  ASSERT_EQ(j["workers"].size(), 1u);
  EXPECT_EQ(j["workers"][0]["name"], "w0");
  EXPECT_EQ(j["pools"][0]["name"], "local");

  body = HttpGet(http, "/", &status);
  EXPECT_EQ(status, 200);
  EXPECT_NE(body.find("<title>segue</title>"), std::string::npos);
  HttpGet(http, "/nowhere", &status);
  EXPECT_EQ(status, 404);

  // Bad requests are answered and change nothing.
  HttpExchange(http, "DELETE /api/v1/status HTTP/1.1\r\n\r\n", &status);
  EXPECT_EQ(status, 405);
  HttpExchange(http, "nonsense\r\n\r\n", &status);
  EXPECT_EQ(status, 400);
  HttpExchange(http, "GET / HTTP/1.1\r\nX-Junk: " + std::string(20000, 'x') + "\r\n\r\n", &status);
  EXPECT_EQ(status, 431);
  HttpExchange(http, std::string("\0\1\2\3 garbage", 13), &status);  // no request at all
  JobInfo done;
  for (int i = 0; i < 2400; ++i) {
    auto st = client.Status(job);
    if (st.ok() && st->Finished()) {
      done = *st;
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(done.state, "DONE") << done.error;
  metrics = HttpGet(http, "/metrics", &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(Metric(metrics, "segue_jobs{state=\"DONE\"}"), 1) << metrics;
  EXPECT_GT(Metric(metrics, "segue_step_seconds_count"), 0);
  // Every transition was synced by the syncer, which timed it.
  EXPECT_GT(Metric(metrics, "segue_store_syncs_total"), 0);
  EXPECT_GT(Metric(metrics, "segue_store_sync_seconds_total"), 0);
}

// The dashboard in a real browser: the job's progress shown on the page advances while it
// renders. Saves a screenshot (build/dashboard.png) for a person to look at.
TEST(Http, DashboardInHeadlessChromiumShowsProgressAdvancing) {
  std::string out;
  if (!HasChromium()) GTEST_SKIP() << kNoChromium;
  TempDir dir;
  LocalFarm farm(dir / "farm", 1, {"--http", "127.0.0.1:0"});
  ASSERT_TRUE(farm.ok());
  const std::string url = "http://" + HttpAddress(dir) + "/";
  const uint64_t job = SubmitJob(dir, farm, 1000) /* several seconds: long enough to watch */;
  // Each browser run is bounded: a browser that hangs fails the test instead of stalling the suite.
  const std::string chromium =
      "timeout 60 chromium --headless --no-sandbox --disable-gpu --no-first-run "
      "--user-data-dir='" +
      dir / "profile" + "' ";
  // What the page shows for the job: its progress in percent, from the rendered DOM.
  auto shown = [&]() {
    std::string dom;
    RunCommand(chromium + "--virtual-time-budget=3000 --dump-dom '" + url + "' 2>/dev/null", &dom);
    std::smatch m;
    const std::regex re("data-id=\"" + std::to_string(job) + "\" data-progress=\"([0-9]+)\"");
    return std::regex_search(dom, m, re) ? std::stoi(m[1]) : -1;
  };
  const int first = shown();
  ASSERT_GE(first, 0) << "the dashboard did not show job " << job;
  int later = first;
  for (int i = 0; i < 30 && later <= first; ++i) {
    std::this_thread::sleep_for(500ms);
    later = shown();
  }
  EXPECT_GT(later, first) << "the progress on the page did not advance";
  const std::string shot = fs::path(BinDir()).parent_path().string() + "/dashboard.png";
  fs::remove(shot);
  RunCommand(chromium + "--virtual-time-budget=3000 --window-size=1280,720 --screenshot='" + shot +
                 "' '" + url + "' 2>/dev/null",
             &out);
  EXPECT_TRUE(fs::exists(shot)) << out;
  EXPECT_GT(fs::exists(shot) ? fs::file_size(shot) : 0, 10000u);
}

// A job's page in a real browser: the strip, a thumbnail of every finished segment that really
// loads (an image the browser decoded), the finished video playable in the page, and the action
// buttons. Saves a screenshot (build/job-page.png) for a person to look at.
TEST(Http, JobPageShowsEveryThumbnailAndPlaysTheVideoInHeadlessChromium) {
  std::string out;
  if (!HasChromium()) GTEST_SKIP() << kNoChromium;
  TempDir dir;
  LocalFarm farm(dir / "farm", 1, {"--http", "127.0.0.1:0"});
  ASSERT_TRUE(farm.ok());
  std::ofstream(dir / "page.yaml") << "version: 1\nname: paged\n"
                                   << "video: {width: 160, height: 96, fps: 24, frames: 72}\n"
                                   << "model: {name: zoom, steps: 2}\n"
                                   << "segments: {length: 16, overlap: 4}\n"
                                   << "timeline: [{at: 0, prompt: a lighthouse}]\n";
  ASSERT_EQ(
      RunCommand(Cli("submit '" + dir / "page.yaml" + "' --wait --coordinator " + farm.endpoint()),
                 &out, true),
      0)
      << out;
  const std::string job = SubmittedJobId(out);
  const std::string http = HttpAddress(dir);
  int status = 0;
  const auto j = nlohmann::json::parse(HttpGet(http, "/api/v1/jobs/" + job, &status));
  const int segments = j["segments"]["total"];
  ASSERT_GE(segments, 3);
  // Every finished segment has a thumbnail: a JPEG.
  for (int i = 0; i < segments; ++i) {
    const std::string jpeg = HttpGet(
        http, "/api/v1/jobs/" + job + "/segments/" + std::to_string(i) + "/thumbnail", &status);
    EXPECT_EQ(status, 200) << i;
    EXPECT_EQ(jpeg.substr(0, 3), std::string("\xff\xd8\xff")) << i;
  }
  HttpGet(http, "/api/v1/jobs/" + job + "/segments/" + std::to_string(segments) + "/thumbnail",
          &status);
  EXPECT_EQ(status, 404);
  const std::string url = "http://" + http + "/jobs/" + job;
  const std::string chromium = PageBrowser(dir);
  std::string dom;
  RunCommand(chromium + "--virtual-time-budget=8000 --dump-dom '" + url + "' 2>/dev/null", &dom);
  EXPECT_NE(dom.find("data-state=\"DONE\""), std::string::npos) << dom.substr(0, 2000);
  int loaded = 0;
  for (size_t at = dom.find("data-loaded=\"1\""); at != std::string::npos;
       at = dom.find("data-loaded=\"1\"", at + 1))
    ++loaded;
  EXPECT_EQ(loaded, segments) << "thumbnails the browser decoded";
  EXPECT_EQ(dom.find("data-loaded=\"0\""), std::string::npos);
  // The video element loaded the output: the browser read its first frame and its duration.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(dom, m, std::regex("<video[^>]*data-state=\"([a-z]+)\"")))
      << dom.substr(0, 3000);
  EXPECT_EQ(m[1], "loaded") << "the video did not load in the page";
  ASSERT_TRUE(std::regex_search(dom, m, std::regex("data-duration=\"([0-9.]+)\"")));
  EXPECT_NEAR(std::stod(m[1]), 3.0, 0.1);  // 72 frames at 24 fps
  for (const char* button : {"id=\"cancel\"", "id=\"retry\"", "id=\"setprio\""})
    EXPECT_NE(dom.find(button), std::string::npos) << button;
  EXPECT_NE(dom.find("job DONE"), std::string::npos) << "the log is shown";
  const std::string shot = fs::path(BinDir()).parent_path().string() + "/job-page.png";
  fs::remove(shot);
  RunCommand(chromium + "--virtual-time-budget=8000 --window-size=1280,1000 --screenshot='" + shot +
                 "' '" + url + "' 2>/dev/null",
             &out);
  EXPECT_TRUE(fs::exists(shot)) << out;
  HttpGet(http, "/jobs/" + job, &status);
  EXPECT_EQ(status, 200);
}

// A job's page plays its preview and shows its takes as a contact sheet of thumbnails, each
// decoded by the browser, with the pick command for each (docs/MANIFEST.md, Preview and Takes).
TEST(Http, JobPagePlaysThePreviewAndShowsTheTakesInHeadlessChromium) {
  std::string out;
  if (!HasChromium()) GTEST_SKIP() << kNoChromium;
  TempDir dir;
  LocalFarm farm(dir / "farm", 2, {"--http", "127.0.0.1:0"});
  ASSERT_TRUE(farm.ok());
  std::ofstream(dir / "takes.yaml") << "version: 1\nname: takes\n"
                                    << "video: {width: 128, height: 64, fps: 24, frames: 72}\n"
                                    << "model: {name: zoom, steps: 2}\n"
                                    << "segments: {length: 16, overlap: 4}\n"
                                    << "preview: {steps: 1, scale: 0.5}\n"
                                    << "timeline: [{at: 0, prompt: a lighthouse},\n"
                                    << "  {at: 1s, prompt: a storm, takes: 3}]\n";
  ASSERT_EQ(
      RunCommand(Cli("submit '" + dir / "takes.yaml" + "' --wait --coordinator " + farm.endpoint()),
                 &out, true),
      0)
      << out;
  const std::string job = SubmittedJobId(out);
  const std::string url = "http://" + HttpAddress(dir) + "/jobs/" + job;
  const std::string chromium = PageBrowser(dir);
  std::string dom;
  RunCommand(chromium + "--virtual-time-budget=8000 --dump-dom '" + url + "' 2>/dev/null", &dom);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      dom, m, std::regex("<video[^>]*data-role=\"preview\"[^>]*data-state=\"([a-z]+)\"")))
      << dom.substr(0, 3000);
  EXPECT_EQ(m[1], "loaded") << "the preview did not load in the page";
  // Section 1's three takes, each a decoded thumbnail, with the command that picks it.
  for (int take = 1; take <= 3; ++take) {
    EXPECT_TRUE(std::regex_search(
        dom, std::regex("data-take=\"1/" + std::to_string(take) + "\"[^>]*data-loaded=\"1\"")))
        << "take " << take << ": " << dom.substr(0, 3000);
    EXPECT_NE(dom.find("segue pick " + job + " 1 " + std::to_string(take)), std::string::npos);
  }
  const std::string shot = fs::path(BinDir()).parent_path().string() + "/job-takes.png";
  fs::remove(shot);
  RunCommand(chromium + "--virtual-time-budget=8000 --window-size=1280,1200 --screenshot='" + shot +
                 "' '" + url + "' 2>/dev/null",
             &out);
  EXPECT_TRUE(fs::exists(shot)) << out;
}

// The job page's buttons in a real browser, clicked (tests/support/chromium_page.py drives it
// over the DevTools protocol): priority, cancel and retry go through the REST API.
TEST(Http, JobPageButtonsActThroughTheRestApiInHeadlessChromium) {
  std::string out;
  if (!HasChromium()) GTEST_SKIP() << kNoChromium;
  TempDir dir;
  LocalFarm farm(dir / "farm", 0, {"--http", "127.0.0.1:0"});  // no workers: the job waits
  ASSERT_TRUE(farm.ok());
  const std::string job = std::to_string(SubmitJob(dir, farm, 2));
  const std::string http = HttpAddress(dir);
  const std::string page = "http://" + http + "/jobs/" + job;
  auto js = [](const std::string& step) { return " '" + step + "'"; };
  const int rc = RunCommand(
      "timeout 120 /usr/bin/python3 '" + SourceDir() + "/tests/support/chromium_page.py' '" + page +
          "'" + js("wait:document.body.dataset.state===\"QUEUED\"") +
          js("eval:document.getElementById(\"priority\").value=\"77\"") +
          js("eval:document.getElementById(\"setprio\").click()") +
          js("wait:document.getElementById(\"said\").textContent===\"done: QUEUED\"") +
          js("eval:document.getElementById(\"cancel\").click()") +
          js("wait:document.body.dataset.state===\"CANCELLED\"") +
          js("eval:document.getElementById(\"retry\").click()") +
          js("wait:document.body.dataset.state===\"QUEUED\"") + " 2>&1",
      &out);
  EXPECT_EQ(rc, 0) << out;
  int status = 0;
  const auto j = nlohmann::json::parse(HttpGet(http, "/api/v1/jobs/" + job, &status));
  EXPECT_EQ(j["priority"], 77);
  EXPECT_EQ(j["state"], "QUEUED");
  std::string logs = HttpGet(http, "/api/v1/jobs/" + job + "/logs", &status);
  EXPECT_NE(logs.find("job CANCELLED"), std::string::npos) << logs;
  EXPECT_NE(logs.find("priority set to 77"), std::string::npos) << logs;
}

}  // namespace
}  // namespace segue
