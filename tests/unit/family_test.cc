// Job families (coordinator/family.h) through the core: a submitted manifest's preview and takes
// are stored with it, wait in order (the final for its preview, a take for the final's
// segments) across a restart, and a pick is planned from stored results.
#include "coordinator/family.h"

#include <gtest/gtest.h>

#include "common/protocol/protocol.h"
#include "tests/support/core_harness.h"
#include "tests/support/fake_worker.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

TEST(DerivedOutput, BesideTheOutputOrInItsTakesFolder) {
  EXPECT_EQ(DerivedOutput("/r/out/a.mp4", false, "", ".preview"), "/r/out/a.preview.mp4");
  EXPECT_EQ(DerivedOutput("/r/out/a.mov", false, ".takes", "s1-take2"),
            "/r/out/a.takes/s1-take2.mov");
  EXPECT_EQ(DerivedOutput("/r/out/frames", true, "", ".preview"), "/r/out/frames.preview");
  EXPECT_EQ(DerivedOutput("/r/out/frames", true, ".takes", "s1-take2"),
            "/r/out/frames.takes/s1-take2");
}

TEST(ApplyFamily, TakesPicksAndPreviewSteps) {
  auto m = ParseManifest(
      "version: 1\nvideo: {width: 64, height: 32, fps: 12, frames: 62}\nmodel: {steps: 20}\n"
      "preview: {steps: 3}\ntimeline:\n  - {at: 0, prompt: a}\n  - {at: 2s, prompt: b, takes: 4}\n"
      "  - {at: 3s, prompt: c, take: 2}\n",
      "m.yaml", {});
  ASSERT_TRUE(m.ok()) << m.message();
  Manifest final_ = *m;
  ApplyFamily(final_, JobFamily{});
  EXPECT_EQ(final_.steps, 20);
  EXPECT_EQ(final_.timeline[1].takes, 4);
  EXPECT_EQ(final_.timeline[2].take, 2);  // the manifest's own choice
  Manifest take = *m;
  ApplyFamily(take, JobFamily{JobRole::kTake, 1, 1, 1, 3, {}});
  EXPECT_EQ(take.timeline[1].take, 3);
  EXPECT_EQ(take.timeline[1].takes, 1);  // no family under a take
  EXPECT_FALSE(take.preview.has_value());
  Manifest preview = *m;
  ApplyFamily(preview, JobFamily{JobRole::kPreview, 1, 1, -1, 0, {}});
  EXPECT_EQ(preview.steps, 3);
  EXPECT_EQ(preview.timeline[2].take, 2);
  Manifest pick = *m;
  ApplyFamily(pick, JobFamily{JobRole::kPick, 1, 1, -1, 0, {{1, 2}, {2, 1}}});
  EXPECT_EQ(pick.timeline[1].take, 2);
  EXPECT_EQ(pick.timeline[2].take, 1);  // a pick overrides the manifest's choice
  EXPECT_EQ(pick.steps, 20);
}

// 10 segments of 8 frames sharing 2 (62 frames at 12 fps); section 1 (frames 24-36) has two
// takes: segments 4 and 5 have their middle frame in it.
constexpr const char* kFamily =
    "version: 1\nname: fam\nvideo: {width: 64, height: 32, fps: 12, frames: 62}\n"
    "model: {name: zoom, steps: 4}\nsegments: {length: 8, overlap: 2}\nseed: 7\n"
    "preview: {steps: 1, scale: 0.5}\noutput: {path: out/fam, codec: png}\n"
    "timeline:\n  - {at: 0, prompt: dawn}\n  - {at: 2s, prompt: rain, takes: 2}\n"
    "  - {at: 3s, prompt: dusk}\n";

// Gives `w` work until nothing is left, checking the order: no task of the final before its
// preview is DONE, none of the take before the final has every segment.
void RunInOrder(CoreHarness& h, const FakeWorker& w, uint64_t final_, uint64_t preview,
                uint64_t take, const std::string& scratch, std::set<uint32_t>* take_rendered) {
  for (int n = 0; n < 400; ++n) {
    h.Deliver(w.name(), FakeWorker::WorkRequest());
    bool any = false;
    for (const std::string& m : h.Take(w.name())) {
      auto a = FakeWorker::AsAssignment(m);
      if (!a) continue;
      any = true;
      if (a->job == final_) {
        EXPECT_EQ(h.Status(preview).state, "DONE") << "the final ran before its preview";
      }
      if (a->job == take) {
        EXPECT_EQ(h.Status(final_).state, "DONE") << "the take ran before its final was done";
        if (a->kind == wire::TaskKind::RENDER) take_rendered->insert(a->index);
      }
      if (a->kind == wire::TaskKind::RENDER) {
        h.Deliver(w.name(), FakeWorker::RenderResult(*a, FakeLatents(*a)));
      } else {
        auto chunk = FakeChunk(*a, scratch);
        ASSERT_TRUE(chunk.ok()) << chunk.message();
        h.Deliver(w.name(), FakeWorker::EncodeResult(*a, *chunk, a->frame_count));
      }
    }
    h.Sync();
    if (!any && h.Status(take).Finished()) return;
  }
}

