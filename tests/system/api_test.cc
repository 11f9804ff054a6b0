// The HTTP API's writes, outputs, event stream and webhooks on a real coordinator with real
// workers, over real sockets (docs/API.md): what a pipeline integrating segue relies on.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/util/process.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

std::string HttpAddress(const TempDir& dir) {
  std::ifstream f(dir / "farm/state/coordinator.http");
  std::string a;
  std::getline(f, a);
  return a;
}

struct Reply {
  int status = 0;
  std::string head, body;
  json Json() const { return json::parse(body, nullptr, false); }
  std::string Header(const std::string& name) const {
    const size_t at = head.find("\r\n" + name + ": ");
    if (at == std::string::npos) return "";
    const size_t from = at + name.size() + 4;
    return head.substr(from, head.find("\r\n", from) - from);
  }
};

// One request; `headers` are whole lines ("Authorization: Bearer x").
Reply Call(const std::string& http, const std::string& method, const std::string& path,
           const std::string& body = "", std::vector<std::string> headers = {}) {
  std::string request = method + " " + path + " HTTP/1.1\r\nHost: " + http + "\r\n";
  if (!body.empty()) {
    request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    headers.insert(headers.begin(), "Content-Type: application/json");
  }
  for (const std::string& h : headers) request += h + "\r\n";
  Reply r;
  const std::string all = HttpExchange(http, request + "\r\n" + body, &r.status);
  const size_t split = all.find("\r\n\r\n");
  r.head = all.substr(0, split);
  r.body = split == std::string::npos ? "" : all.substr(split + 4);
  return r;
}

std::string SubmitBody(const std::string& manifest, const std::string& submission_id = "",
                       const std::string& audio = "") {
  json b = {{"manifest", manifest}, {"manifest_name", "shot010.yaml"}};
  if (!submission_id.empty()) b["submission_id"] = submission_id;
  if (!audio.empty()) {
    std::string encoded(sodium_base64_ENCODED_LEN(audio.size(), sodium_base64_VARIANT_ORIGINAL),
                        '\0');
    sodium_bin2base64(encoded.data(), encoded.size(),
                      reinterpret_cast<const unsigned char*>(audio.data()), audio.size(),
                      sodium_base64_VARIANT_ORIGINAL);
    encoded.resize(encoded.size() - 1);
    b["audio"] = encoded;
    b["audio_name"] = "song.wav";
  }
  return b.dump();
}

std::string Manifest(const std::string& name, int frames, int steps,
                     const std::string& extra = "") {
  return "version: 1\nname: " + name +
         "\nvideo: {width: 64, height: 64, fps: 24, frames: " + std::to_string(frames) +
         "}\nmodel: {name: zoom, steps: " + std::to_string(steps) +
         "}\nsegments: {length: 12, overlap: 2}\ntimeline: [{at: 0, prompt: a garden}]\n" +
         "output: {overwrite: true}\n" + extra;
}

json WaitFinished(const std::string& http, const std::string& id, int seconds = 120) {
  json j;
  for (int i = 0; i < seconds * 20; ++i) {
    j = Call(http, "GET", "/api/v1/jobs/" + id).Json();
    const std::string state = j.value("state", "");
    if (state == "DONE" || state == "FAILED" || state == "CANCELLED") break;
    std::this_thread::sleep_for(50ms);
  }
  return j;
}

