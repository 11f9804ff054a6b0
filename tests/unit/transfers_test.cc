// Transfers: messages larger than a frame, sent in parts within the coordinator's receive budget
// (common/protocol/transfer.h, the sender's half; coordinator/transfers.h, the coordinator's),
// and through the core in memory.
#include "coordinator/transfers.h"

#include <gtest/gtest.h>

#include <string>

#include "common/protocol/protocol.h"
#include "common/protocol/transfer.h"
#include "tests/support/core_harness.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

constexpr uint64_t kMiB = 1 << 20;

TransferOptions Budget(uint64_t bytes) {
  TransferOptions o;
  o.budget_bytes = bytes;
  return o;
}

std::string Bytes(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 7);
  return s;
}

TEST(TransferTable, GrantsInOrderWithinTheBudgetAndAssemblesTheMessage) {
  TransferTable t(Budget(4 * kMiB));
  EXPECT_EQ(t.Request("a", 1, 3 * kMiB, false, 0), "");
  EXPECT_EQ(t.Request("b", 1, 2 * kMiB, false, 0), "");
  EXPECT_EQ(t.Request("c", 9, 1 * kMiB, false, 0), "");  // fits, but waits behind b
  auto grants = t.TakeGrants();
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(grants[0].identity, "a");
  EXPECT_EQ(t.held_bytes(), 3 * kMiB);
  EXPECT_EQ(t.waiting(), 2u);
  EXPECT_EQ(t.receiving(), 1u);

  const std::string message = Bytes(3 * kMiB, 'a');
  auto first = t.Add("a", 1, 0, std::string_view(message).substr(0, kMiB), 0);
  EXPECT_EQ(first.kind, TransferTable::PartOutcome::kMore);
  EXPECT_EQ(first.received, kMiB);
  EXPECT_TRUE(t.TakeGrants().empty());
  auto last = t.Add("a", 1, kMiB, std::string_view(message).substr(kMiB), 0);
  ASSERT_EQ(last.kind, TransferTable::PartOutcome::kComplete);
  EXPECT_TRUE(last.message == message);
  // Its budget is free: b and then c fit (2 + 1 of 4 MiB), in the order they asked.
  grants = t.TakeGrants();
  ASSERT_EQ(grants.size(), 2u);
  EXPECT_EQ(grants[0].identity, "b");
  EXPECT_EQ(grants[1].identity, "c");
  EXPECT_EQ(grants[1].id, 9u);
  EXPECT_EQ(t.held_bytes(), 3 * kMiB);
  EXPECT_EQ(t.counters().completed, 1u);
  EXPECT_EQ(t.counters().bytes, 3 * kMiB);
}

TEST(TransferTable, RefusesWhatCouldNeverBeGrantedAndCapsEachPeer) {
  TransferOptions o = Budget(8 * kMiB);
  o.max_message_bytes = 5 * kMiB;
  o.max_per_peer = 2;
  TransferTable t(o);
  EXPECT_NE(t.Request("a", 1, 6 * kMiB, false, 0).find("larger than the 5242880 bytes"),
            std::string::npos);
  EXPECT_NE(t.Request("a", 2, 0, false, 0), "");
  EXPECT_EQ(t.Request("a", 3, 5 * kMiB, false, 0), "");
  EXPECT_EQ(t.Request("a", 4, 5 * kMiB, false, 0), "");  // waits
  EXPECT_NE(t.Request("a", 5, kMiB, false, 0).find("already has 2 transfers"), std::string::npos);
  EXPECT_EQ(t.Request("b", 1, kMiB, false, 0), "");  // another peer is not held to a's cap
  EXPECT_EQ(t.counters().refused, 3u);
  // A budget smaller than the largest message limits it.
  TransferTable small(Budget(2 * kMiB));
  EXPECT_NE(small.Request("a", 1, 3 * kMiB, false, 0), "");
}

