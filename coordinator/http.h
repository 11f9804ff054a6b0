// The coordinator's HTTP side (--http HOST:PORT): /metrics, /api/v1/status and the dashboard.
//
// HTTP/1.1 over a ZeroMQ STREAM socket, so that it lives in the coordinator's event loop like
// every other socket: no thread, no lock, and handlers read the loop's state directly. Each
// connection sends one GET (or HEAD) and gets one response, then is closed. Requests larger than
// 16 KiB, other methods and malformed request lines get 4xx answers; nothing a client sends can
// stop the loop. Connections are capped (HttpLimits): beyond the caps a new one is closed at
// once, and one that has not sent its whole request within the request timeout is closed, so
// idle or trickling clients cannot hold the coordinator's file descriptors.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/status/status.h"

namespace segue {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// A request target ("/api/v1/jobs?state=DONE&meta=shot%3D010") split into its path and its
// query parameters, percent-decoded ('+' as a space), in order.
struct HttpTarget {
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  // The first value of `key`, or nullptr.
  const std::string* Get(const std::string& key) const;
};
HttpTarget ParseTarget(const std::string& target);

struct HttpLimits {
  size_t max_connections = 64;  // open at once
  size_t max_connections_per_host = 16;
  uint64_t request_timeout_ms = 10000;  // from connecting to the end of the request's headers
};

class HttpEndpoint {
 public:
  // `handler(target)` answers a GET of `target` (path and query, as the request line has them).
  using Handler = std::function<HttpResponse(const std::string& target)>;

  HttpEndpoint(zmq::context_t& ctx, Handler handler, HttpLimits limits = {});
  // Binds "HOST:PORT" (PORT 0: any free port). Returns "HOST:PORT" as bound.
  Result<std::string> Bind(const std::string& host_port);
  zmq::socket_t& socket() { return sock_; }
  // Reads what is waiting and answers complete requests; `now_ms`: the loop's clock.
  // REQUIRES: the socket is readable.
  void OnReadable(uint64_t now_ms);
  // Closes the connections whose request is not complete after the request timeout.
  void CloseStale(uint64_t now_ms);
  size_t connections() const { return open_.size(); }
  uint64_t refused() const { return refused_; }

 private:
  struct Connection {
    std::string host;
    uint64_t opened_ms = 0;
    std::string request;  // bytes so far
  };
  void Respond(const std::string& id, const HttpResponse& r, bool head);
  void Forget(const std::string& id);
  zmq::socket_t sock_;
  Handler handler_;
  const HttpLimits limits_;
  std::map<std::string, Connection> open_;  // by connection id
  std::map<std::string, size_t> per_host_;
  uint64_t refused_ = 0;
};

}  // namespace segue