// Submit (with audio, idempotently), priority, cancel (twice), retry, the output whole and in
// ranges, and requests that are wrong: each answered with a JSON error that names the problem,
// and none changes anything.
TEST(Api, WritesRunAJobFromSubmitToDownload) {
  TempDir dir;
  LocalFarm farm(dir / "farm", 1, {"--http", "127.0.0.1:0"});
  ASSERT_TRUE(farm.ok());
  const std::string http = HttpAddress(dir);
  MakeTone(dir / "song.wav", 2.0);
  std::ifstream wav(dir / "song.wav", std::ios::binary);
  const std::string audio((std::istreambuf_iterator<char>(wav)), {});
  const std::string body =
      SubmitBody(Manifest("api", 48, 40, "audio: {path: song.wav}\nmetadata: {shot: \"010\"}\n"),
                 "shot010-v1", audio);
  Reply r = Call(http, "POST", "/api/v1/jobs", body);
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = r.Json()["id"];
  EXPECT_EQ(r.Header("Location"), "/api/v1/jobs/" + id);
  EXPECT_EQ(r.Json()["owner"], "local");
  EXPECT_EQ(r.Json()["metadata"]["shot"], "010");
  // The same submission id again: the same job, not a second one.
  r = Call(http, "POST", "/api/v1/jobs", body);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["id"], id);
  EXPECT_EQ(Call(http, "GET", "/api/v1/jobs").Json()["jobs"].size(), 1u);

  r = Call(http, "POST", "/api/v1/jobs/" + id + "/priority", R"({"priority": 80})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["priority"], 80);
  r = Call(http, "POST", "/api/v1/jobs/" + id + "/output", "");
  EXPECT_EQ(r.status, 405);
  r = Call(http, "GET", "/api/v1/jobs/" + id + "/output");
  EXPECT_EQ(r.status, 409) << r.body;  // not DONE yet
  EXPECT_EQ(r.Json()["error"]["code"], "not_ready");
  r = Call(http, "POST", "/api/v1/jobs/" + id + "/cancel");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["state"], "CANCELLED");
  r = Call(http, "POST", "/api/v1/jobs/" + id + "/cancel");  // idempotent
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["state"], "CANCELLED");
  r = Call(http, "POST", "/api/v1/jobs/" + id + "/retry");
  EXPECT_EQ(r.status, 200) << r.body;
  r = Call(http, "POST", "/api/v1/jobs/" + id + "/retry");  // running: nothing to retry
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.Json()["error"]["message"].get<std::string>().find("only FAILED or CANCELLED"),
            std::string::npos);
  const json done = WaitFinished(http, id);
  ASSERT_EQ(done["state"], "DONE") << done.dump();

  r = Call(http, "GET", "/api/v1/jobs/" + id + "/output");
  ASSERT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.Header("Content-Type"), "video/mp4");
  EXPECT_EQ(r.Header("Accept-Ranges"), "bytes");
  const std::string output = done["output"];
  EXPECT_EQ(r.body.size(), fs::file_size(output));
  std::ofstream(dir / "downloaded.mp4", std::ios::binary) << r.body;
  const ProbeInfo probe = Probe(dir / "downloaded.mp4");
  EXPECT_EQ(probe.frames, 48);
  EXPECT_TRUE(probe.has_audio);
  std::ifstream file(output, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(file)), {});
  EXPECT_EQ(r.body, bytes);
  r = Call(http, "GET", "/api/v1/jobs/" + id + "/output", "", {"Range: bytes=100-199"});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, bytes.substr(100, 100));
  EXPECT_EQ(r.Header("Content-Range"), "bytes 100-199/" + std::to_string(bytes.size()));
  r = Call(http, "GET", "/api/v1/jobs/" + id + "/output", "", {"Range: bytes=-10"});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, bytes.substr(bytes.size() - 10));
  r = Call(http, "GET", "/api/v1/jobs/" + id + "/output", "",
           {"Range: bytes=" + std::to_string(bytes.size()) + "-"});
  EXPECT_EQ(r.status, 416);
  EXPECT_EQ(r.Header("Content-Range"), "bytes */" + std::to_string(bytes.size()));
  r = Call(http, "HEAD", "/api/v1/jobs/" + id + "/output");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("Content-Length"), std::to_string(bytes.size()));
  EXPECT_TRUE(r.body.empty());
  // A resumed download of another version of the file gets the whole file (If-Range).
  const std::string etag = r.Header("ETag");
  ASSERT_FALSE(etag.empty());
  r = Call(http, "GET", "/api/v1/jobs/" + id + "/output", "",
           {"Range: bytes=100-199", "If-Range: " + etag});
  EXPECT_EQ(r.status, 206);
  r = Call(http, "GET", "/api/v1/jobs/" + id + "/output", "",
           {"Range: bytes=100-199", "If-Range: \"1-2\""});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, bytes);

  // Wrong requests: a JSON error naming the problem, nothing changed.
  auto error = [&](const Reply& reply) {
    return reply.Json()["error"]["code"].get<std::string>() + ": " +
           reply.Json()["error"]["message"].get<std::string>();
  };
  r = Call(http, "POST", "/api/v1/jobs", "{not json");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error(r), "bad_request: the body is not JSON");
  r = Call(http, "POST", "/api/v1/jobs", R"({"manifest": "version: 1", "colour": "red"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(error(r).find("field 'colour': unknown field"), std::string::npos) << error(r);
  r = Call(http, "POST", "/api/v1/jobs", R"({"manifest": "version: 1\nname: x\n"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(error(r).find("request"), std::string::npos) << error(r);  // the manifest's name
  r = Call(http, "POST", "/api/v1/jobs", SubmitBody("version: 1\nname: [\n"));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(error(r).find("shot010.yaml:"), std::string::npos) << error(r);
  r = Call(http, "POST", "/api/v1/jobs", R"({"manifest": "x", "audio": "@@@"})");
  EXPECT_EQ(error(r), "bad_request: field 'audio': expected the audio file's bytes in base64");
  r = Call(http, "POST", "/api/v1/jobs/" + id + "/priority", R"({"priority": "high"})");
  EXPECT_EQ(error(r), "bad_request: field 'priority': expected an integer");
  r = Call(http, "POST", "/api/v1/jobs/999/cancel");
  EXPECT_EQ(r.status, 404);
  r = Call(http, "POST", "/api/v1/workers/nobody/drain");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.Json()["error"]["code"], "not_found");
  r = Call(http, "POST", "/api/v1/jobs/" + id + "/priority", "priority=3",
           {"Content-Type: application/x-www-form-urlencoded"});
  EXPECT_EQ(r.status, 415);
  r = Call(http, "POST", "/api/v1/jobs/" + id + "/cancel", "", {"Origin: http://evil.example"});
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.Json()["error"]["code"], "denied");
  r = Call(http, "GET", "/api/v1/jobs/" + id + "/cancel");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.Header("Allow"), "POST");
  r = Call(http, "POST", "/api/v1/jobs", "", {"Content-Length: 999999999999"});
  EXPECT_EQ(r.status, 413);
  r = Call(http, "POST", "/api/v1/jobs", "", {"Transfer-Encoding: chunked"});
  EXPECT_EQ(r.status, 411);
  // A page elsewhere whose name points at 127.0.0.1 (DNS rebinding) names itself as Host.
  r = Call(http, "POST", "/api/v1/jobs/" + id + "/retry", "", {"Host: evil.example:8080"});
  EXPECT_EQ(r.status, 403);
  EXPECT_NE(r.body.find("Host: evil.example"), std::string::npos) << r.body;
  r = Call(http, "POST", "/api/v1/jobs/" + id + "/retry", "", {"Host: 127.evil.example"});
  EXPECT_EQ(r.status, 403);
  // Bytes that are not UTF-8 come back replaced, and the coordinator keeps serving.
  r = Call(http, "POST", "/api/v1/workers/%FF%FE/drain");
  EXPECT_EQ(r.status, 404);
  EXPECT_FALSE(r.Json().is_discarded()) << r.body;
  // A metadata key of 81 bytes: its error quotes the first 64, which cuts a character in two.
  std::string key = "a";
  for (int i = 0; i < 40; ++i) key += "\xc3\xa9";
  r = Call(http, "POST", "/api/v1/jobs",
           SubmitBody(Manifest("utf8", 24, 2, "metadata: {\"" + key + "\": x}\n")));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_FALSE(r.Json().is_discarded()) << r.body;
  EXPECT_EQ(Call(http, "GET", "/api/v1/jobs").Json()["jobs"].size(), 1u);
  EXPECT_EQ(Call(http, "GET", "/api/v1/jobs/" + id).Json()["state"], "DONE");

  // Pools: scale and autoscale as an admin (the local identity, on loopback).
  r = Call(http, "POST", "/api/v1/pools/local/autoscale",
           R"({"enabled": true, "min": 0, "max": 2})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["pools"][0]["autoscale"], true);
  r = Call(http, "POST", "/api/v1/pools/local/scale", R"({"size": 0})");
  EXPECT_EQ(r.status, 200) << r.body;
  r = Call(http, "POST", "/api/v1/pools/nowhere/scale", R"({"size": 1})");
  EXPECT_EQ(r.status, 400) << r.body;
  r = Call(http, "POST", "/api/v1/workers/w0/drain");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["workers"][0]["state"], "draining");
}

