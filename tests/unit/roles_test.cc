// Identities and roles: the keys file's parser (common/security/keyring.h), and the coordinator's
// core refusing what a peer's role does not allow, driven in memory with each peer's key as ZAP
// would have admitted it. Real store; the sockets' side is curve_test's.
#include "common/security/keyring.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/protocol/protocol.h"
#include "common/protocol/reports.h"
#include "common/protocol/transfer.h"
#include "common/security/curve.h"
#include "tests/support/core_harness.h"
#include "tests/support/fake_worker.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

std::string NewPublicKey() {
  auto k = GenerateCurveKeys();
  EXPECT_TRUE(k.ok());
  return k->public_key;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

// ---- The keys file ------------------------------------------------------------------------

TEST(KeyRingTest, ReadsEveryRoleWithKeysInlineOrInFiles) {
  TempDir dir;
  auto alice = GenerateCurveKeys();
  ASSERT_TRUE(alice.ok());
  ASSERT_TRUE(WriteCurveKeys(*alice, dir.path() + "/alice.key", dir.path() + "/alice.pub").ok());
  const std::string ops = NewPublicKey(), node = NewPublicKey(), dash = NewPublicKey();
  const std::string text =
      "identities:\n"
      "  - {name: ops, role: admin, key: \"" +
      ops +
      "\"}\n"
      "  - {name: alice, role: submitter, key_file: alice.pub}\n"
      "  - {name: node7, role: worker, key: \"" +
      node +
      "\"}\n"
      "  - {name: grafana, role: viewer, key: \"" +
      dash + "\"}\n";
  auto ring = KeyRing::Parse(text, dir.path() + "/keys.yaml");
  ASSERT_TRUE(ring.ok()) << ring.message();
  ASSERT_EQ(ring->size(), 4u);
  EXPECT_EQ(ring->Find(alice->public_key)->name, "alice");
  EXPECT_EQ(ring->Find(alice->public_key)->role, Role::kSubmitter);
  EXPECT_EQ(ring->Find(ops)->role, Role::kAdmin);
  EXPECT_EQ(ring->Find(dash)->role, Role::kViewer);
  EXPECT_EQ(ring->Find(NewPublicKey()), nullptr);
  // A worker's names default to its own and its devices' and pool members' (NAME.i, NAME-i).
  const Identity& worker = *ring->Find(node);
  EXPECT_TRUE(worker.MayNameWorker("node7"));
  EXPECT_TRUE(worker.MayNameWorker("node7.1"));
  EXPECT_TRUE(worker.MayNameWorker("node7-3"));
  EXPECT_FALSE(worker.MayNameWorker("node70"));
  EXPECT_FALSE(worker.MayNameWorker("node8"));
  EXPECT_TRUE(ring->Find(ops)->MayNameWorker("anything"));
  EXPECT_FALSE(ring->Find(dash)->MayNameWorker("grafana"));
}

// configs/keys.example.yaml, with keys made for its key files, is a keys file that loads.
TEST(KeyRingTest, TheExampleFileLoads) {
  TempDir dir;
  std::filesystem::copy_file(SourceDir() + "/configs/keys.example.yaml", dir.path() + "/keys.yaml");
  for (const char* name : {"ops", "alice", "pipeline", "render-07", "gpu-pool"}) {
    auto k = GenerateCurveKeys();
    ASSERT_TRUE(k.ok());
    const std::string base = dir.path() + "/" + name;
    ASSERT_TRUE(WriteCurveKeys(*k, base + ".key", base + ".pub").ok());
  }
  auto ring = KeyRing::Load(dir.path() + "/keys.yaml");
  ASSERT_TRUE(ring.ok()) << ring.message();
  EXPECT_EQ(ring->size(), 6u);
  int workers = 0;
  for (const auto& [key, id] : ring->all()) {
    if (id.name == "gpu") {
      EXPECT_TRUE(id.MayNameWorker("gpu-a1b2-3"));
      EXPECT_TRUE(id.MayNameWorker("segue-worker-5d8f-x2"));
    }
    workers += id.role == Role::kWorker;
  }
  EXPECT_EQ(workers, 2);
}

TEST(KeyRingTest, MistakesAreNamedWithTheirLineAndField) {
  TempDir dir;
  auto secret = GenerateCurveKeys();
  ASSERT_TRUE(WriteCurveKeys(*secret, dir.path() + "/s.key", dir.path() + "/s.pub").ok());
  const std::string k1 = NewPublicKey(), k2 = NewPublicKey();
  const std::string path = dir.path() + "/keys.yaml";
  struct Case {
    std::string text, expected;
  };
  const std::vector<Case> cases = {
      {"identities:\n  - {name: a, role: root, key: \"" + k1 + "\"}\n",
       "keys.yaml:2:21: identities[0].role: 'root' is not a role"},
      {"identities:\n  - {name: a, role: admin, key: \"" + k1 +
           "\"}\n  - {name: a, role: "
           "viewer, key: \"" +
           k2 + "\"}\n",
       "identities[1].name: 'a' twice"},
      {"identities:\n  - {name: a, role: admin, key: \"" + k1 +
           "\"}\n  - {name: b, role: "
           "viewer, key: \"" +
           k1 + "\"}\n",
       "identities[1].key: the same key as identity 'a'"},
      {"identities:\n  - {name: a, role: admin, key: short}\n",
       "identities[0].key: expected a public key of 40 Z85 characters"},
      {"identities:\n  - {name: a, role: admin, key_file: s.key}\n",
       "holds a secret key: give the public (.pub) file"},
      {"identities:\n  - {name: a, role: admin, key_file: nowhere.pub}\n",
       "identities[0].key_file: cannot read key file"},
      {"identities:\n  - {name: a, role: submitter, key: \"" + k1 + "\", workers: [a]}\n",
       "identities[0].workers: only worker and admin identities run workers"},
      {"identities:\n  - {name: a, role: admin, key: \"" + k1 + "\", colour: red}\n",
       "identities[0].colour: unknown field"},
      {"identities:\n  - {name: \"a b\", role: admin, key: \"" + k1 + "\"}\n",
       "identities[0].name: use letters"},
      {"identities:\n  - {name: a, role: admin}\n", "identities[0].key: missing"},
      {"users: []\n", "users: unknown field (known: identities)"},
      {"identities: [\n", "keys.yaml:2:1:"},
      {"- just a list\n", "(top): expected a map"},
  };
  for (const Case& c : cases) {
    auto ring = KeyRing::Parse(c.text, path);
    ASSERT_FALSE(ring.ok()) << c.text;
    EXPECT_NE(ring.message().find(c.expected), std::string::npos)
        << "expected '" << c.expected << "' in: " << ring.message();
  }
}

TEST(KeyRingTest, RolesAllowTheirActionsAndNoMore) {
  EXPECT_TRUE(RoleAllows(Role::kViewer, Action::kRead));
  EXPECT_FALSE(RoleAllows(Role::kViewer, Action::kSubmit));
  EXPECT_TRUE(RoleAllows(Role::kSubmitter, Action::kActOnOwnJob));
  EXPECT_FALSE(RoleAllows(Role::kSubmitter, Action::kActOnAnyJob));
  EXPECT_FALSE(RoleAllows(Role::kSubmitter, Action::kWork));
  EXPECT_FALSE(RoleAllows(Role::kSubmitter, Action::kAdminFarm));
  EXPECT_TRUE(RoleAllows(Role::kWorker, Action::kWork));
  EXPECT_FALSE(RoleAllows(Role::kWorker, Action::kRead));
  // Results and submissions may be larger than a frame; a viewer's requests never are.
  EXPECT_TRUE(RoleAllows(Role::kWorker, Action::kSendLarge));
  EXPECT_TRUE(RoleAllows(Role::kSubmitter, Action::kSendLarge));
  EXPECT_FALSE(RoleAllows(Role::kViewer, Action::kSendLarge));
  for (Action a : {Action::kRead, Action::kSubmit, Action::kActOnOwnJob, Action::kActOnAnyJob,
                   Action::kAdminFarm, Action::kWork, Action::kSendLarge})
    EXPECT_TRUE(RoleAllows(Role::kAdmin, a));
}

// ---- The coordinator's core with a keys file ------------------------------------------------

// The kind and text of a reply.
struct Reply {
  wire::Envelope::Which kind;
  uint32_t code = 0;
  std::string text;
};

Reply Read(const std::string& bytes) {
  auto in = Incoming::Parse(bytes.data(), bytes.size());
  if (!in.ok()) return {wire::Envelope::ERROR, 0, "no reply"};
  auto env = (*in)->envelope();
  if (!env.isError()) return {env.which(), 0, ""};
  return {env.which(), env.getError().getCode(), env.getError().getMessage().cStr()};
}

bool Denied(const Reply& r) {
  return r.kind == wire::Envelope::ERROR &&
         r.code == static_cast<uint32_t>(wire::ErrorCode::DENIED);
}

std::string JobAction(uint64_t job, wire::JobActionKind kind) {
  capnp::MallocMessageBuilder b;
  auto a = b.initRoot<wire::Envelope>().initJobAction();
  a.setJobId(job);
  a.setAction(kind);
  return Serialize(b);
}

std::string ListJobs() {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initListJobs();
  return Serialize(b);
}

std::string Drain(const std::string& name) {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initDrainWorker().setName(name);
  return Serialize(b);
}

class RolesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto own = GenerateCurveKeys();
    ASSERT_TRUE(own.ok());
    options_.curve_key = dir_.path() + "/coordinator.key";
    ASSERT_TRUE(WriteCurveKeys(*own, options_.curve_key, dir_.path() + "/coordinator.pub").ok());
    options_.keys_file = dir_.path() + "/keys.yaml";
    WriteKeys("viewer");
    harness_ = std::make_unique<CoreHarness>(&env_, options_);
    ASSERT_TRUE(harness_->ok()) << harness_->error();
  }
  // The keys file, with `grafana_role` for the dashboard's key.
  void WriteKeys(const std::string& grafana_role) {
    WriteFile(options_.keys_file,
              "identities:\n"
              "  - {name: ops, role: admin, key: \"" +
                  ops_ +
                  "\"}\n"
                  "  - {name: alice, role: submitter, key: \"" +
                  alice_ +
                  "\"}\n"
                  "  - {name: bob, role: submitter, key: \"" +
                  bob_ +
                  "\"}\n"
                  "  - {name: node7, role: worker, key: \"" +
                  node7_ +
                  "\"}\n"
                  "  - {name: node8, role: worker, key: \"" +
                  node8_ +
                  "\", workers: [\"node*\"]}\n"
                  "  - {name: grafana, role: " +
                  grafana_role + ", key: \"" + grafana_ + "\"}\n");
  }
  Reply Call(const std::string& bytes, const std::string& key) {
    return Read(harness_->Call(bytes, key));
  }
  uint64_t Submit(const std::string& key) {
    const std::string reply = harness_->Call(SubmitMessage(TestManifest("job", 16, 16, 4)), key);
    auto in = Incoming::Parse(reply.data(), reply.size());
    if (!in.ok() || !(*in)->envelope().isSubmitReply()) return 0;
    return (*in)->envelope().getSubmitReply().getJobId();
  }
  // What `worker`'s Hello from `key` got back.
  Reply Hello(const FakeWorker& worker, const std::string& key) {
    harness_->Deliver(worker.name(), worker.Hello(), key);
    auto got = harness_->Take(worker.name());
    return got.empty() ? Reply{wire::Envelope::ERROR, 0, "no reply"} : Read(got.back());
  }
  JobInfo Status(uint64_t job) { return harness_->Status(job, grafana_); }
  std::string Metrics() { return harness_->core().Http("/metrics").body; }

  const std::string ops_ = NewPublicKey(), alice_ = NewPublicKey(), bob_ = NewPublicKey(),
                    node7_ = NewPublicKey(), node8_ = NewPublicKey(), grafana_ = NewPublicKey();
  TempDir dir_;
  FaultEnv env_;
  CoordinatorOptions options_ = TestOptions(dir_.path());
  std::unique_ptr<CoreHarness> harness_;
};

