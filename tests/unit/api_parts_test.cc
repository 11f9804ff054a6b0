// The HTTP API's parts one at a time: byte ranges, webhook URLs, the event log's resume rule,
// tokens in the keys file, and the HTTP endpoint streaming a file to a slow client over loopback
// while it keeps answering others.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "common/net/url.h"
#include "common/security/keyring.h"
#include "coordinator/events.h"
#include "coordinator/http.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

TEST(ByteRanges, OneRangeOfAFileAsRfc9110SaysOthersServeTheWholeFile) {
  ByteRange r;
  EXPECT_EQ(ParseRange("bytes=0-99", 1000, &r), RangeResult::kRange);
  EXPECT_EQ(r.first, 0u);
  EXPECT_EQ(r.last, 99u);
  EXPECT_EQ(ParseRange("bytes=900-", 1000, &r), RangeResult::kRange);
  EXPECT_EQ(r.last, 999u);
  EXPECT_EQ(ParseRange("bytes=990-5000", 1000, &r), RangeResult::kRange);
  EXPECT_EQ(r.last, 999u);  // clamped
  EXPECT_EQ(ParseRange("bytes=-10", 1000, &r), RangeResult::kRange);
  EXPECT_EQ(r.first, 990u);
  EXPECT_EQ(ParseRange("bytes=-5000", 1000, &r), RangeResult::kRange);
  EXPECT_EQ(r.first, 0u);
  EXPECT_EQ(ParseRange("bytes=1000-", 1000, &r), RangeResult::kUnsatisfiable);
  EXPECT_EQ(ParseRange("bytes=-0", 1000, &r), RangeResult::kUnsatisfiable);
  EXPECT_EQ(ParseRange("bytes=0-0", 0, &r), RangeResult::kUnsatisfiable);
  for (const char* whole : {"", "bytes=0-1,5-6", "items=0-1", "bytes=5-2", "bytes=x-",
                            "bytes=99999999999999999999999-", "bytes=-", "bytes="})
    EXPECT_EQ(ParseRange(whole, 1000, &r), RangeResult::kWhole) << whole;
}

TEST(WebhookUrls, PlainHttpWithAHostAndAnOptionalPort) {
  auto u = ParseHttpUrl("http://hooks.studio.internal:8081/segue?team=fx");
  ASSERT_TRUE(u.ok()) << u.message();
  EXPECT_EQ(u->host, "hooks.studio.internal");
  EXPECT_EQ(u->port, 8081);
  EXPECT_EQ(u->path, "/segue?team=fx");
  u = ParseHttpUrl("http://10.0.0.5");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->path, "/");
  u = ParseHttpUrl("http://[::1]:9000/x");
  ASSERT_TRUE(u.ok()) << u.message();
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 9000);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"https://x/", "plain http://"},
      {"ftp://x/", "expected an http:// URL"},
      {"http://:80/", "a host"},
      {"http://x:0/", "a port from 1 to 65535"},
      {"http://x:99999/", "a port from 1 to 65535"},
      {"http://x:/", "a port from 1 to 65535"},
      {"http://user:pw@x/", "without a user name"},
      {"http://x/a b", "without spaces"},
      {"http://x/#frag", "#fragment"},
      {"http://[::1/", "[brackets]"},
      {"http://x/" + std::string(3000, 'a'), "2048"},
  };
  for (const auto& [url, why] : bad) {
    auto r = ParseHttpUrl(url);
    ASSERT_FALSE(r.ok()) << url;
    EXPECT_NE(r.message().find(why), std::string::npos) << url << ": " << r.message();
  }
}

FarmEvent JobEvent(uint64_t job, const std::string& state) {
  return {0, 1, job, "job", -1, state, ""};
}