// Makes a token for each "NAME:ROLE" with `segue token` and writes DIR/keys.yaml with their
// digests (and the coordinator's key pair, DIR/farm.key); the tokens by name.
std::map<std::string, std::string> WriteTokenKeys(const TempDir& dir,
                                                  const std::vector<std::string>& who) {
  std::map<std::string, std::string> tokens;
  std::string out, entries;
  EXPECT_EQ(RunCommand(Cli("keygen '" + dir / "farm" + "'"), &out, true), 0) << out;
  for (const std::string& w : who) {
    const std::string name = w.substr(0, w.find(':')), role = w.substr(w.find(':') + 1);
    EXPECT_EQ(RunCommand(Cli("token " + name + " --role " + role + " --json"), &out, true), 0)
        << out;
    const json t = json::parse(out);
    tokens[name] = t["token"];
    EXPECT_EQ(t["token_sha256"].get<std::string>().size(), 64u);
    entries += "  - {name: " + name + ", role: " + role + ", token_sha256: \"" +
               t["token_sha256"].get<std::string>() + "\"}\n";
  }
  std::ofstream(dir / "keys.yaml") << "identities:\n" << entries;
  return tokens;
}

// Bearer tokens name identities of the keys file: each role may do what it may on the farm port.
TEST(Api, BearerTokensCarryTheRolesOfTheKeysFile) {
  TempDir dir;
  std::map<std::string, std::string> tokens =
      WriteTokenKeys(dir, {"ops:admin", "alice:submitter", "bob:submitter", "vic:viewer"});
  LocalFarm farm(
      dir / "farm", 0,
      {"--http", "127.0.0.1:0", "--curve-key", dir / "farm.key", "--keys", dir / "keys.yaml"});
  ASSERT_TRUE(farm.ok());
  const std::string http = HttpAddress(dir);
  auto as = [&](const std::string& who) {
    return std::vector<std::string>{"Authorization: Bearer " + tokens[who]};
  };
  const std::string body = SubmitBody(Manifest("owned", 24, 2));
  Reply r = Call(http, "POST", "/api/v1/jobs", body);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.Json()["error"]["code"], "unauthorized");
  EXPECT_EQ(r.Header("WWW-Authenticate"), "Bearer realm=\"segue\"");
  r = Call(http, "POST", "/api/v1/jobs", body, {"Authorization: Bearer not-a-token"});
  EXPECT_EQ(r.status, 401);
  r = Call(http, "POST", "/api/v1/jobs", body, as("vic"));
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(r.Json()["error"]["code"], "denied");
  r = Call(http, "POST", "/api/v1/jobs", body, as("alice"));
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = r.Json()["id"];
  EXPECT_EQ(r.Json()["owner"], "alice");
  r = Call(http, "POST", "/api/v1/jobs/" + id + "/cancel", "", as("bob"));
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("belongs to 'alice'"), std::string::npos) << r.body;
  r = Call(http, "POST", "/api/v1/pools/local/scale", R"({"size": 0})", as("alice"));
  EXPECT_EQ(r.status, 403) << r.body;
  r = Call(http, "POST", "/api/v1/jobs/" + id + "/priority", R"({"priority": 70})", as("alice"));
  EXPECT_EQ(r.status, 200) << r.body;
  r = Call(http, "POST", "/api/v1/jobs/" + id + "/cancel", "", as("ops"));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["state"], "CANCELLED");
  // Reads are a viewer's, open to whoever reaches the port.
  EXPECT_EQ(Call(http, "GET", "/api/v1/jobs/" + id).Json()["owner"], "alice");
  const std::string metrics = HttpGet(http, "/metrics", &r.status);
  EXPECT_NE(metrics.find("segue_denied_total{role=\"viewer\"} 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("segue_denied_total{role=\"submitter\"} 2"), std::string::npos);
}

