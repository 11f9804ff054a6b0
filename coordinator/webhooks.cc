#include "coordinator/webhooks.h"

#include <netdb.h>
#include <poll.h>
#include <sodium.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fcntl.h>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/net/url.h"

namespace segue {
namespace {

uint64_t NowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

std::string Signature(const std::string& secret, const std::string& body) {
  crypto_auth_hmacsha256_state state;
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(secret.data()),
                              secret.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(body.data()),
                                body.size());
  crypto_auth_hmacsha256_final(&state, mac);
  static const char* hex = "0123456789abcdef";
  std::string out = "sha256=";
  for (unsigned char b : mac) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

// Waits for `fd` to be ready for `events` until `deadline_ms`; false on timeout or error.
bool WaitFor(int fd, short events, uint64_t deadline_ms) {
  for (;;) {
    const uint64_t now = NowMs();
    if (now >= deadline_ms) return false;
    pollfd p{fd, events, 0};
    const int n = poll(&p, 1, static_cast<int>(deadline_ms - now));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

}  // namespace

WebhookSender::WebhookSender(WebhookOptions options) : options_(std::move(options)) {
  for (int i = 0; i < std::max(1, options_.threads); ++i) threads_.emplace_back([this] { Run(); });
}

WebhookSender::~WebhookSender() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void WebhookSender::Enqueue(const std::string& url, const std::string& event,
                            const std::string& delivery, std::string body) {
  if (auto ok = ParseHttpUrl(url); !ok.ok()) {
    spdlog::warn("webhook {}: not sent: {}", url.substr(0, 200), ok.message());
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queued_ >= options_.max_queued) {
      // The oldest delivery of the longest queue goes: a dead receiver's backlog, most likely.
      auto longest = by_url_.begin();
      for (auto it = by_url_.begin(); it != by_url_.end(); ++it)
        if (it->second.size() > longest->second.size()) longest = it;
      if (longest != by_url_.end() && longest->second.size() > 1) {
        longest->second.erase(longest->second.begin() + 1);  // not the one being tried
        --queued_;
        ++counters_.dropped;
      } else {
        ++counters_.dropped;
        return;
      }
    }
    by_url_[url].push_back(Delivery{url, event, delivery, std::move(body), 0, 0});
    ++queued_;
  }
  wake_.notify_all();
}

WebhookCounters WebhookSender::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  WebhookCounters c = counters_;
  c.queued = queued_;
  return c;
}

void WebhookSender::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    // The URL whose first delivery is due soonest.
    auto next = by_url_.end();  // of the URLs no other thread is trying
    for (auto it = by_url_.begin(); it != by_url_.end(); ++it)
      if (!busy_.count(it->first) &&
          (next == by_url_.end() || it->second.front().due_ms < next->second.front().due_ms))
        next = it;
    if (next == by_url_.end()) {
      wake_.wait(lock);
      continue;
    }
    const uint64_t now = NowMs();
    if (next->second.front().due_ms > now) {
      wake_.wait_for(lock, std::chrono::milliseconds(next->second.front().due_ms - now));
      continue;
    }
    const std::string url = next->first;
    const Delivery d = next->second.front();  // stays queued (first) while it is tried
    busy_.insert(url);
    lock.unlock();
    std::string error;
    const int status = Attempt(d, &error);
    lock.lock();
    busy_.erase(url);
    wake_.notify_all();  // the URL may be another thread's to try now
    auto it = by_url_.find(url);
    if (it == by_url_.end() || it->second.empty()) continue;
    Delivery& front = it->second.front();
    ++front.attempts;
    if (status >= 200 && status < 300) {
      ++counters_.delivered;
    } else if (front.attempts >= options_.max_attempts) {
      ++counters_.given_up;
      spdlog::error("webhook {}: gave up on event {} after {} attempts: {}", url, d.delivery,
                    front.attempts, status ? "it answered " + std::to_string(status) : error);
    } else {
      ++counters_.retries;
      const uint64_t backoff = std::min(
          options_.max_backoff_ms, options_.first_backoff_ms << std::min(front.attempts - 1, 20));
      front.due_ms = NowMs() + backoff;
      spdlog::warn("webhook {}: event {} not delivered ({}); trying again in {} ms", url,
                   d.delivery, status ? "it answered " + std::to_string(status) : error, backoff);
      continue;
    }
    it->second.pop_front();
    --queued_;
    if (it->second.empty()) by_url_.erase(it);
  }
}

int WebhookSender::Attempt(const Delivery& d, std::string* error) const {
  auto url = ParseHttpUrl(d.url);
  if (!url.ok()) {
    *error = url.message();
    return 0;
  }
  const uint64_t deadline = NowMs() + options_.attempt_timeout_ms;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(url->host.c_str(), std::to_string(url->port).c_str(), &hints, &found);
      rc != 0) {
    *error = "cannot resolve " + url->host + ": " + gai_strerror(rc);
    return 0;
  }
  int fd = -1;
  *error = "cannot connect to " + url->host + ":" + std::to_string(url->port);
  for (addrinfo* a = found; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int rc = connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS && WaitFor(fd, POLLOUT, deadline)) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
      if (err) *error += std::string(": ") + std::strerror(err);
    }
    if (rc != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) return 0;
  const std::string host =
      url->host.find(':') != std::string::npos ? "[" + url->host + "]" : url->host;
  std::string request = "POST " + url->path + " HTTP/1.1\r\nHost: " + host +
                        (url->port != 80 ? ":" + std::to_string(url->port) : "") +
                        "\r\nUser-Agent: segue/" SEGUE_VERSION
                        "\r\nContent-Type: application/json\r\nContent-Length: " +
                        std::to_string(d.body.size()) + "\r\nX-Segue-Event: " + d.event +
                        "\r\nX-Segue-Delivery: " + d.delivery + "\r\n";
  if (!options_.secret.empty())
    request += "X-Segue-Signature: " + Signature(options_.secret, d.body) + "\r\n";
  request += "Connection: close\r\n\r\n" + d.body;
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!WaitFor(fd, POLLOUT, deadline)) break;
    } else {
      break;
    }
  }
  std::string reply;
  if (sent == request.size()) {
    char buf[1024];
    while (reply.find("\r\n") == std::string::npos && reply.size() < 8192) {
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        reply.append(buf, static_cast<size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (!WaitFor(fd, POLLIN, deadline)) break;
      } else {
        break;
      }
    }
  }
  close(fd);
  if (sent != request.size()) {
    *error = "cannot send the request";
    return 0;
  }
  // "HTTP/1.x NNN ..."
  if (reply.size() < 12 || reply.rfind("HTTP/1.", 0) != 0) {
    *error = reply.empty()
                 ? "no answer within " + std::to_string(options_.attempt_timeout_ms) + " ms"
                 : "not an HTTP answer";
    return 0;
  }
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (reply[i] < '0' || reply[i] > '9') {
      *error = "not an HTTP answer";
      return 0;
    }
    status = status * 10 + (reply[i] - '0');
  }
  return status;
}

}  // namespace segue
