// The RocksDB store: everything survives close and reopen; batches are atomic.
#include <gtest/gtest.h>

#include <cstring>

#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include "coordinator/journal.h"  // the key layout the coordinator uses
#include "coordinator/store/store.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

TEST(Store, KeepsEverythingAcrossReopen) {
  TempDir dir;
  Tensor t = Tensor::Zeros({4, 48, 36, 64});
  for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = static_cast<float>(i % 977) / 7.f;
  uint64_t first_id = 0;
  {
    auto s = Store::Open(dir.path());
    ASSERT_TRUE(s.ok()) << s.message();
    Store::Batch b;
    first_id = (*s)->NextId("job", b);
    b.Put(Family::kJobs, JobKey(first_id), "job record");
    b.Put(Family::kSegments, TaskKey(first_id, 0), "seg 0");
    b.Put(Family::kSegments, TaskKey(first_id, 1), "seg 1");
    b.Put(Family::kLatents, TaskKey(first_id, 1), EncodeTensor(t));
    b.Put(Family::kCheckpoints, TaskKey(first_id, 1), "checkpoint");
    b.Put(Family::kEvents, JobKey(first_id) + JobKey(1), "submitted");
    ASSERT_TRUE((*s)->Write(b).ok());
  }
  auto s = Store::Open(dir.path());
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(*(*s)->Get(Family::kJobs, JobKey(first_id)), "job record");
  EXPECT_EQ(*(*s)->Get(Family::kCheckpoints, TaskKey(first_id, 1)), "checkpoint");
  auto lat = DecodeTensor(*(*s)->Get(Family::kLatents, TaskKey(first_id, 1)));
  ASSERT_TRUE(lat.ok()) << lat.message();
  EXPECT_EQ(lat->shape, t.shape);
  EXPECT_EQ(lat->data, t.data);
  std::vector<std::string> segs;
  ASSERT_TRUE((*s)->Scan(Family::kSegments, JobKey(first_id), JobKey(first_id + 1),
                         [&](const std::string& k, const std::string& v) {
                           EXPECT_EQ(JobOfKey(k), first_id);
                           segs.push_back(v);
                           return true;
                         })
                  .ok());
  EXPECT_EQ(segs, (std::vector<std::string>{"seg 0", "seg 1"}));
  Store::Batch b;
  EXPECT_EQ((*s)->NextId("job", b), first_id + 1);  // counters persist
}

// Later writes of a key in one batch win, whatever came between (the store leaves out the
// writes they override), and counters bumped many times in a batch keep their last value.
TEST(Store, TheLastWriteOfAKeyInABatchWins) {
  TempDir dir;
  uint64_t last = 0;
  {
    auto s = Store::Open(dir.path());
    ASSERT_TRUE(s.ok()) << s.message();
    Store::Batch first;
    first.Put(Family::kSegments, TaskKey(1, 9), "kept from an earlier batch");
    ASSERT_TRUE((*s)->Write(first).ok());
    Store::Batch b;
    b.Put(Family::kSegments, TaskKey(1, 0), "a");
    b.Put(Family::kSegments, TaskKey(1, 0), "b");
    b.Put(Family::kSegments, TaskKey(1, 1), "put, then deleted");
    b.Delete(Family::kSegments, TaskKey(1, 1));
    b.Delete(Family::kSegments, TaskKey(1, 2));
    b.Put(Family::kSegments, TaskKey(1, 2), "deleted, then put");
    b.Put(Family::kJobs, TaskKey(1, 0), "same key, another family");
    b.Put(Family::kSegments, TaskKey(1, 3), "before the range");
    b.DeleteRange(Family::kSegments, TaskKey(1, 3), TaskKey(1, 10));
    b.Put(Family::kSegments, TaskKey(1, 4), "after the range");
    for (int i = 0; i < 5; ++i) last = (*s)->NextId("event", b);
    ASSERT_TRUE((*s)->Write(b).ok());
  }
  auto s = Store::Open(dir.path());
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(*(*s)->Get(Family::kSegments, TaskKey(1, 0)), "b");
  EXPECT_FALSE((*s)->Get(Family::kSegments, TaskKey(1, 1)).ok());
  EXPECT_EQ(*(*s)->Get(Family::kSegments, TaskKey(1, 2)), "deleted, then put");
  EXPECT_EQ(*(*s)->Get(Family::kJobs, TaskKey(1, 0)), "same key, another family");
  EXPECT_FALSE((*s)->Get(Family::kSegments, TaskKey(1, 3)).ok());
  EXPECT_EQ(*(*s)->Get(Family::kSegments, TaskKey(1, 4)), "after the range");
  EXPECT_FALSE((*s)->Get(Family::kSegments, TaskKey(1, 9)).ok());
  Store::Batch b;
  EXPECT_EQ((*s)->NextId("event", b), last + 1);
}

