#include "common/net/url.h"

#include <charconv>

namespace segue {

Result<HttpUrl> ParseHttpUrl(const std::string& url) {
  using R = Result<HttpUrl>;
  if (url.size() > 2048) return R::Error("a URL of at most 2048 bytes");
  for (unsigned char c : url)
    if (c <= ' ' || c == 0x7f) return R::Error("a URL without spaces or control characters");
  if (url.rfind("https://", 0) == 0)
    return R::Error("'" + url.substr(0, 200) +
                    "': the coordinator sends webhooks over plain http:// (put a TLS receiver "
                    "behind a local relay)");
  if (url.rfind("http://", 0) != 0)
    return R::Error("expected an http:// URL, got '" + url.substr(0, 200) + "'");
  const std::string rest = url.substr(7);
  if (rest.find('#') != std::string::npos) return R::Error("a URL without a #fragment");
  const size_t slash = rest.find_first_of("/?");
  const std::string authority = rest.substr(0, slash);
  HttpUrl out;
  out.path = slash == std::string::npos ? "/" : rest.substr(slash);
  if (out.path[0] == '?') out.path = "/" + out.path;
  if (authority.find('@') != std::string::npos)
    return R::Error("a URL without a user name (a secret in a URL ends up in logs)");
  std::string port;
  bool has_port = false;
  if (!authority.empty() && authority[0] == '[') {  // [IPv6]:port
    const size_t close = authority.find(']');
    if (close == std::string::npos) return R::Error("an IPv6 host in [brackets]");
    out.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return R::Error("':PORT' after an IPv6 host");
      port = authority.substr(close + 2);
      has_port = true;
    }
  } else {
    const size_t colon = authority.rfind(':');
    out.host = authority.substr(0, colon);
    if (colon != std::string::npos) {
      port = authority.substr(colon + 1);
      has_port = true;
    }
  }
  if (out.host.empty()) return R::Error("a host after http://, in '" + url.substr(0, 200) + "'");
  if (has_port) {
    unsigned value = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || p != port.data() + port.size() || value == 0 ||
        value > 65535)
      return R::Error("a port from 1 to 65535, got '" + port.substr(0, 20) + "'");
    out.port = static_cast<uint16_t>(value);
  }
  return out;
}

bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "[::1]" || host == "::1" ||
         (host.rfind("127.", 0) == 0 && host.find_first_not_of("0123456789.") == std::string::npos);
}

}  // namespace segue
