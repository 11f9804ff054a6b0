#include "coordinator/transfers.h"

#include <algorithm>
#include <new>

namespace segue {

TransferTable::TransferTable(TransferOptions options) : options_(options) {}

std::string TransferTable::Request(const std::string& identity, uint64_t id, uint64_t bytes,
                                   bool req, int64_t now_ms) {
  const uint64_t limit = options_.max_message_bytes
                             ? std::min(options_.max_message_bytes, options_.budget_bytes)
                             : options_.budget_bytes;
  const Key key{identity, id};
  if (auto it = transfers_.find(key); it != transfers_.end()) {
    Forget(it);
    GrantWaiting(now_ms);  // what it held may let others go, whatever becomes of this request
  }
  std::string refusal;
  if (bytes == 0) {
    refusal = "a transfer of 0 bytes";
  } else if (bytes > limit) {
    refusal = "a message of " + std::to_string(bytes) + " bytes is larger than the " +
              std::to_string(limit) + " bytes the coordinator takes";
  } else if (per_peer_[identity] >= options_.max_per_peer) {
    refusal = "this peer already has " + std::to_string(options_.max_per_peer) +
              " transfers waiting or under way";
  }
  if (!refusal.empty()) {
    if (per_peer_[identity] == 0) per_peer_.erase(identity);
    ++counters_.refused;
    return refusal;
  }
  Transfer t;
  t.bytes = bytes;
  t.req = req;
  t.last_ms = now_ms;
  t.seq = next_seq_++;
  // Requests repeated while the head waits leave stale entries behind: drop them before they
  // pile up.
  if (queue_.size() > 2 * transfers_.size() + 16) {
    std::erase_if(queue_, [&](const std::pair<uint64_t, Key>& e) {
      auto it = transfers_.find(e.second);
      return it == transfers_.end() || it->second.seq != e.first || it->second.granted;
    });
  }
  queue_.emplace_back(t.seq, key);
  transfers_.emplace(key, std::move(t));
  ++per_peer_[identity];
  GrantWaiting(now_ms);
  return "";
}

void TransferTable::GrantWaiting(int64_t now_ms) {
  while (!queue_.empty()) {
    const auto& [seq, key] = queue_.front();
    auto it = transfers_.find(key);
    if (it == transfers_.end() || it->second.seq != seq || it->second.granted) {
      queue_.pop_front();  // stale
      continue;
    }
    Transfer& t = it->second;
    if (held_ + t.bytes > options_.budget_bytes) return;  // in order: the oldest goes first
    t.granted = true;
    t.last_ms = now_ms;
    t.deadline_ms =
        now_ms + 30000 +
        static_cast<int64_t>(t.bytes * 1000 / std::max<uint64_t>(1, options_.min_bytes_per_s));
    held_ += t.bytes;
    ++granted_count_;
    granted_now_.push_back(key);
    queue_.pop_front();
  }
}

void TransferTable::Forget(std::map<Key, Transfer>::iterator it) {
  if (it->second.granted) {
    held_ -= it->second.bytes;
    --granted_count_;
  }
  if (--per_peer_[it->first.first] == 0) per_peer_.erase(it->first.first);
  transfers_.erase(it);
}

TransferTable::PartOutcome TransferTable::Add(const std::string& identity, uint64_t id,
                                              uint64_t offset, std::string_view data,
                                              int64_t now_ms) {
  PartOutcome out;
  auto it = transfers_.find({identity, id});
  if (it == transfers_.end() || !it->second.granted) {
    ++counters_.ignored_parts;
    out.kind = PartOutcome::kIgnored;
    return out;
  }
  Transfer& t = it->second;
  if (offset != t.data.size()) {
    out.why = "a part at byte " + std::to_string(offset) + " where byte " +
              std::to_string(t.data.size()) + " was next";
  } else if (data.empty() || data.size() > t.bytes - t.data.size()) {
    out.why = "a part of " + std::to_string(data.size()) + " bytes where " +
              std::to_string(t.bytes - t.data.size()) + " remained";
  } else if (data.size() != t.bytes - t.data.size() && data.size() != options_.part_bytes) {
    out.why = "a part of " + std::to_string(data.size()) + " bytes that is not the last: parts " +
              "but the last are " + std::to_string(options_.part_bytes) + " bytes";
  }
  if (out.why.empty() && t.data.empty()) {
    try {
      t.data.reserve(t.bytes);  // once the sender has really begun
    } catch (const std::bad_alloc&) {
      out.why = "the coordinator has no memory for " + std::to_string(t.bytes) + " bytes now";
    }
  }
  if (!out.why.empty()) {
    out.kind = PartOutcome::kDropped;
    ++counters_.dropped;
    Forget(it);
    GrantWaiting(now_ms);
    return out;
  }
  t.data.append(data);
  t.last_ms = now_ms;
  counters_.bytes += data.size();
  out.received = t.data.size();
  if (t.data.size() < t.bytes) {
    out.kind = PartOutcome::kMore;
    return out;
  }
  out.kind = PartOutcome::kComplete;
  out.message = std::move(t.data);
  ++counters_.completed;
  Forget(it);
  GrantWaiting(now_ms);
  return out;
}

std::vector<TransferTable::Dropped> TransferTable::Expire(int64_t now_ms) {
  std::vector<Dropped> dropped;
  for (auto it = transfers_.begin(); it != transfers_.end();) {
    auto next = std::next(it);
    const Transfer& t = it->second;
    const bool stalled = t.granted && now_ms - t.last_ms > options_.stall_ms;
    const bool late = t.granted && now_ms > t.deadline_ms;
    if (stalled || late) {
      dropped.push_back({it->first.first, it->first.second,
                         (stalled ? "no part for " + std::to_string(options_.stall_ms / 1000) + " s"
                                  : std::string("too slow: not complete by its deadline")) +
                             " after " + std::to_string(t.data.size()) + " of " +
                             std::to_string(t.bytes) + " bytes",
                         t.req});
      ++counters_.dropped;
      Forget(it);
    }
    it = next;
  }
  if (!dropped.empty()) GrantWaiting(now_ms);
  return dropped;
}

std::vector<TransferTable::Grant> TransferTable::TakeGrants() {
  std::vector<Key> out;
  out.swap(granted_now_);
  // A grant whose transfer has gone since (dropped, or replaced by a new request) is not told.
  std::vector<Grant> told;
  for (const Key& k : out) {
    auto it = transfers_.find(k);
    if (it == transfers_.end() || !it->second.granted || !it->second.data.empty()) continue;
    if (std::none_of(told.begin(), told.end(),
                     [&](const Grant& g) { return g.identity == k.first && g.id == k.second; }))
      told.push_back({k.first, k.second, it->second.req});
  }
  return told;
}

}  // namespace segue
