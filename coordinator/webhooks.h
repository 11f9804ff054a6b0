// Webhooks: each change of a job's state POSTed as JSON to the URLs that asked for it (the
// coordinator's --webhook URLs, a manifest's webhooks:), retried with backoff until the receiver
// answers 2xx.
//
// Deliveries run on threads of their own (options.threads), so that a slow or dead receiver never
// holds the event loop: the loop only queues (Enqueue, which never blocks for long). A URL has one
// delivery under way at a time, so a dead receiver ties up at most one thread; the coordinator
// keeps its own --webhook URLs and the manifests' on separate senders, so that receivers a
// submitter names cannot hold up the operator's. Each attempt connects, sends
// one request and reads the status line, within kAttemptTimeout; a failed attempt is tried again
// after 1 s, 2 s, 4 s ... (at most 5 minutes apart) up to max_attempts in all, then given up,
// logged and counted. Deliveries to one URL go in the order they were queued: a receiver sees a
// job's states in order (a later one waits while an earlier one is retried).
//
// With a secret (--webhook-secret-file), each request carries X-Segue-Signature: sha256=HEX, the
// HMAC-SHA256 of its body under the secret, for the receiver to check.
//
// Pending deliveries live in memory: a coordinator that stops loses those not yet delivered
// (the job's state is in the store and the API; a receiver that must not miss one reads the jobs
// again when it starts).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace segue {

struct WebhookOptions {
  int max_attempts = 10;  // about 8.5 minutes of retries
  uint64_t first_backoff_ms = 1000;
  uint64_t max_backoff_ms = 300000;
  uint64_t attempt_timeout_ms = 10000;
  size_t max_queued = 10000;  // beyond: the oldest deliveries are dropped (counted)
  std::string secret;         // HMAC key; empty: requests are not signed
  int threads = 2;            // deliveries under way at once (to distinct URLs)
};

struct WebhookCounters {
  uint64_t delivered = 0, retries = 0, given_up = 0, dropped = 0;
  size_t queued = 0;
};

class WebhookSender {
 public:
  explicit WebhookSender(WebhookOptions options);
  // Stops the thread; deliveries still queued are dropped.
  ~WebhookSender();

  // Queues `body` (JSON) for `url` (checked by ParseHttpUrl; others are dropped with a log line).
  // `event`: the X-Segue-Event header, `delivery`: X-Segue-Delivery (the event's id).
  void Enqueue(const std::string& url, const std::string& event, const std::string& delivery,
               std::string body);
  WebhookCounters counters() const;

 private:
  struct Delivery {
    std::string url, event, delivery, body;
    int attempts = 0;
    uint64_t due_ms = 0;
  };
  void Run();  // one delivery thread
  // One attempt: the receiver's status, or 0 with `*error` set.
  int Attempt(const Delivery& d, std::string* error) const;

  const WebhookOptions options_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;                                   // GUARDED_BY(mu_)
  std::map<std::string, std::deque<Delivery>> by_url_;  // GUARDED_BY(mu_): each URL's, in order
  std::set<std::string> busy_;  // GUARDED_BY(mu_): URLs whose first delivery is being tried
  size_t queued_ = 0;           // GUARDED_BY(mu_)
  WebhookCounters counters_;    // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

}  // namespace segue