TEST(TransferTable, PartsOutOfTurnAreDroppedAndFreeTheBudget) {
  TransferOptions o = Budget(4 * kMiB);
  o.part_bytes = 3;  // parts of 3 bytes, but the last
  TransferTable t(o);
  // Parts of nothing granted: ignored.
  EXPECT_EQ(t.Add("a", 1, 0, "xyz", 0).kind, TransferTable::PartOutcome::kIgnored);
  ASSERT_EQ(t.Request("a", 1, 4 * kMiB, false, 0), "");
  ASSERT_EQ(t.Request("b", 1, 4 * kMiB, false, 0), "");
  ASSERT_EQ(t.TakeGrants().size(), 1u);
  EXPECT_EQ(t.Add("b", 1, 0, "xyz", 0).kind, TransferTable::PartOutcome::kIgnored);  // waiting
  EXPECT_EQ(t.Add("a", 2, 0, "xyz", 0).kind, TransferTable::PartOutcome::kIgnored);  // no such id
  EXPECT_EQ(t.counters().ignored_parts, 3u);
  ASSERT_EQ(t.Add("a", 1, 0, "xyz", 0).kind, TransferTable::PartOutcome::kMore);
  auto skipped = t.Add("a", 1, 10, "xyz", 0);  // a gap
  EXPECT_EQ(skipped.kind, TransferTable::PartOutcome::kDropped);
  EXPECT_EQ(skipped.why, "a part at byte 10 where byte 3 was next");
  auto grants = t.TakeGrants();  // a's budget went to b
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(grants[0].identity, "b");
  // More bytes than announced: dropped too.
  ASSERT_EQ(t.Add("b", 1, 0, "abc", 0).kind, TransferTable::PartOutcome::kMore);
  auto over = t.Add("b", 1, 3, std::string(4 * kMiB, 'x'), 0);
  EXPECT_EQ(over.kind, TransferTable::PartOutcome::kDropped);
  EXPECT_EQ(t.held_bytes(), 0u);
  EXPECT_EQ(t.counters().dropped, 2u);
}

TEST(TransferTable, AStalledTransferIsDroppedAndARepeatedRequestReplacesTheOld) {
  TransferOptions o = Budget(4 * kMiB);
  o.stall_ms = 10000;
  o.part_bytes = 3;
  TransferTable t(o);
  ASSERT_EQ(t.Request("a", 1, 4 * kMiB, false, 0), "");
  ASSERT_EQ(t.Request("b", 1, 4 * kMiB, true, 0), "");
  ASSERT_EQ(t.TakeGrants().size(), 1u);
  ASSERT_EQ(t.Add("a", 1, 0, "abc", 5000).kind, TransferTable::PartOutcome::kMore);
  EXPECT_TRUE(t.Expire(15000).empty());  // a part 10 s ago, not more
  auto dropped = t.Expire(15001);
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_EQ(dropped[0].identity, "a");
  EXPECT_EQ(dropped[0].why, "no part for 10 s after 3 of 4194304 bytes");
  auto grants = t.TakeGrants();
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(grants[0].identity, "b");
  EXPECT_TRUE(grants[0].req);
  // b reconnects and asks again for the same transfer: the old one, granted, is replaced by a new
  // request, granted afresh (the budget it held is free again first).
  ASSERT_EQ(t.Add("b", 1, 0, "abc", 15001).kind, TransferTable::PartOutcome::kMore);
  ASSERT_EQ(t.Request("b", 1, 4 * kMiB, false, 16000), "");
  grants = t.TakeGrants();
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_FALSE(grants[0].req);
  EXPECT_EQ(t.held_bytes(), 4 * kMiB);
  EXPECT_EQ(t.Add("b", 1, 3, "abc", 16000).kind, TransferTable::PartOutcome::kDropped);
}

// A transfer cannot be trickled: parts but the last are whole parts, and a granted transfer has
// a deadline of 30 s and its size at 256 KiB/s, parts or no parts.
TEST(TransferTable, ATransferCannotBeTrickled) {
  TransferOptions o = Budget(4 * kMiB);
  o.part_bytes = 256 << 10;
  TransferTable t(o);
  ASSERT_EQ(t.Request("a", 1, 2 * kMiB, false, 0), "");
  auto tiny = t.Add("a", 1, 0, "x", 0);
  EXPECT_EQ(tiny.kind, TransferTable::PartOutcome::kDropped);
  EXPECT_NE(tiny.why.find("not the last"), std::string::npos) << tiny.why;
  // Whole parts, each within the stall time, but slower than the deadline: 30 s and 4 MiB at
  // 256 KiB/s (16 s).
  ASSERT_EQ(t.Request("a", 2, 4 * kMiB, false, 0), "");
  for (int k = 0; k < 6; ++k) {
    ASSERT_EQ(
        t.Add("a", 2, static_cast<uint64_t>(k) * (256 << 10), std::string(256 << 10, 'x'), 9000 * k)
            .kind,
        TransferTable::PartOutcome::kMore);
    EXPECT_TRUE(t.Expire(9000 * k + 1000).empty());
  }
  auto late = t.Expire(46001);
  ASSERT_EQ(late.size(), 1u);
  EXPECT_NE(late[0].why.find("too slow"), std::string::npos) << late[0].why;
  EXPECT_EQ(t.held_bytes(), 0u);
}

