// The worker registry: the workers that said Hello, by name and by ZeroMQ routing id, with what
// they offer (models, device, memory, tags), their credit, the task each holds and when each was
// last heard from. Liveness: a worker silent for the liveness window is lost; Lost names them
// and the caller releases their tasks before it removes them. The registry changes no job.
//
// Not thread-safe: owned by the event loop.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "coordinator/jobs.h"

namespace segue {

// A task as a worker holds it. kGang: a co-denoising group, named by its first segment.
struct TaskRef {
  uint64_t job = 0;
  TaskKind kind = TaskKind::kRender;
  uint32_t index = 0;
};

struct Worker {
  std::string identity;   // ZeroMQ routing id
  std::string key;        // the CURVE public key it joined with (Z85; "" without keys)
  std::string principal;  // the name of that key's identity (the keys file's; "local")
  std::string name, host, device;
  std::set<std::string> models;                    // it serves (none of `unavailable`)
  std::map<std::string, std::string> unavailable;  // models it has but cannot serve -> why
  std::set<std::string> tags;
  uint64_t memory = 0;
  uint32_t credits = 0;  // tasks it asked for (it holds at most one at a time)
  std::optional<TaskRef> task;
  uint64_t last_seen_ms = 0;
  uint32_t tasks_done = 0, failures = 0;
  bool draining = false;          // finishes its task, gets no more
  std::string pool;               // the pool that launched it, if any
  uint64_t waiting_since_us = 0;  // since it has been idle with credit (dispatch latency)
  uint64_t task_progress_ms = 0;  // when its task was given or last showed progress

  bool idle() const { return credits > 0 && !task && !draining; }
};

// What a worker says of itself in Hello.
struct WorkerHello {
  std::string name, host, device, pool;
  std::string key, principal;  // who said it (Worker)
  std::set<std::string> models, tags;
  std::map<std::string, std::string> unavailable;
  uint64_t memory = 0;
};

class WorkerRegistry {
 public:
  using Map = std::map<std::string, Worker>;  // by name

  // Registers a worker under `identity` at `now_ms`, forgetting what an earlier one of the same
  // name held. REQUIRES: the caller has released that one's task (ByName(name)->task).
  Worker& Join(const std::string& identity, const WorkerHello& hello, uint64_t now_ms);
  // The worker speaking on `identity`, marked as heard from at `now_ms`; nullptr if none.
  Worker* Heard(const std::string& identity, uint64_t now_ms);
  Worker* ByName(const std::string& name);
  // The worker speaking on `identity`, not marked as heard from; nullptr if none.
  const Worker* ByIdentity(const std::string& identity) const;
  // Models `w` says it cannot serve (any more): it gets no more of their tasks. Returns the
  // models new to the list.
  static std::vector<std::string> MarkUnavailable(Worker& w,
                                                  const std::map<std::string, std::string>& models);
  // Forgets a worker. REQUIRES: the caller has released its task.
  void Remove(const std::string& name);
  // The workers silent for more than `liveness_ms` at `now_ms`, by name (still registered).
  std::vector<std::string> Lost(uint64_t now_ms, uint64_t liveness_ms) const;

  // `w` has finished with its task (done, failed, fenced, stopped). An idle worker with credit
  // starts waiting for its next task at `now_us` (dispatch latency).
  static void Free(Worker& w, uint64_t now_us);
  // `w` asks for `credits` tasks at `now_us` (at most 4 count).
  static void Ask(Worker& w, uint32_t credits, uint64_t now_us);

  const Map& all() const { return by_name_; }
  Map& all() { return by_name_; }

 private:
  Map by_name_;
  std::map<std::string, std::string> name_of_identity_;
};

}  // namespace segue