TEST(Store, MissingValuesAreErrors) {
  TempDir dir;
  auto s = Store::Open(dir.path());
  ASSERT_TRUE(s.ok());
  auto v = (*s)->Get(Family::kJobs, JobKey(9));
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.message().rfind("not found", 0), 0u);
  EXPECT_FALSE(DecodeTensor("garbage!").ok());
  EXPECT_FALSE(DecodeTensor(EncodeTensor(Tensor::Zeros({2, 2})).substr(0, 20)).ok());
  // A stored shape whose product overflows (found by tests/fuzz/records_fuzz) is refused, not
  // multiplied out.
  Tensor huge;
  huge.shape = {int64_t{1} << 40, int64_t{1} << 40};
  std::string bytes = EncodeTensor(Tensor::Zeros({2, 2}));
  std::memcpy(bytes.data() + 8, huge.shape.data(), 16);
  EXPECT_FALSE(DecodeTensor(bytes).ok());
  EXPECT_EQ(Tensor::CheckedNumElements(huge.shape), -1);
  EXPECT_EQ(Tensor::CheckedNumElements({3, 0, int64_t{1} << 62}), 0);
  EXPECT_EQ(Tensor::CheckedNumElements({2, -1}), -1);
}

TEST(Store, RefusesAFolderItCannotUse) {
  TempDir dir;
  std::string file = dir / "not-a-folder";
  RunCommand("touch '" + file + "'");
  auto s = Store::Open(file);
  EXPECT_FALSE(s.ok());
}

// Names of the files in a store's values folder; empty ones (the pool of files ready to be
// written) only when `with_empty`.
std::set<std::string> ValueFiles(const std::string& dir, bool with_empty = false) {
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/values")) {
    if (with_empty || std::filesystem::file_size(e.path()) > 0)
      names.insert(e.path().filename().string());
  }
  return names;
}

std::string Big(char fill, size_t n = 300 * 1024) {
  std::string v(n, fill);
  for (size_t i = 0; i < n; i += 4096) v[i] = static_cast<char>(i / 4096);
  return v;
}

