// Transfers, the coordinator's half: the messages larger than one frame that peers are sending,
// held within one budget of bytes for all of them (segue.capnp, Transfers; the sender's half is
// common/protocol/transfer.h).
//
// Why: ZeroMQ reads each frame into one buffer of its announced size before the coordinator sees
// it, so a frame limit of 512 MiB let every connection make the coordinator hold 512 MiB. Frames
// are now at most TransferLimits::kMaxFrameBytes, and what larger messages need is granted here
// first: a request waits, in the order it came, until the budget holds the whole message, and
// its parts are then copied into a buffer of that size. Parts of a transfer not granted, out of
// order or past its size are dropped; a granted transfer that stalls (no part for stall_ms), or
// that is slower than min_bytes_per_s overall, is dropped and its budget freed, so a peer that
// asks and never sends, or trickles, holds nothing for long. Every part but the last is exactly
// a part's size (TransferLimits::kPartBytes): a transfer cannot be trickled a byte at a time.
// The cap on transfers per peer counts per connection (routing id), not per key: a farm's
// workers often share one key. More connections buy more waiting requests, within the caps on
// connections per host and in all; only granted ones hold the budget.
//
// Not thread-safe: owned by the event loop.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace segue {

struct TransferOptions {
  uint64_t budget_bytes = uint64_t{1} << 30;  // --receive-budget-mb
  uint64_t max_message_bytes = 0;             // a larger request is refused (0: the budget)
  size_t max_per_peer = 4;                    // requests of one peer waiting or granted (its
                                              // senders keep to TransferLimits::kMaxRequested)
  int64_t stall_ms = 10000;                   // a granted transfer with no part for this long
  uint64_t min_bytes_per_s = 256 << 10;       // a granted transfer's whole deadline: 30 s and
                                              // its size at this rate
  uint64_t part_bytes = 1 << 20;              // every part but the last (TransferLimits)
};

class TransferTable {
 public:
  explicit TransferTable(TransferOptions options);

  // Peer `identity` asks to send transfer `id`, a message of `bytes`. Returns why it is refused
  // ("" when it waits for the budget: grants come from TakeGrants). A request repeating a
  // transfer the peer already has replaces it (a reconnected sender asking again).
  // `req`: the peer is a REQ socket (its grant, and each part, are answered).
  std::string Request(const std::string& identity, uint64_t id, uint64_t bytes, bool req,
                      int64_t now_ms);

  struct PartOutcome {
    enum Kind {
      kMore,      // stored; more parts to come
      kComplete,  // the last part: `message` holds the whole message, and its budget is free
      kIgnored,   // not a transfer granted to this peer (late, or never asked): dropped
      kDropped,   // the part broke the transfer (order, size): it is dropped; `why` says why
    } kind = kIgnored;
    std::string why;
    std::string message;
    uint64_t received = 0;  // of the transfer so far
  };
  PartOutcome Add(const std::string& identity, uint64_t id, uint64_t offset, std::string_view data,
                  int64_t now_ms);

  // Drops granted transfers that stalled; returns them as (identity, id, why).
  struct Dropped {
    std::string identity;
    uint64_t id;
    std::string why;
    bool req = false;
  };
  std::vector<Dropped> Expire(int64_t now_ms);

  // The transfers granted since the last call, to be told so.
  struct Grant {
    std::string identity;
    uint64_t id;
    bool req;
  };
  std::vector<Grant> TakeGrants();

  uint64_t budget_bytes() const { return options_.budget_bytes; }
  uint64_t held_bytes() const { return held_; }  // granted, being received
  size_t waiting() const { return transfers_.size() - granted_count_; }
  size_t receiving() const { return granted_count_; }

  struct Counters {
    uint64_t completed = 0, refused = 0, dropped = 0, ignored_parts = 0, bytes = 0;
  };
  const Counters& counters() const { return counters_; }

 private:
  using Key = std::pair<std::string, uint64_t>;  // (identity, transfer id)
  struct Transfer {
    uint64_t bytes = 0;
    bool granted = false;
    bool req = false;
    std::string data;  // the parts so far (reserved whole at the first)
    int64_t last_ms = 0;
    int64_t deadline_ms = 0;  // granted: the whole transfer's
    uint64_t seq = 0;         // its place in queue_
  };
  // Grants waiting requests, oldest first, while the budget holds them.
  void GrantWaiting(int64_t now_ms);
  void Forget(std::map<Key, Transfer>::iterator it);

  const TransferOptions options_;
  std::map<Key, Transfer> transfers_;
  // Waiting requests in the order they came, as (seq, key); an entry whose transfer is gone or
  // has another seq (replaced) is stale and skipped.
  std::deque<std::pair<uint64_t, Key>> queue_;
  uint64_t next_seq_ = 0;
  std::map<std::string, size_t> per_peer_;  // by identity
  std::vector<Key> granted_now_;
  uint64_t held_ = 0;
  size_t granted_count_ = 0;
  Counters counters_;
};

}  // namespace segue