TEST(Family, WaitsInOrderAcrossARestartAndAPickReusesEverything) {
  TempDir dir;
  FaultEnv env;
  const CoordinatorOptions options = TestOptions(dir.path());
  uint64_t final_ = 0;
  {
    CoreHarness h(&env, options);
    ASSERT_TRUE(h.ok()) << h.error();
    std::string why;
    final_ = h.Submit(kFamily, &why);
    ASSERT_NE(final_, 0u) << why;
  }
  // The family, restored: roles, roots, and the waits worked out again.
  CoreHarness h(&env, options);
  ASSERT_TRUE(h.ok()) << h.error();
  const JobInfo f = h.Status(final_);
  const uint64_t preview = f.family.preview_job, take = final_ + 2;
  ASSERT_EQ(preview, final_ + 1);
  EXPECT_EQ(f.family.role, "final");
  EXPECT_EQ(f.family.waiting_for, preview);
  const JobInfo p = h.Status(preview);
  EXPECT_EQ(p.family.role, "preview");
  EXPECT_EQ(p.family.root, final_);
  EXPECT_EQ(p.family.waiting_for, 0u);
  EXPECT_GT(p.priority, f.priority);
  const JobInfo t = h.Status(take);
  EXPECT_EQ(t.family.role, "take");
  EXPECT_EQ(t.family.section, 1);
  EXPECT_EQ(t.family.take, 2u);
  EXPECT_EQ(t.family.waiting_for, final_);
  EXPECT_EQ(t.family.section_segments, (std::vector<uint32_t>{4, 5}));
  EXPECT_EQ(t.family.section_start, 24);
  EXPECT_EQ(t.family.section_end, 36);

  FakeWorker w("w0");
  h.Deliver("w0", w.Hello());
  std::set<uint32_t> take_rendered;
  RunInOrder(h, w, final_, preview, take, dir.path(), &take_rendered);
  for (uint64_t id : {final_, preview, take}) EXPECT_EQ(h.Status(id).state, "DONE") << id;
  EXPECT_EQ(take_rendered, (std::set<uint32_t>{4, 5}));  // the rest it took from the final

  // Picking the take: every segment is stored already.
  const std::string reply = h.Call(PickMessage(final_, 1, 2));
  auto in = Incoming::Parse(reply.data(), reply.size());
  ASSERT_TRUE(in.ok() && (*in)->envelope().isSubmitReply()) << reply.size();
  const uint64_t picked = (*in)->envelope().getSubmitReply().getJobId();
  h.Sync();
  const JobInfo pk = h.Status(picked);
  EXPECT_EQ(pk.family.role, "pick");
  EXPECT_EQ(pk.family.picks, (std::map<int, int>{{1, 2}}));
  EXPECT_EQ(pk.segments_done, pk.segments_total);
  // A section the timeline does not have is refused, naming it.
  const std::string refusal = h.Call(PickMessage(final_, 3, 2));
  auto refused = Incoming::Parse(refusal.data(), refusal.size());
  ASSERT_TRUE(refused.ok() && (*refused)->envelope().isError());
  EXPECT_NE(std::string((*refused)->envelope().getError().getMessage().cStr()).find("section 3"),
            std::string::npos);
}

// A pick is a job: it counts against the owner's limits like a submission's preview and takes.
TEST(Family, APickCountsAgainstTheOwnersLimits) {
  TempDir dir;
  FaultEnv env;
  CoordinatorOptions options = TestOptions(dir.path());
  options.max_owner_jobs = 3;  // the family: final, preview, take
  CoreHarness h(&env, options);
  ASSERT_TRUE(h.ok()) << h.error();
  std::string why;
  const uint64_t final_ = h.Submit(kFamily, &why);
  ASSERT_NE(final_, 0u) << why;
  const std::string reply = h.Call(PickMessage(final_, 1, 2));
  auto in = Incoming::Parse(reply.data(), reply.size());
  ASSERT_TRUE(in.ok() && (*in)->envelope().isError());
  EXPECT_EQ((*in)->envelope().getError().getCode(),
            static_cast<uint32_t>(wire::ErrorCode::OVER_LIMIT));
  EXPECT_NE(std::string((*in)->envelope().getError().getMessage().cStr()).find("--max-owner-jobs"),
            std::string::npos);
  // A submission whose family would go over is refused whole, saying its jobs are jobs.
  EXPECT_EQ(h.Submit(kFamily, &why), 0u);
  EXPECT_NE(why.find("its preview and takes are jobs"), std::string::npos) << why;
}

}  // namespace
}  // namespace segue
