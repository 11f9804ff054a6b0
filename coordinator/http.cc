#include "coordinator/http.h"

#include <spdlog/spdlog.h>

namespace segue {
namespace {

constexpr size_t kMaxRequestBytes = 16 << 10;

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
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

}  // namespace

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

HttpEndpoint::HttpEndpoint(zmq::context_t& ctx, Handler handler, HttpLimits limits)
    : sock_(ctx, zmq::socket_type::stream), handler_(std::move(handler)), limits_(limits) {
  sock_.set(zmq::sockopt::linger, 0);
  // Never wait on a client: a browser that stops reading gets its answer dropped, the loop goes
  // on (a blocking send here once held the whole coordinator).
  sock_.set(zmq::sockopt::sndtimeo, 0);
  sock_.set(zmq::sockopt::sndhwm, 100000);
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
        Forget(key);
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
      open_[key] = Connection{host, now_ms, ""};
      continue;
    }
    if (it == open_.end()) continue;  // refused, or closed already
    std::string& req = it->second.request;
    req.append(static_cast<const char*>(data.data()), data.size());
    if (req.size() > kMaxRequestBytes) {
      Respond(key, {431, "text/plain; charset=utf-8", "request too large\n"}, false);
      continue;
    }
    if (req.find("\r\n\r\n") == std::string::npos) continue;  // more to come
    const std::string line = req.substr(0, req.find("\r\n"));
    const size_t sp1 = line.find(' '), sp2 = line.find(' ', sp1 + 1);
    if (sp1 == std::string::npos || sp2 == std::string::npos) {
      Respond(key, {400, "text/plain; charset=utf-8", "bad request line\n"}, false);
      continue;
    }
    const std::string method = line.substr(0, sp1);
    const std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string path = target.substr(0, target.find('?'));
    if (method != "GET" && method != "HEAD") {
      Respond(key, {405, "text/plain; charset=utf-8", "only GET and HEAD\n"}, false);
      continue;
    }
    HttpResponse r;
    try {
      r = handler_(target);
    } catch (const std::exception& e) {
      spdlog::error("http: {} failed: {}", path, e.what());
      r = {500, "text/plain; charset=utf-8", "internal error\n"};
    }
    Respond(key, r, method == "HEAD");
  }
}

void HttpEndpoint::Respond(const std::string& id, const HttpResponse& r, bool head) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + Reason(r.status) +
                    "\r\nContent-Type: " + r.content_type +
                    "\r\nContent-Length: " + std::to_string(r.body.size()) +
                    "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
  if (!head) out += r.body;
  constexpr auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
  try {
    if (sock_.send(zmq::buffer(id), more)) sock_.send(zmq::buffer(out), zmq::send_flags::dontwait);
    if (sock_.send(zmq::buffer(id), more))  // an empty frame closes the connection
      sock_.send(zmq::message_t(), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    spdlog::warn("http: cannot answer: {}", e.what());
  }
  Forget(id);
}

// ZeroMQ sends no notice of a connection this side closes: it is forgotten here. (A peer that
// closed at the same moment may still get a notice through, which opens a stale entry that
// CloseStale removes.)
void HttpEndpoint::Forget(const std::string& id) {
  auto it = open_.find(id);
  if (it == open_.end()) return;
  if (--per_host_[it->second.host] == 0) per_host_.erase(it->second.host);
  open_.erase(it);
}

void HttpEndpoint::CloseStale(uint64_t now_ms) {
  std::vector<std::string> stale;
  for (const auto& [id, c] : open_)
    if (now_ms - c.opened_ms > limits_.request_timeout_ms) stale.push_back(id);
  constexpr auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
  for (const std::string& id : stale) {
    try {
      if (sock_.send(zmq::buffer(id), more))
        sock_.send(zmq::message_t(), zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      spdlog::warn("http: cannot close a connection: {}", e.what());
    }
    Forget(id);
  }
  if (!stale.empty())
    spdlog::debug("http: closed {} connections past the request timeout", stale.size());
}

}  // namespace segue