TEST(Store, BigValuesLiveInFilesAndGoWithTheirRecords) {
  TempDir dir;
  auto s = Store::Open(dir.path());
  ASSERT_TRUE(s.ok()) << s.message();
  Store::Batch b;
  b.Put(Family::kCheckpoints, TaskKey(1, 0), Big('a'));
  b.Put(Family::kCheckpoints, TaskKey(1, 1), "small");  // stays in RocksDB
  b.Put(Family::kCheckpoints, TaskKey(1, 2), Big('c'));
  b.Put(Family::kLatents, TaskKey(1, 0), Big('l'));
  b.Put(Family::kSegments, TaskKey(1, 0), Big('s'));  // not a big family: RocksDB
  ASSERT_TRUE((*s)->Write(b).ok());
  EXPECT_EQ(ValueFiles(dir.path()).size(), 3u);
  EXPECT_EQ(*(*s)->Get(Family::kCheckpoints, TaskKey(1, 0)), Big('a'));
  EXPECT_EQ(*(*s)->Get(Family::kSegments, TaskKey(1, 0)), Big('s'));
  // Scans merge values in files with values inline, in key order, within the range.
  std::vector<std::string> seen;
  ASSERT_TRUE((*s)->Scan(Family::kCheckpoints, JobKey(1), JobKey(2),
                         [&](const std::string& k, const std::string& v) {
                           seen.push_back(std::to_string(IndexOfKey(k)) + ":" + v.substr(1, 1));
                           return true;
                         })
                  .ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"0:a", "1:m", "2:c"}));
  // Overwriting with a big value replaces the file; with a small one, removes it.
  b.Put(Family::kCheckpoints, TaskKey(1, 0), Big('b'));
  b.Put(Family::kCheckpoints, TaskKey(1, 2), "tiny");
  ASSERT_TRUE((*s)->Write(b).ok());
  EXPECT_EQ(ValueFiles(dir.path()).size(), 2u);
  EXPECT_EQ(*(*s)->Get(Family::kCheckpoints, TaskKey(1, 0)), Big('b'));
  EXPECT_EQ(*(*s)->Get(Family::kCheckpoints, TaskKey(1, 2)), "tiny");
  // A big value written and overwritten in one batch leaves one file; deletes remove theirs.
  b.Put(Family::kCheckpoints, TaskKey(1, 5), Big('x'));
  b.Put(Family::kCheckpoints, TaskKey(1, 5), Big('y'));
  b.Delete(Family::kLatents, TaskKey(1, 0));
  ASSERT_TRUE((*s)->Write(b).ok());
  EXPECT_EQ(ValueFiles(dir.path()).size(), 2u);
  EXPECT_EQ(*(*s)->Get(Family::kCheckpoints, TaskKey(1, 5)), Big('y'));
  EXPECT_FALSE((*s)->Get(Family::kLatents, TaskKey(1, 0)).ok());
  b.DeleteRange(Family::kCheckpoints, JobKey(1), JobKey(2));
  ASSERT_TRUE((*s)->Write(b).ok());
  EXPECT_TRUE(ValueFiles(dir.path()).empty());
  auto gone = (*s)->Get(Family::kCheckpoints, TaskKey(1, 0));
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.message().rfind("not found", 0), 0u);
}

// A write synced later (the coordinator's group commit) is read at once, but the value file it
// replaces stays until the write is durable: a crash of the machine could bring back the old
// record, which must still find its file. A SyncWal, a synced write or closing the store lets
// the file go.
TEST(Store, AnUnsyncedWriteKeepsTheFileItReplacesUntilASync) {
  TempDir dir;
  const std::string key = TaskKey(1, 0);
  {
    auto s = Store::Open(dir.path());
    ASSERT_TRUE(s.ok()) << s.message();
    Store::Batch b;
    b.Put(Family::kCheckpoints, key, Big('a'));
    ASSERT_TRUE((*s)->Write(b).ok());
    b.Put(Family::kCheckpoints, key, Big('b'));
    ASSERT_TRUE((*s)->Write(b, Store::Sync::kLater).ok());
    EXPECT_EQ(*(*s)->Get(Family::kCheckpoints, key), Big('b'));
    EXPECT_EQ(ValueFiles(dir.path()).size(), 2u);  // 'a' is kept
    ASSERT_TRUE((*s)->SyncWal().ok());
    EXPECT_EQ(ValueFiles(dir.path()).size(), 1u);
    b.Put(Family::kCheckpoints, key, Big('c'));
    ASSERT_TRUE((*s)->Write(b, Store::Sync::kLater).ok());
    EXPECT_EQ(ValueFiles(dir.path()).size(), 2u);
    b.Put(Family::kSegments, key, "a synced write syncs the ones before it");
    ASSERT_TRUE((*s)->Write(b).ok());
    EXPECT_EQ(ValueFiles(dir.path()).size(), 1u);
    b.Put(Family::kCheckpoints, key, Big('d'));
    ASSERT_TRUE((*s)->Write(b, Store::Sync::kLater).ok());
    EXPECT_EQ(ValueFiles(dir.path()).size(), 2u);
  }
  auto s = Store::Open(dir.path());
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(*(*s)->Get(Family::kCheckpoints, key), Big('d'));
  EXPECT_EQ(ValueFiles(dir.path()).size(), 1u);
}