TEST(OutgoingTransfers, SmallMessagesGoWholeLargeOnesInPartsOnceGranted) {
  OutgoingTransfers out(7);
  EXPECT_EQ(out.Prepare("hello"), "hello");
  const std::string small(TransferLimits::kPartBytes, 's');
  EXPECT_EQ(out.Prepare(small), small);  // exactly a part still goes whole
  EXPECT_EQ(out.waiting(), 0u);

  const std::string message = Bytes(2 * TransferLimits::kPartBytes + 5, 'm');
  const std::string request = out.Prepare(message);
  auto in = Incoming::Parse(request.data(), request.size());
  ASSERT_TRUE(in.ok());
  ASSERT_TRUE((*in)->envelope().isTransferRequest());
  EXPECT_EQ((*in)->envelope().getTransferRequest().getTransfer(), 7u);
  EXPECT_EQ((*in)->envelope().getTransferRequest().getBytes(), message.size());
  EXPECT_EQ(out.Requests(), std::vector<std::string>{request});

  // Granted: the parts, in order, each at most a part, make the message again.
  const std::string grant = TransferReplyMessage(7, "");
  auto g = Incoming::Parse(grant.data(), grant.size());
  std::string assembled;
  size_t parts = 0;
  std::string why;
  auto outcome = out.OnReply((*g)->envelope().getTransferReply(),
                             [&](std::string part) {
                               auto p = Incoming::Parse(part.data(), part.size());
                               ASSERT_TRUE(p.ok());
                               ASSERT_LE(part.size(), TransferLimits::kMaxFrameBytes);
                               auto m = (*p)->envelope().getPart();
                               EXPECT_EQ(m.getTransfer(), 7u);
                               EXPECT_EQ(m.getOffset(), assembled.size());
                               assembled.append(reinterpret_cast<const char*>(m.getData().begin()),
                                                m.getData().size());
                               ++parts;
                             },
                             &why);
  EXPECT_EQ(outcome, OutgoingTransfers::Outcome::kSent);
  EXPECT_EQ(parts, 3u);
  EXPECT_TRUE(assembled == message);
  EXPECT_EQ(out.waiting(), 0u);
  // A second answer for it (late) does nothing.
  EXPECT_EQ(out.OnReply((*g)->envelope().getTransferReply(), [](std::string) {}, &why),
            OutgoingTransfers::Outcome::kUnknown);

  // Refused: the reason, and the message back to its sender.
  (void)out.Prepare(message);
  const std::string refusal = TransferReplyMessage(8, "too large");
  auto r = Incoming::Parse(refusal.data(), refusal.size());
  std::string back;
  EXPECT_EQ(
      out.OnReply((*r)->envelope().getTransferReply(), [](std::string) { FAIL(); }, &why, &back),
      OutgoingTransfers::Outcome::kRefused);
  EXPECT_EQ(why, "too large");
  EXPECT_TRUE(back == message);
}

// A sender has at most kMaxRequested requests out (the coordinator refuses more from one peer):
// a co-denoising worker's dozens of results ask four at a time, the next as each is answered.
TEST(OutgoingTransfers, RequestsGoFourAtATime) {
  OutgoingTransfers out(1);
  const std::string large(TransferLimits::kPartBytes + 1, 'x');
  std::vector<std::string> sent;
  for (int i = 0; i < 6; ++i) sent.push_back(out.Prepare(large));
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(sent[i].empty(), i >= TransferLimits::kMaxRequested);
  EXPECT_TRUE(out.NextRequests().empty());
  EXPECT_EQ(out.requested(), 4u);
  const std::string grant = TransferReplyMessage(2, "");
  auto g = Incoming::Parse(grant.data(), grant.size());
  std::string why;
  EXPECT_EQ(out.OnReply((*g)->envelope().getTransferReply(), [](std::string) {}, &why),
            OutgoingTransfers::Outcome::kSent);
  auto next = out.NextRequests();
  ASSERT_EQ(next.size(), 1u);
  auto r = Incoming::Parse(next[0].data(), next[0].size());
  EXPECT_EQ((*r)->envelope().getTransferRequest().getTransfer(), 5u);  // the oldest waiting
  // After a reconnect the four out are asked for again.
  EXPECT_EQ(out.Requests().size(), 4u);
}

