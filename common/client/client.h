// A client of the coordinator's control API: what `segue submit/status/jobs` and the tests use.
// One DEALER socket; each call sends one Envelope and waits for the reply with a timeout.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/protocol/segue.capnp.h"
#include "common/status/status.h"

namespace segue {

// Mirror of wire::JobStatus as a plain struct (no Cap'n Proto reader lifetimes for callers).
struct JobInfo {
  uint64_t id = 0;
  std::string name;
  std::string state;
  int priority = 0;
  int64_t frames_total = 0, frames_done = 0;
  uint32_t segments_total = 0, segments_done = 0, segments_running = 0;
  uint32_t chunks_total = 0, chunks_done = 0;
  double progress = 0;
  double eta_seconds = -1;
  std::string output, error;
  uint64_t created_ms = 0, updated_ms = 0;
  std::string segment_states;  // per segment: '#' done, '>' running, '.' waiting, 'x' failed

  bool Finished() const { return state == "DONE" || state == "FAILED" || state == "CANCELLED"; }
  nlohmann::json ToJson() const;
};

struct WorkerInfo {
  std::string name, host, device, state, task;
  uint32_t tasks_done = 0, failures = 0;
  uint64_t last_seen_ms = 0;
  std::string pool;
  nlohmann::json ToJson() const;
};

struct PoolInfo {
  std::string name, provider, last_change;
  uint32_t size = 0, members = 0, idle = 0, busy = 0, min = 0, max = 0, cooldown_s = 0;
  bool autoscale = false;
  nlohmann::json ToJson() const;
};

struct SubmitRequest {
  std::string manifest_text;
  std::string manifest_name;
  std::string audio_data;
  std::string audio_name;
  std::string output_override;
};

struct SubmitInfo {
  uint64_t job_id = 0;
  int64_t frames = 0;
  uint32_t segments = 0;
  std::string output;
};

// The wire's records as the client's structs (also how the coordinator's HTTP API shows them,
// so that its JSON is segue status --json's).
JobInfo FromWire(wire::JobStatus::Reader r);
WorkerInfo FromWire(wire::WorkerInfo::Reader r);
PoolInfo FromWire(wire::PoolInfo::Reader r);

class Client {
 public:
  // `endpoint`: the coordinator's address, e.g. tcp://127.0.0.1:7450.
  explicit Client(std::string endpoint, int timeout_ms = 15000);
  ~Client();

  Result<SubmitInfo> Submit(const SubmitRequest& request);
  Result<JobInfo> Status(uint64_t job_id);
  Result<std::vector<JobInfo>> Jobs();
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

  // Sends raw bytes and returns the raw reply (tests use it to send malformed messages).
  Result<std::string> CallRaw(const std::string& bytes);

 private:
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

// Reads the coordinator address from --coordinator or SEGUE_COORDINATOR (flag wins).
std::string CoordinatorAddress(const std::string& flag);

}  // namespace segue