// The write-ahead log is buffered in the process (kLater writes cost no system call), so a
// process that dies without closing the store (kill -9, a crash) loses what no sync covered; what
// a SyncWal or a synced write covered must be on disk.
TEST(StoreDeathTest, WhatASyncCoveredOutlivesAProcessThatDiesWithoutClosing) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // The dying child runs this test again from the start: it takes the parent's folder.
  const char* kDirVar = "SEGUE_STORE_DEATH_TEST_DIR";
  std::optional<TempDir> own;
  std::string path;
  if (const char* inherited = getenv(kDirVar)) {
    path = inherited;
  } else {
    own.emplace();
    path = own->path();
    setenv(kDirVar, path.c_str(), 1);
  }
  EXPECT_EXIT(
      {
        auto s = Store::Open(path);
        if (!s.ok()) _exit(1);
        Store::Batch b;
        b.Put(Family::kJobs, JobKey(2), "a synced write");
        if (!(*s)->Write(b).ok()) _exit(2);
        b.Put(Family::kJobs, JobKey(1), "covered by SyncWal");
        b.Put(Family::kCheckpoints, TaskKey(1, 0), Big('s'));  // a value file too
        if (!(*s)->Write(b, Store::Sync::kLater).ok() || !(*s)->SyncWal().ok()) _exit(3);
        b.Put(Family::kJobs, JobKey(3), "never synced");
        if (!(*s)->Write(b, Store::Sync::kLater).ok()) _exit(4);
        _exit(0);  // no close, no destructors
      },
      ::testing::ExitedWithCode(0), "");
  unsetenv(kDirVar);
  auto s = Store::Open(path);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(*(*s)->Get(Family::kJobs, JobKey(1)), "covered by SyncWal");
  EXPECT_EQ(*(*s)->Get(Family::kCheckpoints, TaskKey(1, 0)), Big('s'));
  EXPECT_EQ(*(*s)->Get(Family::kJobs, JobKey(2)), "a synced write");
}

