// The Env seam: the machine's POSIX Env, and the FaultEnv that crashes it, alone and under the
// coordinator's store (RocksDB and value files both go through it).
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <string>

#include "common/env/env.h"
#include "coordinator/journal.h"  // the key layout the coordinator uses
#include "coordinator/store/store.h"
#include "tests/support/fault_env.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

std::string Contents(const std::string& path) {
  auto r = ReadFile(Env::Default(), path);
  return r.ok() ? *r : "<" + r.message() + ">";
}

Status Write(Env* env, const std::string& path, const std::string& data, bool sync) {
  auto f = env->OpenWritable(path, Env::Open::kAppend);
  if (!f.ok()) return f.status();
  Status s = (*f)->Append(data);
  if (s.ok() && sync) s = (*f)->Sync();
  Status c = (*f)->Close();
  return s.ok() ? c : s;
}

TEST(Env, WritesReadsRenamesAndListsFiles) {
  TempDir dir;
  Env* env = Env::Default();
  ASSERT_TRUE(WriteFileAtomically(env, dir / "a", "first", true).ok());
  ASSERT_TRUE(WriteFileAtomically(env, dir / "a", "second", false).ok());
  EXPECT_EQ(Contents(dir / "a"), "second");
  EXPECT_FALSE(env->Exists(dir / "a.tmp"));
  ASSERT_TRUE(Write(env, dir / "a", "+more", true).ok());
  EXPECT_EQ(Contents(dir / "a"), "second+more");
  EXPECT_FALSE(env->OpenWritable(dir / "a", Env::Open::kCreateNew).ok());
  ASSERT_TRUE(env->RenameFile(dir / "a", dir / "b").ok());
  auto names = env->Children(dir.path());
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"b"});
  ASSERT_TRUE(env->RemoveFile(dir / "b").ok());
  EXPECT_FALSE(env->RemoveFile(dir / "b").ok());
  EXPECT_FALSE(ReadFile(env, dir / "b").ok());
}

TEST(FaultEnv, ACrashKeepsOnlyWhatWasSyncedWhereItsNameWasToo) {
  TempDir dir;
  FaultEnv env;
  ASSERT_TRUE(Write(&env, dir / "old", "durable", true).ok());
  ASSERT_TRUE(env.SyncDir(dir.path()).ok());                   // "old"'s name is durable
  ASSERT_TRUE(Write(&env, dir / "old", "+lost", false).ok());  // never synced
  ASSERT_TRUE(Write(&env, dir / "new", "synced", true).ok());  // its name never is
  env.Crash();
  ASSERT_TRUE(env.DropUnsyncedData().ok());
  EXPECT_EQ(Contents(dir / "old"), "durable");
  EXPECT_FALSE(env.Exists(dir / "new"));
}

TEST(FaultEnv, NothingReachesTheDiskAfterACrash) {
  TempDir dir;
  FaultEnv env;
  ASSERT_TRUE(Write(&env, dir / "kept", "kept", true).ok());
  ASSERT_TRUE(env.SyncDir(dir.path()).ok());
  env.Crash();
  EXPECT_TRUE(Write(&env, dir / "kept", "+after", true).ok());  // reports success ...
  EXPECT_TRUE(Write(&env, dir / "born", "after", true).ok());
  EXPECT_TRUE(env.RenameFile(dir / "kept", dir / "moved").ok());
  EXPECT_TRUE(env.RemoveFile(dir / "kept").ok());
  EXPECT_EQ(Contents(dir / "kept"), "kept");  // ... and does nothing
  EXPECT_FALSE(env.Exists(dir / "born"));
  EXPECT_FALSE(env.Exists(dir / "moved"));
  ASSERT_TRUE(env.DropUnsyncedData().ok());
  EXPECT_EQ(Contents(dir / "kept"), "kept");
}

