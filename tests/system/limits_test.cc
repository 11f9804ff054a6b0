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
#include <thread>

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

}  // namespace
}  // namespace segue
