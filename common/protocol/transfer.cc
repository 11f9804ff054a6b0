#include "common/protocol/transfer.h"

#include <algorithm>

#include "common/protocol/protocol.h"

namespace segue {

std::string TransferRequestMessage(uint64_t transfer, uint64_t bytes) {
  capnp::MallocMessageBuilder b;
  auto r = b.initRoot<wire::Envelope>().initTransferRequest();
  r.setTransfer(transfer);
  r.setBytes(bytes);
  return Serialize(b);
}

std::string TransferReplyMessage(uint64_t transfer, const std::string& refusal, uint64_t received) {
  capnp::MallocMessageBuilder b;
  auto r = b.initRoot<wire::Envelope>().initTransferReply();
  r.setTransfer(transfer);
  r.setRefusal(refusal);
  r.setReceived(received);
  return Serialize(b);
}

std::string PartMessage(uint64_t transfer, uint64_t offset, std::string_view data) {
  capnp::MallocMessageBuilder b;
  auto p = b.initRoot<wire::Envelope>().initPart();
  p.setTransfer(transfer);
  p.setOffset(offset);
  p.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(data.data()), data.size()));
  return Serialize(b);
}

std::string OutgoingTransfers::Prepare(std::string bytes, bool* given_up) {
  if (given_up) *given_up = false;
  if (bytes.size() <= TransferLimits::kPartBytes) return bytes;
  if (waiting_.size() >= TransferLimits::kMaxWaiting) {
    requested_.erase(waiting_.begin()->first);
    waiting_.erase(waiting_.begin());
    if (given_up) *given_up = true;
  }
  const uint64_t id = next_id_++;
  const uint64_t size = bytes.size();
  waiting_.emplace(id, std::move(bytes));
  if (requested_.size() >= TransferLimits::kMaxRequested) return "";
  requested_.insert(id);
  return TransferRequestMessage(id, size);
}

std::vector<std::string> OutgoingTransfers::NextRequests() {
  std::vector<std::string> out;
  for (const auto& [id, bytes] : waiting_) {
    if (requested_.size() >= TransferLimits::kMaxRequested) break;
    if (requested_.insert(id).second) out.push_back(TransferRequestMessage(id, bytes.size()));
  }
  return out;
}

OutgoingTransfers::Outcome OutgoingTransfers::OnReply(
    wire::TransferReply::Reader reply, const std::function<void(std::string part)>& send,
    std::string* why, std::string* refused) {
  auto it = waiting_.find(reply.getTransfer());
  if (it == waiting_.end()) return Outcome::kUnknown;
  std::string message = std::move(it->second);
  waiting_.erase(it);
  requested_.erase(reply.getTransfer());
  if (reply.hasRefusal() && reply.getRefusal().size() > 0) {
    if (why) *why = reply.getRefusal().cStr();
    if (refused) *refused = std::move(message);
    return Outcome::kRefused;
  }
  for (size_t at = 0; at < message.size(); at += TransferLimits::kPartBytes) {
    const size_t n = std::min(TransferLimits::kPartBytes, message.size() - at);
    send(PartMessage(reply.getTransfer(), at, std::string_view(message).substr(at, n)));
  }
  if (refused) *refused = std::move(message);
  return Outcome::kSent;
}

std::vector<std::string> OutgoingTransfers::Requests() {
  std::vector<std::string> out;
  for (uint64_t id : requested_) out.push_back(TransferRequestMessage(id, waiting_.at(id).size()));
  for (std::string& more : NextRequests()) out.push_back(std::move(more));
  return out;
}

}  // namespace segue
