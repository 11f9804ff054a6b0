// The farm port's connections, counted per host, and the caps that keep a flood of them from
// taking the file descriptors the coordinator's store needs (docs/OPERATIONS.md, Security).
//
// ZeroMQ accepts connections on its own threads; the event loop learns of them from the socket's
// monitor (Opened, Closed) and is asked, through ZAP, whether each new one may finish its
// handshake (Allows). A connection refused there is closed by ZeroMQ before it can send a
// message. Connections that never finish their handshake are dropped by ZeroMQ's handshake
// timeout, and peers that vanish by its heartbeats (coordinator.cc sets both).
//
// Not thread-safe: owned by the event loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace segue {

class ConnectionTable {
 public:
  ConnectionTable(size_t max_total, size_t max_per_host)
      : max_total_(max_total), max_per_host_(max_per_host) {}

  // The monitor saw connection `fd` from `host` (an IP address) accepted, or closed.
  void Opened(int fd, const std::string& host);
  void Closed(int fd);
  // Whether a connection from `host`, already counted as opened, may go on.
  bool Allows(const std::string& host) const;

  size_t open() const { return host_of_.size(); }
  size_t from(const std::string& host) const;
  size_t max_total() const { return max_total_; }
  size_t max_per_host() const { return max_per_host_; }

 private:
  const size_t max_total_, max_per_host_;
  std::map<int, std::string> host_of_;  // by file descriptor
  std::map<std::string, size_t> per_host_;
};

// Raises this process's soft limit on open files to the hard limit; returns the soft limit now.
uint64_t RaiseOpenFileLimit();

// The IP address of the peer of socket `fd` ("" if it cannot be read, or not an IP socket).
std::string PeerHost(int fd);
// Shuts connection `fd` down both ways without closing the descriptor (its owner, ZeroMQ, sees
// it end and closes it).
void ShutDownSocket(int fd);

}  // namespace segue
