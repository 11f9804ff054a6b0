// The coordinator's core: everything the coordinator does, driven by messages and the clock,
// without its sockets. Like LevelDB's DBImpl it is the hub that hands each concern to a part with
// a header of its own, and no part calls back up into it:
//
//   handlers.h       one function per message kind; they ask for a scheduling pass
//   state_machine.h  every transition of a task or a job, fencing, what a restart means
//   scheduler.h      which idle worker gets which task: decisions, nothing done
//   assignments.h    the messages that hand out tasks, from what the store holds
//   journal.h        the store's records and keys, the turn's batch, the syncer
//   outbox.h         messages held until their writes are durable
//   workers.h        the worker registry and liveness
//   admission.h, assembly.h, reporting.h, pools.h
//
// The event loop (coordinator.cc) feeds the core what its sockets receive and gives it a
// Transport to send through; a test can do the same in memory (tests/unit). One turn:
// BeginTurn, any number of Receive, Tick when its 500 ms are up, EndTurn. EndTurn (the first
// one: assembles the jobs the restart left STITCHING) runs the scheduling pass if one was asked
// for and carries out its decisions, writes the turn's batch and sends what may leave. When the
// syncer's fd turns readable, Durable sends what waited for it.
//
// Not thread-safe: one thread drives it (the syncer's thread only syncs).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/env/env.h"
#include "common/status/status.h"
#include "coordinator/http.h"
#include "coordinator/options.h"
#include "coordinator/outbox.h"
#include "coordinator/pools.h"
#include "coordinator/syncer.h"

namespace segue {

class Core {
 public:
  // Opens the journal in options.state_dir (through `env`), restores the jobs and applies what a
  // restart means (StateMachine::Recover). Jobs due for assembly are assembled in the first
  // EndTurn, not here: nothing runs before the caller's socket is bound.
  // REQUIRES: `env` and `transport` outlive the core.
  static Result<std::unique_ptr<Core>> Open(const CoordinatorOptions& options, Env* env,
                                            Transport* transport,
                                            Syncer::Mode mode = Syncer::Mode::kBackground);
  ~Core();

  // Worker pools, once the endpoint their workers join is known; their saved settings are
  // restored from the store.
  Status SetPools(std::unique_ptr<PoolManager> pools);

  // ---- A turn -------------------------------------------------------------------------------
  // Marks when the turn's messages began to be read (dispatch latency).
  void BeginTurn();
  // A message from `identity`, which connected with the CURVE public key `key` (Z85, as ZAP
  // admitted it; empty without keys). `req`: the peer is a REQ socket (replies get a delimiter).
  void Receive(const std::string& identity, const std::string& key, const void* payload,
               size_t size, bool req);
  // Whether a peer with the CURVE public key `key` (Z85) may connect: its key is in the keys
  // file (or the allow list), or the coordinator's own. Always true without keys.
  bool Admits(const std::string& key) const;
  // Whether peers are told apart by key (--keys or --curve-clients): the loop then asks Admits
  // of every connection (ZAP) and passes each message's key to Receive.
  bool checks_keys() const;
  // A message that arrived with the wrong frames: counted and dropped.
  void CountBadFrames(size_t frames);
  // A peer the CURVE handshake refused: counted.
  void CountRefusedPeer();
  // The connections open now (farm port, HTTP port) and those refused over the caps so far.
  void CountConnections(size_t farm, size_t http, uint64_t refused);
  // The clock's work (every 500 ms): lost workers' tasks back to the queue, pools, a scheduling
  // pass, the keys file read again if it changed.
  void Tick();
  // Ends the turn (above).
  void EndTurn();
  // The syncer's fd turned readable: sends what waited for the writes now durable.
  void Durable();
  // Makes every write so far durable and sends what waited for it: the loop's last act, and how
  // a test with an on-demand syncer (Syncer::Mode::kOnDemand) decides where syncs fall.
  void Sync();

  // The syncer's eventfd: readable when held messages may go (Syncer::fd).
  int sync_fd();
  // ---- The HTTP side (http.h, api.h) ---------------------------------------------------------
  // Answers a request on the HTTP port: /metrics, the dashboard, /api/v1/status, the JSON API
  // (reads; writes, answered later through the attached endpoint once durable), the event
  // stream (GET /api/v1/events, kept open: events are pushed to it) and outputs (with ranges).
  HttpResponse Http(const HttpRequest& request);
  // GET `target` (path and query).
  HttpResponse Http(const std::string& target);
  // Where deferred answers and events go; nullptr: nowhere (no HTTP port).
  // REQUIRES: `http` outlives the core, or is detached first.
  void AttachHttp(HttpEndpoint* http);
  // An event stream's connection closed.
  void HttpClosed(const std::string& connection);

  // Counters for the stop message.
  uint64_t bad_messages() const;
  uint64_t fenced_results() const;

 private:
  struct Rep;
  explicit Core(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

}  // namespace segue