TEST(EventLog, ResumesAfterAnIdAndSaysWhenEventsWereMissed) {
  EventLog log(1000, /*capacity=*/4);
  std::vector<FarmEvent> batch = {JobEvent(1, "QUEUED"), JobEvent(2, "QUEUED"),
                                  JobEvent(1, "RUNNING")};
  log.Publish(batch);
  EXPECT_EQ(batch[0].id, 1001u);
  EXPECT_EQ(batch[2].id, 1003u);
  std::vector<const FarmEvent*> got;
  EXPECT_TRUE(log.Since(1001, 0, &got));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]->id, 1002u);
  got.clear();
  EXPECT_TRUE(log.Since(1000, 1, &got));  // the run's first event on: complete, job 1 only
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1]->state, "RUNNING");
  got.clear();
  EXPECT_FALSE(log.Since(5, 0, &got)) << "an id from before this run";
  EXPECT_EQ(got.size(), 3u);  // what there is, after the reset
  // Beyond the capacity the oldest go: resuming from before them misses events.
  std::vector<FarmEvent> more = {JobEvent(1, "STITCHING"), JobEvent(1, "DONE"),
                                 JobEvent(2, "RUNNING")};
  log.Publish(more);
  got.clear();
  EXPECT_FALSE(log.Since(1001, 0, &got));
  EXPECT_EQ(got.size(), 4u);
  got.clear();
  EXPECT_TRUE(log.Since(1002, 0, &got));
  EXPECT_EQ(got.size(), 4u);
  got.clear();
  EXPECT_TRUE(log.Since(log.last_id(), 0, &got));
  EXPECT_TRUE(got.empty());
  const std::string sse = more[1].Sse();
  EXPECT_EQ(sse.rfind("id: 1005\nevent: job\ndata: {", 0), 0u) << sse;
  EXPECT_EQ(sse.substr(sse.size() - 2), "\n\n");
}

TEST(Tokens, TheKeysFileHoldsTheirDigestsAndAnIdentityMayHaveOnlyAToken) {
  const std::string token = NewToken();
  EXPECT_EQ(token.size(), 43u);
  EXPECT_NE(NewToken(), token);
  const std::string digest = TokenDigest(token);
  EXPECT_EQ(digest.size(), 64u);
  EXPECT_EQ(TokenDigest("abc"),  // FIPS 180-2's example
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string upper = digest;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto ring = KeyRing::Parse(
      "identities:\n"
      "  - {name: shotgrid, role: submitter, token_sha256: \"" +
          upper + "\"}\n",
      "keys.yaml");
  ASSERT_TRUE(ring.ok()) << ring.message();
  const Identity* who = ring->FindToken(token);
  ASSERT_NE(who, nullptr);
  EXPECT_EQ(who->name, "shotgrid");
  EXPECT_EQ(who->role, Role::kSubmitter);
  EXPECT_EQ(ring->FindToken(digest), nullptr) << "the digest is not the token";
  EXPECT_EQ(ring->FindToken(""), nullptr);
  EXPECT_EQ(ring->Find(""), nullptr) << "no key: not found by an empty key";
  auto bad =
      KeyRing::Parse("identities:\n  - {name: a, role: viewer, token_sha256: abc}\n", "keys.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("keys.yaml:2:"), std::string::npos) << bad.message();
  EXPECT_NE(bad.message().find("token_sha256: expected the token's SHA-256"), std::string::npos);
  bad = KeyRing::Parse("identities:\n  - {name: a, role: viewer}\n", "keys.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("give key, key_file or token_sha256"), std::string::npos)
      << bad.message();
  bad = KeyRing::Parse("identities:\n  - {name: a, role: viewer, token_sha256: \"" + digest +
                           "\"}\n  - {name: b, role: admin, token_sha256: \"" + digest + "\"}\n",
                       "keys.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("the same token as identity 'a'"), std::string::npos)
      << bad.message();
}

// A raw client: connects, sends `request`, reads `per_read` bytes at a time with `pause`
// between reads until the server closes.
std::string SlowFetch(int port, const std::string& request, size_t per_read,
                      std::chrono::milliseconds pause) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  int small = 64 << 10;  // a small receive window, so that the server feels the slowness
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  timeval tv{20, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return "";
  (void)!send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string got;
  std::vector<char> buf(per_read);
  for (;;) {
    const ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    got.append(buf.data(), static_cast<size_t>(n));
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
  }
  close(fd);
  return got;
}

TEST(HttpEndpoint, StreamsAFileToASlowClientWhileAnsweringOthers) {
  TempDir dir;
  const std::string path = dir / "big.bin";
  std::string content(24 << 20, '\0');
  std::mt19937 rng(7);
  for (char& c : content) c = static_cast<char>(rng());
  std::ofstream(path, std::ios::binary) << content;
  zmq::context_t ctx(1);
  HttpEndpoint http(ctx, [&](const HttpRequest& r) {
    if (r.parsed.path == "/file") {
      HttpResponse f{200, "application/octet-stream", ""};
      f.kind = HttpResponse::Kind::kFile;
      f.file = path;
      f.file_length = content.size();
      return f;
    }
    return HttpResponse{200, "text/plain", "pong " + r.method + " " + r.body};
  });
  auto bound = http.Bind("127.0.0.1:0");
  ASSERT_TRUE(bound.ok()) << bound.message();
  const int port = std::stoi(bound->substr(bound->rfind(':') + 1));
  std::atomic<bool> stop{false};
  std::atomic<int> pumps_pending{0};
  std::thread loop([&] {
    while (!stop) {
      zmq::pollitem_t item{http.socket().handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(2));
      const uint64_t now =
          static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::steady_clock::now().time_since_epoch())
                                    .count());
      if (item.revents & ZMQ_POLLIN) http.OnReadable(now);
      pumps_pending += http.Pump(now) ? 1 : 0;
    }
  });
  std::string slow;
  std::thread downloader([&] {
    slow = SlowFetch(port, "GET /file HTTP/1.1\r\n\r\n", 256 << 10, std::chrono::milliseconds(5));
  });
  // While the slow download runs, others are answered at once, bodies included.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (int i = 0; i < 20; ++i) {
    const std::string reply =
        SlowFetch(port, "POST /ping HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 4096,
                  std::chrono::milliseconds(0));
    EXPECT_NE(reply.find("pong POST hello"), std::string::npos) << reply;
  }
  downloader.join();
  stop = true;
  loop.join();
  const size_t body = slow.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos);
  EXPECT_NE(slow.find("Content-Length: " + std::to_string(content.size())), std::string::npos);
  EXPECT_TRUE(slow.compare(body + 4, std::string::npos, content) == 0)
      << "got " << slow.size() - body - 4 << " of " << content.size() << " bytes";
  EXPECT_GT(pumps_pending.load(), 0) << "the file went out in more than one go";
}

