// The coordinator's HTTP side (--http HOST:PORT): /metrics, /api/v1/status and the dashboard.
//
// HTTP/1.1 over a ZeroMQ STREAM socket, so that it lives in the coordinator's event loop like
// every other socket: no thread, no lock, and handlers read the loop's state directly. Each
// connection sends one GET (or HEAD) and gets one response, then is closed. Requests larger than
// 16 KiB, other methods and malformed request lines get 4xx answers; nothing a client sends can
// stop the loop.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <zmq.hpp>

#include "common/status/status.h"

namespace segue {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class HttpEndpoint {
 public:
  // `handler(path)` answers a GET of `path` (query string removed).
  using Handler = std::function<HttpResponse(const std::string& path)>;

  HttpEndpoint(zmq::context_t& ctx, Handler handler);
  // Binds "HOST:PORT" (PORT 0: any free port). Returns "HOST:PORT" as bound.
  Result<std::string> Bind(const std::string& host_port);
  zmq::socket_t& socket() { return sock_; }
  // Reads what is waiting and answers complete requests. REQUIRES: the socket is readable.
  void OnReadable();

 private:
  void Respond(const std::string& id, const HttpResponse& r, bool head);
  zmq::socket_t sock_;
  Handler handler_;
  std::map<std::string, std::string> pending_;  // connection id -> request bytes so far
};

}  // namespace segue
