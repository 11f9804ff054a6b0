// Limits that keep the farm serving (docs/OPERATIONS.md, Security), against a real coordinator
// on loopback: connections over the caps are closed at once on both ports, the coordinator keeps
// answering, and the refusals are counted in /metrics.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <zmq.hpp>

#include "common/protocol/protocol.h"
#include "common/protocol/transfer.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

using namespace std::chrono_literals;

// A plain TCP connection to 127.0.0.1:`port` that sends nothing; -1 if it cannot connect.
int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Whether the other side has closed `fd` within `wait` (reads what it sends until then).
bool ClosedByPeer(int fd, std::chrono::milliseconds wait) {
  const auto until = std::chrono::steady_clock::now() + wait;
  char buf[256];
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return true;
  }
  return false;
}

int PortOf(const std::string& endpoint) {
  return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
}

TEST(Limits, ConnectionsOverTheCapsAreClosedAndTheFarmKeepsServing) {
  TempDir dir;
  LocalFarm farm(
      dir / "farm", 0,
      {"--http", "127.0.0.1:0", "--max-connections-per-host", "6", "--max-http-connections", "8"});
  ASSERT_TRUE(farm.ok());
  std::string http;
  std::ifstream(dir / "farm/state/coordinator.http") >> http;
  ASSERT_FALSE(http.empty());

  // 20 idle connections from one host to the farm port: those over 6 are closed at once.
  std::vector<int> idle;
  for (int i = 0; i < 20; ++i) idle.push_back(Connect(PortOf(farm.endpoint())));
  int closed = 0;
  for (int fd : idle) closed += ClosedByPeer(fd, 300ms) ? 1 : 0;
  EXPECT_GE(closed, 14) << "of 20 over a cap of 6";
  EXPECT_LE(closed, 15);
  // The same on the HTTP port (a quarter of 8 per host: 2).
  std::vector<int> browsers;
  for (int i = 0; i < 6; ++i) browsers.push_back(Connect(PortOf("x:" + http)));
  int closed_http = 0;
  for (int fd : browsers) closed_http += ClosedByPeer(fd, 300ms) ? 1 : 0;
  EXPECT_EQ(closed_http, 4) << "of 6 over a cap of 2 per host";

  // Once the idle ones go, the farm answers as before, and says what it refused.
  for (int fd : idle) close(fd);
  for (int fd : browsers) close(fd);
  std::string out;
  bool answered = false;
  for (int i = 0; i < 50 && !answered; ++i) {
    answered = RunCommand(Cli("jobs --coordinator " + farm.endpoint()), &out, true) == 0;
    if (!answered) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(answered) << out;
  int status = 0;
  std::string metrics;
  for (int i = 0; i < 50; ++i) {
    metrics = HttpGet(http, "/metrics", &status);
    if (metrics.find("segue_refused_connections_total 18") != std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(status, 200);
  EXPECT_NE(metrics.find("segue_refused_connections_total 18"), std::string::npos) << metrics;
  std::ifstream log(dir / "farm/coordinator.log");
  const std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_NE(text.find("refused a connection from 127.0.0.1"), std::string::npos) << text;
  EXPECT_NE(text.find("http: refused a connection from 127.0.0.1"), std::string::npos) << text;
}

// A client that connects to the HTTP port and never finishes its request is closed after the
// request timeout (10 s), so trickling clients cannot hold the port's connections.
TEST(Limits, AnHttpRequestThatNeverCompletesIsClosed) {
  TempDir dir;
  LocalFarm farm(dir / "farm", 0, {"--http", "127.0.0.1:0"});
  ASSERT_TRUE(farm.ok());
  std::string http;
  std::ifstream(dir / "farm/state/coordinator.http") >> http;
  const int fd = Connect(PortOf("x:" + http));
  ASSERT_GE(fd, 0);
  ASSERT_EQ(send(fd, "GET / HTTP/1.1\r\n", 16, 0), 16);  // and never the blank line
  EXPECT_FALSE(ClosedByPeer(fd, 2000ms));
  EXPECT_TRUE(ClosedByPeer(fd, 12000ms));
  close(fd);
}

// The first message a DEALER socket receives within `wait`, or nullopt.
std::optional<std::string> NextMessage(zmq::socket_t& s, std::chrono::milliseconds wait) {
  zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, wait);
  if (!(item.revents & ZMQ_POLLIN)) return std::nullopt;
  zmq::message_t m;
  (void)s.recv(m, zmq::recv_flags::none);
  return m.to_string();
}

// Large messages (results, songs) travel in parts, within the coordinator's receive budget
// (common/protocol/transfer.h, coordinator/transfers.h): a render whose every result and whose
// song are larger than a frame finishes; a sender waits while another holds the budget; a
// message larger than the budget is refused with the reason, and a frame larger than a part ends
// its connection while the farm keeps serving.
TEST(Limits, LargeMessagesComeInPartsWithinTheReceiveBudget) {
  TempDir dir;
  LocalFarm farm(dir / "farm", 2, {"--http", "127.0.0.1:0", "--receive-budget-mb", "4"});
  ASSERT_TRUE(farm.ok());
  std::string http;
  std::ifstream(dir / "farm/state/coordinator.http") >> http;

  // 512x512 with 24-frame segments: each segment's latents are 4 x 24 x 64 x 64 floats, 1.5 MiB.
  // The song, 20 s of 16-bit mono at 44.1 kHz, is 1.7 MB.
  std::ofstream(dir / "job.yaml") << R"(version: 1
name: large
video: {width: 512, height: 512, fps: 12, duration: 4s}
model: {name: zoom, steps: 2}
segments: {length: 24, overlap: 8}
timeline:
  - {at: 0s, prompt: "a hall of mirrors"}
audio: {path: song.wav}
output: {path: large.mp4}
)";
  MakeTone(dir / "song.wav", 20);
  ASSERT_GT(std::filesystem::file_size(dir / "song.wav"), TransferLimits::kPartBytes);
  std::string out;
  ASSERT_EQ(RunCommand(Cli("submit '" + dir / "job.yaml" + "' --coordinator " + farm.endpoint()),
                       &out, true),
            0)
      << out;
  const std::string id = SubmittedJobId(out);
  ASSERT_FALSE(id.empty()) << out;
  nlohmann::json status;
  for (int i = 0; i < 1200; ++i) {
    ASSERT_EQ(RunCommand(Cli("status " + id + " --json --coordinator " + farm.endpoint()), &out), 0)
        << out;
    status = nlohmann::json::parse(out);
    if (status["state"] == "DONE" || status["state"] == "FAILED") break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(status["state"], "DONE") << status.dump();
  const ProbeInfo probe = Probe(status["output"].get<std::string>());
  EXPECT_EQ(probe.frames, 48);
  EXPECT_TRUE(probe.has_audio);
  int code = 0;
  const std::string metrics = HttpGet(http, "/metrics", &code);
  // The song and every segment's result (at least 3), each in two parts.
  const size_t at = metrics.find("segue_transfers_total{result=\"completed\"} ");
  ASSERT_NE(at, std::string::npos) << metrics;
  EXPECT_GE(std::stoi(metrics.substr(at + 42)), 4) << metrics.substr(at, 60);
  EXPECT_NE(metrics.find("segue_receive_budget_bytes 4194304"), std::string::npos);
  EXPECT_NE(metrics.find("segue_receive_held_bytes 0"), std::string::npos);

  // A co-denoising worker returns all its segments' results at once, each larger than a frame:
  // 12 segments over 2 workers are 6 results each, more than a peer may have asked for at once
  // (TransferLimits::kMaxRequested), so they go four at a time.
  std::ofstream(dir / "gang.yaml") << R"(version: 1
name: gang
video: {width: 512, height: 512, fps: 12, frames: 200}
model: {name: zoom, steps: 2}
segments: {length: 24, overlap: 8, strategy: codenoise}
timeline:
  - {at: 0s, prompt: "a hall of mirrors"}
output: {path: gang.mp4}
)";
  ASSERT_EQ(RunCommand(Cli("submit '" + dir / "gang.yaml" + "' --coordinator " + farm.endpoint()),
                       &out, true),
            0)
      << out;
  const std::string gang = SubmittedJobId(out);
  for (int i = 0; i < 1200; ++i) {
    ASSERT_EQ(RunCommand(Cli("status " + gang + " --json --coordinator " + farm.endpoint()), &out),
              0)
        << out;
    status = nlohmann::json::parse(out);
    if (status["state"] == "DONE" || status["state"] == "FAILED") break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(status["state"], "DONE") << status.dump();
  EXPECT_EQ(status["segments"]["done"], 12);
  EXPECT_NE(HttpGet(http, "/metrics", &code).find("segue_transfers_total{result=\"refused\"} 0"),
            std::string::npos);

  // A song larger than the budget is refused, saying so.
  MakeTone(dir / "song.wav", 60);  // 5.3 MB
  EXPECT_NE(RunCommand(Cli("submit '" + dir / "job.yaml" + "' --coordinator " + farm.endpoint()),
                       &out, true),
            0);
  EXPECT_NE(out.find("larger than the 4194304 bytes the coordinator takes"), std::string::npos)
      << out;

  // Two senders of 3 MiB each: one is granted, the other waits until the first is through.
  zmq::context_t ctx;
  auto dealer = [&] {
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    s.connect(farm.endpoint());
    return s;
  };
  zmq::socket_t first = dealer(), second = dealer();
  capnp::MallocMessageBuilder b;
  auto submit = b.initRoot<wire::Envelope>().initSubmit();
  submit.setManifestText("version: 1\n");  // not a job: answered with an error once assembled
  submit.setManifestName("padded.yaml");
  submit.setAudioData(kj::heapArray<kj::byte>(3 << 20).asPtr());
  const std::string message = Serialize(b);
  OutgoingTransfers a, c(1000);
  first.send(zmq::buffer(a.Prepare(message)), zmq::send_flags::none);
  auto grant = NextMessage(first, 5000ms);
  ASSERT_TRUE(grant);
  second.send(zmq::buffer(c.Prepare(message)), zmq::send_flags::none);
  EXPECT_FALSE(NextMessage(second, 1000ms)) << "granted while the budget was held";
  auto in = Incoming::Parse(grant->data(), grant->size());
  ASSERT_TRUE(in.ok() && (*in)->envelope().isTransferReply());
  std::string why;
  ASSERT_EQ(
      a.OnReply((*in)->envelope().getTransferReply(),
                [&](std::string part) { first.send(zmq::buffer(part), zmq::send_flags::none); },
                &why),
      OutgoingTransfers::Outcome::kSent);
  auto reply = NextMessage(first, 5000ms);  // the assembled Submit's own answer
  ASSERT_TRUE(reply);
  auto answer = Incoming::Parse(reply->data(), reply->size());
  ASSERT_TRUE(answer.ok() && (*answer)->envelope().isError());
  EXPECT_NE(std::string((*answer)->envelope().getError().getMessage().cStr()).find("padded.yaml"),
            std::string::npos);
  EXPECT_TRUE(NextMessage(second, 5000ms)) << "not granted once the budget was free";

  // A frame larger than a part ends its connection; the farm answers others as before.
  zmq::socket_t big = dealer();
  big.set(zmq::sockopt::immediate, 1);
  const std::string monitor = "inproc://big-monitor";
  ASSERT_EQ(zmq_socket_monitor(big.handle(), monitor.c_str(), ZMQ_EVENT_DISCONNECTED), 0);
  zmq::socket_t events(ctx, zmq::socket_type::pair);
  events.connect(monitor);
  big.send(zmq::buffer(std::string(TransferLimits::kMaxFrameBytes + 1, 'x')),
           zmq::send_flags::none);
  EXPECT_TRUE(NextMessage(events, 5000ms)) << "the connection stayed open";
  EXPECT_EQ(RunCommand(Cli("jobs --coordinator " + farm.endpoint()), &out, true), 0) << out;
}

}  // namespace
}  // namespace segue
