// Transfers, the sender's half: how a message larger than one frame reaches the coordinator
// (segue.capnp, Transfers; docs/PROTOCOL.md). The coordinator reads frames of at most
// kMaxFrameBytes, so that what a peer can make it buffer is bounded, and holds the messages it
// assembles from parts within one budget (coordinator/transfers.h). A sender announces a large
// message, keeps it until the coordinator answers, then sends it in parts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/protocol/segue.capnp.h"

namespace segue {

struct TransferLimits {
  static constexpr size_t kPartBytes = 1u << 20;
  // The largest frame the coordinator reads: a part and the envelope around it. Messages up to
  // kPartBytes go whole.
  static constexpr size_t kMaxFrameBytes = kPartBytes + (64u << 10);
  // Messages a sender keeps waiting for an answer; beyond it the oldest is given up.
  static constexpr size_t kMaxWaiting = 64;
  // Requests a sender has out at once (asked, not yet answered); the coordinator refuses more
  // from one peer (a co-denoising worker's dozens of results go four at a time).
  static constexpr size_t kMaxRequested = 4;
};

std::string TransferRequestMessage(uint64_t transfer, uint64_t bytes);
// `refusal` empty: granted. `received`: for REQ peers, the bytes received so far.
std::string TransferReplyMessage(uint64_t transfer, const std::string& refusal,
                                 uint64_t received = 0);
std::string PartMessage(uint64_t transfer, uint64_t offset, std::string_view data);

// The messages a sender has announced and not yet sent. Not thread-safe.
class OutgoingTransfers {
 public:
  // `first_id`: where this sender's transfer ids start (a reconnecting sender's new ones must
  // not be mistaken for its old ones: worker.cc starts from the clock).
  explicit OutgoingTransfers(uint64_t first_id = 1) : next_id_(first_id) {}

  // What to send for message `bytes`: the bytes themselves when they fit in one frame;
  // otherwise a TransferRequest, and the bytes wait here for the answer, or "" (nothing to send
  // yet) when kMaxRequested requests are out already: NextRequests asks for it later.
  // `*given_up` is set when the oldest waiting message had to be given up to make room
  // (kMaxWaiting).
  std::string Prepare(std::string bytes, bool* given_up = nullptr);
  // The requests for waiting messages that may go now (after an answer freed room), oldest
  // first.
  std::vector<std::string> NextRequests();

  enum class Outcome {
    kSent,     // granted: `send` was given every part, in order; *message is the message
               // (forgotten here)
    kRefused,  // refused or dropped by the coordinator: *why says why, *message is the message
               // (forgotten here)
    kUnknown,  // not a transfer of this sender's (a late answer): nothing done
  };
  Outcome OnReply(wire::TransferReply::Reader reply,
                  const std::function<void(std::string part)>& send, std::string* why,
                  std::string* message = nullptr);

  // The requests out again, and any that may go: after a reconnect, the coordinator may have
  // forgotten them (it drops the old transfer of a repeated request).
  std::vector<std::string> Requests();
  size_t waiting() const { return waiting_.size(); }
  size_t requested() const { return requested_.size(); }

 private:
  uint64_t next_id_;
  std::map<uint64_t, std::string> waiting_;  // by transfer id, oldest first
  std::set<uint64_t> requested_;             // those whose request is out
};

}  // namespace segue
