// Model hosts (docs/MODELS.md, "Model hosts"): PyTorch models served out of process. The
// worker's runtime with real host processes that behave and misbehave (tests/support/hosts), and
// tinywan, a network with Wan 2.1's shape, rendered through real farms.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "common/model/runtime.h"
#include "tests/support/test_util.h"
#include "tools/cli/client.h"
#include "worker/host_entry.h"
#include "worker/host_model.h"
#include "worker/worker.h"

namespace segue {
namespace {

using namespace std::chrono_literals;

std::string HostPath() { return SourceDir() + "/worker/host"; }

// DIR/NAME.host.yaml running tests/support/hosts/test_host.py MODE, with `extra` YAML lines.
void WriteTestHost(const std::string& dir, const std::string& name, const std::string& mode,
                   const std::string& extra = "") {
  std::ofstream(dir + "/" + name + ".host.yaml")
      << "command: [/usr/bin/python3, " << SourceDir() << "/tests/support/hosts/test_host.py, "
      << mode << "]\nenvironment: {PYTHONPATH: " << HostPath() << "}\n"
      << extra;
}

void WriteTinyWan(const std::string& dir) {
  std::ofstream(dir + "/tinywan.host.yaml")
      << "command: [/usr/bin/python3, -m, segue_host, --adapter, tinywan]\n"
      << "environment: {PYTHONPATH: " << HostPath() << "}\n";
}

model::SegmentRequest Request(const std::string& name) {
  model::SegmentRequest r;
  r.model = name;
  r.width = 32, r.height = 16, r.steps = 3, r.fps = 24, r.latent_count = 6;
  r.latent_start = 10;
  r.prompts = {"abc", "abcd"};
  r.frames = {{0, 0, 0.f}, {0, 1, 0.5f}, {1, 1, 0.f}, {1, 1, 0.f}, {1, 1, 0.f}, {1, 1, 0.f}};
  return r;
}

std::unique_ptr<model::Runtime> HostRuntime(const TempDir& dir) {
  model::RuntimeOptions o;
  o.models_dir = dir / "models";
  o.sources.push_back(HostModelSource(o.models_dir, "cpu", dir / "run"));
  auto rt = model::Runtime::Create(o);
  EXPECT_TRUE(rt.ok()) << rt.message();
  return std::move(*rt);
}

void ExpectFailure(model::Runtime& rt, const std::string& model,
                   const std::vector<std::string>& parts) {
  auto r = rt.Render(Request(model));
  ASSERT_FALSE(r.ok()) << model << " rendered";
  for (const auto& p : parts)
    EXPECT_NE(r.message().find(p), std::string::npos) << "'" << p << "' not in: " << r.message();
}

TEST(Host, AHostServesTheContractAndAnswersInHalves) {
  TempDir dir;
  std::filesystem::create_directories(dir / "models");
  WriteTestHost(dir / "models", "good", "good");
  auto rt = HostRuntime(dir);
  auto models = rt->Models();
  EXPECT_NE(std::find(models.begin(), models.end(), "good"), models.end());
  auto meta = rt->Metadata("good");  // the hello
  ASSERT_TRUE(meta.ok()) << meta.message();
  EXPECT_EQ(meta->native_frames, std::vector<int>{16});
  // Its adapter names no identity: the farm does not know its weights (and reuses nothing).
  EXPECT_EQ(meta->identity, "");
  auto x = rt->Render(Request("good"));
  ASSERT_TRUE(x.ok()) << x.message();
  // x0 = 0.1 x (the weighted bank: prompts of 3 and 4 characters encode as 3 and 4) + 0.01 x
  // (global latent frame), sent back in float16: frame 1 mixes the two prompts half and half.
  auto at = [&](int t) { return x->data[static_cast<size_t>(t * 2 * 4)]; };
  EXPECT_NEAR(at(0), 0.3f + 0.10f, 1e-3);
  EXPECT_NEAR(at(1), 0.35f + 0.11f, 1e-3);
  EXPECT_NEAR(at(5), 0.4f + 0.15f, 1e-3);
  auto rgb = rt->DecodeRgb("good", *x, 32, 16);
  ASSERT_TRUE(rgb.ok()) << rgb.message();
  EXPECT_EQ(rgb->size(), 6u * 32 * 16 * 3);
  EXPECT_EQ(rt->prompt_encodings(), 2u);
}

// Every way a host can fail fails the call with the model's name and the end of the host's
// stderr; the worker's runtime goes on serving its other models, and starts a failed host again.
TEST(Host, MisbehavingHostsFailTheirCallAndTheRuntimeGoesOn) {
  TempDir dir;
  std::filesystem::create_directories(dir / "models");
  WriteTestHost(dir / "models", "good", "good");
  WriteTestHost(dir / "models", "crash", "crash");
  WriteTestHost(dir / "models", "hang", "hang", "call_timeout_seconds: 2\n");
  WriteTestHost(dir / "models", "garbage", "garbage");
  WriteTestHost(dir / "models", "shape", "wrong-shape");
  WriteTestHost(dir / "models", "refuses", "error");
  WriteTestHost(dir / "models", "silent", "silent", "start_timeout_seconds: 1\nmax_starts: 2\n");
  WriteTestHost(dir / "models", "dead", "never-starts", "max_starts: 2\n");
  std::ofstream(dir / "models/typo.host.yaml") << "command: [/usr/bin/python3]\ncomand: x\n";
  auto rt = HostRuntime(dir);
  ExpectFailure(*rt, "crash",
                {"model 'crash' (host ", "exited (status 3) during denoise",
                 "the host's stderr ends:", "CUDA out of memory (crash)"});
  ExpectFailure(*rt, "crash", {"exited (status 3)"});  // started again, and crashed again
  ExpectFailure(*rt, "hang", {"denoise got no answer in 2 s", "stuck in denoise (hang)"});
  ExpectFailure(*rt, "garbage", {"model 'garbage'", "no JSON header", "answering garbage"});
  ExpectFailure(*rt, "shape",
                {"denoise answered shape [1, 4, 1, 2, 4] for latents of shape [1, 4, 6, 2, 4]"});
  ExpectFailure(*rt, "refuses", {"denoise failed: ValueError: the test host refuses"});
  ExpectFailure(*rt, "silent", {"hello got no answer in 1 s"});
  ExpectFailure(*rt, "dead", {"exited (status 1) during hello", "cannot load the model weights"});
  ExpectFailure(*rt, "typo", {"typo.host.yaml:2:1: comand: unknown field"});
  EXPECT_TRUE(rt->Render(Request("good")).ok());  // the runtime serves on
  // Hosts that did not start max_starts times in a row are unavailable, with the reason.
  std::map<std::string, std::string> unavailable;
  for (const auto& [m, why] : rt->UnavailableModels()) unavailable[m] = why;
  EXPECT_EQ(unavailable.size(), 3u);
  EXPECT_NE(unavailable["dead"].find("its host failed to start 2 times"), std::string::npos)
      << unavailable["dead"];
  EXPECT_NE(unavailable["silent"].find("hello got no answer"), std::string::npos);
  EXPECT_NE(unavailable["typo"].find("unknown field"), std::string::npos);
  ExpectFailure(*rt, "dead", {"model 'dead' is unavailable on this worker"});
}

// A model whose host stops starting is reported by its worker, shown by `segue workers`, and
// gets no more tasks there: its job waits for a worker that serves it instead of burning its
// attempts.
TEST(Host, AnUnavailableModelIsReportedAndItsJobWaits) {
  TempDir dir;
  std::filesystem::create_directories(dir / "models");
  // Starts once (the worker learns its metadata when it joins), crashes in its first denoise,
  // and never starts again.
  WriteTestHost(dir / "models", "once", "once", "max_starts: 2\n");
  LocalFarm farm(dir / "farm", 1, {"--heartbeat-ms", "200", "--liveness-ms", "5000"},
                 {"--models", dir / "models"});
  ASSERT_TRUE(farm.ok());
  ASSERT_TRUE(farm.WaitForWorkers());
  std::ofstream(dir / "job.yaml")
      << "version: 1\nvideo: {width: 32, height: 16, fps: 24, frames: 16}\n"
      << "model: {name: once, steps: 2}\ntimeline: [{at: 0, prompt: hello}]\n"
      << "output: {path: out/once.mp4}\n";
  const std::string at = " --coordinator " + farm.endpoint();
  std::string out;
  ASSERT_EQ(RunCommand(Cli("submit '" + dir / "job.yaml" + "'" + at), &out, true), 0) << out;
  const std::string id = SubmittedJobId(out);
  for (int i = 0; i < 200; ++i) {
    RunCommand(Cli("workers" + at), &out, true);
    if (out.find("model once unavailable") != std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_NE(out.find("model once unavailable: its host failed to start 2 times"), std::string::npos)
      << out;
  std::this_thread::sleep_for(1s);
  ASSERT_EQ(RunCommand(Cli("status " + id + at), &out, true), 0) << out;
  EXPECT_EQ(out.find("FAILED"), std::string::npos) << out;
  ASSERT_EQ(RunCommand(Cli("workers --json" + at), &out, true), 0) << out;
  EXPECT_NE(out.find("\"unavailable_models\""), std::string::npos) << out;
}

// An entry's devices say which of a worker's slots serve its model.
TEST(Host, AnEntrysDevicesPickTheSlotsThatServeIt) {
  auto gpu = ParseHostEntry("m/big.host.yaml", "command: [x]\ndevices: [cuda:1, cuda:3]\n");
  ASSERT_TRUE(gpu.ok()) << gpu.message();
  EXPECT_TRUE(HostEntryServes(*gpu, "cuda:3"));
  EXPECT_FALSE(HostEntryServes(*gpu, "cuda:0"));
  EXPECT_FALSE(HostEntryServes(*gpu, "cpu"));
  auto any_gpu = ParseHostEntry("m/wan.host.yaml", "command: [x]\ndevices: [cuda]\n");
  ASSERT_TRUE(any_gpu.ok());
  EXPECT_TRUE(HostEntryServes(*any_gpu, "cuda:7"));
  EXPECT_FALSE(HostEntryServes(*any_gpu, "cpu"));
  auto bad = ParseHostEntry("m/x.host.yaml", "command: [x]\ndevices: [cuda, gpu0]\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("m/x.host.yaml:2:17: devices[1]: 'gpu0' is not a device"),
            std::string::npos)
      << bad.message();
  TempDir dir;
  std::filesystem::create_directories(dir / "models");
  WriteTestHost(dir / "models", "everywhere", "good");
  WriteTestHost(dir / "models", "gpuonly", "good", "devices: [cuda]\n");
  auto on_cpu = HostModelSource(dir / "models", "cpu", dir / "run").names();
  EXPECT_EQ(on_cpu, std::vector<std::string>{"everywhere"});
  auto on_gpu = HostModelSource(dir / "models", "cuda:2", dir / "run2").names();
  EXPECT_EQ(on_gpu, (std::vector<std::string>{"everywhere", "gpuonly"}));
}

TEST(Host, DeviceListsNameOneSlotPerDevice) {
  auto four = ParseDeviceList("4");
  ASSERT_TRUE(four.ok()) << four.message();
  EXPECT_EQ(*four, (std::vector<std::string>{"cuda:0", "cuda:1", "cuda:2", "cuda:3"}));
  auto list = ParseDeviceList("cuda:1,cuda:3");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(*list, (std::vector<std::string>{"cuda:1", "cuda:3"}));
  EXPECT_EQ(ParseDeviceList("cpu,cpu")->size(), 2u);  // CPU slots share the cores
  EXPECT_EQ(ParseDeviceList("cpu")->size(), 1u);
  for (const std::string bad :
       {"", "0", "65", "99999999999", "gpu", "cuda:0,cuda:0", "cpu,", "cuda:0,,cuda:1"})
    EXPECT_FALSE(ParseDeviceList(bad).ok()) << "'" << bad << "'";
  EXPECT_NE(ParseDeviceList("cuda:0,cuda:0").message().find("'cuda:0' is named twice"),
            std::string::npos);
}

// A worker given several devices joins as one farm worker per device (NAME.0, NAME.1), starts a
// model host for each with that device, and both slots take tasks of one job.
TEST(Host, AWorkerWithSeveralDevicesRunsASlotAndAHostPerDevice) {
  TempDir dir;
  std::filesystem::create_directories(dir / "models");
  WriteTestHost(dir / "models", "good", "good");
  LocalFarm farm(dir / "farm", 1, {}, {"--device", "cpu,cpu", "--models", dir / "models"});
  ASSERT_TRUE(farm.ok());
  Client client(farm.endpoint(), 2000);
  std::vector<WorkerInfo> workers;
  for (int i = 0; i < 300 && workers.size() < 2; ++i) {
    auto ws = client.Workers();
    if (ws.ok()) workers = *ws;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(workers.size(), 2u);
  std::set<std::string> names;
  for (const auto& w : workers) names.insert(w.name + " " + w.device);
  EXPECT_EQ(names, (std::set<std::string>{"w0.0 cpu", "w0.1 cpu"}));
  std::ofstream(dir / "job.yaml")
      << "version: 1\nvideo: {width: 32, height: 16, fps: 24, frames: 48}\n"
      << "model: {name: good, steps: 3}\ntimeline: [{at: 0, prompt: hello}]\n"
      << "segments: {length: 8, overlap: 2, strategy: independent}\n"
      << "output: {path: out/slots.mp4}\n";
  std::string out;
  ASSERT_EQ(
      RunCommand(Cli("submit '" + dir / "job.yaml" + "' --wait --coordinator " + farm.endpoint()),
                 &out, true),
      0)
      << out;
  auto jobs = client.Jobs();
  ASSERT_TRUE(jobs.ok() && jobs->size() == 1u);
  EXPECT_EQ(jobs->front().state, "DONE") << jobs->front().error;
  EXPECT_EQ(Probe(jobs->front().output).frames, 48) << out;
  // One host per slot, each told its device.
  std::ifstream hellos(dir / "models/hellos.txt");
  std::set<std::string> starts;
  for (std::string line; std::getline(hellos, line);) starts.insert(line);
  ASSERT_EQ(starts.size(), 2u);
  for (const auto& s : starts) EXPECT_EQ(s.rfind("cpu ", 0), 0u) << s;
  auto ws = client.Workers();
  ASSERT_TRUE(ws.ok());
  for (const auto& w : *ws) EXPECT_GT(w.tasks_done, 0u) << w.name << " took no task";
  std::ifstream log(dir / "farm/worker-0.log");
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_NE(text.str().find("2 task slots, one per device"), std::string::npos) << text.str();
}

// tinywan through real farms: every strategy, frame-exact output, and the same latents with 1 or
// 2 workers.
TEST(Host, TinyWanRendersThroughTheFarmWithEveryStrategy) {
  TempDir dir;
  std::filesystem::create_directories(dir / "models");
  WriteTinyWan(dir / "models");
  for (const std::string strategy : {"codenoise", "independent", "chained"}) {
    std::vector<std::string> reference;
    for (int workers : {2, 1}) {
      const std::string name = strategy + std::to_string(workers);
      std::ofstream(dir / (name + ".yaml"))
          << "version: 1\nvideo: {width: 32, height: 32, fps: 16, frames: 61}\n"
          << "model: {name: tinywan, steps: 3, sampler: unipc, shift: 3, guidance: 2}\n"
          << "negative_prompt: blurry\n"
          << "segments: {length: 33, overlap: 8, strategy: " << strategy << "}\n"
          << "timeline: [{at: 0, prompt: two teenagers at a dance},\n"
          << "           {at: 2s, prompt: a long drive by the sea, transition: 1s}]\n"
          << "output: {path: out/" << name << ".mp4}\n";
      std::string out;
      ASSERT_EQ(RunCommand(Cli("render '" + dir / (name + ".yaml") + "' --workers " +
                               std::to_string(workers) + " --models '" + dir / "models" +
                               "' --chunk-frames 16 --preset veryfast --state-dir '" +
                               dir / ("state-" + name) + "'"),
                           &out, true),
                0)
          << out;
      EXPECT_EQ(Probe(dir / ("out/" + name + ".mp4")).frames, 61) << name;
      auto latents = StoredLatents(dir / ("state-" + name + "/store"), 1);
      EXPECT_EQ(latents.size(), 2u) << name;  // 16 latent frames: [0, 9) and [7, 16)
      if (reference.empty())
        reference = latents;
      else
        EXPECT_TRUE(latents == reference) << strategy << ": 1 worker differs from 2";
    }
  }
}

}  // namespace
}  // namespace segue
