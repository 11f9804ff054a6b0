#include "coordinator/http.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

namespace segue {
namespace {

constexpr size_t kMaxHeaderBytes = 16 << 10;
// A download goes out in pieces of this size, as fast as its client takes them; with the
// socket's high-water mark (kSendQueue messages per connection) at most ~8 MiB of one file waits
// in memory.
constexpr size_t kFilePiece = 128 << 10;
constexpr int kSendQueue = 64;
constexpr size_t kPumpBytes = 8 << 20;        // per Pump, over every download
constexpr uint64_t kMinBodyRate = 256 << 10;  // bytes per second a request body must keep up

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 206:
      return "Partial Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecoded(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string Trimmed(std::string_view s) {
  const size_t a = s.find_first_not_of(" \t");
  if (a == std::string_view::npos) return "";
  const size_t b = s.find_last_not_of(" \t\r");
  return std::string(s.substr(a, b - a + 1));
}

bool ParseU64(std::string_view s, uint64_t* v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

// A header value as sent: no CR, LF or other control characters (no header injection).
std::string HeaderValue(const std::string& v) {
  std::string out;
  for (char ch : v)
    if (static_cast<unsigned char>(ch) >= 0x20 && ch != 0x7f) out += ch;
  return out;
}

}  // namespace

HttpResponse Json(int status, const nlohmann::json& body) {
  return {status, "application/json",
          body.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"};
}

HttpResponse JsonError(int status, const std::string& code, const std::string& message) {
  return Json(status, {{"error", {{"code", code}, {"message", message}}}});
}

const std::string* HttpTarget::Get(const std::string& key) const {
  for (const auto& [k, v] : query)
    if (k == key) return &v;
  return nullptr;
}

HttpTarget ParseTarget(const std::string& target) {
  HttpTarget t;
  const size_t q = target.find('?');
  t.path = PercentDecoded(target.substr(0, q));
  if (q == std::string::npos) return t;
  const std::string query = target.substr(q + 1);
  for (size_t start = 0; start <= query.size();) {
    size_t end = query.find('&', start);
    if (end == std::string::npos) end = query.size();
    const std::string part = query.substr(start, end - start);
    if (!part.empty()) {
      const size_t eq = part.find('=');
      t.query.emplace_back(PercentDecoded(part.substr(0, eq)),
                           eq == std::string::npos ? "" : PercentDecoded(part.substr(eq + 1)));
    }
    start = end + 1;
  }
  return t;
}

std::string HttpRequest::Header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? "" : it->second;
}

RangeResult ParseRange(std::string_view header, uint64_t size, ByteRange* range) {
  const std::string h = Trimmed(header);
  if (h.rfind("bytes=", 0) != 0) return RangeResult::kWhole;
  const std::string spec = Trimmed(std::string_view(h).substr(6));
  const size_t dash = spec.find('-');
  if (dash == std::string::npos || spec.find(',') != std::string::npos) return RangeResult::kWhole;
  const std::string_view a = std::string_view(spec).substr(0, dash);
  const std::string_view b = std::string_view(spec).substr(dash + 1);
  uint64_t first = 0, last = 0;
  if (a.empty()) {  // the last N bytes
    if (!ParseU64(b, &last)) return RangeResult::kWhole;
    if (last == 0 || size == 0) return RangeResult::kUnsatisfiable;
    *range = {size - std::min(last, size), size - 1};
    return RangeResult::kRange;
  }
  if (!ParseU64(a, &first)) return RangeResult::kWhole;
  if (b.empty()) {
    last = size == 0 ? 0 : size - 1;
  } else if (!ParseU64(b, &last) || last < first) {
    return RangeResult::kWhole;
  }
  if (first >= size) return RangeResult::kUnsatisfiable;
  *range = {first, std::min(last, size - 1)};
  return RangeResult::kRange;
}

std::string HttpHead(const HttpResponse& r, uint64_t body_length) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + Reason(r.status) +
                    "\r\nContent-Type: " + r.content_type + "\r\n";
  if (r.kind != HttpResponse::Kind::kStream)
    out += "Content-Length: " + std::to_string(body_length) + "\r\n";
  for (const auto& [k, v] : r.headers) out += HeaderValue(k) + ": " + HeaderValue(v) + "\r\n";
  out += "Cache-Control: no-store\r\n";
  out += r.kind == HttpResponse::Kind::kStream ? "\r\n" : "Connection: close\r\n\r\n";
  return out;
}

