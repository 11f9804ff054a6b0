#include "coordinator/connections.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

namespace segue {

void ConnectionTable::Opened(int fd, const std::string& host) {
  Closed(fd);  // a descriptor reused before its close was seen
  host_of_[fd] = host;
  ++per_host_[host];
}

void ConnectionTable::Closed(int fd) {
  auto it = host_of_.find(fd);
  if (it == host_of_.end()) return;
  auto h = per_host_.find(it->second);
  if (h != per_host_.end() && --h->second == 0) per_host_.erase(h);
  host_of_.erase(it);
}

bool ConnectionTable::Allows(const std::string& host) const {
  return open() <= max_total_ && from(host) <= max_per_host_;
}

size_t ConnectionTable::from(const std::string& host) const {
  auto it = per_host_.find(host);
  return it == per_host_.end() ? 0 : it->second;
}

uint64_t RaiseOpenFileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  return rl.rlim_cur == RLIM_INFINITY ? uint64_t{1} << 20 : static_cast<uint64_t>(rl.rlim_cur);
}

void ShutDownSocket(int fd) { (void)shutdown(fd, SHUT_RDWR); }

std::string PeerHost(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "";
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&addr)->sin_addr, text, sizeof text);
  } else if (addr.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&addr)->sin6_addr, text, sizeof text);
  } else {
    return "";  // ipc://: as ZAP names it
  }
  return text;
}

}  // namespace segue