TEST_F(RolesTest, SubmittersOwnTheirJobsAndActOnlyOnThem) {
  const uint64_t job = Submit(alice_);
  ASSERT_GT(job, 0u);
  EXPECT_EQ(Status(job).owner, "alice");
  // Bob may read it, not touch it.
  Reply r = Call(JobAction(job, wire::JobActionKind::CANCEL), bob_);
  EXPECT_TRUE(Denied(r)) << r.text;
  EXPECT_NE(r.text.find("job " + std::to_string(job) + " belongs to 'alice'"), std::string::npos)
      << r.text;
  EXPECT_EQ(Status(job).state, "QUEUED");
  EXPECT_EQ(Call(ListJobs(), bob_).kind, wire::Envelope::JOB_LIST);
  // Alice may, and so may an admin.
  EXPECT_EQ(Call(JobAction(job, wire::JobActionKind::CANCEL), alice_).kind,
            wire::Envelope::JOB_STATUS);
  EXPECT_EQ(Status(job).state, "CANCELLED");
  EXPECT_EQ(Call(JobAction(job, wire::JobActionKind::RETRY), ops_).kind,
            wire::Envelope::JOB_STATUS);
  // Owners survive a restart: they are in the job's record.
  harness_.reset();
  harness_ = std::make_unique<CoreHarness>(&env_, options_);
  ASSERT_TRUE(harness_->ok()) << harness_->error();
  EXPECT_EQ(Status(job).owner, "alice");
  EXPECT_TRUE(Denied(Call(JobAction(job, wire::JobActionKind::CANCEL), bob_)));
}

