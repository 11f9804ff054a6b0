// Result keys and reuse (coordinator/results.h): what changes a segment's key and what does not,
// by strategy; and a job whose segments another job has rendered takes them from the store, also
// after a restart.
#include "coordinator/results.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "common/manifest/manifest.h"
#include "common/media/video.h"
#include "common/model/metadata.h"
#include "common/protocol/protocol.h"
#include "coordinator/models.h"
#include "tests/support/core_harness.h"
#include "tests/support/fake_worker.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

// 10 segments of 8 frames sharing 2 (62 frames at 12 fps), keyframes at frames 0, 24 and 36.
std::string Text(const std::string& strategy, const std::string& middle = "rain",
                 const std::string& extra = "") {
  return "version: 1\nname: keys\nvideo: {width: 64, height: 32, fps: 12, frames: 62}\n"
         "model: {name: zoom, steps: 4}\nsegments: {length: 8, overlap: 2, strategy: " +
         strategy +
         "}\nseed: 7\ntimeline:\n  - {at: 0, prompt: dawn}\n  - {at: 2s, prompt: " + middle +
         "}\n  - {at: 3s, prompt: dusk}\n" + extra;
}

std::vector<SegmentKey> KeysOf(const std::string& text, uint64_t id = 1,
                               const std::string& identity = "builtin/1") {
  auto m = ParseManifest(text, "keys.yaml", ManifestParseOptions{});
  EXPECT_TRUE(m.ok()) << m.message();
  Job j;
  j.id = id;
  model::ModelMetadata meta = *model::BuiltinMetadata("zoom");
  meta.identity = identity;
  EXPECT_TRUE(PlanJob(j, *m, meta, 96, 0).ok());
  return SegmentKeys(j);
}

// The segments whose keys differ.
std::set<size_t> Changed(const std::vector<SegmentKey>& a, const std::vector<SegmentKey>& b) {
  std::set<size_t> out;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    if (a[i].key != b[i].key) out.insert(i);
  return out;
}

TEST(ResultKeys, WhatDoesNotChangeTheLatentsDoesNotChangeTheKeys) {
  const auto keys = KeysOf(Text("independent"));
  ASSERT_EQ(keys.size(), 10u);
  std::set<std::string> distinct;
  for (const auto& k : keys) distinct.insert(k.key);
  EXPECT_EQ(distinct.size(), 10u);  // each segment its own
  // Another job id, name, output, priority, metadata and checkpoint interval: the same keys.
  EXPECT_TRUE(Changed(keys, KeysOf(Text("independent", "rain",
                                        "output: {path: other.mp4, crf: 30}\npriority: 90\n"
                                        "metadata: {shot: \"020\"}\ncheckpoint: {steps: 2}\n"),
                                   77))
                  .empty());
  // The seed, the steps or the size: every key.
  std::string other_seed = Text("independent");
  other_seed.replace(other_seed.find("seed: 7"), 7, "seed: 8");
  EXPECT_EQ(Changed(keys, KeysOf(other_seed)).size(), 10u);
  std::string more_steps = Text("independent");
  more_steps.replace(more_steps.find("steps: 4"), 8, "steps: 5");
  EXPECT_EQ(Changed(keys, KeysOf(more_steps)).size(), 10u);
}