TEST(FaultEnv, CrashAtSyncStopsJustBeforeThatSync) {
  TempDir dir;
  FaultEnv env;
  env.CrashAtSync(3);
  ASSERT_TRUE(Write(&env, dir / "f", "one", true).ok());  // sync 1
  ASSERT_TRUE(env.SyncDir(dir.path()).ok());              // sync 2
  ASSERT_TRUE(Write(&env, dir / "f", "two", true).ok());  // sync 3: the crash
  EXPECT_TRUE(env.crashed());
  EXPECT_EQ(env.syncs(), 3u);
  ASSERT_TRUE(env.DropUnsyncedData().ok());
  EXPECT_EQ(Contents(dir / "f"), "one");
  env.Restart();
  EXPECT_FALSE(env.crashed());
  EXPECT_EQ(env.syncs(), 0u);
  ASSERT_TRUE(Write(&env, dir / "f", "three", true).ok());
  EXPECT_EQ(Contents(dir / "f"), "onethree");
}

TEST(FaultEnv, TheClockMovesOnlyWhenTold) {
  FaultEnv env;
  const uint64_t ms = env.NowMillis(), us = env.NowMicros();
  EXPECT_EQ(env.NowMillis(), ms);
  env.Advance(1500);
  EXPECT_EQ(env.NowMillis(), ms + 1500);
  EXPECT_EQ(env.NowMicros(), us + 1500 * 1000);
}

std::string Big(char c) { return std::string(100 * 1024, c); }  // a value file's worth

// The store writes, syncs and deletes every file through its Env (RocksDB's log and tables and
// its own value files): after a crash, what a synced write or a SyncWal covered is there, what
// came after is not, and the store opens.
TEST(FaultEnv, TheStoreKeepsWhatWasSyncedAcrossACrash) {
  TempDir dir;
  FaultEnv env;
  {
    auto s = Store::Open(dir / "store", &env);
    ASSERT_TRUE(s.ok()) << s.message();
    Store::Batch b;
    b.Put(Family::kJobs, JobKey(1), "synced");
    b.Put(Family::kCheckpoints, TaskKey(1, 0), Big('a'));
    ASSERT_TRUE((*s)->Write(b).ok());
    b.Put(Family::kJobs, JobKey(2), "covered by SyncWal");
    ASSERT_TRUE((*s)->Write(b, Store::Sync::kLater).ok());
    ASSERT_TRUE((*s)->SyncWal().ok());
    b.Put(Family::kJobs, JobKey(3), "never synced");
    b.Put(Family::kCheckpoints, TaskKey(1, 1), "small, never synced");
    ASSERT_TRUE((*s)->Write(b, Store::Sync::kLater).ok());
    EXPECT_EQ(*(*s)->Get(Family::kJobs, JobKey(3)), "never synced");
    env.Crash();
  }  // closing after the crash writes nothing
  ASSERT_TRUE(env.DropUnsyncedData().ok());
  env.Restart();
  auto s = Store::Open(dir / "store", &env);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(*(*s)->Get(Family::kJobs, JobKey(1)), "synced");
  EXPECT_EQ(*(*s)->Get(Family::kCheckpoints, TaskKey(1, 0)), Big('a'));
  EXPECT_EQ(*(*s)->Get(Family::kJobs, JobKey(2)), "covered by SyncWal");
  EXPECT_FALSE((*s)->Get(Family::kJobs, JobKey(3)).ok());
  EXPECT_FALSE((*s)->Get(Family::kCheckpoints, TaskKey(1, 1)).ok());
}

// Runs `script` (batches 1..`batches`, each with the record JobKey(i) in jobs, on the store at
// `path` through `env`; it returns how many batches a finished sync covered) once to count its
// sync points, then once per sync point, crashing the machine just before it. After each crash
// the store must open and hold a prefix of the batches, at least those a sync covered; `check`
// then gets the store, its folder, the batches present and the sync point.
void CrashAtEverySyncPoint(
    int batches, const std::function<int(FaultEnv&, const std::string&)>& script,
    const std::function<void(Store&, const std::filesystem::path&, int, uint64_t)>& check) {
  uint64_t points = 0;
  {
    TempDir dir;
    FaultEnv env;
    ASSERT_EQ(script(env, dir / "store"), batches);  // uncrashed, the script syncs every batch
    points = env.syncs();
  }
  ASSERT_GT(points, 4u);
  for (uint64_t at = 1; at <= points; ++at) {
    TempDir dir;
    FaultEnv env;
    env.CrashAtSync(at);
    const int synced = script(env, dir / "store");
    ASSERT_TRUE(env.crashed()) << "sync point " << at;
    ASSERT_TRUE(env.DropUnsyncedData().ok());
    env.Restart();
    auto s = Store::Open(dir / "store", &env);
    ASSERT_TRUE(s.ok()) << "sync point " << at << ": " << s.message();
    int present = 0;
    while (present < batches &&
           (*s)->Get(Family::kJobs, JobKey(static_cast<uint64_t>(present + 1))).ok())
      ++present;
    EXPECT_GE(present, synced) << "sync point " << at;
    for (int i = present + 1; i <= batches; ++i)
      EXPECT_FALSE((*s)->Get(Family::kJobs, JobKey(static_cast<uint64_t>(i))).ok())
          << "sync point " << at << ": batch " << i << " after a gap";
    check(**s, dir / "store", present, at);
  }
}

