// A client of the coordinator's control API: what `segue submit/status/jobs` and the tests use.
// One DEALER socket; each call sends one Envelope and waits for the reply with a timeout. What it
// returns about jobs, workers and pools are the protocol's reports (common/protocol/reports.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/protocol/reports.h"
#include "common/status/status.h"

namespace segue {

struct SubmitRequest {
  std::string manifest_text;
  std::string manifest_name;
  std::string audio_data;
  std::string audio_name;
  std::string output_override;
  std::string submission_id;  // resubmitting with the same id returns the same job
};

struct SubmitInfo {
  uint64_t job_id = 0;
  int64_t frames = 0;
  uint32_t segments = 0;
  std::string output;
  bool existing = false;  // the submission id named a job submitted before
};

// Which jobs `segue jobs` lists: every filter given must hold; a page of at most `limit` (0: all)
// with ids above `after_id`.
struct JobFilter {
  std::vector<std::string> states;
  std::string owner, name;
  std::vector<std::pair<std::string, std::string>> metadata;
  uint64_t after_id = 0;
  uint32_t limit = 0;
  uint64_t family = 0;  // a submitted job and the jobs derived from it (its preview, takes, picks)
};

struct VersionInfo {
  uint32_t protocol_version = 0;
  std::string version;
  uint64_t max_message_bytes = 0;
  std::string identity, role;  // who the coordinator takes this client for
};

// What the coordinator would do with a manifest's segments (segue plan --against).
struct SegmentPlanInfo {
  uint32_t index = 0;
  int64_t frame_start = 0, frame_end = 0;
  bool reuse = false;
  uint64_t from_job = 0;
  uint32_t from_segment = 0;
  std::vector<std::string> reasons;  // why it renders
  std::string key;
};

struct PlanInfo {
  std::string strategy;
  uint64_t against_job = 0;
  std::vector<SegmentPlanInfo> segments;
};

// The result cache (segue cache ls | prune).
struct CachedJobInfo {
  uint64_t job = 0;
  std::string name, state;
  uint32_t segments = 0;
  uint64_t bytes = 0, last_used_ms = 0;
  uint32_t chunks = 0;
};
struct CacheInfo {
  std::vector<CachedJobInfo> jobs;  // least recently used first
  uint64_t bytes = 0, live_bytes = 0, limit_bytes = 0, hits = 0, misses = 0;
  uint64_t evicted_segments = 0, evicted_bytes = 0, evicted_chunks = 0;
};

class Client {
 public:
  // `endpoint`: the coordinator's address, e.g. tcp://127.0.0.1:7450.
  explicit Client(std::string endpoint, int timeout_ms = 15000);
  ~Client();

  Result<SubmitInfo> Submit(const SubmitRequest& request);
  // segue pick: a new job from `job`'s family using `picks` (section -> take) on top of its own
  // (docs/MANIFEST.md, "Takes"); `output` relative to the output root, empty for the default.
  Result<SubmitInfo> Pick(uint64_t job, const std::vector<std::pair<uint32_t, uint32_t>>& picks,
                          const std::string& output);
  Result<JobInfo> Status(uint64_t job_id);
  // A page of jobs; `next_after_id`: where the next page starts (0: no more).
  Result<std::vector<JobInfo>> Jobs(const JobFilter& filter = {},
                                    uint64_t* next_after_id = nullptr);
  Result<VersionInfo> Version();
  Result<std::vector<WorkerInfo>> Workers();
  Result<JobInfo> Cancel(uint64_t job_id);
  Result<JobInfo> Retry(uint64_t job_id);
  Result<JobInfo> SetPriority(uint64_t job_id, int priority);
  Result<WorkerInfo> Drain(const std::string& worker);
  // Worker pools: the list, a wanted size (autoscale off), autoscale between min and max (or off).
  Result<std::vector<PoolInfo>> Pools();
  Result<std::vector<PoolInfo>> ScalePool(const std::string& pool, uint32_t size);
  Result<std::vector<PoolInfo>> AutoscalePool(const std::string& pool, bool enabled, uint32_t min,
                                              uint32_t max);
  // The job's event log (segment >= 0: only lines about that segment).
  Result<std::vector<std::string>> Logs(uint64_t job_id, int segment = -1);
  // Which segments of a manifest would render and which be reused, and why (against_job: 0 for
  // none).
  Result<PlanInfo> Plan(const std::string& manifest_text, const std::string& manifest_name,
                        uint64_t against_job);
  // The result cache's contents; a prune evicts finished jobs' results, least recently used
  // first, down to `to_bytes`, and those unused for `older_than_ms` (0: no such limit).
  Result<CacheInfo> Cache();
  Result<CacheInfo> PruneCache(uint64_t to_bytes, uint64_t older_than_ms);
  // The JPEG thumbnails of a job's `segments` (at most 64), in order; empty where a segment has
  // none yet.
  Result<std::vector<std::string>> Thumbnails(uint64_t job_id,
                                              const std::vector<uint32_t>& segments);

  // Sends raw bytes and returns the raw reply (tests use it to send malformed messages).
  Result<std::string> CallRaw(const std::string& bytes);

  // The ErrorCode (segue.capnp) of the last call's error reply; 0 when it was not an error
  // reply (success, or no reply at all).
  uint32_t last_error_code() const;
  void set_last_error_code(uint32_t code);

 private:
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

// Reads the coordinator address from --coordinator or SEGUE_COORDINATOR (flag wins).
std::string CoordinatorAddress(const std::string& flag);

}  // namespace segue
