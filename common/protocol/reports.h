// What the control API reports about jobs, workers and pools, as plain structs: the coordinator
// fills them from its own state and sends them (ToWire); the CLI and the tests read them back
// (FromWire); both show them as JSON (ToJson), so `segue status --json` and the coordinator's
// /api/v1/status speak the same shape from one definition.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/protocol/segue.capnp.h"

namespace segue {

// A job, as wire::JobStatus carries it.
// The version of the job JSON shape (JobInfo::ToJson): raised when a field changes meaning or
// goes away; fields are only added within a version.
inline constexpr int kJobSchemaVersion = 1;

// How a job relates to the job a studio submitted (coordinator/family.h; docs/MANIFEST.md,
// "Iterating").
struct FamilyInfo {
  std::string role = "final";  // final, preview, take, pick
  uint64_t root = 0;           // the submitted job it derives from (0: it is one)
  uint64_t parent = 0;         // preview, take: the submitted job; pick: the job picked from
  int section = -1;            // take: the section it renders another take of
  uint32_t take = 0;           // take: which (2 and up)
  std::map<int, int> picks;    // pick: the takes it uses, by section
  uint64_t preview_job = 0;    // final: its preview's job
  uint64_t waiting_for = 0;    // it is not scheduled before this job (0: not waiting)
  int64_t section_start = 0, section_end = 0;  // take: the section's video frames
  std::string section_prompt;
  std::vector<uint32_t> section_segments;  // take: the segments it re-seeds
  // The submitted job of the family: `root`, or the job itself.
  uint64_t Root(uint64_t self) const { return root ? root : self; }
};

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
  FamilyInfo family;

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