// Off loopback, with keys, reads need an identity that may read too: a bearer token, or the
// cookie the dashboard sets for what the browser fetches by itself (thumbnails, the video).
TEST(Api, ReadsOffLoopbackNeedATokenOrItsCookie) {
  TempDir dir;
  std::map<std::string, std::string> tokens =
      WriteTokenKeys(dir, {"alice:submitter", "vic:viewer", "node:worker"});
  LocalFarm farm(
      dir / "farm", 0,
      {"--http", "0.0.0.0:0", "--curve-key", dir / "farm.key", "--keys", dir / "keys.yaml"});
  ASSERT_TRUE(farm.ok());
  const std::string http = "127.0.0.1" + HttpAddress(dir).substr(HttpAddress(dir).rfind(':'));
  Reply r = Call(http, "POST", "/api/v1/jobs", SubmitBody(Manifest("private", 24, 2)),
                 {"Authorization: Bearer " + tokens["alice"]});
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = r.Json()["id"];
  r = Call(http, "GET", "/api/v1/jobs/" + id);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.Json()["error"]["code"], "unauthorized");
  EXPECT_EQ(Call(http, "GET", "/api/v1/jobs/" + id + "/output").status, 401);
  EXPECT_EQ(Call(http, "GET", "/api/v1/events").status, 401);
  r = Call(http, "GET", "/api/v1/jobs/" + id, "", {"Authorization: Bearer " + tokens["vic"]});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Json()["owner"], "alice");
  r = Call(http, "GET", "/api/v1/jobs/" + id, "",
           {"Cookie: theme=dark; segue_token=" + tokens["vic"]});
  EXPECT_EQ(r.status, 200) << r.body;
  r = Call(http, "GET", "/api/v1/jobs", "", {"Authorization: Bearer " + tokens["node"]});
  EXPECT_EQ(r.status, 403) << "a worker's token may not read the job list";
  // The pages, metrics, health and the API's documents stay open.
  for (const std::string& open :
       std::vector<std::string>{"/", "/jobs/" + id, "/metrics", "/api/v1/health", "/api/v1/version",
                                "/api/v1/openapi.json"})
    EXPECT_EQ(Call(http, "GET", open).status, 200) << open;
}

