// The coordinator's syncer over a real store: writes made unsynced become durable on its thread,
// and it wakes the event loop only when the loop waits for them.
#include "coordinator/syncer.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "coordinator/journal.h"  // the key layout the coordinator uses
#include "coordinator/store/store.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

// Whether the syncer's file descriptor turns readable within `ms`.
bool Woken(const Syncer& s, int ms) {
  pollfd p{s.fd(), POLLIN, 0};
  return poll(&p, 1, ms) == 1;
}

void WriteUnsynced(Store& store, int i) {
  Store::Batch b;
  b.Put(Family::kEvents, JobKey(1) + JobKey(static_cast<uint64_t>(i)), "event");
  ASSERT_TRUE(store.Write(b, Store::Sync::kLater).ok());
}

// Waits until durable() reaches `seq` (a few seconds at most).
bool DurableBy(const Syncer& s, uint64_t seq) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (s.durable() < seq && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return s.durable() >= seq;
}

TEST(Syncer, MakesRequestedWritesDurableAndWakesOnlyAWaitingLoop) {
  TempDir dir;
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.message();
  Syncer syncer(store->get(), std::chrono::microseconds(0));
  EXPECT_EQ(syncer.durable(), 0u);

  // Nothing waits: the sync happens, the loop sleeps on.
  WriteUnsynced(**store, 1);
  syncer.Request(1);
  ASSERT_TRUE(DurableBy(syncer, 1));
  EXPECT_FALSE(Woken(syncer, 50));

  // The loop waits for write 3: written and requested, it is woken once it is durable.
  syncer.WakeAt(3);
  WriteUnsynced(**store, 2);
  WriteUnsynced(**store, 3);
  syncer.Request(3);
  EXPECT_TRUE(Woken(syncer, 5000));
  EXPECT_GE(syncer.durable(), 3u);
  syncer.Clear();
  EXPECT_FALSE(Woken(syncer, 0));
  EXPECT_TRUE(syncer.failure().ok());

  // SyncNow does it on the caller's thread when nobody asked the syncer.
  syncer.WakeAt(0);
  WriteUnsynced(**store, 4);
  ASSERT_TRUE(syncer.SyncNow(4).ok());
  EXPECT_EQ(syncer.durable(), 4u);
}

// Value files holding a value (the store keeps a few empty ones ready).
// Under load a sync starts at most once per interval, and a request after a quiet spell is synced
// at once; SyncNow (the loop's own, rare) does not wait for it.
TEST(Syncer, SyncsAtMostOncePerInterval) {
  TempDir dir;
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.message();
  Syncer syncer(store->get(), std::chrono::seconds(5));
  WriteUnsynced(**store, 1);
  syncer.Request(1);
  ASSERT_TRUE(DurableBy(syncer, 1));  // the first: at once
  WriteUnsynced(**store, 2);
  syncer.Request(2);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(syncer.durable(), 1u);  // the second waits out the interval
  EXPECT_EQ(syncer.syncs(), 1u);
  ASSERT_TRUE(syncer.SyncNow(2).ok());
  EXPECT_EQ(syncer.durable(), 2u);
  EXPECT_GT(syncer.sync_seconds(), 0.0);
}

size_t ValueFiles(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/values"))
    n += std::filesystem::file_size(e.path()) > 0;
  return n;
}

// What the syncer was asked for is synced before it goes, even if its thread had not got there:
// the store deletes the value file an unsynced write replaced only after the sync that follows.
TEST(Syncer, DestroyingItFinishesWhatWasRequested) {
  TempDir dir;
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.message();
  const std::string big(256 * 1024, 'a'), bigger(256 * 1024, 'b');
  Store::Batch b;
  b.Put(Family::kCheckpoints, TaskKey(1, 0), big);
  ASSERT_TRUE((*store)->Write(b).ok());
  {
    Syncer syncer(store->get(), std::chrono::microseconds(0));
    b.Put(Family::kCheckpoints, TaskKey(1, 0), bigger);
    ASSERT_TRUE((*store)->Write(b, Store::Sync::kLater).ok());
    EXPECT_EQ(ValueFiles(dir.path()), 2u);
    syncer.Request(1);
  }
  EXPECT_EQ(ValueFiles(dir.path()), 1u);
}

}  // namespace
}  // namespace segue