HttpEndpoint::HttpEndpoint(zmq::context_t& ctx, Handler handler, HttpLimits limits, Closed closed)
    : sock_(ctx, zmq::socket_type::stream),
      handler_(std::move(handler)),
      closed_(std::move(closed)),
      limits_(limits) {
  sock_.set(zmq::sockopt::linger, 0);
  // Never wait on a client: a browser that stops reading gets its answer dropped, the loop goes
  // on (a blocking send here once held the whole coordinator). The high-water mark is per
  // connection: it bounds what one slow client can hold in memory.
  sock_.set(zmq::sockopt::sndtimeo, 0);
  sock_.set(zmq::sockopt::sndhwm, kSendQueue);
  sock_.set(zmq::sockopt::tcp_keepalive, 1);
}

HttpEndpoint::~HttpEndpoint() {
  for (auto& [id, c] : open_)
    if (c.file) std::fclose(c.file);
}

Result<std::string> HttpEndpoint::Bind(const std::string& host_port) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return Result<std::string>::Error("--http: expected HOST:PORT, got '" + host_port + "'");
  std::string port = host_port.substr(colon + 1);
  if (port == "0") port = "*";
  try {
    sock_.bind("tcp://" + host_port.substr(0, colon) + ":" + port);
  } catch (const zmq::error_t& e) {
    return Result<std::string>::Error("--http: cannot listen on '" + host_port + "': " + e.what());
  }
  std::string bound = sock_.get(zmq::sockopt::last_endpoint);  // tcp://HOST:PORT
  return bound.substr(bound.find("//") + 2);
}

void HttpEndpoint::OnReadable(uint64_t now_ms) {
  for (int n = 0; n < 256; ++n) {
    zmq::message_t id, data;
    if (!sock_.recv(id, zmq::recv_flags::dontwait)) return;
    if (!sock_.recv(data, zmq::recv_flags::none)) return;
    const std::string key = id.to_string();
    auto it = open_.find(key);
    if (data.size() == 0) {  // a connection opened or closed
      if (it != open_.end()) {
        const bool stream = it->second.stream;
        Forget(key);
        if (stream && closed_) closed_(key);
        continue;
      }
      const char* peer = zmq_msg_gets(data.handle(), "Peer-Address");
      const std::string host = peer ? peer : "";
      if (open_.size() >= limits_.max_connections ||
          per_host_[host] >= limits_.max_connections_per_host) {
        ++refused_;
        if (refused_ <= 100 || refused_ % 1000 == 0)
          spdlog::warn("http: refused a connection from {}: {} open, {} from that host [{} so far]",
                       host, open_.size(), per_host_[host], refused_);
        if (per_host_[host] == 0) per_host_.erase(host);
        // Closed at once: an empty frame to a connection closes it.
        try {
          constexpr auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
          if (sock_.send(zmq::buffer(key), more))
            sock_.send(zmq::message_t(), zmq::send_flags::dontwait);
        } catch (const zmq::error_t&) {
        }
        continue;
      }
      ++per_host_[host];
      Connection c;
      c.host = host;
      c.opened_ms = c.last_ms = now_ms;
      open_.emplace(key, std::move(c));
      continue;
    }
    if (it == open_.end() || it->second.answering) continue;  // refused, closed, or answered
    OnData(key, it->second, std::string_view(static_cast<const char*>(data.data()), data.size()),
           now_ms);
  }
}

Status ParseRequestHead(std::string_view head, HttpRequest* req) {
  const size_t eol = std::min(head.find("\r\n"), head.size());
  const std::string_view line = head.substr(0, eol);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || sp1 == 0 ||
      sp2 == sp1 + 1 || line.substr(sp2 + 1).rfind("HTTP/", 0) != 0)
    return Status::Error("bad request line");
  req->method = std::string(line.substr(0, sp1));
  req->target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  req->parsed = ParseTarget(req->target);
  req->headers.clear();
  for (size_t at = eol; at < head.size();) {
    const size_t next = std::min(head.find("\r\n", at + 2), head.size());
    const std::string_view field = head.substr(at + 2, next - std::min(next, at + 2));
    const size_t colon = field.find(':');
    if (colon != std::string_view::npos && colon > 0) {
      std::string name(field.substr(0, colon));
      for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      req->headers[name] = Trimmed(field.substr(colon + 1));
    }
    at = next;
  }
  return Status::Ok();
}

