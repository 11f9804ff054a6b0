// The RocksDB store: everything survives close and reopen; batches are atomic.
#include <gtest/gtest.h>

#include "common/store/store.h"
#include "tests/test_util.h"

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

TEST(Store, KeysSortByJobThenIndex) {
  EXPECT_LT(TaskKey(1, 300), TaskKey(2, 0));
  EXPECT_LT(TaskKey(1, 2), TaskKey(1, 256));
  EXPECT_EQ(JobOfKey(TaskKey(77, 5)), 77u);
  EXPECT_EQ(IndexOfKey(TaskKey(77, 5)), 5u);
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
}

TEST(Store, RefusesAFolderItCannotUse) {
  TempDir dir;
  std::string file = dir / "not-a-folder";
  RunCommand("touch '" + file + "'");
  auto s = Store::Open(file);
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace segue