// A crash at each sync point of a sequence of group commits: the store always opens, and holds
// exactly a prefix of the batches, at least every one a finished SyncWal covered.
TEST(FaultEnv, TheStoreHoldsAPrefixOfItsWritesWhereverItCrashes) {
  constexpr int kBatches = 12;
  auto script = [](FaultEnv& env, const std::string& path) {
    int synced = 0;
    auto s = Store::Open(path, &env);
    if (!s.ok()) return synced;
    for (int i = 1; i <= kBatches && !env.crashed(); ++i) {
      Store::Batch b;
      b.Put(Family::kJobs, JobKey(static_cast<uint64_t>(i)), "batch " + std::to_string(i));
      if (i % 4 == 0) b.Put(Family::kOutputs, TaskKey(static_cast<uint64_t>(i), 0), Big('x'));
      if (!(*s)->Write(b, Store::Sync::kLater).ok()) break;
      if (i % 3 == 0 && (*s)->SyncWal().ok() && !env.crashed()) synced = i;
    }
    return synced;
  };
  CrashAtEverySyncPoint(kBatches, script, [](Store& s, const auto&, int present, uint64_t) {
    for (int i = 4; i <= present; i += 4)
      EXPECT_EQ(*s.Get(Family::kOutputs, TaskKey(static_cast<uint64_t>(i), 0)), Big('x'));
  });
}

// A value passed from record to record by copies, each batch deleting the record it copied
// from, with a crash at each sync point: whichever prefix of the batches survives, its last
// record reads the value (the shared file was never deleted while a durable record named it),
// and no other file is left behind.
TEST(FaultEnv, ACopiedValueSurvivesACrashAtEverySyncPoint) {
  constexpr int kBatches = 9;
  auto script = [](FaultEnv& env, const std::string& path) {
    int synced = 0;
    auto s = Store::Open(path, &env);
    if (!s.ok()) return synced;
    for (int i = 1; i <= kBatches && !env.crashed(); ++i) {
      const uint64_t n = static_cast<uint64_t>(i);
      Store::Batch b;
      b.Put(Family::kJobs, JobKey(n), "batch " + std::to_string(i));
      if (i == 1) {
        b.Put(Family::kLatents, TaskKey(1, 0), Big('v'));
      } else {
        b.Copy(Family::kLatents, TaskKey(n - 1, 0), TaskKey(n, 0));
        b.Delete(Family::kLatents, TaskKey(n - 1, 0));
      }
      const bool now = i % 2 == 1;
      if (!(*s)->Write(b, now ? Store::Sync::kNow : Store::Sync::kLater).ok()) break;
      if (!now && (*s)->SyncWal().ok() && !env.crashed()) synced = i;
      if (now && !env.crashed()) synced = i;
    }
    return synced;
  };
  CrashAtEverySyncPoint(kBatches, script, [](Store& s, const auto& dir, int present, uint64_t at) {
    int files = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir / "values"))
      files += std::filesystem::file_size(e.path()) > 0 ? 1 : 0;
    EXPECT_EQ(files, present == 0 ? 0 : 1) << "sync point " << at;
    if (present == 0) return;
    auto value = s.Get(Family::kLatents, TaskKey(static_cast<uint64_t>(present), 0));
    ASSERT_TRUE(value.ok()) << "sync point " << at << ", " << present
                            << " batches: " << value.message();
    EXPECT_EQ(*value, Big('v')) << "sync point " << at;
    for (int i = 1; i < present; ++i)
      EXPECT_FALSE(s.Get(Family::kLatents, TaskKey(static_cast<uint64_t>(i), 0)).ok());
  });
}

}  // namespace
}  // namespace segue