TEST(ResultKeys, AnEditedPromptChangesWhatItReachesByStrategy) {
  // Independent: the segments whose frames the keyframe at frame 24 rules (until frame 36).
  const auto a = KeysOf(Text("independent")), b = KeysOf(Text("independent", "snow"));
  const std::set<size_t> changed = Changed(a, b);
  EXPECT_EQ(changed, (std::set<size_t>{3, 4, 5}));  // [18,26) [24,32) [30,38)
  for (size_t s : changed) {
    EXPECT_EQ(WhyDifferent(b[s], a[s], Strategy::kIndependent, static_cast<uint32_t>(s)),
              std::vector<std::string>{"its prompts changed"});
  }
  EXPECT_TRUE(WhyDifferent(b[0], a[0], Strategy::kIndependent, 0).empty());
  // A transition into the next keyframe reaches one frame further back: the segment holding
  // frames of the crossfade sees both prompts.
  // Chained: those and every one after them.
  const auto ca = KeysOf(Text("chained")), cb = KeysOf(Text("chained", "snow"));
  EXPECT_EQ(Changed(ca, cb), (std::set<size_t>{3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(WhyDifferent(cb[7], ca[7], Strategy::kChained, 7),
            std::vector<std::string>{"its guide, segment 6, changes"});
  // Co-denoised: all of them; a change of blend too (the exchange averages with it), which
  // independent segments do not see.
  const auto na = KeysOf(Text("codenoise")), nb = KeysOf(Text("codenoise", "snow"));
  EXPECT_EQ(Changed(na, nb).size(), 10u);
  EXPECT_EQ(WhyDifferent(nb[0], na[0], Strategy::kCodenoise, 0),
            std::vector<std::string>{"it is co-denoised with segments that change (or blend "
                                     "differently)"});
  std::string cosine = Text("codenoise");
  cosine.replace(cosine.find("strategy: codenoise"), 19, "strategy: codenoise, blend: cosine");
  EXPECT_EQ(Changed(na, KeysOf(cosine)).size(), 10u);
  std::string cosine_independent = Text("independent");
  cosine_independent.replace(cosine_independent.find("strategy: independent"), 21,
                             "strategy: independent, blend: cosine");
  EXPECT_TRUE(Changed(a, KeysOf(cosine_independent)).empty());
}

// A longer video (docs/MANIFEST.md, Iterating): with the same length and overlap the segments
// before the change keep their place and keys, independent or chained (70 frames where there
// were 62: the ten segments stay, two are added); co-denoised ones all change (the gang is the
// whole video).
TEST(ResultKeys, ALongerVideoKeepsTheSegmentsBeforeTheChange) {
  auto longer = [](std::string text) {
    text.replace(text.find("frames: 62"), 10, "frames: 70");
    return text;
  };
  for (const char* strategy : {"independent", "chained"}) {
    const auto a = KeysOf(Text(strategy)), b = KeysOf(longer(Text(strategy)));
    EXPECT_EQ(b.size(), a.size() + 2) << strategy;
    EXPECT_TRUE(Changed(a, b).empty()) << strategy;
  }
  EXPECT_EQ(Changed(KeysOf(Text("codenoise")), KeysOf(longer(Text("codenoise")))).size(), 10u);
}

// The model's weights are part of every key, and a farm serves one set of weights per name.
TEST(ResultKeys, OtherWeightsChangeEveryKeyAndAFarmServesOneSetPerName) {
  const auto keys = KeysOf(Text("independent"));
  const auto other = KeysOf(Text("independent"), 1, "xxh3:0123456789abcdef0123456789abcdef");
  EXPECT_EQ(Changed(keys, other).size(), 10u);
  EXPECT_EQ(WhyDifferent(other[2], keys[2], Strategy::kIndependent, 2),
            std::vector<std::string>{"the model or its metadata changed"});

  ModelCatalog catalog;
  model::ModelMetadata tuned = *model::BuiltinMetadata("zoom");
  EXPECT_EQ(tuned.identity, "builtin/1");
  tuned.identity = "xxh3:0123456789abcdef0123456789abcdef";
  Status refused = catalog.Learn({tuned}, "worker w9");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("identity (the weights) xxh3:0123456789abcdef0123456789abcdef "
                                   "vs builtin/1"),
            std::string::npos)
      << refused.message();
  // A model first known without an identity (a job stored before there were any) learns it.
  model::ModelMetadata custom = model::PlanningMetadata("wan");
  ASSERT_TRUE(catalog.Learn({custom}, "job 1's plan").ok());
  custom.identity = "xxh3:ffffffffffffffffffffffffffffffff";
  ASSERT_TRUE(catalog.Learn({custom}, "worker w1").ok());
  EXPECT_EQ(catalog.Find("wan")->identity, custom.identity);
  custom.identity = "xxh3:00000000000000000000000000000000";
  EXPECT_FALSE(catalog.Learn({custom}, "worker w2").ok());
}

// ---- Through the core ------------------------------------------------------------------------

// A small JPEG, the same for the same segment.
std::string SegmentJpeg(uint32_t segment) {
  std::vector<uint8_t> rgb(32 * 16 * 3, static_cast<uint8_t>(20 * segment));
  return *EncodeThumbnailJpeg(rgb.data(), 32, 16);
}

// Runs `job` to the end with FakeWorker `w` (its results depend on the task alone; with
// `thumbnails`, each render result carries SegmentJpeg of its segment).
void RunToDone(CoreHarness& h, const FakeWorker& w, uint64_t job, const std::string& scratch,
               bool thumbnails = false) {
  for (int n = 0; n < 200 && !h.Status(job).Finished(); ++n) {
    h.Deliver(w.name(), FakeWorker::WorkRequest());
    for (const std::string& m : h.Take(w.name())) {
      auto a = FakeWorker::AsAssignment(m);
      if (!a || a->job != job) continue;
      if (a->kind == wire::TaskKind::RENDER) {
        h.Deliver(w.name(), FakeWorker::RenderResult(*a, FakeLatents(*a), 1,
                                                     thumbnails ? SegmentJpeg(a->index) : ""));
      } else {
        auto chunk = FakeChunk(*a, scratch);
        ASSERT_TRUE(chunk.ok()) << chunk.message();
        h.Deliver(w.name(), FakeWorker::EncodeResult(*a, *chunk, a->frame_count));
      }
    }
    h.Sync();
  }
}

// Job "a" of Text("independent"), run to DONE by a worker w0 (RunToDone): its id, 0 if it failed.
uint64_t RenderTheFirstJob(CoreHarness& h, const std::string& scratch, bool thumbnails = false) {
  FakeWorker w("w0");
  h.Deliver("w0", w.Hello());
  const uint64_t id = h.Submit(Text("independent") + "output: {path: out/a, codec: png}\n");
  if (id == 0) return 0;
  RunToDone(h, w, id, scratch, thumbnails);
  EXPECT_EQ(h.Status(id).state, "DONE") << h.Status(id).error;
  return h.Status(id).state == "DONE" ? id : 0;
}

TEST(ReuseStoredResults, AJobTakesTheSegmentsAnotherRenderedAndARestartKeepsThem) {
  TempDir dir;
  FaultEnv env;
  const CoordinatorOptions options = TestOptions(dir.path());
  uint64_t first = 0;
  {
    CoreHarness h(&env, options);
    ASSERT_TRUE(h.ok()) << h.error();
    first = RenderTheFirstJob(h, dir.path());
    ASSERT_NE(first, 0u);
    // The same segments again (another output): every one is reused at once.
    const uint64_t again = h.Submit(Text("independent") + "output: {path: out/b, codec: png}\n");
    h.Sync();
    EXPECT_EQ(h.Status(again).segments_done, 10u);
  }
  // After a restart the results are still known by their keys: an edit renders only what it
  // reaches.
  CoreHarness h(&env, options);
  ASSERT_TRUE(h.ok()) << h.error();
  const uint64_t edited =
      h.Submit(Text("independent", "snow") + "output: {path: out/c, codec: png}\n");
  h.Sync();
  const JobInfo info = h.Status(edited);
  EXPECT_EQ(info.segments_done, 7u);
  EXPECT_EQ(info.segment_states, "###...####");
}

// A thumbnail request's reply: the JPEGs, or the error's code and message.
struct ThumbnailsView {
  std::vector<std::string> jpegs;
  uint32_t error = 0;
  std::string message;
};
ThumbnailsView ThumbnailCall(CoreHarness& h, uint64_t job, const std::vector<uint32_t>& segments) {
  capnp::MallocMessageBuilder b;
  auto r = b.initRoot<wire::Envelope>().initThumbnailRequest();
  r.setJobId(job);
  auto list = r.initSegments(static_cast<unsigned>(segments.size()));
  for (unsigned i = 0; i < segments.size(); ++i) list.set(i, segments[i]);
  const std::string reply = h.Call(Serialize(b));
  auto in = Incoming::Parse(reply.data(), reply.size());
  ThumbnailsView v;
  if (!in.ok()) {
    ADD_FAILURE() << "no reply";
  } else if ((*in)->envelope().isError()) {
    v.error = (*in)->envelope().getError().getCode();
    v.message = (*in)->envelope().getError().getMessage().cStr();
  } else if ((*in)->envelope().isThumbnails()) {
    EXPECT_EQ((*in)->envelope().getThumbnails().getJobId(), job);
    for (auto jpeg : (*in)->envelope().getThumbnails().getJpegs())
      v.jpegs.emplace_back(reinterpret_cast<const char*>(jpeg.begin()), jpeg.size());
  } else {
    ADD_FAILURE() << "an unexpected reply";
  }
  return v;
}

// The thumbnails `segue takes` makes its contact sheet of where it cannot read the outputs: each
// asked segment's, in order, empty where there is none yet; a reused segment has its donor's, also
// after a restart; a request for what a job does not have is refused, naming it.
TEST(Thumbnails, EachAskedSegmentsInOrderAndAReusedSegmentHasItsDonors) {
  TempDir dir;
  FaultEnv env;
  const CoordinatorOptions options = TestOptions(dir.path());
  uint64_t first = 0, edited = 0;
  {
    CoreHarness h(&env, options);
    ASSERT_TRUE(h.ok()) << h.error();
    first = RenderTheFirstJob(h, dir.path(), true);
    ASSERT_NE(first, 0u);
    const ThumbnailsView got = ThumbnailCall(h, first, {9, 0, 5});
    EXPECT_EQ(got.jpegs,
              (std::vector<std::string>{SegmentJpeg(9), SegmentJpeg(0), SegmentJpeg(5)}));
    // The edit reuses 7 segments (###...####): they have the first job's thumbnails; the 3 it
    // has yet to render have none.
    edited = h.Submit(Text("independent", "snow") + "output: {path: out/c, codec: png}\n");
    h.Sync();
    ASSERT_EQ(h.Status(edited).segment_states, "###...####");
  }
  CoreHarness h(&env, options);
  ASSERT_TRUE(h.ok()) << h.error();
  const ThumbnailsView got = ThumbnailCall(h, edited, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  ASSERT_EQ(got.jpegs.size(), 10u) << got.message;
  for (uint32_t s = 0; s < 10; ++s)
    EXPECT_EQ(got.jpegs[s], s >= 3 && s <= 5 ? std::string() : SegmentJpeg(s)) << s;
  const ThumbnailsView none = ThumbnailCall(h, edited, {});
  EXPECT_EQ(none.error, 0u) << none.message;
  EXPECT_TRUE(none.jpegs.empty());

  const ThumbnailsView beyond = ThumbnailCall(h, edited, {2, 10});
  EXPECT_EQ(beyond.error, static_cast<uint32_t>(wire::ErrorCode::BAD_REQUEST));
  EXPECT_NE(beyond.message.find("has no segment 10 (it has 10)"), std::string::npos)
      << beyond.message;
  const ThumbnailsView many = ThumbnailCall(h, edited, std::vector<uint32_t>(65, 0));
  EXPECT_EQ(many.error, static_cast<uint32_t>(wire::ErrorCode::BAD_REQUEST));
  EXPECT_NE(many.message.find("65 segments asked for, at most 64"), std::string::npos)
      << many.message;
  EXPECT_EQ(ThumbnailCall(h, 999, {0}).error, static_cast<uint32_t>(wire::ErrorCode::NOT_FOUND));
  EXPECT_EQ(ThumbnailCall(h, edited, std::vector<uint32_t>(64, 1)).jpegs.size(), 64u);
}

// A cache request's reply: (job, bytes) of each cached job, least recently used first.
struct CacheView {
  std::vector<std::pair<uint64_t, uint64_t>> jobs;
  uint64_t bytes = 0, live = 0, evicted = 0, hits = 0;
  uint64_t BytesOf(uint64_t job) const {
    for (const auto& [id, bytes] : jobs)
      if (id == job) return bytes;
    return 0;
  }
};
CacheView CacheCall(CoreHarness& h, bool prune, uint64_t to_bytes = 0) {
  capnp::MallocMessageBuilder b;
  auto r = b.initRoot<wire::Envelope>().initCacheRequest();
  if (prune) {
    auto p = r.initPrune();
    p.setBySize(true);
    p.setToBytes(to_bytes);
  } else
    r.setList();
  const std::string reply = h.Call(Serialize(b));
  auto in = Incoming::Parse(reply.data(), reply.size());
  CacheView v;
  if (!in.ok() || !(*in)->envelope().isCacheReply()) {
    ADD_FAILURE() << "no cache reply";
    return v;
  }
  auto c = (*in)->envelope().getCacheReply();
  for (auto j : c.getJobs()) v.jobs.emplace_back(j.getJobId(), j.getBytes());
  v.bytes = c.getBytes();
  v.live = c.getLiveBytes();
  v.evicted = c.getEvictedSegments() + c.getEvictedChunks();
  v.hits = c.getHits();
  return v;
}

TEST(ResultCache, TheLeastRecentlyUsedFinishedResultsGoFirstAndUnfinishedJobsKeepTheirs) {
  TempDir dir;
  FaultEnv env;
  const CoordinatorOptions options = TestOptions(dir.path());
  const std::string seeded = Text("independent");
  std::string other = seeded;
  other.replace(other.find("seed: 7"), 7, "seed: 9");
  uint64_t a = 0, b = 0, c = 0;
  {
    CoreHarness h(&env, options);
    ASSERT_TRUE(h.ok()) << h.error();
    FakeWorker w("w0");
    h.Deliver("w0", w.Hello());
    a = h.Submit(seeded + "output: {path: out/a, codec: png}\n");
    RunToDone(h, w, a, dir.path());
    env.Advance(1000);
    b = h.Submit(other + "output: {path: out/b, codec: png}\n");
    RunToDone(h, w, b, dir.path());
    ASSERT_EQ(h.Status(b).state, "DONE");
    env.Advance(1000);
    // The same latents and encoding to another output: every segment and chunk is stored, so
    // the job is assembled at once, without a worker; a's results are used now, after b's.
    c = h.Submit(seeded + "output: {path: out/c, codec: png}\n");
    h.Sync();
    EXPECT_EQ(h.Status(c).state, "DONE") << h.Status(c).error;
    CacheView v = CacheCall(h, false);
    ASSERT_EQ(v.jobs.size(), 3u);
    EXPECT_EQ(v.jobs[0].first, b);  // least recently used first
    EXPECT_EQ(v.hits, 10u);
    EXPECT_EQ(v.live, 0u);
  }
  // After a restart the order holds: room for all but one job's results evicts b's (a and c
  // hold the same results: the cache counts them once).
  CoreHarness h(&env, options);
  ASSERT_TRUE(h.ok()) << h.error();
  CacheView v = CacheCall(h, false);
  EXPECT_EQ(v.BytesOf(a), v.BytesOf(c));
  EXPECT_EQ(v.bytes, v.BytesOf(a) + v.BytesOf(b));
  CacheView pruned = CacheCall(h, true, v.BytesOf(a));
  EXPECT_GE(pruned.evicted, 10u);
  ASSERT_EQ(pruned.jobs.size(), 2u);
  EXPECT_EQ(pruned.BytesOf(b), 0u);
  // b's manifest again renders everything; a's again reuses everything.
  const uint64_t d = h.Submit(other + "output: {path: out/d, codec: png}\n");
  const uint64_t e = h.Submit(seeded + "output: {path: out/e, codec: png}\n");
  h.Sync();
  EXPECT_EQ(h.Status(d).segments_done, 0u);
  EXPECT_EQ(h.Status(e).state, "DONE");
  // Nothing of an unfinished job is evicted, whatever the size asked for: d's first results.
  FakeWorker w("w1");
  h.Deliver("w1", w.Hello());
  h.Deliver("w1", FakeWorker::WorkRequest());
  for (const std::string& m : h.Take("w1"))
    if (auto t = FakeWorker::AsAssignment(m))
      h.Deliver("w1", FakeWorker::RenderResult(*t, FakeLatents(*t)));
  h.Sync();
  ASSERT_EQ(h.Status(d).segments_done, 1u);
  v = CacheCall(h, true, 0);
  EXPECT_EQ(v.bytes, 0u);
  EXPECT_TRUE(v.jobs.empty());
  EXPECT_EQ(v.live, 4u * 8 * 4 * 8 * 4);  // d's one segment: 4 x 8 x 4 x 8 floats
  EXPECT_EQ(h.Status(d).segments_done, 1u);
}

// A reused result names the bytes already stored (the store lets both records name one value
// file): taking a whole job's results writes none of them again, the cache counts them once, and
// they are evicted from every job holding them together, never while an unfinished job holds
// them.
TEST(ReuseStoredResults, AReusedResultIsStoredOnceCountedOnceAndKeptForUnfinishedJobs) {
  TempDir dir;
  FaultEnv env;
  const CoordinatorOptions options = TestOptions(dir.path());
  auto value_files = [&] {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(options.state_dir + "/values"))
      n += std::filesystem::file_size(e.path()) > 0 ? 1 : 0;
    return n;
  };
  // 256x128: each segment's latents (4 x 8 x 16 x 32 floats) are 64 KiB, a value file's worth.
  auto sized = [](std::string text) {
    return text.replace(text.find("width: 64, height: 32"), 21, "width: 256, height: 128");
  };
  const std::string text = sized(Text("independent"));
  CoreHarness h(&env, options);
  ASSERT_TRUE(h.ok()) << h.error();
  FakeWorker w("w0");
  h.Deliver("w0", w.Hello());
  const uint64_t a = h.Submit(text + "output: {path: out/a, codec: png}\n");
  RunToDone(h, w, a, dir.path());
  ASSERT_EQ(h.Status(a).state, "DONE") << h.Status(a).error;
  const size_t files = value_files();
  ASSERT_GE(files, 10u);  // a's 10 segments at least
  const uint64_t b = h.Submit(text + "output: {path: out/b, codec: png}\n");
  h.Sync();
  ASSERT_EQ(h.Status(b).state, "DONE") << h.Status(b).error;
  EXPECT_EQ(value_files(), files);
  CacheView v = CacheCall(h, false);
  ASSERT_EQ(v.jobs.size(), 2u);
  EXPECT_EQ(v.BytesOf(a), v.BytesOf(b));
  EXPECT_EQ(v.bytes, v.BytesOf(b));
  // An edit of the middle prompt takes 7 of the 10 segments and waits for a worker: pruning
  // everything leaves those 7 (in a and b too) and evicts the rest.
  const uint64_t d =
      h.Submit(sized(Text("independent", "snow")) + "output: {path: out/d, codec: png}\n");
  h.Sync();
  ASSERT_EQ(h.Status(d).segments_done, 7u);
  CacheView pruned = CacheCall(h, true, 0);
  EXPECT_EQ(pruned.bytes, 0u);
  EXPECT_GE(pruned.live, 7u * 65536);
  EXPECT_LT(value_files(), files);
  RunToDone(h, w, d, dir.path());
  ASSERT_EQ(h.Status(d).state, "DONE") << h.Status(d).error;
  const uint64_t c = h.Submit(text + "output: {path: out/c, codec: png}\n");
  h.Sync();
  EXPECT_EQ(h.Status(c).segments_done, 7u);
  RunToDone(h, w, c, dir.path());
  ASSERT_EQ(h.Status(c).state, "DONE") << h.Status(c).error;
  // With no unfinished holder left, everything goes, and its files once the deletes are durable.
  CacheCall(h, true, 0);
  h.Sync();
  EXPECT_EQ(value_files(), 0u);
}

}  // namespace
}  // namespace segue