TEST_F(RolesTest, EachRoleIsRefusedWhatItMayNotDoAndTheRefusalsAreCounted) {
  // Viewers read, and nothing else.
  EXPECT_EQ(Call(ListJobs(), grafana_).kind, wire::Envelope::JOB_LIST);
  Reply r = Call(SubmitMessage(TestManifest("job", 16, 16, 4)), grafana_);
  EXPECT_TRUE(Denied(r));
  EXPECT_EQ(r.text, "denied: identity 'grafana' (viewer) may not submit jobs");
  // ... nor send anything larger than a frame (a transfer's request).
  r = Call(TransferRequestMessage(1, 3 << 20), grafana_);
  EXPECT_TRUE(Denied(r));
  EXPECT_NE(r.text.find("may not send messages larger than one frame"), std::string::npos);
  // Workers work, and nothing else: not even the job list.
  EXPECT_TRUE(Denied(Call(ListJobs(), node7_)));
  EXPECT_TRUE(Denied(Call(SubmitMessage(TestManifest("job", 16, 16, 4)), node7_)));
  // Submitters do not join as workers or run the farm.
  EXPECT_TRUE(Denied(Hello(FakeWorker("alice"), alice_)));
  r = Call(Drain("node7"), alice_);
  EXPECT_TRUE(Denied(r));
  EXPECT_EQ(r.text, "denied: identity 'alice' (submitter) may not drain workers or change pools");
  // A key that is not in the keys file gets nothing.
  r = Call(ListJobs(), NewPublicKey());
  EXPECT_TRUE(Denied(r));
  EXPECT_NE(r.text.find("not in the coordinator's keys file"), std::string::npos) << r.text;
  EXPECT_EQ(harness_->core().Admits(alice_), true);
  EXPECT_EQ(harness_->core().Admits(NewPublicKey()), false);

  const std::string m = Metrics();
  EXPECT_NE(m.find("segue_denied_total{role=\"viewer\"} 2\n"), std::string::npos) << m;
  EXPECT_NE(m.find("segue_denied_total{role=\"worker\"} 2\n"), std::string::npos) << m;
  EXPECT_NE(m.find("segue_denied_total{role=\"submitter\"} 2\n"), std::string::npos) << m;
  EXPECT_NE(m.find("segue_denied_total{role=\"unknown\"} 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("segue_identities 7\n"), std::string::npos) << m;  // and the coordinator's
}

TEST_F(RolesTest, AWorkersNameIsBoundToItsKey) {
  // node7 may use its own names; not another's, even one nobody has taken.
  EXPECT_EQ(Hello(FakeWorker("node7.0"), node7_).kind, wire::Envelope::WELCOME);
  Reply r = Hello(FakeWorker("gpu-3"), node7_);
  EXPECT_TRUE(Denied(r));
  EXPECT_NE(r.text.find("may not name a worker 'gpu-3' (its workers' names: node7, node7.*, "
                        "node7-*"),
            std::string::npos)
      << r.text;
  // node8's patterns cover node7.0, but node7.0 is connected with node7's key: no one else,
  // admin included, takes it over.
  r = Hello(FakeWorker("node7.0"), node8_);
  EXPECT_TRUE(Denied(r));
  EXPECT_NE(r.text.find("worker name 'node7.0' belongs to identity 'node7'"), std::string::npos)
      << r.text;
  EXPECT_TRUE(Denied(Hello(FakeWorker("node7.0"), ops_)));
  // Messages on the worker's routing id with another key are not the worker's.
  const uint64_t job = Submit(alice_);
  ASSERT_GT(job, 0u);
  harness_->Deliver("node7.0", FakeWorker::WorkRequest(), node8_);
  auto got = harness_->Take("node7.0");
  ASSERT_FALSE(got.empty());
  EXPECT_TRUE(Denied(Read(got.back()))) << Read(got.back()).text;
  EXPECT_EQ(Status(job).segments_running, 0u);
  // With its own key the worker gets its task.
  harness_->Deliver("node7.0", FakeWorker::WorkRequest(), node7_);
  EXPECT_EQ(Status(job).segments_running, 1u);
  // The denied Hello changed nothing: node7.0 is still node7's, as `segue workers` shows.
  harness_->Deliver("node7.0", FakeWorker::Heartbeat(), node7_);
  EXPECT_EQ(Read(harness_->Take("node7.0").back()).kind, wire::Envelope::HEARTBEAT);
}

TEST_F(RolesTest, TheKeysFileIsReadAgainWhenItChanges) {
  EXPECT_TRUE(Denied(Call(SubmitMessage(TestManifest("job", 16, 16, 4)), grafana_)));
  WriteKeys("submitter");
  harness_->Tick();
  EXPECT_GT(Submit(grafana_), 0u);
  // A broken file keeps the keys that were in force, and says so in the metrics.
  WriteFile(options_.keys_file, "identities: [{name: x, role: emperor}]\n");
  harness_->Tick();
  EXPECT_GT(Submit(grafana_), 0u);
  EXPECT_NE(Metrics().find("segue_keys_reload_failures_total 1\n"), std::string::npos);
  // A key taken out of the file loses its open connection's rights at once.
  WriteFile(options_.keys_file,
            "identities:\n  - {name: ops, role: admin, key: \"" + ops_ + "\"}\n");
  harness_->Tick();
  EXPECT_TRUE(Denied(Call(ListJobs(), grafana_)));
  EXPECT_FALSE(harness_->core().Admits(grafana_));
  EXPECT_NE(Metrics().find("segue_identities 2\n"), std::string::npos);
}

TEST(RolesWithoutKeysTest, EveryPeerIsTheLocalAdmin) {
  TempDir dir;
  FaultEnv env;
  CoreHarness harness(&env, TestOptions(dir.path()));
  ASSERT_TRUE(harness.ok()) << harness.error();
  EXPECT_FALSE(harness.core().checks_keys());
  const uint64_t job = harness.Submit(TestManifest("job", 16, 16, 4));
  ASSERT_GT(job, 0u);
  EXPECT_EQ(harness.Status(job).owner, "local");
  EXPECT_EQ(Read(harness.Call(Drain("nobody"), "")).code,
            static_cast<uint32_t>(wire::ErrorCode::NOT_FOUND));
}

}  // namespace
}  // namespace segue
