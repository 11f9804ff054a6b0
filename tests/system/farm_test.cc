// The farm under faults and admin commands, with real processes and signals: workers killed
// and stopped, the coordinator killed and restarted, bad bytes on the wire, cancel, retry,
// priority, drain, logs.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/protocol/protocol.h"
#include "tests/support/fake_worker.h"
#include "tests/support/test_util.h"
#include "tools/cli/client.h"

namespace segue {
namespace {

using namespace std::chrono_literals;

// 4 s at 512x288: 96 frames in 5 segments, long enough to interfere with.
// `extra`: more top-level YAML. `steps`: more make each segment last longer, for tests that
// must catch a worker in the middle of one.
std::string WriteJob(const TempDir& dir, const std::string& name = "job",
                     const std::string& extra = "", int steps = 60) {
  std::string path = dir / (name + ".yaml");
  std::ofstream(path) << extra << "version: 1\nname: " << name
                      << "\nvideo: {width: 512, height: 288, fps: 24, duration: 4s}\nmodel: {name: "
                         "zoom, steps: "
                      << steps << "}\n"
                      << "segments: {length: 24, overlap: 6}\nseed: 3\ntimeline: [{at: 0s, prompt: "
                         "\"golden hour\"}]\n"
                      << "output: {path: out/" << name << ".mp4}\n";
  return path;
}

uint64_t Submit(const LocalFarm& farm, const std::string& manifest) {
  std::string out;
  EXPECT_EQ(
      RunCommand(Cli("submit '" + manifest + "' --coordinator " + farm.endpoint()), &out, true), 0)
      << out;
  return std::stoull(SubmittedJobId(out));
}

JobInfo WaitFor(const LocalFarm& farm, uint64_t job,
                const std::function<bool(const JobInfo&)>& done, int seconds = 120) {
  Client client(farm.endpoint(), 2000);
  JobInfo last;
  for (int i = 0; i < seconds * 20; ++i) {
    auto st = client.Status(job);
    if (st.ok()) {
      last = *st;
      if (done(last)) return last;
    }
    std::this_thread::sleep_for(50ms);
  }
  ADD_FAILURE() << "job " << job << " stuck in " << last.state;
  return last;
}

bool Finished(const JobInfo& j) { return j.Finished(); }

// The job's final latents equal those of the same manifest rendered without faults (the farm's
// coordinator is stopped to read its store).
void ExpectSameAsFaultFree(LocalFarm& farm, const TempDir& dir, const std::string& manifest) {
  std::string out;
  EXPECT_EQ(RunCommand(Cli("render '" + manifest + "' --output '" + dir / "reference.mp4" +
                           "' --state-dir '" + dir / "ref" + "' --preset veryfast"),
                       &out, true),
            0)
      << out;
  auto reference = StoredLatents(dir / "ref/store", 1);
  EXPECT_EQ(reference.size(), 5u);
  farm.coordinator().Stop();
  EXPECT_TRUE(StoredLatents(dir / "farm/state", 1) == reference);
}

std::string CoordinatorLog(const TempDir& dir) {
  std::ifstream log(dir / "farm/coordinator.log");
  return std::string((std::istreambuf_iterator<char>(log)), {});
}

const std::vector<std::string> kFast = {"--heartbeat-ms", "200", "--liveness-ms", "1500"};

TEST(Farm, KilledWorkerCostsAtMostOneCheckpointInterval) {
  TempDir dir;
  // Segments of 300 steps: w0 must still be in the segment it checkpointed when it is killed
  // (at 60, a segment's steps after its first checkpoint took 0.1 s here, less than polling).
  std::string m = WriteJob(dir, "job", "", 300);
  std::vector<std::string> args = kFast;
  args.insert(args.end(), {"--checkpoint-steps", "10"});
  LocalFarm farm(dir / "farm", 2, args);
  ASSERT_TRUE(farm.ok());
  uint64_t job = Submit(farm, m);
  const std::string logs_cmd =
      Cli("logs " + std::to_string(job) + " --coordinator " + farm.endpoint());
  // Kill w0 once it has checkpointed its segment at least once.
  std::string logs;
  for (int i = 0; i < 400 && logs.find("from w0") == std::string::npos; ++i) {
    RunCommand(logs_cmd, &logs);
    if (logs.find("from w0") == std::string::npos) std::this_thread::sleep_for(25ms);
  }
  ASSERT_NE(logs.find("from w0"), std::string::npos) << logs;
  farm.workers()[0].Signal(SIGKILL);  // mid-segment
  JobInfo done = WaitFor(farm, job, Finished);
  ASSERT_EQ(done.state, "DONE") << done.error;
  EXPECT_EQ(Probe(done.output).frames, 96);
  // From the event log: the segment w0 held resumes at w0's newest checkpoint.
  RunCommand(logs_cmd, &logs);
  const size_t dead = logs.find(" requeued: worker presumed dead (w0)");
  ASSERT_NE(dead, std::string::npos) << logs;
  const size_t seg_at = logs.rfind("segment ", dead);
  const int segment = std::stoi(logs.substr(seg_at + 8));
  int last_checkpoint = 0, resumed = -1;
  std::istringstream lines(logs);
  for (std::string line; std::getline(lines, line);) {
    const std::string prefix = "segment " + std::to_string(segment) + " ";
    size_t at = line.find(prefix + "checkpoint at step ");
    if (at != std::string::npos && line.find("from w0") != std::string::npos) {
      last_checkpoint = std::max(last_checkpoint, std::stoi(line.substr(at + prefix.size() + 19)));
    }
    at = line.find(prefix + "resumes at step ");
    if (at != std::string::npos) resumed = std::stoi(line.substr(at + prefix.size() + 16));
  }
  EXPECT_GE(last_checkpoint, 10);
  EXPECT_EQ(resumed, last_checkpoint) << logs;
  ExpectSameAsFaultFree(farm, dir, m);  // resuming changes no bit
}

// Co-denoising gangs checkpoint together: a checkpoint step counts once every segment has one,
// and a gang that loses a member restarts from it, on the workers left. With the multistep
// unipc sampler, whose checkpoints carry its history, the resumed gang changes no bit either.
TEST(Farm, KilledGangMemberResumesTheGangFromItsCheckpoint) {
  TempDir dir;
  // The manifest's checkpoint interval overrides the coordinator's (which is off here).
  std::string m = WriteJob(dir, "job",
                           "segments: {length: 24, overlap: 6, strategy: codenoise}\n"
                           "checkpoint: {steps: 10}\n");
  {  // WriteJob's own segments line would repeat the key: drop it.
    std::ifstream in(m);
    std::string text((std::istreambuf_iterator<char>(in)), {}),
        own = "segments: {length: 24, overlap: 6}\n";
    text.erase(text.find(own), own.size());
    text.replace(text.find("steps: 60}"), 10, "steps: 60, sampler: unipc}");
    std::ofstream(m) << text;
  }
  std::vector<std::string> args = kFast;
  args.insert(args.end(), {"--checkpoint-steps", "0", "--checkpoint-seconds", "0"});
  LocalFarm farm(dir / "farm", 2, args);
  ASSERT_TRUE(farm.ok());
  ASSERT_TRUE(farm.WaitForWorkers());  // both in before the gang forms
  uint64_t job = Submit(farm, m);
  const std::string logs_cmd =
      Cli("logs " + std::to_string(job) + " --coordinator " + farm.endpoint());
  std::string logs;
  for (int i = 0; i < 400 && logs.find("co-denoising checkpoint at step") == std::string::npos;
       ++i) {
    RunCommand(logs_cmd, &logs);
    std::this_thread::sleep_for(25ms);
  }
  ASSERT_NE(logs.find("co-denoising checkpoint at step"), std::string::npos) << logs;
  ASSERT_NE(logs.find("co-denoising on 2 worker(s)"), std::string::npos) << logs;
  farm.workers()[0].Signal(SIGKILL);  // mid-gang
  JobInfo done = WaitFor(farm, job, Finished);
  ASSERT_EQ(done.state, "DONE") << done.error;
  EXPECT_EQ(Probe(done.output).frames, 96);
  // The new gang resumed at the newest step every segment had a checkpoint of before the kill.
  RunCommand(logs_cmd, &logs);
  const size_t dead = logs.find("worker presumed dead (w0)");
  ASSERT_NE(dead, std::string::npos) << logs;
  int last_before = 0, resumed = -1;
  std::istringstream lines(logs);
  size_t pos = 0;
  for (std::string line; std::getline(lines, line); pos += line.size() + 1) {
    size_t at = line.find("co-denoising checkpoint at step ");
    if (at != std::string::npos && pos < dead) last_before = std::stoi(line.substr(at + 32));
    at = line.find("co-denoising resumes at step ");
    if (at != std::string::npos) resumed = std::stoi(line.substr(at + 29));
  }
  EXPECT_GE(last_before, 10);
  EXPECT_EQ(last_before % 10, 0);  // the manifest's interval
  EXPECT_EQ(resumed, last_before) << logs;
  EXPECT_NE(logs.find("co-denoising on 1 worker(s)"), std::string::npos) << logs;
  ExpectSameAsFaultFree(farm, dir, m);  // resuming a gang changes no bit
}

// Encode tasks are tasks like any other: one whose worker dies mid-encode goes back to the queue
// and another worker encodes the chunk.
TEST(Farm, KilledEncodeIsRetriedElsewhere) {
  TempDir dir;
  std::string m = WriteJob(dir);
  std::vector<std::string> args = kFast;
  args.insert(args.end(), {"--encoder-preset", "slower"});  // encodes long enough to catch
  LocalFarm farm(dir / "farm", 2, args);
  ASSERT_TRUE(farm.ok());
  uint64_t job = Submit(farm, m);
  Client client(farm.endpoint(), 2000);
  std::string victim;
  for (int i = 0; i < 4000 && victim.empty(); ++i) {
    auto ws = client.Workers();
    for (const auto& w : ws.ok() ? *ws : std::vector<WorkerInfo>{}) {
      if (w.task.find("chunk") != std::string::npos) victim = w.name;
    }
    if (victim.empty()) std::this_thread::sleep_for(10ms);
  }
  ASSERT_FALSE(victim.empty()) << "no worker was seen encoding";
  farm.workers()[victim == "w0" ? 0 : 1].Signal(SIGKILL);
  JobInfo done = WaitFor(farm, job, Finished);
  ASSERT_EQ(done.state, "DONE") << done.error;
  EXPECT_EQ(Probe(done.output).frames, 96);
  std::string logs;
  RunCommand(Cli("logs " + std::to_string(job) + " --coordinator " + farm.endpoint()), &logs);
  EXPECT_NE(logs.find("requeued: worker presumed dead (" + victim + ")"), std::string::npos)
      << logs;
  const std::string survivor = victim == "w0" ? "w1" : "w0";
  EXPECT_NE(logs.find("chunk 0 encoded by " + survivor), std::string::npos) << logs;
}

TEST(Farm, CoordinatorKilledAndRestartedResumes) {
  TempDir dir;
  std::string m = WriteJob(dir);
  LocalFarm farm(dir / "farm", 2, kFast);
  ASSERT_TRUE(farm.ok());
  uint64_t job = Submit(farm, m);
  WaitFor(farm, job, [](const JobInfo& j) { return j.segments_done >= 1; });
  ASSERT_TRUE(farm.RestartCoordinator());
  JobInfo done = WaitFor(farm, job, Finished);  // workers reconnect by themselves
  ASSERT_EQ(done.state, "DONE") << done.error;
  ExpectSameAsFaultFree(farm, dir, m);
}

TEST(Farm, StoppedWorkerIsFencedOffWhenItWakes) {
  TempDir dir;
  std::string m = WriteJob(dir, "job", "", 300);  // stopped mid-segment, not between two
  LocalFarm farm(dir / "farm", 2, kFast);
  ASSERT_TRUE(farm.ok());
  uint64_t job = Submit(farm, m);
  WaitFor(farm, job, [](const JobInfo& j) { return j.segments_running == 2; });
  farm.workers()[0].Signal(SIGSTOP);
  std::this_thread::sleep_for(2500ms);  // past the liveness window: its segment is requeued
  farm.workers()[0].Signal(SIGCONT);
  JobInfo done = WaitFor(farm, job, Finished);
  ASSERT_EQ(done.state, "DONE") << done.error;
  // The woken worker finishes its stale segment (slower when the machine is busy).
  std::string text;
  for (int i = 0; i < 150; ++i) {
    text = CoordinatorLog(dir);
    if (text.find("fenced off a stale result") != std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_NE(text.find("fenced off a stale result"), std::string::npos) << text;
  ExpectSameAsFaultFree(farm, dir, m);
}

TEST(Farm, CancelRetryPriorityDrainAndLogs) {
  TempDir dir;
  std::string m = WriteJob(dir);
  LocalFarm farm(dir / "farm", 2, kFast);
  ASSERT_TRUE(farm.ok());
  const std::string at = " --coordinator " + farm.endpoint();
  uint64_t job = Submit(farm, m);
  const std::string id = std::to_string(job);
  std::string out;
  ASSERT_EQ(RunCommand(Cli("priority " + id + " 90" + at), &out, true), 0) << out;
  WaitFor(farm, job, [](const JobInfo& j) { return j.segments_running > 0; });
  ASSERT_EQ(RunCommand(Cli("cancel " + id + at), &out, true), 0) << out;
  Client client(farm.endpoint());
  EXPECT_EQ(client.Status(job)->state, "CANCELLED");
  EXPECT_EQ(client.Status(job)->priority, 90);
  // The workers are free within a step.
  bool idle = false;
  for (int i = 0; i < 40 && !idle; ++i) {
    auto ws = client.Workers();
    idle =
        ws.ok() && ws->size() == 2 &&
        std::all_of(ws->begin(), ws->end(), [](const WorkerInfo& w) { return w.state == "idle"; });
    if (!idle) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(idle);
  // Cancelling again changes nothing and is not an error (a pipeline may cancel twice).
  EXPECT_EQ(RunCommand(Cli("cancel " + id + at), &out, true), 0) << out;
  EXPECT_NE(out.find("CANCELLED"), std::string::npos) << out;
  ASSERT_EQ(RunCommand(Cli("retry " + id + at), &out, true), 0) << out;
  // Drain one worker: it leaves, the other finishes the job.
  ASSERT_EQ(RunCommand(Cli("drain w0" + at), &out, true), 0) << out;
  EXPECT_EQ(farm.workers()[0].Wait(60000), 0);
  JobInfo done = WaitFor(farm, job, Finished);
  ASSERT_EQ(done.state, "DONE") << done.error;
  EXPECT_EQ(Probe(done.output).frames, 96);
  ASSERT_EQ(RunCommand(Cli("logs " + id + at), &out, true), 0);
  EXPECT_NE(out.find("submitted"), std::string::npos) << out;
  EXPECT_NE(out.find("job CANCELLED"), std::string::npos) << out;
  EXPECT_NE(out.find("priority set to 90"), std::string::npos) << out;
  ASSERT_EQ(RunCommand(Cli("logs " + id + " --segment 0" + at), &out, true), 0);
  EXPECT_NE(out.find("segment 0 done"), std::string::npos) << out;
  EXPECT_EQ(out.find("segment 1 "), std::string::npos) << out;
  EXPECT_EQ(RunCommand(Cli("drain nobody" + at), &out, true), 2);
}

TEST(Farm, RequirementsMatchWorkers) {
  TempDir dir;
  std::string m = WriteJob(dir);
  std::ofstream(m, std::ios::app) << "requirements: {device: cpu, memory: 1GiB, tags: [big]}\n";
  LocalFarm farm(dir / "farm", 1, kFast);  // an untagged worker
  ASSERT_TRUE(farm.ok());
  uint64_t job = Submit(farm, m);
  std::this_thread::sleep_for(1500ms);
  Client client(farm.endpoint());
  EXPECT_EQ(client.Status(job)->state, "QUEUED");  // no worker meets the requirements yet
  auto big = ChildProcess::Spawn({BinDir() + "/segue-worker", "--coordinator", farm.endpoint(),
                                  "--name", "big", "--tags", "big,fast", "--memory", "2GiB"},
                                 dir / "big.log");
  ASSERT_TRUE(big.ok());
  JobInfo done = WaitFor(farm, job, Finished);
  ASSERT_EQ(done.state, "DONE") << done.error;
  auto logs = client.Logs(job);
  ASSERT_TRUE(logs.ok());
  int by_big = 0, by_other = 0;
  for (const auto& l : *logs) {
    if (l.find(" done by ") == std::string::npos) continue;
    (l.find(" done by big ") != std::string::npos ? by_big : by_other)++;
  }
  EXPECT_EQ(by_big, 5);
  EXPECT_EQ(by_other, 0);
  big->Stop();
}

TEST(Farm, BadBytesOnTheWireAreDroppedAndCounted) {
  TempDir dir;
  LocalFarm farm(dir / "farm", 0);
  ASSERT_TRUE(farm.ok());
  Client client(farm.endpoint(), 3000);
  // Random bytes, truncated and oversized Cap'n Proto, an unknown message type.
  std::string noise(256, '\0');
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<char>((i * 7919 + 13) & 0xff);
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initSubmit().setManifestText(std::string(200, 'x'));
  std::string good = Serialize(b);
  capnp::MallocMessageBuilder u;
  u.initRoot<wire::Envelope>().initWelcome();  // a type the coordinator never receives
  for (const std::string& bad :
       {noise, good.substr(0, good.size() - 16), good + std::string(24, '\x7f'), Serialize(u)}) {
    auto reply = client.CallRaw(bad);
    ASSERT_TRUE(reply.ok()) << reply.message();
    auto in = Incoming::Parse(reply->data(), reply->size());
    ASSERT_TRUE(in.ok());
    EXPECT_TRUE((*in)->envelope().isError());
  }
  // A client pretending to be a worker with a stale attempt: fenced, no effect.
  FakeAssignment stale;
  stale.job = 1;
  stale.attempt = 99;
  client.CallRaw(FakeWorker::RenderResult(stale, Tensor{}));  // no answer is expected
  // Still serving.
  auto jobs = Client(farm.endpoint()).Jobs();
  EXPECT_TRUE(jobs.ok()) << jobs.message();
  EXPECT_TRUE(farm.coordinator().Running());
  const std::string text = CoordinatorLog(dir);
  EXPECT_NE(text.find("dropped a bad message"), std::string::npos);
  EXPECT_NE(text.find("fenced off a stale result"), std::string::npos);
}

// One Submit with a 400-digit time used to abort the coordinator (std::out_of_range from stod),
// and 60,000 digits overflowed its stack inside std::regex: both are refused, naming the field,
// and the coordinator serves on.
TEST(Farm, HugeNumbersInASubmittedManifestAreRefusedAndTheCoordinatorServesOn) {
  TempDir dir;
  LocalFarm farm(dir / "farm", 0);
  ASSERT_TRUE(farm.ok());
  Client client(farm.endpoint(), 5000);
  for (const std::string& at :
       {std::string(400, '7') + "s", std::string(60000, '7'), std::string(400, '7') + ":00:00"}) {
    SubmitRequest r;
    r.manifest_name = "huge.yaml";
    r.manifest_text =
        "version: 1\nvideo: {width: 64, height: 64, fps: 24, frames: 48}\n"
        "model: {name: zoom, steps: 2}\n"
        "timeline: [{at: 0, prompt: a}, {at: " +
        at +
        ", prompt: b}]\n"
        "output: {path: out/huge.mp4}\n";
    auto submitted = client.Submit(r);
    ASSERT_FALSE(submitted.ok());
    EXPECT_NE(submitted.message().find("huge.yaml:4:"), std::string::npos) << submitted.message();
    EXPECT_NE(submitted.message().find("timeline[1].at"), std::string::npos);
  }
  EXPECT_TRUE(farm.coordinator().Running());
  EXPECT_TRUE(client.Jobs().ok());
}

// The output path is checked again at assembly: a symlink made under the output root after
// submit (here: the job's folder, pointing outside the root) fails the job, and nothing is
// written where the link points. A retry then assembles it.
TEST(Farm, ASymlinkMadeAfterSubmitDoesNotCarryTheOutputOutsideTheRoot) {
  TempDir dir;
  LocalFarm farm(dir / "farm", 0);
  ASSERT_TRUE(farm.ok());
  std::ofstream(dir / "job.yaml") << "version: 1\nvideo: {width: 64, height: 64, fps: 24, "
                                     "frames: 16}\nmodel: {name: zoom, steps: 2}\n"
                                     "timeline: [{at: 0, prompt: a}]\n"
                                     "output: {path: out/sub/v.mp4}\n";
  const uint64_t job = Submit(farm, dir / "job.yaml");
  std::filesystem::create_directories(dir / "elsewhere");
  std::filesystem::create_directories(dir / "farm/root/out");
  std::filesystem::create_directory_symlink(dir / "elsewhere", dir / "farm/root/out/sub");
  auto worker = ChildProcess::Spawn(
      {BinDir() + "/segue-worker", "--coordinator", farm.endpoint(), "--name", "late"},
      dir / "worker.log");
  ASSERT_TRUE(worker.ok());
  JobInfo done = WaitFor(farm, job, Finished);
  EXPECT_EQ(done.state, "FAILED");
  EXPECT_NE(done.error.find("outside the output root or elsewhere than at submit"),
            std::string::npos)
      << done.error;
  // `segue status` of a FAILED job exits 3 (README.md, Exit codes).
  EXPECT_EQ(RunCommand(Cli("status " + std::to_string(job) + " --coordinator " + farm.endpoint())),
            3);
  EXPECT_TRUE(std::filesystem::is_empty(dir / "elsewhere"));
  // Every chunk is done, so a retry has nothing to render: it assembles again, now into the
  // root (a retry of a job that failed at assembly used to wait forever).
  std::filesystem::remove(dir / "farm/root/out/sub");
  std::string out;
  ASSERT_EQ(RunCommand(Cli("retry " + std::to_string(job) + " --coordinator " + farm.endpoint()),
                       &out, true),
            0)
      << out;
  JobInfo again = WaitFor(farm, job, Finished);
  EXPECT_EQ(again.state, "DONE") << again.error;
  EXPECT_EQ(Probe(dir / "farm/root/out/sub/v.mp4").frames, 16);
  worker->Stop(2000);
}

}  // namespace
}  // namespace segue
