// A DEALER peer that speaks ZMTP 3.0 (ZeroMQ's wire protocol, rfc.zeromq.org/spec/23, NULL
// security) over a plain non-blocking TCP socket, for the benchmarks' simulated workers.
//
// Why not a ZeroMQ socket: a ZeroMQ socket hands every message to and from an I/O thread of its
// own (an eventfd write and a wake-up each way). A worker on its own machine pays that on its own
// cores; 64 simulated workers on the two cores of the coordinator under test paid it on the
// coordinator's, and were half the CPU of the paced dispatch run (docs/PERFORMANCE.md). With this
// peer a simulated worker costs a read and a write on the caller's thread. The coordinator under
// test still uses ZeroMQ: it cannot tell the difference on the wire.
//
// Not thread-safe: one thread owns a ZmtpDealer. Handles the frames a ROUTER sends a DEALER:
// messages of one or more frames, short and long; commands (READY, PING) are read and dropped,
// but for PING, answered with PONG as the specification asks.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace segue {

class ZmtpDealer {
 public:
  // Connects to `endpoint` ("tcp://HOST:PORT", HOST a numeric IPv4 address), greets it as a
  // DEALER whose routing id is `identity` and waits (up to 10 s) for the peer's greeting and
  // READY, before which the peer would refuse a message. Throws std::runtime_error on failure.
  ZmtpDealer(const std::string& endpoint, const std::string& identity);
  ~ZmtpDealer();
  ZmtpDealer(ZmtpDealer&& other) noexcept;
  ZmtpDealer& operator=(ZmtpDealer&&) = delete;
  ZmtpDealer(const ZmtpDealer&) = delete;

  // The socket, to wait on for reading (and for writing while wants_write()).
  int fd() const { return fd_; }

  // Sends a one-frame message: written at once as far as the socket takes it, the rest kept for
  // Flush. Throws when the connection is gone.
  void Send(std::string_view body);
  // Queues a one-frame message without writing it: messages queued together go out in one
  // system call at the next Send or Flush (as a ZeroMQ I/O thread batches what it finds queued).
  void Queue(std::string_view body);
  // Writes what is queued, as far as the socket takes it. Throws when the connection is gone.
  void Flush();
  bool wants_write() const { return out_sent_ < out_.size(); }

  // Reads what the socket holds and appends every complete message to `out`, its frames joined
  // in order (a ROUTER's messages to a DEALER are one frame in this protocol's use). Returns false
  // once the peer has closed the connection.
  bool Receive(std::vector<std::string>& out);

 private:
  // Connects fd_ to `addr` and greets the peer; waits for its READY. Throws on failure.
  void Handshake(const sockaddr_in& addr, const std::string& endpoint, const std::string& identity);
  // Takes complete frames off the front of in_; REQUIRES: the greeting has been read.
  void ParseFrames(std::vector<std::string>& out);
  void QueueFrame(uint8_t flags, std::string_view body);

  int fd_ = -1;
  std::string in_;           // bytes read, not yet whole frames
  size_t in_read_ = 0;       // of in_, already parsed
  bool greeted_ = false;     // the peer's 64-byte greeting has been read
  bool peer_ready_ = false;  // the peer's READY command has been read
  std::string partial_;      // frames of a message whose last frame has not come yet
  std::string out_;          // bytes to write
  size_t out_sent_ = 0;      // of out_, already written
};

}  // namespace segue
