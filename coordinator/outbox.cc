#include "coordinator/outbox.h"

namespace segue {

void Outbox::Send(const std::string& identity, std::string payload, bool req_envelope) {
  turn_.push_back({identity, std::move(payload), req_envelope, false, 0});
}

void Outbox::SendAtTurnEnd(const std::string& identity, std::string payload, bool req_envelope) {
  turn_.push_back({identity, std::move(payload), req_envelope, true, 0});
}

void Outbox::EndTurn(uint64_t written, uint64_t durable) {
  Release(durable);
  const bool synced = durable >= written;
  for (Message& m : turn_) {
    if ((synced || m.before_sync) && (held_for_.empty() || !held_for_.count(m.identity))) {
      transport_->Send(m.identity, std::move(m.payload), m.req_envelope);
    } else {
      m.after_write = written;
      ++held_for_[m.identity];
      held_.push_back(std::move(m));
    }
  }
  turn_.clear();
}

void Outbox::Release(uint64_t durable) {
  while (!held_.empty() && held_.front().after_write <= durable) {
    Message& m = held_.front();
    if (--held_for_[m.identity] == 0) held_for_.erase(m.identity);
    transport_->Send(m.identity, std::move(m.payload), m.req_envelope);
    held_.pop_front();
  }
}

}  // namespace segue
