// Reporting: what the coordinator says about its jobs, workers and pools, built from its own
// state. Control replies carry the reports of common/protocol/reports.h; /api/v1/status shows
// the same reports as JSON (their ToJson, as `segue status --json` does); /metrics is
// Prometheus text. Nothing here changes state.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/protocol/reports.h"
#include "coordinator/jobs.h"
#include "coordinator/pools.h"
#include "coordinator/workers.h"

namespace segue {

// A Prometheus histogram with fixed bucket bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  // Appends the histogram in Prometheus text form.
  void Write(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

// What the coordinator counts as it goes.
struct FarmMetrics {
  uint64_t bad_messages = 0;               // malformed or unexpected messages, dropped
  uint64_t fenced_results = 0;             // results from stale attempts, dropped
  uint64_t checkpoint_bytes = 0;           // of step checkpoints received
  std::map<std::string, uint64_t> denied;  // requests refused for their identity's role, by role
  uint64_t denied_total = 0;
  size_t identities = 0;     // in the keys file now (0: no keys file)
  size_t event_streams = 0;  // open now
  uint64_t webhooks_delivered = 0, webhook_retries = 0, webhooks_given_up = 0;
  size_t webhooks_queued = 0;
  size_t connections = 0;             // to the farm port, open now
  size_t http_connections = 0;        // to the HTTP port, open now
  uint64_t refused_connections = 0;   // over the connection caps (farm and HTTP ports)
  uint64_t keys_reload_failures = 0;  // changes to the keys file that could not be loaded
  // Transfers (transfers.h), copied from the table when the metrics are read.
  uint64_t receive_budget_bytes = 0, receive_held_bytes = 0;
  size_t transfers_waiting = 0, transfers_receiving = 0;
  uint64_t transfers_completed = 0, transfers_refused = 0, transfers_dropped = 0;
  uint64_t transfer_parts_ignored = 0, transfer_bytes = 0;
  // The result cache (results.h): segments taken from stored results or not found there, and
  // what eviction deleted; its size is worked out when the metrics are read.
  uint64_t result_hits = 0, result_misses = 0, result_hit_bytes = 0, result_chunk_hits = 0;
  uint64_t results_evicted = 0, results_evicted_bytes = 0;
  uint64_t result_cache_bytes = 0, result_cache_live_bytes = 0, result_cache_limit = 0;
  Histogram dispatch_latency{{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}};
  Histogram step_seconds{{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}};
};

// The state disk as the syncer and the outbox see it.
struct SyncFigures {
  uint64_t syncs = 0;
  double sync_seconds = 0;
  size_t held_messages = 0;
};

// `j` at `now_ms` (progress, ETA); `with_segments`: with a strip of every segment's state.
JobInfo ReportJob(const Job& j, uint64_t now_ms, bool with_segments);
WorkerInfo ReportWorker(const Worker& w);
PoolInfo ReportPool(const PoolStatus& p);

// /metrics. `pools` may be empty (a coordinator without pools shows no pool series).
std::string MetricsText(const JobTable& jobs, const WorkerRegistry::Map& workers,
                        const std::vector<PoolStatus>* pools, const FarmMetrics& metrics,
                        const SyncFigures& sync);

// /api/v1/status: every job (with segments), worker and pool, as the CLI's --json shows them.
nlohmann::json StatusJson(const JobTable& jobs, const WorkerRegistry::Map& workers,
                          const std::vector<PoolStatus>& pools, uint64_t now_ms);

}  // namespace segue
