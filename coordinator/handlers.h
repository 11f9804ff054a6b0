// The message handlers: one function per kind of Envelope the coordinator receives (after
// Flamenco's api_impl and OpenCue's HostReportHandler: messages in, apart from placement and
// state). A handler reads its message, asks the state machine for the transition it means,
// updates the worker registry, and queues replies and notices in the outbox. It sends only
// through the outbox and writes only through the state machine and the journal (a submission is
// a synced write of its own); the scheduling pass it leaves to the core, at the end of the turn
// (schedule_due; coordinator/core.h).
//
//   workers (worker_handlers.cc):  Hello, WorkRequest, Heartbeat, Goodbye
//   results (result_handlers.cc):  RenderResult, EncodeResult, TaskFailure, Checkpoint,
//                                  CodenoiseExchange
//   control (control_handlers.cc): Submit, StatusRequest, ListJobs, ListWorkers, JobAction,
//                                  DrainWorker, GetLogs, PoolRequest (each returns its reply)
//
// Not thread-safe: called on the event loop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/env/env.h"
#include "common/protocol/segue.capnp.h"
#include "common/security/keyring.h"
#include "coordinator/admission.h"
#include "coordinator/assignments.h"
#include "coordinator/audio_tracks.h"
#include "coordinator/jobs.h"
#include "coordinator/journal.h"
#include "coordinator/models.h"
#include "coordinator/options.h"
#include "coordinator/outbox.h"
#include "coordinator/pools.h"
#include "coordinator/reporting.h"
#include "coordinator/state_machine.h"
#include "coordinator/transfers.h"
#include "coordinator/workers.h"

namespace segue {

// The coordinator's parts as its handlers see them (owned by the core), and what the handlers
// ask of the end of the turn.
struct HandlerContext {
  const CoordinatorOptions& options;
  const AssignmentOptions& assignment;
  const AdmissionOptions& admission;
  Env* env;
  Journal& journal;
  StateMachine& machine;
  JobTable& jobs;
  WorkerRegistry& workers;
  ModelCatalog& models;
  Outbox& outbox;
  PoolManager* pools;  // nullptr: no pools
  FarmMetrics& metrics;
  TransferTable& transfers;   // messages larger than a frame, being received
  AudioTracks& audio_tracks;  // songs encoded ahead of assembly

