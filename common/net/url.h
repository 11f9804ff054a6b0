// http:// URLs, as webhooks name their receivers: the manifest checks them, the coordinator's
// webhook sender connects to them.
#pragma once

#include <cstdint>
#include <string>

#include "common/status/status.h"

namespace segue {

struct HttpUrl {
  std::string host;  // a name, an IPv4 address, or an IPv6 address without its brackets
  uint16_t port = 80;
  std::string path;  // from the first '/', query included; "/" when the URL has none
};

// Reads "http://HOST[:PORT][/PATH]". https:// is refused with a reason (the coordinator speaks
// plain HTTP: a TLS receiver sits behind a local relay), as are user names, fragments, spaces
// and control characters, and URLs over 2048 bytes. Never throws.
Result<HttpUrl> ParseHttpUrl(const std::string& url);

// Whether `host` (a name or address without its port; IPv6 with or without brackets) is this
// machine's loopback: localhost, ::1 or a numeric 127.x.x.x (not a name that merely starts with
// "127.", which anyone's DNS may point anywhere).
bool IsLoopbackHost(const std::string& host);

}  // namespace segue