// An event stream whose client stops reading: once its queue is full a push fails and the
// connection is closed, still counted against the caps until the close frame fits; when the
// client reads again it gets what was queued and then the close.
TEST(HttpEndpoint, AStreamWhoseClientStopsReadingIsClosedOnceItsQueueIsFull) {
  zmq::context_t ctx(1);
  std::string stream;  // the stream's connection, as the handler is told it
  HttpEndpoint http(ctx, [&](const HttpRequest& r) {
    stream = r.connection;
    HttpResponse answer{200, "text/event-stream", "retry: 2000\n\n"};
    answer.kind = HttpResponse::Kind::kStream;
    return answer;
  });
  auto bound = http.Bind("127.0.0.1:0");
  ASSERT_TRUE(bound.ok());
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(bound->substr(bound->rfind(':') + 1))));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  int small = 16 << 10;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string get = "GET /events HTTP/1.1\r\n\r\n";
  ASSERT_EQ(send(fd, get.data(), get.size(), 0), static_cast<ssize_t>(get.size()));
  uint64_t now = 1;
  for (int i = 0; i < 300 && stream.empty(); ++i) {
    zmq::pollitem_t item{http.socket().handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(10));
    if (item.revents & ZMQ_POLLIN) http.OnReadable(now);
  }
  ASSERT_FALSE(stream.empty());
  // The client reads nothing: pushes of 64 KiB fail within the queue's 64 messages (and what
  // the kernel's buffers hold).
  const std::string event = "data: " + std::string(64 << 10, 'x') + "\n\n";
  int pushed = 0;
  while (pushed < 10000 && http.Push(stream, event)) {
    ++pushed;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_LT(pushed, 10000) << "the queue never filled";
  EXPECT_FALSE(http.Push(stream, event)) << "the stream is closed";
  EXPECT_EQ(http.connections(), 1u) << "closing, still counted against the caps";
  // The client reads again: everything queued, then the close (tried again every CloseStale).
  std::atomic<bool> eof{false};
  size_t got = 0;
  std::thread reader([&] {
    char buf[65536];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) got += static_cast<size_t>(n);
    eof = n == 0;  // closed by the server (not the receive timeout)
  });
  std::atomic<bool> done{false};
  std::thread closer([&] {
    while (!done) {  // the loop's part: poll (ZeroMQ does its pipes' work then), CloseStale
      zmq::pollitem_t item{http.socket().handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(10));
      http.CloseStale(now += 10);
    }
  });
  reader.join();
  done = true;
  closer.join();
  EXPECT_TRUE(eof.load()) << "got " << got << " after " << pushed << " pushes";
  EXPECT_GE(got, static_cast<size_t>(pushed) * event.size());
  for (int i = 0; i < 100 && http.connections() > 0; ++i) {
    zmq::pollitem_t item{http.socket().handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(10));
    if (item.revents & ZMQ_POLLIN) http.OnReadable(now);
    http.CloseStale(now += 10);
  }
  EXPECT_EQ(http.connections(), 0u);
  close(fd);
}

}  // namespace
}  // namespace segue