  bool schedule_due = false;  // a scheduling pass is wanted
};

// Parses `payload` from `identity`, whose CURVE key is `peer`'s, and hands it to its handler if
// `peer`'s role allows it (keyring.h); a malformed or unexpected message is counted, answered
// with an error and dropped, a denied one counted by role, logged and answered DENIED. A worker's
// messages must come with the key it joined with. `peer` nullptr: a key the keys file does not
// (or no longer) hold, denied everything. `req`: the peer is a REQ socket.
// Transfers (transfers.h): a request is answered once granted (SendGrants) or refused; the last
// part of a transfer has its assembled message handled here as if it had come whole.
void HandleMessage(HandlerContext& c, const std::string& identity, const Identity* peer,
                   const void* payload, size_t size, bool req);
// Tells the peers whose transfers were granted since (at the end of the turn: a grant promises
// nothing a restart could contradict), and drops the transfers that stalled.
void TickTransfers(HandlerContext& c);
void SendGrants(HandlerContext& c);
// Answers a request `peer` (nullptr: an unknown key) may not make: counted by role, logged (the
// first hundred, then every thousandth) and answered with a DENIED error saying `why`.
void Deny(HandlerContext& c, const std::string& identity, const Identity* peer,
          const std::string& why, bool req);

// Takes what `j` can of the results other jobs have stored (results.h), counted in the metrics.
void ReuseResults(HandlerContext& c, Job& j);
// Jobs that waited (Job::waiting_for, family.h) and need not any more are scheduled, taking
// what they can of stored results first.
void ReleaseWaitingJobs(HandlerContext& c);
// The result cache: its contents (list) or an eviction (prune; admins).
std::string OnCacheRequest(HandlerContext& c, wire::CacheRequest::Reader r);

// ---- Workers ----------------------------------------------------------------------------------
// A worker joins: everything it says is checked before anything changes (its name must be one
// `peer` may use and not a live worker's of another key; its models' metadata the farm's).
void OnHello(HandlerContext& c, const std::string& identity, const Identity& peer,
             wire::Hello::Reader h);
void OnWorkRequest(HandlerContext& c, const std::string& identity, wire::WorkRequest::Reader r);
void OnHeartbeat(HandlerContext& c, const std::string& identity, wire::Heartbeat::Reader hb);
void OnGoodbye(HandlerContext& c, const std::string& identity, const std::string& reason);

// ---- Results ----------------------------------------------------------------------------------
void OnRenderResult(HandlerContext& c, const std::string& identity, wire::RenderResult::Reader r);
void OnEncodeResult(HandlerContext& c, const std::string& identity, wire::EncodeResult::Reader r);
void OnTaskFailure(HandlerContext& c, const std::string& identity, wire::TaskFailure::Reader r);
void OnCheckpoint(HandlerContext& c, const std::string& identity, wire::Checkpoint::Reader cp);
void OnCodenoiseExchange(HandlerContext& c, const std::string& identity,
                         wire::CodenoiseExchange::Reader x);

// ---- Control: each returns its reply ------------------------------------------------------------
// The job is owned by `owner` (an identity's name).
std::string OnSubmit(HandlerContext& c, wire::Submit::Reader s, const std::string& owner);
std::string OnStatusRequest(HandlerContext& c, uint64_t job);
// segue pick: a new job from a job's family with other takes (family.h), owned by `owner`.
std::string OnPickRequest(HandlerContext& c, wire::PickRequest::Reader r, const std::string& owner);
// Jobs by id that pass `r`'s filters, a page at a time.
std::string OnListJobs(HandlerContext& c, wire::ListJobs::Reader r);
// The protocol version, and who the coordinator takes `peer` for.
std::string OnVersionRequest(HandlerContext& c, const Identity& peer);
// What the coordinator would render of a manifest, and what it would reuse (results.h).
std::string OnPlanRequest(HandlerContext& c, wire::PlanRequest::Reader r);
// Segments' thumbnails, for a contact sheet made where the outputs cannot be read.
std::string OnThumbnailRequest(HandlerContext& c, wire::ThumbnailRequest::Reader r);
std::string OnListWorkers(HandlerContext& c);
std::string OnJobAction(HandlerContext& c, wire::JobAction::Reader a);
std::string OnDrainWorker(HandlerContext& c, const std::string& name);
std::string OnGetLogs(HandlerContext& c, wire::GetLogs::Reader r);
std::string OnPoolRequest(HandlerContext& c, wire::PoolRequest::Reader r);

// ---- What a transition means for workers, shared by the handlers and the core's clock -----------
// Puts the task `w` holds back in the queue (worker gone, reconnected); a gang member's loss
// stops its gang.
void ReleaseTask(HandlerContext& c, Worker& w, const std::string& why);
// Stops `j`'s gang: its members but `except` are told to stop, its segments go back to the queue.
void StopGang(HandlerContext& c, Job& j, const std::string& why, const std::string& except);
// A task failed on `w` (its failure is counted against both); a gang member's failure stops its
// gang first.
void FailTask(HandlerContext& c, Job& j, TaskKind kind, uint32_t index, Worker& w,
              const std::string& message);
// Assembles `j`'s output now that every chunk is stored: STITCHING, then DONE or FAILED.
void Assemble(HandlerContext& c, Job& j);
// Tells a worker to finish its task, take no more and leave.
void DrainWorker(HandlerContext& c, Worker& w);
// What the pools see of the farm now: their connected workers and the runnable work.
PoolView ViewOfPools(const HandlerContext& c);
// Lets the pools launch or drain workers to match the work (every 500 ms, and at once after a
// pool request).
void TickPools(HandlerContext& c);

}  // namespace segue
