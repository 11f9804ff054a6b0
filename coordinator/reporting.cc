#include "coordinator/reporting.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace segue {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}

void Histogram::Observe(double v) {
  const auto i =
      static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::Write(std::string& out, const std::string& name, const std::string& help) const {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += name + "_bucket{le=\"" + fmt::format("{}", bounds_[i]) + "\"} " +
           std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(count_) + "\n";
  out += name + "_sum " + fmt::format("{}", sum_) + "\n" + name + "_count " +
         std::to_string(count_) + "\n";
}

JobInfo ReportJob(const Job& j, uint64_t now_ms, bool with_segments) {
  JobInfo r;
  r.id = j.id;
  r.name = j.name;
  r.state = JobStateName(j.state);
  r.priority = j.priority;
  r.owner = j.owner;
  r.metadata = j.manifest.metadata;
  r.submission_id = j.submission_id;
  r.frames_total = j.manifest.frames;
  int64_t covered = 0, reach = 0;
  uint32_t running = 0;
  for (size_t i = 0; i < j.segments.size(); ++i) {
    if (j.seg[i].state == TaskState::kRunning) ++running;
    if (j.seg[i].state != TaskState::kDone) continue;
    // In video frames: a segment's latent frames [start, end) hold [VideoStart, VideoEnd).
    const int64_t start = j.geometry.VideoStart(j.segments[i].start);
    const int64_t end = j.geometry.VideoEnd(j.segments[i].end);
    covered += std::max<int64_t>(0, end - std::max(start, reach));
    reach = std::max(reach, end);
  }
  r.frames_done = covered;
  r.segments_total = static_cast<uint32_t>(j.segments.size());
  r.segments_done = j.segments_done;
  r.segments_running = running;
  r.chunks_total = static_cast<uint32_t>(j.chunks.size());
  r.chunks_done = j.chunks_done;
  r.progress = j.state == JobState::kDone
                   ? 1.0
                   : 0.85 * j.segments_done / std::max<size_t>(1, j.segments.size()) +
                         0.15 * j.chunks_done / std::max<size_t>(1, j.chunks.size());
  if (!IsFinished(j.state) && r.progress > 0.02 && j.started_ms > 0) {
    const double elapsed = static_cast<double>(now_ms - j.started_ms) / 1000.0;
    r.eta_seconds = elapsed / r.progress * (1.0 - r.progress);
  } else if (j.state == JobState::kDone) {
    r.eta_seconds = 0;
  }
  if (j.state == JobState::kDone) r.output = j.output_path;
  r.error = j.error;
  r.created_ms = j.created_ms;
  r.updated_ms = j.updated_ms;
  r.family.role = JobRoleName(j.family.role);
  r.family.root = j.family.root;
  r.family.parent = j.family.parent;
  r.family.picks = j.family.picks;
  r.family.preview_job = j.preview_job;
  r.family.waiting_for = j.waiting_for;
  const auto& timeline = j.manifest.timeline;
  if (j.family.role == JobRole::kTake && j.family.section >= 0 &&
      static_cast<size_t>(j.family.section) < timeline.size()) {
    const size_t s = static_cast<size_t>(j.family.section);
    r.family.section = j.family.section;
    r.family.take = static_cast<uint32_t>(j.family.take);
    r.family.section_start = s == 0 ? 0 : timeline[s].frame;
    r.family.section_end = s + 1 < timeline.size() ? timeline[s + 1].frame : j.manifest.frames;
    r.family.section_prompt = timeline[s].prompt;
    for (size_t i = 0; i < j.segments.size(); ++i)
      if (SectionOfSegment(j.geometry, timeline, j.segments[i]) == j.family.section)
        r.family.section_segments.push_back(static_cast<uint32_t>(i));
  }
  if (with_segments) {
    r.segment_states.assign(j.seg.size(), '.');
    for (size_t i = 0; i < j.seg.size(); ++i) {
      switch (j.seg[i].state) {
        case TaskState::kDone:
          r.segment_states[i] = '#';
          break;
        case TaskState::kRunning:
          r.segment_states[i] = '>';
          break;
        case TaskState::kFailed:
          r.segment_states[i] = 'x';
          break;
        case TaskState::kPending:
          break;
      }
    }
  }
  return r;
}

WorkerInfo ReportWorker(const Worker& w) {
  WorkerInfo r;
  r.name = w.name;
  r.host = w.host;
  r.device = w.device;
  r.state = w.draining ? "draining" : w.task ? "busy" : "idle";
  if (w.task) {
    const char* what = w.task->kind == TaskKind::kEncode ? " chunk "
                       : w.task->kind == TaskKind::kGang ? " segments from "
                                                         : " segment ";
    r.task = "job " + std::to_string(w.task->job) + what + std::to_string(w.task->index);
  }
  r.tasks_done = w.tasks_done;
  r.failures = w.failures;
  r.last_seen_ms = w.last_seen_ms;
  r.pool = w.pool;
  r.identity = w.principal;
  r.models.assign(w.models.begin(), w.models.end());
  r.unavailable.assign(w.unavailable.begin(), w.unavailable.end());
  return r;
}

PoolInfo ReportPool(const PoolStatus& p) {
  PoolInfo r;
  r.name = p.config.name;
  r.provider = p.config.provider;
  r.size = static_cast<uint32_t>(p.config.size);
  r.members = static_cast<uint32_t>(p.members);
  r.idle = static_cast<uint32_t>(p.idle);
  r.busy = static_cast<uint32_t>(p.busy);
  r.min = static_cast<uint32_t>(p.config.min);
  r.max = static_cast<uint32_t>(p.config.max);
  r.autoscale = p.config.autoscale;
  r.cooldown_s = static_cast<uint32_t>(p.config.cooldown_s);
  r.last_change = p.last_change;
  return r;
}

std::string MetricsText(const JobTable& jobs, const WorkerRegistry::Map& workers,
                        const std::vector<PoolStatus>* pools, const FarmMetrics& metrics,
                        const SyncFigures& sync) {
  std::string out;
  auto gauge = [&](const std::string& name, const std::string& help) {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " gauge\n";
  };
  auto counter = [&](const std::string& name, const std::string& help, uint64_t v) {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " counter\n" + name + " " +
           std::to_string(v) + "\n";
  };
  std::map<std::string, int> job_states = {{"QUEUED", 0}, {"RUNNING", 0}, {"STITCHING", 0},
                                           {"DONE", 0},   {"FAILED", 0},  {"CANCELLED", 0}};
  std::map<std::string, int64_t> seg_states = {
      {"done", 0}, {"running", 0}, {"waiting", 0}, {"failed", 0}};
  int64_t queue = 0;
  for (const auto& [id, j] : jobs) {
    ++job_states[JobStateName(j.state)];
    if (IsFinished(j.state)) continue;  // segments of live jobs
    for (const Task& t : j.seg) {
      const char* k = t.state == TaskState::kDone      ? "done"
                      : t.state == TaskState::kRunning ? "running"
                      : t.state == TaskState::kFailed  ? "failed"
                                                       : "waiting";
      ++seg_states[k];
      if (t.state == TaskState::kPending) ++queue;
    }
    for (const Task& t : j.chunk) queue += t.state == TaskState::kPending ? 1 : 0;
  }
  gauge("segue_jobs", "Jobs by state.");
  for (const auto& [k, v] : job_states)
    out += "segue_jobs{state=\"" + k + "\"} " + std::to_string(v) + "\n";
  gauge("segue_segments", "Segments of unfinished jobs by state.");
  for (const auto& [k, v] : seg_states)
    out += "segue_segments{state=\"" + k + "\"} " + std::to_string(v) + "\n";
  gauge("segue_queue_depth", "Tasks (segments and chunks) of unfinished jobs not yet started.");
  out += "segue_queue_depth " + std::to_string(queue) + "\n";
  std::map<std::string, int> worker_states = {{"idle", 0}, {"busy", 0}, {"draining", 0}};
  for (const auto& [name, w] : workers)
    ++worker_states[w.draining ? "draining" : w.task ? "busy" : "idle"];
  gauge("segue_workers", "Connected workers by state.");
  for (const auto& [k, v] : worker_states)
    out += "segue_workers{state=\"" + k + "\"} " + std::to_string(v) + "\n";
  if (pools) {
    gauge("segue_pool_size", "Workers each pool wants.");
    for (const auto& p : *pools)
      out +=
          "segue_pool_size{pool=\"" + p.config.name + "\"} " + std::to_string(p.config.size) + "\n";
    gauge("segue_pool_members", "Workers each pool has launched or counts as its own.");
    for (const auto& p : *pools)
      out +=
          "segue_pool_members{pool=\"" + p.config.name + "\"} " + std::to_string(p.members) + "\n";
  }
  metrics.dispatch_latency.Write(out, "segue_dispatch_latency_seconds",
                                 "From a worker asking for work to its task being sent.");
  metrics.step_seconds.Write(out, "segue_step_seconds",
                             "Sampler step time of finished segments (segment time / steps).");
  counter("segue_checkpoint_bytes_total", "Bytes of step checkpoints received.",
          metrics.checkpoint_bytes);
  counter("segue_fenced_results_total", "Results from stale attempts, dropped.",
          metrics.fenced_results);
  counter("segue_bad_messages_total", "Malformed or unexpected messages, dropped.",
          metrics.bad_messages);
  out +=
      "# HELP segue_denied_total Requests refused for their identity's role (keys file), by "
      "role.\n# TYPE segue_denied_total counter\n";
  for (const char* role : {"admin", "submitter", "worker", "viewer", "unknown"}) {
    auto it = metrics.denied.find(role);
    out += std::string("segue_denied_total{role=\"") + role + "\"} " +
           std::to_string(it == metrics.denied.end() ? 0 : it->second) + "\n";
  }
  gauge("segue_connections", "Connections open now, by port.");
  out += "segue_connections{port=\"farm\"} " + std::to_string(metrics.connections) + "\n";
  out += "segue_connections{port=\"http\"} " + std::to_string(metrics.http_connections) + "\n";
  counter("segue_refused_connections_total",
          "Connections closed at once for being over --max-connections, --max-connections-per-"
          "host or --max-http-connections.",
          metrics.refused_connections);
  gauge("segue_receive_budget_bytes",
        "Bytes that messages larger than a frame may hold while they are received "
        "(--receive-budget-mb).");
  out += "segue_receive_budget_bytes " + std::to_string(metrics.receive_budget_bytes) + "\n";
  gauge("segue_receive_held_bytes", "Bytes of the receive budget granted to transfers now.");
  out += "segue_receive_held_bytes " + std::to_string(metrics.receive_held_bytes) + "\n";
  gauge("segue_transfers", "Transfers (messages larger than a frame) now, by state.");
  out += "segue_transfers{state=\"waiting\"} " + std::to_string(metrics.transfers_waiting) +
         "\nsegue_transfers{state=\"receiving\"} " + std::to_string(metrics.transfers_receiving) +
         "\n";
  out +=
      "# HELP segue_transfers_total Transfers by outcome (refused: at the request; dropped: "
      "stalled or out of order).\n# TYPE segue_transfers_total counter\n";
  out +=
      "segue_transfers_total{result=\"completed\"} " + std::to_string(metrics.transfers_completed) +
      "\nsegue_transfers_total{result=\"refused\"} " + std::to_string(metrics.transfers_refused) +
      "\nsegue_transfers_total{result=\"dropped\"} " + std::to_string(metrics.transfers_dropped) +
      "\n";
  counter("segue_transfer_parts_ignored_total",
          "Parts of no transfer granted to their sender (late, or never asked for), dropped.",
          metrics.transfer_parts_ignored);
  counter("segue_transfer_bytes_total", "Bytes received in the parts of transfers.",
          metrics.transfer_bytes);
  out +=
      "# HELP segue_result_cache_total Segments of submitted jobs taken from stored results "
      "(hit) or rendered (miss).\n# TYPE segue_result_cache_total counter\n";
  out += "segue_result_cache_total{result=\"hit\"} " + std::to_string(metrics.result_hits) +
         "\nsegue_result_cache_total{result=\"miss\"} " + std::to_string(metrics.result_misses) +
         "\n";
  counter("segue_result_cache_hit_bytes_total", "Bytes of latents taken from stored results.",
          metrics.result_hit_bytes);
  counter("segue_result_cache_chunk_hits_total",
          "Encoded chunks of submitted jobs taken from stored chunks.", metrics.result_chunk_hits);
  counter("segue_result_cache_evicted_total",
          "Finished jobs' stored results (segments' latents, encoded chunks) evicted.",
          metrics.results_evicted);
  counter("segue_result_cache_evicted_bytes_total", "Bytes of the results evicted.",
          metrics.results_evicted_bytes);
  gauge("segue_result_cache_bytes",
        "Bytes of stored results, by holder: finished jobs (the cache may evict them) and "
        "unfinished jobs (never evicted).");
  out += "segue_result_cache_bytes{jobs=\"finished\"} " +
         std::to_string(metrics.result_cache_bytes) +
         "\nsegue_result_cache_bytes{jobs=\"unfinished\"} " +
         std::to_string(metrics.result_cache_live_bytes) + "\n";
  gauge("segue_result_cache_limit_bytes", "The result cache's size limit (--result-cache).");
  out += "segue_result_cache_limit_bytes " + std::to_string(metrics.result_cache_limit) + "\n";
  gauge("segue_identities", "Identities in the keys file now (0: no keys file).");
  out += "segue_identities " + std::to_string(metrics.identities) + "\n";
  counter("segue_keys_reload_failures_total",
          "Changes to the keys file that could not be loaded (the previous keys stay).",
          metrics.keys_reload_failures);
  gauge("segue_event_streams", "Clients following /api/v1/events now.");
  out += "segue_event_streams " + std::to_string(metrics.event_streams) + "\n";
  out +=
      "# HELP segue_webhooks_total Webhook deliveries by outcome (given_up: after every retry, "
      "or dropped from a full queue).\n# TYPE segue_webhooks_total counter\n";
  out += "segue_webhooks_total{result=\"delivered\"} " +
         std::to_string(metrics.webhooks_delivered) +
         "\nsegue_webhooks_total{result=\"retried\"} " + std::to_string(metrics.webhook_retries) +
         "\nsegue_webhooks_total{result=\"given_up\"} " +
         std::to_string(metrics.webhooks_given_up) + "\n";
  gauge("segue_webhooks_queued", "Webhook deliveries waiting (retries included).");
  out += "segue_webhooks_queued " + std::to_string(metrics.webhooks_queued) + "\n";
  counter("segue_store_syncs_total",
          "Syncs of the store's write-ahead log (one serves every write since the last).",
          sync.syncs);
  out +=
      "# HELP segue_store_sync_seconds_total Time the syncs took: over segue_store_syncs_total, "
      "the disk's flush time.\n# TYPE segue_store_sync_seconds_total counter\n"
      "segue_store_sync_seconds_total " +
      fmt::format("{}", sync.sync_seconds) + "\n";
  gauge("segue_held_messages", "Replies and acknowledgements waiting for their writes' sync.");
  out += "segue_held_messages " + std::to_string(sync.held_messages) + "\n";
  return out;
}

nlohmann::json StatusJson(const JobTable& jobs, const WorkerRegistry::Map& workers,
                          const std::vector<PoolStatus>& pools, uint64_t now_ms) {
  nlohmann::json out = {{"jobs", nlohmann::json::array()},
                        {"workers", nlohmann::json::array()},
                        {"pools", nlohmann::json::array()}};
  for (const auto& [id, j] : jobs) out["jobs"].push_back(ReportJob(j, now_ms, true).ToJson());
  for (const auto& [name, w] : workers) out["workers"].push_back(ReportWorker(w).ToJson());
  for (const auto& p : pools) out["pools"].push_back(ReportPool(p).ToJson());
  return out;
}

}  // namespace segue
