// Farm events: the job and task state changes clients watch, on the HTTP port's event stream
// (GET /api/v1/events, Server-Sent Events) and through webhooks (webhooks.h).
//
// The state machine stages an event with every transition it makes; the core sends the turn's
// staged events through the outbox like any reply, so an event is published only once the
// writes of its turn are durable: no client hears of a change a restart could take back.
// Published events get ids that only grow, across restarts too (the first id of a run is past
// its start time in microseconds, wall clock), and the last `capacity` of them are kept for clients
// that resume from an id (SSE's Last-Event-ID). A client resuming from an id older than that, or
// from before a restart, is told it missed events (EventLog::Since returns false).
//
// Not thread-safe: owned by the event loop.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace segue {

struct FarmEvent {
  uint64_t id = 0;  // once published
  uint64_t ms = 0;  // when the change happened (the coordinator's clock)
  uint64_t job = 0;
  std::string type;    // "job", "segment" or "chunk"
  int64_t index = -1;  // the segment's or chunk's; -1 for a job
  std::string state;   // a job's QUEUED ... CANCELLED; a task's pending, running, done, failed
  std::string detail;  // a job's error, a task's worker or why it changed; may be empty

  // {"id": "N", "type": "segment", "job": "J", "index": 3, "state": "done", "ms": ..., ...}:
  // ids as strings (64 bits), like every id of the JSON API.
  nlohmann::json ToJson() const;
  // The event as one Server-Sent Events message ("id:", "event: TYPE", "data: JSON").
  std::string Sse() const;
};

class EventLog {
 public:
  // Ids start after `first_id`.
  explicit EventLog(uint64_t first_id, size_t capacity = 100000);

  // A change made this turn, published once it is durable.
  void Stage(FarmEvent e) { staged_.push_back(std::move(e)); }
  // The events staged since the last call.
  std::vector<FarmEvent> TakeStaged();
  // Gives `events` their ids and keeps them (the oldest go beyond the capacity).
  void Publish(std::vector<FarmEvent>& events);

  // The kept events after id `after` (of job `job`; 0: every job), oldest first. False when
  // some events after `after` are no longer kept (or `after` is from an earlier run): the
  // client has missed some and should read the jobs' state again.
  bool Since(uint64_t after, uint64_t job, std::vector<const FarmEvent*>* out) const;
  uint64_t last_id() const { return next_id_ - 1; }
  uint64_t first_id_of_run() const { return first_id_ + 1; }

 private:
  const uint64_t first_id_;
  const size_t capacity_;
  uint64_t next_id_;
  std::deque<FarmEvent> kept_;
  std::vector<FarmEvent> staged_;
};

}  // namespace segue
