#include "tests/support/core_harness.h"

#include <capnp/message.h>

#include "common/protocol/protocol.h"

namespace segue {

CoordinatorOptions TestOptions(const std::string& dir) {
  CoordinatorOptions o;
  o.state_dir = dir + "/state";
  o.output_root = dir + "/root";
  o.liveness_ms = 10000;
  o.sync_interval_us = 0;
  o.chunk_frames = 8;
  o.checkpoint_steps = 0;
  o.checkpoint_seconds = 0;
  return o;
}

std::string TestManifest(const std::string& name, int frames, int length, int overlap,
                         const std::string& strategy, const std::string& extra) {
  return extra + "version: 1\nname: " + name +
         "\nvideo: {width: 64, height: 32, fps: 12, frames: " + std::to_string(frames) +
         "}\nmodel: {name: zoom, steps: 4}\nsegments: {length: " + std::to_string(length) +
         ", overlap: " + std::to_string(overlap) + ", strategy: " + strategy +
         "}\nseed: 7\ntimeline: [{at: 0, prompt: hello}]\n" + "output: {path: out/" + name +
         ", codec: png, overwrite: true}\n";
}

std::string SubmitMessage(const std::string& manifest_text, const std::string& name) {
  capnp::MallocMessageBuilder b;
  auto s = b.initRoot<wire::Envelope>().initSubmit();
  s.setManifestText(manifest_text);
  s.setManifestName(name);
  return Serialize(b);
}

std::string PickMessage(uint64_t job, uint32_t section, uint32_t take) {
  capnp::MallocMessageBuilder b;
  auto p = b.initRoot<wire::Envelope>().initPickRequest();
  p.setJobId(job);
  auto choice = p.initPicks(1)[0];
  choice.setSection(section);
  choice.setTake(take);
  return Serialize(b);
}

CoreHarness::CoreHarness(FaultEnv* env, const CoordinatorOptions& options) : env_(env) {
  auto core = Core::Open(options, env, this, Syncer::Mode::kOnDemand);
  if (!core.ok()) {
    error_ = core.message();
    return;
  }
  core_ = std::move(*core);
  core_->BeginTurn();
  core_->EndTurn();  // what the loop does first: restored assemblies, a scheduling pass
}

CoreHarness::~CoreHarness() = default;

void CoreHarness::Send(const std::string& identity, std::string payload, bool) {
  if (env_->crashed()) return;  // a dead coordinator says nothing
  inbox_[identity].push_back(std::move(payload));
}

void CoreHarness::Deliver(const std::string& identity, const std::string& bytes,
                          const std::string& key) {
  core_->BeginTurn();
  core_->Receive(identity, key, bytes.data(), bytes.size(), false);
  core_->EndTurn();
}

void CoreHarness::Tick() {
  core_->BeginTurn();
  core_->Tick();
  core_->EndTurn();
}

void CoreHarness::Sync() { core_->Sync(); }

std::vector<std::string> CoreHarness::Take(const std::string& identity) {
  std::vector<std::string> out;
  out.swap(inbox_[identity]);
  return out;
}

std::string CoreHarness::Call(const std::string& bytes, const std::string& key) {
  const std::string client = "client";
  Deliver(client, bytes, key);
  Sync();
  auto replies = Take(client);
  return replies.empty() ? "" : replies.back();
}

uint64_t CoreHarness::Submit(const std::string& manifest_text, std::string* why) {
  const std::string reply = Call(SubmitMessage(manifest_text));
  auto in = Incoming::Parse(reply.data(), reply.size());
  if (!in.ok()) {
    if (why) *why = "no reply";
    return 0;
  }
  auto env = (*in)->envelope();
  if (env.isSubmitReply()) return env.getSubmitReply().getJobId();
  if (why && env.isError()) *why = env.getError().getMessage().cStr();
  return 0;
}

JobInfo CoreHarness::Status(uint64_t job, const std::string& key) {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initStatusRequest().setJobId(job);
  const std::string reply = Call(Serialize(b), key);
  auto in = Incoming::Parse(reply.data(), reply.size());
  if (!in.ok() || !(*in)->envelope().isJobStatus()) return JobInfo{};
  return FromWire((*in)->envelope().getJobStatus());
}

}  // namespace segue