TEST(Store, OpenDeletesFilesNoRecordNamesAndReadsCheckFiles) {
  TempDir dir;
  {
    auto s = Store::Open(dir.path());
    ASSERT_TRUE(s.ok());
    Store::Batch b;
    b.Put(Family::kOutputs, TaskKey(3, 0), Big('o'));
    ASSERT_TRUE((*s)->Write(b).ok());
  }
  // What a crash between writing a file and committing its batch leaves behind.
  std::ofstream(dir / "values/999.value") << "half a checkpoint";
  std::ofstream(dir / "values/notes.txt") << "not the store's";
  EXPECT_GT(ValueFiles(dir.path(), true).size(), 3u);  // the first store's unused pool too
  auto s = Store::Open(dir.path());
  ASSERT_TRUE(s.ok()) << s.message();
  // Left: the one file a record names, and what is not the store's.
  EXPECT_EQ(ValueFiles(dir.path(), true).size(), 2u);
  EXPECT_EQ(ValueFiles(dir.path()).count("999.value"), 0u);
  EXPECT_EQ(ValueFiles(dir.path()).count("notes.txt"), 1u);
  EXPECT_EQ(*(*s)->Get(Family::kOutputs, TaskKey(3, 0)), Big('o'));
  // New files never reuse a number Open saw.
  Store::Batch b;
  b.Put(Family::kOutputs, TaskKey(3, 1), Big('p'));
  ASSERT_TRUE((*s)->Write(b).ok());
  EXPECT_EQ(ValueFiles(dir.path()).count("1000.value"), 1u);
  // A damaged file is an error naming it, not wrong bytes.
  std::string victim;
  for (const auto& name : ValueFiles(dir.path()))
    if (name != "1000.value" && name != "notes.txt") victim = name;
  {
    std::fstream f(dir / ("values/" + victim), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('!');
  }
  auto damaged = (*s)->Get(Family::kOutputs, TaskKey(3, 0));
  ASSERT_FALSE(damaged.ok());
  EXPECT_NE(damaged.message().find(victim), std::string::npos) << damaged.message();
  EXPECT_NE(damaged.message().find("damaged"), std::string::npos) << damaged.message();
}

// A copy of a big value names the same file (no bytes written, nothing synced): the file stays
// while any record names it, across a reopen, and goes with the last one (once that delete is
// durable).
TEST(Store, ACopySharesItsFileWhichGoesWithTheLastRecordNamingIt) {
  TempDir dir;
  const std::string a = TaskKey(1, 0), b = TaskKey(2, 0), c = TaskKey(3, 0);
  {
    auto s = Store::Open(dir.path());
    ASSERT_TRUE(s.ok()) << s.message();
    Store::Batch w;
    w.Put(Family::kLatents, a, Big('a'));
    ASSERT_TRUE((*s)->Write(w).ok());
    const std::set<std::string> one = ValueFiles(dir.path());
    ASSERT_EQ(one.size(), 1u);
    w.Copy(Family::kLatents, a, b);
    ASSERT_TRUE((*s)->Write(w).ok());
    EXPECT_EQ(ValueFiles(dir.path()), one);
    EXPECT_EQ(*(*s)->Get(Family::kLatents, b), Big('a'));
    w.Delete(Family::kLatents, a);
    ASSERT_TRUE((*s)->Write(w).ok());
    EXPECT_EQ(ValueFiles(dir.path()), one);
    EXPECT_FALSE((*s)->Get(Family::kLatents, a).ok());
    EXPECT_EQ(*(*s)->Get(Family::kLatents, b), Big('a'));
  }
  auto s = Store::Open(dir.path());  // the records naming each file are counted again
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(ValueFiles(dir.path()).size(), 1u);
  EXPECT_EQ(*(*s)->Get(Family::kLatents, b), Big('a'));
  Store::Batch w;
  w.Copy(Family::kLatents, b, c);
  w.Copy(Family::kLatents, c, c);  // onto itself: still one record naming the file
  w.Delete(Family::kLatents, b);
  ASSERT_TRUE((*s)->Write(w).ok());
  EXPECT_EQ(ValueFiles(dir.path()).size(), 1u);
  EXPECT_EQ(*(*s)->Get(Family::kLatents, c), Big('a'));
  w.Delete(Family::kLatents, c);
  ASSERT_TRUE((*s)->Write(w, Store::Sync::kLater).ok());
  EXPECT_EQ(ValueFiles(dir.path()).size(), 1u);  // until the delete is durable
  ASSERT_TRUE((*s)->SyncWal().ok());
  EXPECT_TRUE(ValueFiles(dir.path()).empty());
}

// A copy reads its source as the batch has left it so far: a value put earlier in the batch (in
// a file or inline), a delete or range delete (the copy is absent too), another copy; and the
// source's later writes in the batch do not change the copy. Small families copy their bytes.
TEST(Store, ACopyTakesItsSourceAsTheBatchLeavesItSoFar) {
  TempDir dir;
  auto s = Store::Open(dir.path());
  ASSERT_TRUE(s.ok()) << s.message();
  Store::Batch w;
  w.Put(Family::kOutputs, TaskKey(1, 0), "small, inline");
  w.Put(Family::kOutputs, TaskKey(5, 0), Big('z'));
  w.Put(Family::kSegments, TaskKey(1, 0), "a task record");
  ASSERT_TRUE((*s)->Write(w).ok());
  w.Put(Family::kOutputs, TaskKey(2, 0), Big('x'));
  w.Copy(Family::kOutputs, TaskKey(2, 0), TaskKey(2, 1));  // a file this batch writes
  w.Copy(Family::kOutputs, TaskKey(1, 0), TaskKey(3, 0));  // committed, inline
  w.Put(Family::kOutputs, TaskKey(1, 0), "changed after the copy");
  w.Put(Family::kOutputs, TaskKey(4, 0), "tiny");
  w.Copy(Family::kOutputs, TaskKey(4, 0), TaskKey(4, 1));  // inline, this batch's
  w.Copy(Family::kOutputs, TaskKey(4, 1), TaskKey(4, 2));  // a copy of a copy
  w.Copy(Family::kOutputs, TaskKey(9, 9), TaskKey(5, 0));  // nothing: the target goes
  w.DeleteRange(Family::kOutputs, JobKey(6), JobKey(7));
  w.Put(Family::kOutputs, TaskKey(7, 0), "kept");
  w.Copy(Family::kSegments, TaskKey(1, 0), TaskKey(1, 1));  // not a big family
  w.Copy(Family::kSegments, TaskKey(1, 1), TaskKey(1, 2));
  w.Put(Family::kSegments, TaskKey(1, 1), "overwritten later in the batch");
  ASSERT_TRUE((*s)->Write(w).ok());
  EXPECT_EQ(ValueFiles(dir.path()).size(), 1u);  // 'x', shared; 'z' went
  EXPECT_EQ(*(*s)->Get(Family::kOutputs, TaskKey(2, 1)), Big('x'));
  EXPECT_EQ(*(*s)->Get(Family::kOutputs, TaskKey(3, 0)), "small, inline");
  EXPECT_EQ(*(*s)->Get(Family::kOutputs, TaskKey(1, 0)), "changed after the copy");
  EXPECT_EQ(*(*s)->Get(Family::kOutputs, TaskKey(4, 2)), "tiny");
  EXPECT_FALSE((*s)->Get(Family::kOutputs, TaskKey(5, 0)).ok());
  EXPECT_EQ(*(*s)->Get(Family::kSegments, TaskKey(1, 2)), "a task record");
  EXPECT_EQ(*(*s)->Get(Family::kSegments, TaskKey(1, 1)), "overwritten later in the batch");
  // A range deleted before a copy in the same batch leaves nothing to copy.
  w.Put(Family::kOutputs, TaskKey(8, 0), Big('r'));
  ASSERT_TRUE((*s)->Write(w).ok());
  w.DeleteRange(Family::kOutputs, JobKey(8), JobKey(9));
  w.Copy(Family::kOutputs, TaskKey(8, 0), TaskKey(10, 0));
  ASSERT_TRUE((*s)->Write(w).ok());
  EXPECT_FALSE((*s)->Get(Family::kOutputs, TaskKey(10, 0)).ok());
  EXPECT_EQ(ValueFiles(dir.path()).size(), 1u);
}

TEST(Store, AFailedBigWriteCommitsNothing) {
  TempDir dir;
  auto s = Store::Open(dir.path());
  ASSERT_TRUE(s.ok());
  Store::Batch b;
  b.Put(Family::kJobs, JobKey(4), "job");
  b.Put(Family::kCheckpoints, TaskKey(4, 0), Big('z'));
  // The value files' folder gone and a plain file in its place: no file can be created there,
  // root or not.
  std::filesystem::remove_all(dir / "values");
  std::ofstream(dir / "values") << "in the way";
  Status w = (*s)->Write(b);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.message().find("values"), std::string::npos) << w.message();
  EXPECT_FALSE((*s)->Get(Family::kJobs, JobKey(4)).ok());  // the whole batch, not half
  EXPECT_FALSE((*s)->Get(Family::kCheckpoints, TaskKey(4, 0)).ok());
}

}  // namespace
}  // namespace segue