void HttpEndpoint::OnData(const std::string& id, Connection& c, std::string_view data,
                          uint64_t now_ms) {
  c.request.append(data);
  c.last_ms = now_ms;
  if (c.header_end == 0) {
    const size_t end = c.request.find("\r\n\r\n");
    if (end == std::string::npos || end > kMaxHeaderBytes) {
      if (c.request.size() > kMaxHeaderBytes) {
        c.answering = true;
        Respond(id, JsonError(431, "headers_too_large", "request headers over 16 KiB"));
      }
      return;
    }
    c.header_end = end + 4;
    if (!ParseRequestHead(std::string_view(c.request).substr(0, end), &c.pending).ok()) {
      c.answering = true;
      Respond(id, JsonError(400, "bad_request", "bad request line"));
      return;
    }
    c.body_start_ms = now_ms;
    // The body's length, checked against the limits before any of it is kept.
    if (!c.pending.Header("transfer-encoding").empty()) {
      c.answering = true;
      Respond(id, JsonError(411, "length_required",
                            "send the body with a Content-Length (chunked is not supported)"));
      return;
    }
    uint64_t length = 0;
    const std::string declared = c.pending.Header("content-length");
    if (!declared.empty() && !ParseU64(declared, &length)) {
      c.answering = true;
      Respond(id, JsonError(400, "bad_request", "bad Content-Length"));
      return;
    }
    if (length > limits_.max_body_bytes) {
      c.answering = true;
      Respond(id, JsonError(413, "too_large",
                            "request body of " + std::to_string(length) +
                                " bytes is over the limit of " +
                                std::to_string(limits_.max_body_bytes)));
      return;
    }
    if (bodies_in_flight_ + length > limits_.max_body_bytes_total) {
      c.answering = true;
      HttpResponse busy = JsonError(
          503, "unavailable", "too many request bodies are being received at once; try again");
      busy.headers.emplace_back("Retry-After", "5");
      Respond(id, busy);
      return;
    }
    c.body_bytes = length;
    bodies_in_flight_ += length;
    if (length > 0 && c.request.size() - c.header_end < length &&
        c.pending.Header("expect") == "100-continue")
      SendFrames(id, "HTTP/1.1 100 Continue\r\n\r\n");
  }
  if (c.request.size() - c.header_end >= c.body_bytes) Answer(id, c);
}

void HttpEndpoint::Answer(const std::string& id, Connection& c) {
  c.answering = true;
  bodies_in_flight_ -= c.body_bytes;
  HttpRequest req = std::move(c.pending);
  req.connection = id;
  req.body = c.request.substr(c.header_end, c.body_bytes);
  c.body_bytes = 0;
  c.request.clear();
  c.request.shrink_to_fit();
  HttpResponse r;
  try {
    r = handler_(req);
  } catch (const std::exception& e) {
    spdlog::error("http: {} {} failed: {}", req.method, req.parsed.path, e.what());
    r = JsonError(500, "internal", "internal error");
  }
  const bool head_only = req.method == "HEAD";
  switch (r.kind) {
    case HttpResponse::Kind::kNow:
      SendFrames(id, HttpHead(r, r.body.size()) + (head_only ? "" : r.body));
      Close(id);
      return;
    case HttpResponse::Kind::kDeferred:
      return;  // Respond, later
    case HttpResponse::Kind::kStream:
      c.stream = true;
      if (!SendFrames(id, HttpHead(r, 0) + r.body)) Close(id);
      return;
    case HttpResponse::Kind::kFile: {
      FILE* f = head_only ? nullptr : std::fopen(r.file.c_str(), "rb");
      if (!head_only && (!f || std::fseek(f, static_cast<long>(r.file_offset), SEEK_SET) != 0)) {
        if (f) std::fclose(f);
        spdlog::warn("http: cannot read {}", r.file);
        HttpResponse gone = JsonError(404, "not_found", "the file is not readable any more");
        SendFrames(id, HttpHead(gone, gone.body.size()) + gone.body);
        Close(id);
        return;
      }
      if (!SendFrames(id, HttpHead(r, r.file_length)) || head_only || r.file_length == 0) {
        if (f) std::fclose(f);
        Close(id);
        return;
      }
      c.file = f;
      c.file_left = r.file_length;
      return;
    }
  }
}

void HttpEndpoint::Respond(const std::string& id, const HttpResponse& r) {
  auto it = open_.find(id);
  if (it == open_.end() || it->second.closing) return;
  SendFrames(id, HttpHead(r, r.body.size()) + r.body);
  Close(id);
}

bool HttpEndpoint::Push(const std::string& id, std::string_view bytes) {
  auto it = open_.find(id);
  if (it == open_.end() || !it->second.stream) return false;
  if (SendFrames(id, bytes)) return true;
  Close(id);
  return false;
}

