// Group commit off the event loop's thread. The loop writes each turn's batch unsynced
// (Store::Sync::kLater), numbers it, asks for it to be made durable and goes on serving; a thread
// of the syncer's own calls Store::SyncWal and publishes how far the disk has caught up. The loop
// holds the messages that depend on a write until durable() reaches it, woken by fd().
//
// Why: a synced write per turn put an fdatasync (0.2-2 ms here) in front of every assignment, and
// the loop could not read new requests while it waited (docs/PERFORMANCE.md, dispatch). Under
// load the thread starts a sync at most once per `interval`: each sync costs CPU and an interrupt
// whatever it carries, and on a loaded machine fewer, fuller syncs left more of the cores to the
// loop (the held messages wait up to that much longer; assignments never wait).
//
// A test can make the syncer do nothing of its own accord (Mode::kOnDemand): no thread, and
// writes become durable only when SyncNow says so, so a test decides where each sync falls.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "common/env/env.h"
#include "common/status/status.h"

namespace segue {

class Store;

class Syncer {
 public:
  enum class Mode {
    kBackground,  // a thread of its own syncs what Request asks for
    kOnDemand,    // no thread: Request only records; SyncNow syncs (tests)
  };
  // REQUIRES: `store` and `env` (its clock) outlive the syncer.
  Syncer(Store* store, std::chrono::microseconds interval, Env* env = Env::Default(),
         Mode mode = Mode::kBackground);
  ~Syncer();  // syncs what was asked for, then joins the thread
  Syncer(const Syncer&) = delete;
  Syncer& operator=(const Syncer&) = delete;

  // Asks for the writes numbered up to `seq` (all written already) to be made durable.
  void Request(uint64_t seq);
  // Makes the writes numbered up to `seq` durable before it returns, on the caller's thread if
  // the syncer has not got there yet. Error when the store cannot sync.
  Status SyncNow(uint64_t seq);
  // The highest write number known durable. Any thread.
  uint64_t durable() const { return durable_.load(); }
  // Readable once durable() reaches the number last given to WakeAt (0: never), or a sync
  // failed; Clear() empties it. Waking the loop only when it waits for something keeps it off the
  // CPU the rest of the time.
  int fd() const { return event_fd_; }
  // REQUIRES: called from one thread. After it, check durable() again: a sync that finished
  // meanwhile may not have woken fd().
  void WakeAt(uint64_t seq) {
    if (wake_at_.load(std::memory_order_relaxed) != seq) wake_at_.store(seq);  // most turns: same
  }
  void Clear();
  // Not OK once a sync has failed: the store's state on disk is then unknown. (Checked every turn
  // of the loop: no lock unless one has failed.)
  Status failure() const;
  // Syncs made so far, and the seconds they took together (the disk's flush time, for
  // /metrics). Any thread.
  uint64_t syncs() const { return syncs_.load(); }
  double sync_seconds() const { return static_cast<double>(sync_ns_.load()) / 1e9; }

 private:
  void Loop();
  void Publish(uint64_t seq);  // REQUIRES: writes up to seq are durable
  void Wake();
  Status TimedSync();  // Store::SyncWal, counted

  Store* const store_;
  Env* const env_;
  const std::chrono::microseconds interval_;  // between the starts of two of its syncs
  const int event_fd_;
  std::atomic<uint64_t> durable_{0};
  std::atomic<uint64_t> wake_at_{0};
  std::atomic<uint64_t> syncs_{0}, sync_ns_{0};
  std::atomic<bool> failed_{false};  // failure_ is set
  mutable std::mutex mu_;
  std::condition_variable requested_cv_;  // a request comes while the thread waits for one
  std::condition_variable stop_cv_;       // stopping, while it waits out the interval
  uint64_t requested_ = 0;                // GUARDED_BY(mu_)
  // The thread waits for a request: only then does Request wake it. A request made while it
  // syncs or waits out the interval is seen when it looks next; waking it for each (a turn of
  // the loop each) cost the loop a futex call and the thread a wake-up, per turn.
  bool waiting_for_request_ = false;  // GUARDED_BY(mu_)
  bool stop_ = false;                 // GUARDED_BY(mu_)
  Status failure_;                    // GUARDED_BY(mu_)
  std::thread thread_;                // kBackground only; last: starts once the members above exist
};

}  // namespace segue