// A client following the event stream, as a raw socket reads it.
class EventStream {
 public:
  EventStream(const std::string& http, const std::string& path,
              const std::string& last_event_id = "") {
    const size_t colon = http.rfind(':');
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(http.substr(colon + 1))));
    inet_pton(AF_INET, http.substr(0, colon).c_str(), &addr.sin_addr);
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{0, 200000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
    std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + http + "\r\n";
    if (!last_event_id.empty()) request += "Last-Event-ID: " + last_event_id + "\r\n";
    request += "\r\n";
    (void)!send(fd_, request.data(), request.size(), MSG_NOSIGNAL);
  }
  ~EventStream() { close(fd_); }
  // Reads until `text` has arrived or `seconds` pass; everything so far.
  const std::string& ReadUntil(const std::string& text, int seconds = 60) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    char buf[4096];
    while (got_.find(text) == std::string::npos && std::chrono::steady_clock::now() < until) {
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n == 0) break;
      if (n > 0) got_.append(buf, static_cast<size_t>(n));
    }
    return got_;
  }
  // The events so far: (id, event, data).
  std::vector<std::tuple<std::string, std::string, json>> Events() const {
    std::vector<std::tuple<std::string, std::string, json>> out;
    size_t at = got_.find("\r\n\r\n");
    if (at == std::string::npos) return out;
    std::string id, event;
    for (size_t pos = at + 4; pos < got_.size();) {
      const size_t eol = got_.find('\n', pos);
      if (eol == std::string::npos) break;
      const std::string line = got_.substr(pos, eol - pos);
      pos = eol + 1;
      if (line.rfind("id: ", 0) == 0) id = line.substr(4);
      if (line.rfind("event: ", 0) == 0) event = line.substr(7);
      if (line.rfind("data: ", 0) == 0) {
        out.emplace_back(id, event, json::parse(line.substr(6), nullptr, false));
        id.clear();
        event.clear();
      }
    }
    return out;
  }

 private:
  int fd_ = -1;
  std::string got_;
};