bool HttpEndpoint::Pump(uint64_t now_ms) {
  size_t budget = kPumpBytes;
  bool more = false;
  std::vector<std::string> done;
  std::string piece;
  for (auto& [id, c] : open_) {
    if (!c.file) continue;
    while (c.file_left > 0 && budget > 0) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(kFilePiece, c.file_left));
      piece.resize(want);
      // Only what was sent is taken from the file: a full queue puts the position back.
      const long at = std::ftell(c.file);
      const size_t got = std::fread(piece.data(), 1, want, c.file);
      if (got == 0) {  // the file shrank under us: the client sees a short body
        c.file_left = 0;
        break;
      }
      piece.resize(got);
      bool sent = false;
      try {
        constexpr auto more_flags = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
        if (sock_.send(zmq::buffer(id), more_flags)) {
          sock_.send(zmq::buffer(piece), zmq::send_flags::dontwait);
          sent = true;
        }
      } catch (const zmq::error_t&) {  // the client is gone
        c.file_left = 0;
        break;
      }
      if (!sent) {
        std::fseek(c.file, at, SEEK_SET);
        break;
      }
      c.file_left -= got;
      c.last_ms = now_ms;
      budget -= std::min(budget, got);
    }
    if (c.file_left == 0) {
      done.push_back(id);
    } else {
      more = true;
    }
  }
  for (const std::string& id : done) Close(id);
  return more;
}

bool HttpEndpoint::SendFrames(const std::string& id, std::string_view bytes) {
  constexpr auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
  try {
    if (!sock_.send(zmq::buffer(id), more)) return false;
    sock_.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::dontwait);
    return true;
  } catch (const zmq::error_t& e) {
    spdlog::debug("http: cannot send: {}", e.what());
    return false;
  }
}

// An empty frame closes the connection. ZeroMQ sends no notice of a connection this side closes:
// it is forgotten here. (A peer that closed at the same moment may still get a notice through,
// which opens a stale entry that CloseStale removes.)
//
// A connection whose queue is full (a client that stops reading) cannot take the close frame: it
// stays, counted against the caps, closing, and CloseStale tries again until its client reads or
// goes (TCP keepalive finds one that vanished).
void HttpEndpoint::Close(const std::string& id) {
  bool queued = false, gone = false;
  try {
    constexpr auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
    if (sock_.send(zmq::buffer(id), more)) {
      sock_.send(zmq::message_t(), zmq::send_flags::dontwait);
      queued = true;
    }
  } catch (const zmq::error_t& e) {
    gone = true;  // no such connection any more
    spdlog::debug("http: cannot close a connection: {}", e.what());
  }
  auto it = open_.find(id);
  if (queued || gone || it == open_.end()) {
    Forget(id);
    return;
  }
  Connection& c = it->second;
  if (c.file) std::fclose(c.file);
  c.file = nullptr;
  c.file_left = 0;
  c.stream = false;
  c.answering = c.closing = true;
  bodies_in_flight_ -= c.body_bytes;
  c.body_bytes = 0;
  c.request.clear();
  c.request.shrink_to_fit();
}

void HttpEndpoint::Forget(const std::string& id) {
  auto it = open_.find(id);
  if (it == open_.end()) return;
  Connection& c = it->second;
  if (c.file) std::fclose(c.file);
  bodies_in_flight_ -= c.body_bytes;
  if (--per_host_[c.host] == 0) per_host_.erase(c.host);
  open_.erase(it);
}

void HttpEndpoint::CloseStale(uint64_t now_ms) {
  std::vector<std::string> stale;
  for (const auto& [id, c] : open_) {
    if (c.stream) continue;  // closed when its client stops taking events
    if (c.closing) {         // its close waits for room: try again
      stale.push_back(id);
      continue;
    }
    // A deferred answer comes once its write is durable: milliseconds, but never held forever;
    // a download whose client takes nothing for that long is given up.
    const uint64_t limit = limits_.request_timeout_ms * (c.answering ? 6 : 1);
    bool late = now_ms - c.last_ms > limit;
    // Headers complete within the timeout of connecting; a body arrives at kMinBodyRate at
    // least (after the timeout's grace): a trickling client cannot hold a connection or the
    // body budget for long.
    if (!c.answering && c.header_end == 0) late = late || now_ms - c.opened_ms > limit;
    if (!c.answering && c.header_end != 0)
      late = late || now_ms - c.body_start_ms > limit + c.body_bytes * 1000 / kMinBodyRate;
    if (late) stale.push_back(id);
  }
  for (const std::string& id : stale) Close(id);
  if (!stale.empty())
    spdlog::debug("http: closed {} connections past the request timeout", stale.size());
}

}  // namespace segue
