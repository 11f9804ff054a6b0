// What the control API reports about jobs, workers and pools, as plain structs: the coordinator
// fills them from its own state and sends them (ToWire); the CLI and the tests read them back
// (FromWire); both show them as JSON (ToJson), so `segue status --json` and the coordinator's
// /api/v1/status speak the same shape from one definition.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "common/protocol/segue.capnp.h"

namespace segue {

// A job, as wire::JobStatus carries it.
// The version of the job JSON shape (JobInfo::ToJson): raised when a field changes meaning or
// goes away; fields are only added within a version.
inline constexpr int kJobSchemaVersion = 1;

struct JobInfo {
  uint64_t id = 0;
  std::string name;
  std::string state;  // QUEUED RUNNING STITCHING DONE FAILED CANCELLED
  int priority = 0;
  int64_t frames_total = 0, frames_done = 0;
  uint32_t segments_total = 0, segments_done = 0, segments_running = 0;
  uint32_t chunks_total = 0, chunks_done = 0;
  double progress = 0;
  double eta_seconds = -1;
  std::string output, error;
  std::string owner;                            // the identity that submitted it
  std::map<std::string, std::string> metadata;  // the manifest's metadata:
  std::string submission_id;                    // the client's, "" for none
  uint64_t created_ms = 0, updated_ms = 0;
  std::string segment_states;  // per segment: '#' done, '>' running, '.' waiting, 'x' failed

  bool Finished() const { return state == "DONE" || state == "FAILED" || state == "CANCELLED"; }
  // The job as JSON, one shape everywhere (`segue status/jobs --json`, /api/v1/status; its
  // schema: docs/schema/job.schema.json): schema_version kJobSchemaVersion, the id (64 bits) as
  // a string.
  nlohmann::json ToJson() const;
};

struct WorkerInfo {
  std::string name, host, device, state, task;
  uint32_t tasks_done = 0, failures = 0;
  uint64_t last_seen_ms = 0;
  std::string pool;
  std::vector<std::string> models = {};                               // it serves
  std::vector<std::pair<std::string, std::string>> unavailable = {};  // model, reason
  std::string identity = {};                                          // whose key it joined with
  nlohmann::json ToJson() const;
};

struct PoolInfo {
  std::string name, provider, last_change;
  uint32_t size = 0, members = 0, idle = 0, busy = 0, min = 0, max = 0, cooldown_s = 0;
  bool autoscale = false;
  nlohmann::json ToJson() const;
};

JobInfo FromWire(wire::JobStatus::Reader r);
WorkerInfo FromWire(wire::WorkerInfo::Reader r);
PoolInfo FromWire(wire::PoolInfo::Reader r);

void ToWire(const JobInfo& j, wire::JobStatus::Builder out);
void ToWire(const WorkerInfo& w, wire::WorkerInfo::Builder out);
void ToWire(const PoolInfo& p, wire::PoolInfo::Builder out);

}  // namespace segue