// Job and segment state changes stream as Server-Sent Events; a client that reconnects with the
// last id it saw gets exactly the events after it, and one whose id is not kept is told so.
TEST(Api, EventStreamFollowsAJobAndResumesFromAnEventId) {
  TempDir dir;
  LocalFarm farm(dir / "farm", 1, {"--http", "127.0.0.1:0"});
  ASSERT_TRUE(farm.ok());
  ASSERT_TRUE(farm.WaitForWorkers());
  const std::string http = HttpAddress(dir);
  EventStream all(http, "/api/v1/events");
  all.ReadUntil("retry: 2000");
  EXPECT_NE(all.ReadUntil("retry").find("Content-Type: text/event-stream"), std::string::npos);
  Reply r = Call(http, "POST", "/api/v1/jobs", SubmitBody(Manifest("watched", 48, 4)));
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = r.Json()["id"];
  EventStream one(http, "/api/v1/events?job=" + id);
  all.ReadUntil("\"state\":\"DONE\"");
  one.ReadUntil("\"state\":\"DONE\"");
  const auto events = all.Events();
  ASSERT_FALSE(events.empty());
  // Every segment ran and finished, the job went QUEUED, RUNNING, STITCHING, DONE, in order,
  // with ids that only grow.
  const int segments = r.Json()["segments"]["total"];
  std::vector<std::string> job_states;
  std::set<int> done;
  std::string last_id;
  for (const auto& [eid, type, data] : events) {
    EXPECT_EQ(data["job"], id);
    EXPECT_EQ(data["id"], eid);
    EXPECT_GT(std::stoull(eid), last_id.empty() ? 0 : std::stoull(last_id));
    last_id = eid;
    if (type == "job") job_states.push_back(data["state"]);
    if (type == "segment" && data["state"] == "done") done.insert(data["index"].get<int>());
  }
  EXPECT_EQ(job_states, (std::vector<std::string>{"QUEUED", "RUNNING", "STITCHING", "DONE"}));
  EXPECT_EQ(static_cast<int>(done.size()), segments);
  // The job's own stream began with where the job stood, then the same changes.
  const auto mine = one.Events();
  ASSERT_FALSE(mine.empty());
  EXPECT_EQ(std::get<1>(mine.front()), "snapshot");
  EXPECT_EQ(std::get<2>(mine.front())["id"], id);
  // Resuming after the fourth event: the rest, exactly.
  const std::string fourth = std::get<0>(events[3]);
  EventStream resumed(http, "/api/v1/events", fourth);
  resumed.ReadUntil("\"state\":\"DONE\"");
  const auto rest = resumed.Events();
  ASSERT_EQ(rest.size(), events.size() - 4);
  for (size_t i = 0; i < rest.size(); ++i)
    EXPECT_EQ(std::get<0>(rest[i]), std::get<0>(events[i + 4]));
  // An id from before this run: the client missed events, and is told to read the jobs again.
  EventStream stale(http, "/api/v1/events", "5");
  const std::string said = stale.ReadUntil("event: reset");
  EXPECT_NE(said.find("event: reset"), std::string::npos) << said;
  r = Call(http, "GET", "/api/v1/events?job=424242");
  EXPECT_EQ(r.status, 404);
}