TEST(OutgoingTransfers, TheOldestUnansweredMessageIsGivenUpBeyondTheCap) {
  OutgoingTransfers out;
  const std::string large(TransferLimits::kPartBytes + 1, 'x');
  bool given_up = true;
  for (size_t i = 0; i < TransferLimits::kMaxWaiting; ++i) {
    (void)out.Prepare(large, &given_up);
    EXPECT_FALSE(given_up);
  }
  (void)out.Prepare(large, &given_up);
  EXPECT_TRUE(given_up);
  EXPECT_EQ(out.waiting(), TransferLimits::kMaxWaiting);
}

// ---- Through the core ------------------------------------------------------------------------

// The kind of `bytes`' envelope.
wire::Envelope::Which KindOf(const std::string& bytes) {
  auto in = Incoming::Parse(bytes.data(), bytes.size());
  return in.ok() ? (*in)->envelope().which() : wire::Envelope::ERROR;
}

TEST(TransfersThroughTheCore, ASubmitInPartsIsHandledAsIfItCameWhole) {
  TempDir dir;
  FaultEnv env;
  CoordinatorOptions options = TestOptions(dir.path());
  options.receive_budget_mb = 4;
  CoreHarness h(&env, options);
  ASSERT_TRUE(h.ok()) << h.error();
  // A submit padded past a frame by a comment in its manifest.
  const std::string manifest = TestManifest("big", 16, 16, 4) + "# " +
                               std::string(TransferLimits::kPartBytes + 100, 'p') + "\n";
  const std::string submit = SubmitMessage(manifest);
  OutgoingTransfers out;
  h.Deliver("client", out.Prepare(submit));
  auto grant = h.Take("client");  // a grant leaves at the end of its turn, before any sync
  ASSERT_EQ(grant.size(), 1u);
  ASSERT_EQ(KindOf(grant[0]), wire::Envelope::TRANSFER_REPLY);
  auto g = Incoming::Parse(grant[0].data(), grant[0].size());
  std::vector<std::string> parts;
  std::string why;
  ASSERT_EQ(out.OnReply((*g)->envelope().getTransferReply(),
                        [&](std::string p) { parts.push_back(std::move(p)); }, &why),
            OutgoingTransfers::Outcome::kSent);
  ASSERT_EQ(parts.size(), 2u);
  for (const std::string& p : parts) h.Deliver("client", p);
  h.Sync();
  auto replies = h.Take("client");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(KindOf(replies[0]), wire::Envelope::SUBMIT_REPLY);
  EXPECT_EQ(h.Status(1).name, "big");

  // A transfer whose message is itself a transfer's part is dropped as bad.
  OutgoingTransfers nested;
  const std::string inner = PartMessage(5, 0, std::string(TransferLimits::kPartBytes + 1, 'n'));
  h.Deliver("client", nested.Prepare(inner));
  grant = h.Take("client");
  ASSERT_EQ(grant.size(), 1u);
  g = Incoming::Parse(grant[0].data(), grant[0].size());
  parts.clear();
  (void)nested.OnReply((*g)->envelope().getTransferReply(),
                       [&](std::string p) { parts.push_back(std::move(p)); }, &why);
  for (const std::string& p : parts) h.Deliver("client", p);
  h.Sync();
  replies = h.Take("client");
  ASSERT_EQ(replies.size(), 1u);
  auto e = Incoming::Parse(replies[0].data(), replies[0].size());
  ASSERT_TRUE((*e)->envelope().isError());
  EXPECT_NE(std::string((*e)->envelope().getError().getMessage().cStr()).find("transfer inside"),
            std::string::npos);

  // A granted transfer whose parts stop is dropped at a tick 10 s later, and its sender told.
  OutgoingTransfers stalled(100);
  h.Deliver("slow", stalled.Prepare(submit));
  ASSERT_EQ(h.Take("slow").size(), 1u);  // granted
  env.Advance(10001);
  h.Tick();
  h.Sync();
  replies = h.Take("slow");
  ASSERT_EQ(replies.size(), 1u);
  auto d = Incoming::Parse(replies[0].data(), replies[0].size());
  ASSERT_TRUE((*d)->envelope().isTransferReply());
  EXPECT_EQ(std::string((*d)->envelope().getTransferReply().getRefusal().cStr()),
            "dropped: no part for 10 s after 0 of " + std::to_string(submit.size()) + " bytes");
}

}  // namespace
}  // namespace segue
