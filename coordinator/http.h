// The coordinator's HTTP side (--http HOST:PORT): /metrics, the dashboard and the JSON API
// (docs/PROTOCOL.md, "HTTP"; docs/openapi.json).
//
// HTTP/1.1 over a ZeroMQ STREAM socket, so that it lives in the coordinator's event loop like
// every other socket: no thread, no lock, and handlers read the loop's state directly. Each
// connection sends one request and gets one answer, then is closed: at once (GET), later
// (a write, answered once its change is durable: Respond), piece by piece (a file: outputs, with
// ranges) or never while the client listens (an event stream: Push). Nothing a client sends can
// stop the loop:
// - headers of at most 16 KiB, complete within the request timeout of connecting; a body of at
//   most max_body_bytes arriving at 256 KiB/s at least, and all bodies being received at once
//   within max_body_bytes_total (503 beyond: the global budget for bytes in flight);
// - connections are capped (HttpLimits): beyond the caps a new one is closed at once, and one
//   whose request stalls for the request timeout is closed;
// - sending never blocks: a file goes out as fast as its client takes it, an event stream whose
//   client stops reading is closed (once 64 messages wait for it). The endpoint's own refusals
//   (431, 411, 413, 503, ...) are JSON errors like the API's.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "common/status/status.h"

namespace segue {

// A request target ("/api/v1/jobs?state=DONE&meta=shot%3D010") split into its path and its
// query parameters, percent-decoded ('+' as a space), in order.
struct HttpTarget {
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  // The first value of `key`, or nullptr.
  const std::string* Get(const std::string& key) const;
};
HttpTarget ParseTarget(const std::string& target);

struct HttpRequest {
  std::string connection;  // the endpoint's name for the connection (Respond, Push)
  std::string method;      // GET, HEAD, POST, ...
  std::string target;      // as the request line has it
  HttpTarget parsed;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  // The header's value, or "".
  std::string Header(const std::string& lower_name) const;
};

struct HttpResponse {
  enum class Kind {
    kNow,       // body, sent at once
    kDeferred,  // the answer comes later: HttpEndpoint::Respond
    kStream,    // an event stream: the headers go now, the connection stays open for Push
    kFile,      // `file`'s bytes [file_offset, file_offset + file_length) follow the headers
  };
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers = {};  // more headers
  Kind kind = Kind::kNow;
  std::string file = {};
  uint64_t file_offset = 0, file_length = 0;
};

// Reads a request's line and headers (`head`: the bytes before the blank line) into `req`:
// method, target (parsed too) and headers by lower-cased name. An error for a request line that
// is not METHOD TARGET HTTP/x; header lines without a name are skipped.
Status ParseRequestHead(std::string_view head, HttpRequest* req);

// A JSON answer (invalid UTF-8 in `body` comes out replaced, never thrown).
HttpResponse Json(int status, const nlohmann::json& body);
// An error: {"error": {"code": CODE, "message": ...}}, CODE one of the stable names of
// docs/API.md (the wire's ErrorCode in snake case, and a few of HTTP's own); the endpoint's own
// refusals are answered the same way.
HttpResponse JsonError(int status, const std::string& code, const std::string& message);

// A single byte range of a `Range: bytes=...` header over a file of `size` bytes: [first, last].
struct ByteRange {
  uint64_t first = 0, last = 0;
};
enum class RangeResult { kWhole, kRange, kUnsatisfiable };
// Reads `header` (empty: none). Several ranges, or a unit other than bytes, are served whole
// (RFC 9110 lets a server ignore Range).
RangeResult ParseRange(std::string_view header, uint64_t size, ByteRange* range);

struct HttpLimits {
  size_t max_connections = 64;  // open at once
  size_t max_connections_per_host = 16;
  uint64_t request_timeout_ms = 10000;  // headers complete, and no pause in a body, this long
  uint64_t max_body_bytes = 256ull << 20;
  uint64_t max_body_bytes_total = 512ull << 20;  // bodies being received, all together
};

class HttpEndpoint {
 public:
  // `handler(request)` answers a request, complete with its body; `closed(connection)` is told
  // when an event stream's connection closes (its client left, or could not keep up).
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  using Closed = std::function<void(const std::string& connection)>;

  HttpEndpoint(zmq::context_t& ctx, Handler handler, HttpLimits limits = {},
               Closed closed = nullptr);
  ~HttpEndpoint();
  // Binds "HOST:PORT" (PORT 0: any free port). Returns "HOST:PORT" as bound.
  Result<std::string> Bind(const std::string& host_port);
  zmq::socket_t& socket() { return sock_; }
  // Reads what is waiting and answers complete requests; `now_ms`: the loop's clock.
  // REQUIRES: the socket is readable.
  void OnReadable(uint64_t now_ms);
  // Answers a request the handler deferred. Nothing if its connection is gone.
  void Respond(const std::string& connection, const HttpResponse& r);
  // Sends `bytes` on an event stream. False if the stream is gone or its client is not keeping
  // up: the connection is closed then (and `closed` told).
  bool Push(const std::string& connection, std::string_view bytes);
  // Sends more of the files being downloaded, as far as their clients take them; true while
  // some remain (the loop should come back soon). `now_ms`: the loop's clock.
  bool Pump(uint64_t now_ms);
  // Closes the connections whose request stalled past the request timeout.
  void CloseStale(uint64_t now_ms);
  size_t connections() const { return open_.size(); }
  uint64_t refused() const { return refused_; }

 private:
  struct Connection {
    std::string host;
    uint64_t opened_ms = 0;
    uint64_t last_ms = 0;        // connected, or the last byte of a body
    uint64_t body_start_ms = 0;  // when the headers were complete
    std::string request;         // bytes so far
    size_t header_end = 0;       // where the body starts once the headers are complete; 0 before
    uint64_t body_bytes = 0;     // Content-Length, counted against the budget while it arrives
    HttpRequest pending;         // its line and headers, once complete
    bool answering = false;      // complete: a deferred answer, a stream or a file is under way
    bool stream = false;
    bool closing = false;  // its close frame waits for room in its queue (Close)
    FILE* file = nullptr;  // a download's file, and what is left of it
    uint64_t file_left = 0;
  };
  void OnData(const std::string& id, Connection& c, std::string_view data, uint64_t now_ms);
  void Answer(const std::string& id, Connection& c);
  bool SendFrames(const std::string& id, std::string_view bytes);
  void Close(const std::string& id);
  void Forget(const std::string& id);
  zmq::socket_t sock_;
  Handler handler_;
  Closed closed_;
  const HttpLimits limits_;
  std::map<std::string, Connection> open_;  // by connection id
  std::map<std::string, size_t> per_host_;
  uint64_t bodies_in_flight_ = 0;  // bytes of the bodies being received (Content-Length)
  uint64_t refused_ = 0;
};

// "HTTP/1.1 STATUS REASON\r\n" and the headers of `r`, for `body_length` bytes of body.
std::string HttpHead(const HttpResponse& r, uint64_t body_length);

}  // namespace segue
