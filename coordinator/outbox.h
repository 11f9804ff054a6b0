// The outbox: the coordinator's messages on their way out, held until the writes they depend on
// are durable (group commit's sending half; the journal is the writing half).
//
// What a message may say before its turn's writes are synced:
// - a single task's assignment leaves at the end of its turn, at once (a gang's start is written
//   and waits like the rest). A crash can forget it: the restart
//   moves the task's attempt number past the forgotten one (StateMachine::Recover), so the worker
//   holding it is fenced off, and determinism makes anything computed from it the same bits.
// - so does a transfer's grant (transfers.h): a restart forgets the transfer, and the parts that
//   come after it are dropped as belonging to no transfer.
// - everything else (replies to clients, acks, welcomes, cancels) leaves once the writes of its
//   turn are durable: nothing that a restart could contradict is said before it is on disk.
// Messages to one peer keep their order: once one is held, the later ones wait too.
//
// Not thread-safe: owned by the event loop.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

namespace segue {

// Where messages go: the coordinator's ROUTER socket, or a test's peers in memory.
class Transport {
 public:
  virtual ~Transport() = default;
  // `req_envelope`: the peer is a REQ socket, which expects an empty delimiter frame.
  virtual void Send(const std::string& identity, std::string payload, bool req_envelope) = 0;
};

class Outbox {
 public:
  // REQUIRES: `transport` outlives the outbox.
  explicit Outbox(Transport* transport) : transport_(transport) {}

  // Queues a message that leaves once this turn's writes are durable.
  void Send(const std::string& identity, std::string payload, bool req_envelope = false);
  // Queues an assignment or a grant: it leaves at the end of this turn (EndTurn), durable or not
  // (unless an earlier message to the same peer is held: order is kept).
  void SendAtTurnEnd(const std::string& identity, std::string payload, bool req_envelope = false);

  // Ends a turn whose writes are numbered up to `written`, of which those up to `durable` are
  // durable: sends what may go and holds the rest.
  void EndTurn(uint64_t written, uint64_t durable);
  // Sends the held messages whose writes are durable now.
  void Release(uint64_t durable);
  // The write number the oldest held message waits for; 0 when none waits.
  uint64_t oldest_wait() const { return held_.empty() ? 0 : held_.front().after_write; }
  size_t held() const { return held_.size(); }

 private:
  struct Message {
    std::string identity, payload;
    bool req_envelope = false;
    bool before_sync = false;  // an assignment: may leave before its turn's writes are durable
    uint64_t after_write = 0;  // held: leaves once write number after_write is durable
  };
  Transport* const transport_;
  std::vector<Message> turn_;            // this turn's messages
  std::deque<Message> held_;             // waiting for the syncer, in the order they were sent
  std::map<std::string, int> held_for_;  // identity -> its messages in held_
};

}  // namespace segue