// Webhooks: the coordinator's and the manifest's receivers hear of every state change of the
// job, in order, signed, with retries (the receiver fails its first answers) until taken.
TEST(Api, WebhooksAreRetriedWithBackoffAndSigned) {
  TempDir dir;
  auto receiver = [&](const std::string& name, int fail_first) {
    auto p = ChildProcess::Spawn(
        {"/usr/bin/python3", SourceDir() + "/tests/support/webhook_receiver.py",
         dir / (name + ".port"), dir / (name + ".log"), std::to_string(fail_first)},
        dir / (name + ".out"));
    std::string port;
    for (int i = 0; i < 200 && port.empty(); ++i) {
      std::this_thread::sleep_for(50ms);
      std::ifstream(dir / (name + ".port")) >> port;
    }
    return std::make_pair(std::move(p), "http://127.0.0.1:" + port + "/hooks/" + name);
  };
  auto [farm_hook, farm_url] = receiver("farm", 2);
  auto [job_hook, job_url] = receiver("job", 0);
  ASSERT_TRUE(farm_hook.ok());
  ASSERT_TRUE(job_hook.ok());
  std::ofstream(dir / "secret") << "s3cret\n";
  LocalFarm farm(
      dir / "farm", 1,
      {"--http", "127.0.0.1:0", "--webhook", farm_url, "--webhook-secret-file", dir / "secret"});
  ASSERT_TRUE(farm.ok());
  const std::string http = HttpAddress(dir);
  Reply r = Call(http, "POST", "/api/v1/jobs",
                 SubmitBody(Manifest("hooked", 24, 2, "webhooks: [\"" + job_url + "\"]\n")));
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = r.Json()["id"];
  ASSERT_EQ(WaitFinished(http, id)["state"], "DONE");
  auto delivered = [&](const std::string& name) {
    std::vector<json> out;
    std::ifstream f(dir / (name + ".log"));
    for (std::string line; std::getline(f, line);) out.push_back(json::parse(line));
    return out;
  };
  // The farm's receiver failed twice: the first state is retried (1 s, then 2 s) until taken.
  std::vector<json> farm_got;
  for (int i = 0; i < 300; ++i) {
    farm_got = delivered("farm");
    if (!farm_got.empty() &&
        json::parse(farm_got.back()["body"].get<std::string>())["event"]["state"] == "DONE")
      break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_GE(farm_got.size(), 6u);
  EXPECT_EQ(farm_got[0]["status"], 500);
  EXPECT_EQ(farm_got[1]["status"], 500);
  std::vector<std::string> states;
  for (const json& d : farm_got) {
    const json body = json::parse(d["body"].get<std::string>());
    EXPECT_EQ(d["path"], "/hooks/farm");
    EXPECT_EQ(d["headers"]["Content-Type"], "application/json");
    EXPECT_EQ(d["headers"]["X-Segue-Event"], "job." + body["event"]["state"].get<std::string>());
    EXPECT_EQ(d["headers"]["X-Segue-Delivery"], body["event"]["id"]);
    // The signature is the HMAC-SHA256 of the body under the secret.
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    const std::string text = d["body"];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>("s3cret"), 6);
    crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(text.data()),
                                  text.size());
    crypto_auth_hmacsha256_final(&st, mac);
    char hex[2 * sizeof mac + 1];
    sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
    EXPECT_EQ(d["headers"]["X-Segue-Signature"], std::string("sha256=") + hex);
    EXPECT_EQ(body["job"]["id"], id);
    // The event is the change; the job is as it stood when it was sent (perhaps further on).
    if (d["status"] == 204) states.push_back(body["event"]["state"]);
  }
  EXPECT_EQ(states, (std::vector<std::string>{"QUEUED", "RUNNING", "STITCHING", "DONE"}));
  const std::vector<json> job_got = delivered("job");
  ASSERT_EQ(job_got.size(), 4u);
  EXPECT_EQ(json::parse(job_got.back()["body"].get<std::string>())["event"]["state"], "DONE");
  const std::string metrics = HttpGet(http, "/metrics", &r.status);
  EXPECT_NE(metrics.find("segue_webhooks_total{result=\"delivered\"} 8"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("segue_webhooks_total{result=\"retried\"} 2"), std::string::npos);
  // A bad --webhook is bad input.
  std::string out;
  EXPECT_EQ(RunCommand(BinDir() + "/segue-coordinator --webhook https://example.com/x", &out, true),
            2);
  EXPECT_NE(out.find("plain http://"), std::string::npos) << out;
}

}  // namespace
}  // namespace segue
