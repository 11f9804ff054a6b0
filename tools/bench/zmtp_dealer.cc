#include "tools/bench/zmtp_dealer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

namespace segue {
namespace {

constexpr size_t kGreetingBytes = 64;
constexpr uint8_t kMore = 0x01, kLong = 0x02, kCommand = 0x04;

std::runtime_error Failure(const std::string& what) {
  return std::runtime_error("zmtp: " + what + ": " + strerror(errno));
}

// signature (0xFF, 8 bytes of padding, 0x7F), version 3.0, mechanism "NULL" in 20 bytes,
// as-server 0, 31 bytes of filler.
std::string Greeting() {
  std::string g(kGreetingBytes, '\0');
  g[0] = static_cast<char>(0xFF);
  g[9] = 0x7F;
  g[10] = 3;
  g[11] = 0;
  std::memcpy(&g[12], "NULL", 4);
  return g;
}

void AppendBigEndian(std::string& s, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// A property of a READY command: name (length in one byte), value (length in four).
void AppendProperty(std::string& s, const std::string& name, const std::string& value) {
  s.push_back(static_cast<char>(name.size()));
  s += name;
  AppendBigEndian(s, value.size(), 4);
  s += value;
}

}  // namespace

ZmtpDealer::ZmtpDealer(const std::string& endpoint, const std::string& identity) {
  const std::string scheme = "tcp://";
  const size_t colon = endpoint.rfind(':');
  if (endpoint.rfind(scheme, 0) != 0 || colon == std::string::npos || colon < scheme.size())
    throw std::runtime_error("zmtp: not a tcp://HOST:PORT endpoint: " + endpoint);
  const std::string host = endpoint.substr(scheme.size(), colon - scheme.size());
  const std::string port = endpoint.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) > 65535)
    throw std::runtime_error("zmtp: not a port number: " + port);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(port)));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
    throw std::runtime_error("zmtp: not a numeric IPv4 address: " + host);
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw Failure("socket");
  try {
    Handshake(addr, endpoint, identity);
  } catch (...) {
    close(fd_);  // no destructor runs for a constructor that throws
    fd_ = -1;
    throw;
  }
}

void ZmtpDealer::Handshake(const sockaddr_in& addr, const std::string& endpoint,
                           const std::string& identity) {
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // as ZeroMQ sets it
  if (connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0)
    throw Failure("connect to " + endpoint);
  if (fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK) != 0) throw Failure("fcntl");
  out_ = Greeting();
  std::string ready;
  ready.push_back(5);
  ready += "READY";
  AppendProperty(ready, "Socket-Type", "DEALER");
  AppendProperty(ready, "Identity", identity);
  QueueFrame(kCommand, ready);
  Flush();
  // A peer reads the frames after the handshake as commands until it has sent its own READY:
  // a message sent before the peer's READY has come is refused (ZeroMQ's own sockets wait too).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::vector<std::string> none;
  while (!peer_ready_) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      throw std::runtime_error("zmtp: no handshake from " + endpoint + " within 10 s");
    pollfd p{fd_, static_cast<short>(POLLIN | (wants_write() ? POLLOUT : 0)), 0};
    poll(&p, 1, static_cast<int>(left.count()));
    Flush();
    if (!Receive(none))
      throw std::runtime_error("zmtp: " + endpoint + " closed the connection in the handshake");
  }
}

ZmtpDealer::~ZmtpDealer() {
  if (fd_ >= 0) close(fd_);
}

ZmtpDealer::ZmtpDealer(ZmtpDealer&& other) noexcept
    : fd_(other.fd_),
      in_(std::move(other.in_)),
      in_read_(other.in_read_),
      greeted_(other.greeted_),
      peer_ready_(other.peer_ready_),
      partial_(std::move(other.partial_)),
      out_(std::move(other.out_)),
      out_sent_(other.out_sent_) {
  other.fd_ = -1;
}

void ZmtpDealer::QueueFrame(uint8_t flags, std::string_view body) {
  if (body.size() > 255) {
    out_.push_back(static_cast<char>(flags | kLong));
    AppendBigEndian(out_, body.size(), 8);
  } else {
    out_.push_back(static_cast<char>(flags));
    out_.push_back(static_cast<char>(body.size()));
  }
  out_.append(body);
}

void ZmtpDealer::Queue(std::string_view body) { QueueFrame(0, body); }

void ZmtpDealer::Send(std::string_view body) {
  QueueFrame(0, body);
  Flush();
}

void ZmtpDealer::Flush() {
  while (out_sent_ < out_.size()) {
    const ssize_t n = send(fd_, out_.data() + out_sent_, out_.size() - out_sent_, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // the rest when it turns writable
      throw Failure("send");
    }
    out_sent_ += static_cast<size_t>(n);
  }
  out_.clear();
  out_sent_ = 0;
}

bool ZmtpDealer::Receive(std::vector<std::string>& out) {
  bool open = true;
  char buf[65536];
  for (;;) {
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < sizeof(buf)) break;  // drained for now
      continue;
    }
    if (n == 0) {
      open = false;
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    throw Failure("recv");
  }
  if (!greeted_ && in_.size() >= kGreetingBytes) {
    if (static_cast<uint8_t>(in_[0]) != 0xFF || in_[9] != 0x7F || in_[10] < 3)
      throw std::runtime_error("zmtp: the peer's greeting is not ZMTP 3");
    greeted_ = true;
    in_read_ = kGreetingBytes;
  }
  if (greeted_) ParseFrames(out);
  return open;
}

void ZmtpDealer::ParseFrames(std::vector<std::string>& out) {
  for (;;) {
    const size_t left = in_.size() - in_read_;
    if (left < 2) break;
    const auto* p = reinterpret_cast<const uint8_t*>(in_.data() + in_read_);
    const uint8_t flags = p[0];
    size_t header = 2, size = p[1];
    if (flags & kLong) {
      header = 9;
      if (left < header) break;
      size = 0;
      for (int i = 1; i <= 8; ++i) size = (size << 8) | p[i];
    }
    if (left - header < size) break;
    const std::string_view body(in_.data() + in_read_ + header, size);
    in_read_ += header + size;
    if (flags & kCommand) {
      if (body.size() >= 6 && body.substr(0, 6) == std::string_view("\x05READY", 6))
        peer_ready_ = true;
      // PING: ttl (2 bytes), then a context the PONG echoes.
      else if (body.size() >= 5 && body[0] == 4 && body.substr(1, 4) == "PING") {
        std::string pong;
        pong.push_back(4);
        pong += "PONG";
        if (body.size() > 7) pong.append(body.substr(7));
        QueueFrame(kCommand, pong);
        Flush();
      }
      continue;
    }
    partial_.append(body);
    if (!(flags & kMore)) {
      out.push_back(std::move(partial_));
      partial_.clear();
    }
  }
  // Drop what has been parsed once it is a good share of the buffer (amortised: no copy per
  // frame).
  if (in_read_ == in_.size()) {
    in_.clear();
    in_read_ = 0;
  } else if (in_read_ > 65536) {
    in_.erase(0, in_read_);
    in_read_ = 0;
  }
}

}  // namespace segue
