// The benchmarks' ZMTP DEALER (tools/zmtp_dealer.h) against a real ZeroMQ ROUTER on loopback:
// the farm benchmark's figures are only as true as its simulated workers' wire.
#include "tools/bench/zmtp_dealer.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>
#include <zmq.hpp>

namespace segue {
namespace {

class ZmtpDealerTest : public ::testing::Test {
 protected:
  ZmtpDealerTest() : router_(ctx_, zmq::socket_type::router) {
    router_.set(zmq::sockopt::linger, 0);
    router_.set(zmq::sockopt::rcvtimeo, 10000);
    router_.bind("tcp://127.0.0.1:*");
    endpoint_ = router_.get(zmq::sockopt::last_endpoint);
  }

  // The router's next message: (routing id, body).
  std::pair<std::string, std::string> RouterReceive() {
    zmq::message_t id, body;
    if (!router_.recv(id) || !router_.recv(body)) throw std::runtime_error("router: no message");
    return {id.to_string(), body.to_string()};
  }

  // Waits (up to 10 s) until the dealer has `count` messages; flushes what it holds meanwhile.
  static std::vector<std::string> DealerReceive(ZmtpDealer& d, size_t count) {
    std::vector<std::string> got;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (got.size() < count && std::chrono::steady_clock::now() < deadline) {
      pollfd p{d.fd(), static_cast<short>(POLLIN | (d.wants_write() ? POLLOUT : 0)), 0};
      poll(&p, 1, 100);
      d.Flush();
      if (!d.Receive(got)) break;
    }
    return got;
  }

  zmq::context_t ctx_{1};
  zmq::socket_t router_;
  std::string endpoint_;
};

TEST_F(ZmtpDealerTest, TheRouterSeesItsIdentityAndBothWaysCarryShortAndLongFrames) {
  ZmtpDealer dealer(endpoint_, "sim7");
  const std::string long_body(70000, 'x');  // a long frame: 8-byte size
  dealer.Send("hello");
  dealer.Send(long_body);
  auto [id, body] = RouterReceive();
  EXPECT_EQ(id, "sim7");
  EXPECT_EQ(body, "hello");
  auto [id2, body2] = RouterReceive();
  EXPECT_EQ(id2, "sim7");
  EXPECT_EQ(body2, long_body);
  dealer.Queue("first");  // queued messages go in one write, each its own message
  dealer.Queue("second");
  dealer.Flush();
  EXPECT_EQ(RouterReceive().second, "first");
  EXPECT_EQ(RouterReceive().second, "second");

  std::string reply(300, '\0');  // a long frame of every byte value, zeros included
  for (size_t i = 0; i < reply.size(); ++i) reply[i] = static_cast<char>(i);
  router_.send(zmq::buffer(id), zmq::send_flags::sndmore);
  router_.send(zmq::str_buffer("world"), zmq::send_flags::none);
  router_.send(zmq::buffer(id), zmq::send_flags::sndmore);
  router_.send(zmq::buffer(reply), zmq::send_flags::none);
  // A message of two frames arrives as their bytes in order.
  router_.send(zmq::buffer(id), zmq::send_flags::sndmore);
  router_.send(zmq::str_buffer("ab"), zmq::send_flags::sndmore);
  router_.send(zmq::str_buffer("cd"), zmq::send_flags::none);
  auto got = DealerReceive(dealer, 3);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], "world");
  EXPECT_EQ(got[1], reply);
  EXPECT_EQ(got[2], "abcd");
}

TEST_F(ZmtpDealerTest, WhatTheSocketCannotTakeAtOnceGoesOnFlush) {
  ZmtpDealer dealer(endpoint_, "big");
  // Far more than loopback's socket buffers: the rest waits in the dealer.
  std::string big(64 << 20, '\0');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>(i / 4096);
  dealer.Send(big);
  EXPECT_TRUE(dealer.wants_write());
  dealer.Send("after");  // queued behind it, in order
  // The router reads on its own I/O thread while the dealer flushes.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (dealer.wants_write() && std::chrono::steady_clock::now() < deadline) {
    pollfd p{dealer.fd(), POLLOUT, 0};
    poll(&p, 1, 100);
    dealer.Flush();
  }
  EXPECT_FALSE(dealer.wants_write());
  auto [id, body] = RouterReceive();
  EXPECT_EQ(id, "big");
  EXPECT_TRUE(body == big) << "a body of " << body.size() << " bytes";
  EXPECT_EQ(RouterReceive().second, "after");
}

TEST_F(ZmtpDealerTest, ReceiveSaysWhenThePeerHasGone) {
  ZmtpDealer dealer(endpoint_, "gone");
  router_.close();  // linger 0: the connection drops
  std::vector<std::string> got;
  bool open = true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (open && std::chrono::steady_clock::now() < deadline) {
    pollfd p{dealer.fd(), POLLIN, 0};
    poll(&p, 1, 100);
    open = dealer.Receive(got);
  }
  EXPECT_FALSE(open);
  EXPECT_TRUE(got.empty());
}

TEST_F(ZmtpDealerTest, ABadEndpointOrNoListenerIsAnError) {
  EXPECT_THROW(ZmtpDealer("ipc:///tmp/x", "a"), std::runtime_error);
  EXPECT_THROW(ZmtpDealer("tcp://localhost:5555", "a"), std::runtime_error);  // not numeric
  EXPECT_THROW(ZmtpDealer("tcp://127.0.0.1:port", "a"), std::runtime_error);
  // A port bound but not listening: nothing accepts there, and nothing else can take it. (A
  // closed ZeroMQ router is no good: ZeroMQ closes its listener later, on its I/O thread.)
  const int held = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(held, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(held, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(getsockname(held, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  EXPECT_THROW(ZmtpDealer("tcp://127.0.0.1:" + port, "a"), std::runtime_error);
  close(held);
}

}  // namespace
}  // namespace segue
