// TorchScript models: a studio's own model, made here with libtorch's C++ API, served by the
// runtime and rendered through real processes; broken model files fail jobs, not workers.
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "common/model/runtime.h"
#include "common/util/digest.h"
#include "common/util/process.h"
#include "tests/support/test_util.h"
#include "tools/cli/client.h"

namespace segue {
namespace {

const char* kEncode = R"(
def encode_prompt(self, text: str) -> Tensor:
    return torch.ones([8]) * float(len(text) % 7)
)";
const char* kDenoise = R"(
def denoise(self, latents: Tensor, sigma: Tensor, cond: Tensor, frame_times: Tensor) -> Tensor:
    b = latents.size(0)
    t = latents.size(2)
    phase = frame_times.float().view([b, 1, t, 1, 1])
    level = cond.mean(dim=2).view([b, 1, t, 1, 1]) * 0.05
    return torch.zeros_like(latents) + torch.sin(phase * 3.0) * 0.5 + level
)";
const char* kDecode = R"(
def decode(self, latents: Tensor) -> Tensor:
    rgb = latents[:, 0:3]
    rgb = rgb.repeat_interleave(8, dim=3).repeat_interleave(8, dim=4)
    return torch.sigmoid(rgb)
)";

// Writes DIR/NAME.pt with the contract's metadata and the given methods.
void SaveModel(const std::string& dir, const std::string& name,
               const std::vector<std::string>& methods, const std::string& prediction = "x0",
               std::optional<c10::IValue> frame_noise_levels = {}, int clip_length = 16) {
  torch::jit::Module m("StudioModel");
  m.register_attribute("latent_channels", c10::IntType::get(), 4);
  m.register_attribute("spatial_compression", c10::IntType::get(), 8);
  m.register_attribute("temporal_compression", c10::IntType::get(), 1);
  m.register_attribute("clip_length", c10::IntType::get(), clip_length);
  m.register_attribute("default_steps", c10::IntType::get(), 10);
  m.register_attribute("prediction", c10::StringType::get(), prediction);
  if (frame_noise_levels) {
    c10::TypePtr type = frame_noise_levels->isBool() ? c10::TypePtr(c10::BoolType::get())
                                                     : c10::TypePtr(c10::IntType::get());
    m.register_attribute("frame_noise_levels", type, *frame_noise_levels);
  }
  for (const auto& src : methods) m.define(src);
  m.save(dir + "/" + name + ".pt");
}

std::unique_ptr<model::Runtime> Make(const std::string& dir) {
  auto rt = model::Runtime::Create({"cpu", 1, dir});
  EXPECT_TRUE(rt.ok()) << rt.message();
  return std::move(*rt);
}

model::SegmentRequest Request(const std::string& name) {
  model::SegmentRequest r;
  r.model = name;
  r.width = 32, r.height = 16, r.steps = 4, r.fps = 12, r.latent_count = 6;
  r.prompts = {"a studio prompt"};
  r.frames.assign(6, {0, 0, 0.f});
  return r;
}

TEST(TorchScript, AStudioModelRunsOnTheWorkersCudaDeviceWhereThereIsOne) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "this libtorch has no CUDA device";
  TempDir dir;
  SaveModel(dir.path(), "studio", {kEncode, kDenoise, kDecode});
  auto cpu = Make(dir.path())->Render(Request("studio"));
  auto rt = model::Runtime::Create({"cuda:0", 1, dir.path()});
  ASSERT_TRUE(rt.ok()) << rt.message();
  auto gpu = (*rt)->Render(Request("studio"));
  ASSERT_TRUE(cpu.ok() && gpu.ok()) << gpu.message();
  ASSERT_EQ(cpu->data.size(), gpu->data.size());
  for (size_t i = 0; i < cpu->data.size(); ++i) EXPECT_NEAR(cpu->data[i], gpu->data[i], 1e-5);
}

TEST(TorchScript, AStudioModelRendersThroughTheContract) {
  TempDir dir;
  SaveModel(dir.path(), "studio", {kEncode, kDenoise, kDecode});
  auto rt = Make(dir.path());
  auto models = rt->Models();
  EXPECT_NE(std::find(models.begin(), models.end(), "studio"), models.end());
  auto lat = rt->Render(Request("studio"));
  ASSERT_TRUE(lat.ok()) << lat.message();
  EXPECT_EQ(lat->shape, (std::vector<int64_t>{4, 6, 2, 4}));
  // x0 prediction at the last step: sin(3 t) * 0.5 + mean(cond) * 0.05, t = frame / 12.
  EXPECT_NEAR(lat->data[8], std::sin(3.0 * 1 / 12.0) * 0.5 + 1.0 * 0.05,
              1e-5);  // frame 1; "a studio prompt" -> 15 % 7 = 1
  auto rgb = rt->DecodeRgb("studio", *lat, 32, 16);
  ASSERT_TRUE(rgb.ok()) << rgb.message();
  EXPECT_EQ(rgb->size(), 6u * 32 * 16 * 3);
  // The weights' identity is the file's digest: results of another file are never reused.
  auto meta = rt->Metadata("studio");
  ASSERT_TRUE(meta.ok()) << meta.message();
  EXPECT_EQ(meta->identity, *DigestFile(dir / "studio.pt"));
  EXPECT_EQ(meta->identity.rfind("xxh3:", 0), 0u);
}

// A model that declares frame_noise_levels gets sigma as [B, T]; a chained guide's frames arrive
// at level 0. This one predicts, for every frame, the lowest level among the frames it was given.
TEST(TorchScript, FrameNoiseLevelsReachTheModelPerFrame) {
  TempDir dir;
  const char* lowest = R"(
def denoise(self, latents: Tensor, sigma: Tensor, cond: Tensor, frame_times: Tensor) -> Tensor:
    assert sigma.dim() == 2 and sigma.size(1) == latents.size(2)
    return torch.zeros_like(latents) + sigma.min()
)";
  SaveModel(dir.path(), "levels", {kEncode, lowest, kDecode}, "x0", c10::IValue(true));
  SaveModel(dir.path(), "notbool", {kEncode, kDenoise, kDecode}, "x0", c10::IValue(int64_t{1}));
  auto rt = Make(dir.path());
  auto plain = rt->Render(Request("levels"));
  ASSERT_TRUE(plain.ok()) << plain.message();
  EXPECT_FLOAT_EQ(plain->data[0], 0.25f);  // the last of 4 steps is at level 1/4, every frame
  auto chained = Request("levels");
  chained.guide = Tensor::Zeros({4, 2, 2, 4});  // frames 0 and 1 known
  auto guided = rt->Render(chained);
  ASSERT_TRUE(guided.ok()) << guided.message();
  EXPECT_FLOAT_EQ(guided->data[5 * 8], 0.f);  // frame 5 was predicted with the guide at level 0
  auto bad = rt->Render(Request("notbool"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("'frame_noise_levels' must be a bool"), std::string::npos)
      << bad.message();
}

// Contract 2 (docs/MODELS.md, "Conditioning"): encode_prompt gives token sequences with a mask,
// and denoise gets one dict: the window's prompt bank (padded to the longest prompt), each
// latent frame's weight of each prompt, the window's first global latent frame and frame times,
// and the guidance scale where the model takes it. This model writes what it received into its
// x0 prediction, which an Euler run's last step returns as the latents.
const char* kBankEncode = R"(
def encode_prompt(self, text: str) -> Tuple[Tensor, Tensor]:
    n = len(text.split(' '))
    tokens = torch.arange(n).float().view([n, 1]).repeat([1, 4]) + 1.0
    mask = torch.arange(n) < n - 1
    return tokens, mask
)";
const char* kBankDenoise = R"(
def denoise(self, latents: Tensor, sigma: Tensor, cond: Dict[str, Tensor]) -> Tensor:
    b = latents.size(0)
    t = latents.size(2)
    real = cond["prompt_mask"].float().sum(1)
    out = torch.zeros_like(latents)
    out[:, 0] = (cond["prompt_weights"] * real.view([1, 1, -1])).sum(2).view([b, t, 1, 1])
    place = cond["first_latent"].view([b, 1]) + torch.arange(t).view([1, t])
    out[:, 1] = place.float().view([b, t, 1, 1])
    out[:, 2] = cond["frame_times"].float().view([b, t, 1, 1])
    if "guidance" in cond:
        out[:, 3] = cond["guidance"].view([b, 1, 1, 1])
    else:
        out[:, 3] = float(cond["prompt_tokens"].size(1)) + 100.0 * cond["fps"].float().view([b, 1, 1, 1])
    return out
)";

void SaveContract2(const std::string& dir, const std::string& name,
                   const std::vector<std::string>& methods,
                   const std::vector<std::pair<std::string, std::string>>& text_attrs = {}) {
  torch::jit::Module m("Contract2");
  m.register_attribute("latent_channels", c10::IntType::get(), 4);
  m.register_attribute("spatial_compression", c10::IntType::get(), 8);
  m.register_attribute("temporal_compression", c10::IntType::get(), 1);
  m.register_attribute("clip_length", c10::IntType::get(), 16);
  m.register_attribute("default_steps", c10::IntType::get(), 4);
  m.register_attribute("prediction", c10::StringType::get(), std::string("x0"));
  m.register_attribute("contract_version", c10::IntType::get(), 2);
  for (const auto& [k, v] : text_attrs) m.register_attribute(k, c10::StringType::get(), v);
  for (const auto& src : methods) m.define(src);
  m.save(dir + "/" + name + ".pt");
}

// The value of channel c, latent frame t of latents [4, T, h, w].
float At(const Tensor& x, int64_t c, int64_t t) {
  return x.data[static_cast<size_t>((c * x.shape[1] + t) * x.shape[2] * x.shape[3])];
}

TEST(TorchScript, ContractTwoGetsThePromptBankWeightsAndPlace) {
  TempDir dir;
  SaveContract2(dir.path(), "bank", {kBankEncode, kBankDenoise, kDecode});
  SaveContract2(dir.path(), "clip", {kBankEncode, kBankDenoise, kDecode},
                {{"conditioning", "per-clip"}});
  SaveContract2(dir.path(), "distilled", {kBankEncode, kBankDenoise, kDecode},
                {{"guidance", "embedded"}});
  SaveContract2(dir.path(), "noguide", {kBankEncode, kBankDenoise, kDecode},
                {{"guidance", "none"}});
  auto rt = Make(dir.path());
  model::SegmentRequest r = Request("bank");
  // Two prompts of 3 and 2 tokens (the last of each padding): 2 and 1 real tokens. A crossfade
  // from the first to the second over latent frames 1-4.
  r.prompts = {"three token prompt", "two tokens"};
  r.latent_start = 5;
  r.frames = {{0, 0, 0.f}, {0, 1, 0.25f}, {0, 1, 0.5f}, {0, 1, 0.75f}, {1, 1, 0.f}, {1, 1, 0.f}};
  auto x = rt->Render(r);
  ASSERT_TRUE(x.ok()) << x.message();
  const float expect[6] = {2.f, 1.75f, 1.5f, 1.25f, 1.f, 1.f};
  for (int t = 0; t < 6; ++t) {
    EXPECT_FLOAT_EQ(At(*x, 0, t), expect[t]) << "frame " << t;
    EXPECT_FLOAT_EQ(At(*x, 1, t), 5.f + t);             // global latent frame
    EXPECT_FLOAT_EQ(At(*x, 2, t), (5.f + t) / 12.f);    // its time in seconds
    EXPECT_FLOAT_EQ(At(*x, 3, t), 3.f + 100.f * 12.f);  // bank padded to 3 tokens; fps
  }
  // Per clip: every frame gets the window's mean weights, one context for the call.
  r.model = "clip";
  auto clip = rt->Render(r);
  ASSERT_TRUE(clip.ok()) << clip.message();
  for (int t = 0; t < 6; ++t) EXPECT_FLOAT_EQ(At(*clip, 0, t), 8.5f / 6.f) << "frame " << t;
  // Classifier-free guidance runs the model again on the negative prompt (one prompt of 2
  // tokens, 1 real, weight 1 everywhere): uncond + g (cond - uncond).
  r.model = "bank";
  r.guidance = 3.0;
  r.negative_prompt = "blurry frames";
  auto cfg = rt->Render(r);
  ASSERT_TRUE(cfg.ok()) << cfg.message();
  for (int t = 0; t < 6; ++t) EXPECT_FLOAT_EQ(At(*cfg, 0, t), 1.f + 3.f * (expect[t] - 1.f));
  // Embedded guidance: one call, the scale as an input; the prompts' channel is not mixed.
  r.model = "distilled";
  auto distilled = rt->Render(r);
  ASSERT_TRUE(distilled.ok()) << distilled.message();
  for (int t = 0; t < 6; ++t) {
    EXPECT_FLOAT_EQ(At(*distilled, 0, t), expect[t]);
    EXPECT_FLOAT_EQ(At(*distilled, 3, t), 3.f);
  }
  // A model that takes no guidance refuses a scale.
  r.model = "noguide";
  auto refused = rt->Render(r);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("model 'noguide' takes no guidance"), std::string::npos)
      << refused.message();
  r.guidance = 1.0;
  EXPECT_TRUE(rt->Render(r).ok());
  // Once per model and text: bank 3 (with the negative prompt), clip 2, distilled 2, noguide 2.
  EXPECT_EQ(rt->prompt_encodings(), 9u);
}

// What a contract-1 model or a mismatched contract-2 file gets told.
TEST(TorchScript, ContractMismatchesAreNamed) {
  TempDir dir;
  SaveModel(dir.path(), "tokens", {kBankEncode, kDenoise, kDecode});  // contract 1, [L, D]
  SaveContract2(dir.path(), "oldsig", {kEncode, kDenoise, kDecode});  // contract 2, old denoise
  SaveContract2(dir.path(), "badguide", {kEncode, kBankDenoise, kDecode}, {{"guidance", "lots"}});
  auto rt = Make(dir.path());
  auto tokens = rt->Render(Request("tokens"));
  ASSERT_FALSE(tokens.ok());
  EXPECT_NE(tokens.message().find("tuple: token sequences [L, D] need contract_version 2"),
            std::string::npos)
      << tokens.message();
  auto oldsig = rt->Render(Request("oldsig"));
  ASSERT_FALSE(oldsig.ok());
  EXPECT_NE(oldsig.message().find("denoise must take (latents, sigma, cond: Dict[str, Tensor])"),
            std::string::npos)
      << oldsig.message();
  auto badguide = rt->Render(Request("badguide"));
  ASSERT_FALSE(badguide.ok());
  EXPECT_NE(badguide.message().find("'guidance' must be 'cfg', 'embedded' or 'none'"),
            std::string::npos)
      << badguide.message();
}

TEST(TorchScript, BrokenModelsFailWithTheirNameAndProblem) {
  TempDir dir;
  SaveModel(dir.path(), "nodecode", {kEncode, kDenoise});
  SaveModel(dir.path(), "badshape",
            {kEncode, R"(
def denoise(self, latents: Tensor, sigma: Tensor, cond: Tensor, frame_times: Tensor) -> Tensor:
    return latents[:, :, 0:1]
)",
             kDecode});
  SaveModel(dir.path(), "baddtype",
            {kEncode, R"(
def denoise(self, latents: Tensor, sigma: Tensor, cond: Tensor, frame_times: Tensor) -> Tensor:
    return latents.double()
)",
             kDecode});
  SaveModel(dir.path(), "badpred", {kEncode, kDenoise, kDecode}, "noise");
  std::ofstream(dir / "garbage.pt") << "this is not a TorchScript archive";
  auto rt = Make(dir.path());
  struct Case {
    const char* name;
    const char* words;
  };
  for (Case c :
       {Case{"nodecode", "has no method 'decode'"}, Case{"badshape", "denoise returned shape"},
        Case{"baddtype", "expected float32"}, Case{"badpred", "prediction 'noise'"},
        Case{"garbage", "not a TorchScript file"}, Case{"missing", "unknown model 'missing'"}}) {
    auto r = rt->Render(Request(c.name));
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_NE(r.message().find(std::string("model '") + c.name + "'"), std::string::npos)
        << r.message();
    EXPECT_NE(r.message().find(c.words), std::string::npos) << r.message();
  }
  // The runtime keeps serving: the built-in model and a good file still render.
  SaveModel(dir.path(), "good", {kEncode, kDenoise, kDecode});
  EXPECT_TRUE(rt->Render(Request("good")).ok());
  auto zoom = Request("zoom");
  EXPECT_TRUE(rt->Render(zoom).ok());
}

TEST(TorchScript, JobsThroughRealProcesses) {
  TempDir dir;
  std::filesystem::create_directories(dir / "models");
  SaveModel(dir / "models", "studio", {kEncode, kDenoise, kDecode});
  SaveModel(dir / "models", "broken",
            {kEncode, R"(
def denoise(self, latents: Tensor, sigma: Tensor, cond: Tensor, frame_times: Tensor) -> Tensor:
    return latents[:, :, 0:1]
)",
             kDecode});
  auto manifest = [&](const std::string& model, const std::string& file) {
    std::ofstream(dir / file)
        << "version: 1\nvideo: {width: 64, height: 32, fps: 12, frames: 20}\nmodel: {name: "
        << model
        << ", steps: 4}\nsegments: {length: 8, overlap: 2}\ntimeline: [{at: 0, prompt: hello}]\n"
        << "output: {path: out/" << model << ".mp4}\n";
    return dir / file;
  };
  std::string out;
  ASSERT_EQ(RunCommand(Cli("render '" + manifest("studio", "studio.yaml") + "' --models '" +
                           dir / "models" + "' --state-dir '" + dir / "s1" + "' --preset veryfast"),
                       &out, true),
            0)
      << out;
  EXPECT_EQ(Probe(dir / "out/studio.mp4").frames, 20);

  // A farm whose workers have the broken model: that job fails, naming the model and the
  // problem; the next job renders on the same workers.
  LocalFarm farm(dir / "farm", 2, {}, {"--models", dir / "models"});
  ASSERT_TRUE(farm.ok());
  const std::string endpoint = farm.endpoint();
  auto wait_for = [&](const std::string& id) {
    nlohmann::json st;
    for (int i = 0; i < 600; ++i) {
      // Exit 3: the job FAILED (it still prints the job).
      const int rc = RunCommand(Cli("status " + id + " --json --coordinator " + endpoint), &out);
      if (rc != 0 && rc != 3) break;
      st = nlohmann::json::parse(out, nullptr, false);
      if (!st.is_discarded() && (st["state"] == "DONE" || st["state"] == "FAILED")) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return st;
  };
  ASSERT_EQ(RunCommand(
                Cli("submit '" + manifest("broken", "broken.yaml") + "' --coordinator " + endpoint),
                &out, true),
            0)
      << out;
  auto bad = wait_for(SubmittedJobId(out));
  ASSERT_EQ(bad["state"], "FAILED") << bad.dump();
  EXPECT_NE(bad["error"].get<std::string>().find("model 'broken': denoise returned shape"),
            std::string::npos)
      << bad.dump();
  ASSERT_EQ(
      RunCommand(Cli("submit '" + manifest("zoom", "zoom.yaml") + "' --coordinator " + endpoint),
                 &out, true),
      0)
      << out;
  auto good = wait_for(SubmittedJobId(out));
  EXPECT_EQ(good["state"], "DONE") << good.dump();
  for (auto& w : farm.workers()) EXPECT_TRUE(w.Running());  // the workers survived the broken model
}

}  // namespace
}  // namespace segue

namespace segue {
namespace {

TEST(TorchScript, ASegmentThatAlwaysFailsFailsItsJobAfterDistinctWorkers) {
  TempDir dir;
  std::filesystem::create_directories(dir / "models");
  // Fails every segment that starts after 0.3 s: one segment of the job below.
  SaveModel(dir / "models", "flaky",
            {kEncode, R"(
def denoise(self, latents: Tensor, sigma: Tensor, cond: Tensor, frame_times: Tensor) -> Tensor:
    if float(frame_times[0][0]) > 0.3:
        return latents[:, :, 0:1]
    return latents * 0.0
)",
             kDecode});
  LocalFarm farm(dir / "farm", 3, {"--max-attempts", "3"}, {"--models", dir / "models"});
  ASSERT_TRUE(farm.ok());
  ASSERT_TRUE(farm.WaitForWorkers());  // three distinct workers to fail on
  auto manifest = [&](const std::string& model) {
    std::ofstream(dir / (model + ".yaml"))
        << "version: 1\nvideo: {width: 64, height: 32, fps: 12, frames: 12}\nmodel: {name: "
        << model << ", steps: 2}\nsegments: {length: 8, overlap: 4}\n"
        << "timeline: [{at: 0, prompt: hello}]\noutput: {path: out/" << model << ".mp4}\n";
    return dir / (model + ".yaml");
  };
  Client client(farm.endpoint());
  auto submit = [&](const std::string& model) {
    std::string out;
    EXPECT_EQ(RunCommand(Cli("submit '" + manifest(model) + "' --coordinator " + farm.endpoint()),
                         &out, true),
              0)
        << out;
    return std::stoull(SubmittedJobId(out));
  };
  auto wait = [&](uint64_t job) {
    JobInfo j;
    for (int i = 0; i < 1200 && !j.Finished(); ++i) {
      auto st = client.Status(job);
      if (st.ok()) j = *st;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return j;
  };
  uint64_t bad = submit("flaky");
  JobInfo failed = wait(bad);
  ASSERT_EQ(failed.state, "FAILED");
  EXPECT_NE(failed.error.find("model 'flaky': denoise returned shape"), std::string::npos)
      << failed.error;
  EXPECT_NE(failed.error.find("failed on 3 worker(s)"), std::string::npos) << failed.error;
  // It failed on three distinct workers, once each.
  auto logs = client.Logs(bad, 1);
  ASSERT_TRUE(logs.ok());
  std::set<std::string> on;
  for (const auto& l : *logs) {
    auto at = l.find("segment 1 failed on ");
    if (at == std::string::npos || l.find("job FAILED") != std::string::npos) continue;
    on.insert(l.substr(at + 20, l.find(':', at + 20) - at - 20));
  }
  EXPECT_EQ(on, (std::set<std::string>{"w0", "w1", "w2"}));
  // Other jobs are unaffected.
  EXPECT_EQ(wait(submit("zoom")).state, "DONE");
  for (auto& w : farm.workers()) EXPECT_TRUE(w.Running());
}

// A worker whose model of a name is not the farm's (another file under the same name) is refused
// with both workers and the difference named, and exits (4: saying Hello again would not help);
// the farm goes on with the first worker's.
TEST(TorchScript, AWorkerWhoseModelDiffersFromTheFarmsIsRefusedAndExits) {
  TempDir dir;
  std::filesystem::create_directories(dir / "a");
  std::filesystem::create_directories(dir / "b");
  SaveModel(dir / "a", "studio", {kEncode, kDenoise, kDecode});
  SaveModel(dir / "b", "studio", {kEncode, kDenoise, kDecode}, "x0", {}, 24);
  LocalFarm farm(dir / "farm", 1, {}, {"--models", dir / "a"});
  ASSERT_TRUE(farm.ok());
  ASSERT_TRUE(farm.WaitForWorkers());
  auto other = ChildProcess::Spawn({BinDir() + "/segue-worker", "--coordinator", farm.endpoint(),
                                    "--name", "other", "--models", dir / "b"},
                                   dir / "other.log");
  ASSERT_TRUE(other.ok()) << other.message();
  EXPECT_EQ(other->Wait(30000), 4);
  std::ifstream in(dir / "other.log");
  const std::string log(std::istreambuf_iterator<char>(in), {});
  EXPECT_NE(log.find("model 'studio' of worker other differs from that of worker w0: "
                     "native_frames 24 vs 16"),
            std::string::npos)
      << log;
  EXPECT_TRUE(farm.workers()[0].Running());
}

// A studio model with Wan 2.1's shape (16 latent channels, 8x spatial compression with patches
// of 2, time compressed 4x by a causal decoder that needs a latent frame of context, a padded
// token sequence per prompt read by masked cross-attention, one context per clip) through the
// farm: the worker reports its metadata, the job is planned from it, every segment of 81 frames
// reaches `denoise` as [1, 16, 21, h, w] (any other shape fails the task: the model returns a
// wrong-shaped prediction), and the output has exactly the manifest's 161 frames.
TEST(TorchScript, AWanShapedModelRendersIn21LatentFramesPer81FrameSegment) {
  TempDir dir;
  std::filesystem::create_directories(dir / "models");
  torch::jit::Module m("WanShaped");
  m.register_attribute("latent_channels", c10::IntType::get(), 16);
  m.register_attribute("spatial_compression", c10::IntType::get(), 8);
  m.register_attribute("patch_size", c10::IntType::get(), 2);
  m.register_attribute("temporal_compression", c10::IntType::get(), 4);
  m.register_attribute("clip_length", c10::IntType::get(), 81);
  m.register_attribute("native_fps", c10::FloatType::get(), 16.0);
  m.register_attribute("decode_context_before", c10::IntType::get(), 1);
  m.register_attribute("default_steps", c10::IntType::get(), 2);
  m.register_attribute("prediction", c10::StringType::get(), std::string("velocity"));
  m.register_attribute("contract_version", c10::IntType::get(), 2);
  m.register_attribute("conditioning", c10::StringType::get(), std::string("per-clip"));
  // A umT5-shaped encoder: a fixed-length token sequence (512 x 4096 in Wan; 16 x 16 here),
  // padded, with the mask saying which tokens are words.
  m.define(R"(
def encode_prompt(self, text: str) -> Tuple[Tensor, Tensor]:
    words = text.split(' ')
    n = min(len(words), 16)
    tokens = torch.zeros([16, 16])
    for i in range(n):
        tokens[i] = torch.sin(torch.arange(16).float() * float(len(words[i]) + i))
    return tokens, torch.arange(16) < n
)");
  // Masked cross-attention from 2x2 patches of the latents to every prompt's tokens, the
  // prompts' contexts mixed by each latent frame's weights.
  m.define(R"(
def denoise(self, latents: Tensor, sigma: Tensor, cond: Dict[str, Tensor]) -> Tensor:
    if latents.size(0) != 1 or latents.size(1) != 16 or latents.size(2) != 21 or latents.size(3) != 4 or latents.size(4) != 4:
        return latents[:, :, 0:1]
    tokens = cond["prompt_tokens"]
    mask = cond["prompt_mask"]
    p = tokens.size(0)
    l = tokens.size(1)
    q = latents.view([1, 16, 21, 2, 2, 2, 2]).mean([4, 6]).permute([0, 2, 3, 4, 1]).reshape([1, 84, 16])
    scores = torch.einsum('bnd,pld->bpnl', [q, tokens]) / 4.0
    scores = scores.masked_fill(mask.view([1, p, 1, l]).logical_not(), -10000.0)
    ctx = torch.einsum('bpnl,pld->bpnd', [torch.softmax(scores, -1), tokens])
    w = cond["prompt_weights"].repeat_interleave(4, dim=1)
    mixed = torch.einsum('bnp,bpnd->bnd', [w, ctx]).view([1, 21, 2, 2, 16]).permute([0, 4, 1, 2, 3])
    mixed = mixed.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
    t = cond["frame_times"].float().view([1, 1, 21, 1, 1])
    return latents - torch.sin(t) * 0.5 + mixed * 0.1
)");
  m.define(R"(
def decode(self, latents: Tensor) -> Tensor:
    rgb = torch.sigmoid(latents[:, 0:3])
    frames = torch.cat([rgb[:, :, 0:1], rgb[:, :, 1:].repeat_interleave(4, dim=2)], dim=2)
    return frames.repeat_interleave(8, dim=3).repeat_interleave(8, dim=4)
)");
  m.save(dir / "models/wanlike.pt");
  std::ofstream(dir / "wan.yaml")
      << "version: 1\nvideo: {width: 32, height: 32, fps: 16, frames: 161}\n"
      << "model: {name: wanlike, steps: 3, sampler: unipc, shift: 5}\n"
      << "segments: {length: 81, overlap: 20}\n"
      << "timeline: [{at: 0, prompt: two teenagers at a dance},\n"
      << "           {at: 4s, prompt: a long drive by the sea, transition: 2s}]\n"
      << "output: {path: out/wan.mp4}\n";
  std::string out;
  ASSERT_EQ(
      RunCommand(Cli("render '" + dir / "wan.yaml" + "' --workers 2 --models '" + dir / "models" +
                     "' --chunk-frames 40 --preset veryfast --state-dir '" + dir / "state" + "'"),
                 &out, true),
      0)
      << out;
  EXPECT_EQ(Probe(dir / "out/wan.mp4").frames, 161);
  EXPECT_EQ(StoredLatents(dir / "state/store", 1).size(), 3u);  // 41 latent frames, stride 16

  // Submitted to a farm before any worker serves the model, the job waits unplanned and says
  // so; the first worker that serves it gets it planned and rendered.
  LocalFarm farm(dir / "farm", 0);
  ASSERT_TRUE(farm.ok());
  const std::string at = " --coordinator " + farm.endpoint();
  ASSERT_EQ(
      RunCommand(Cli("submit '" + dir / "wan.yaml" + "' --output again.mp4" + at), &out, true), 0)
      << out;
  EXPECT_NE(out.find("waiting for a worker that serves model wanlike"), std::string::npos) << out;
  const std::string id = SubmittedJobId(out);
  ASSERT_EQ(RunCommand(Cli("status " + id + at), &out, true), 0) << out;
  EXPECT_NE(out.find("waiting for a worker that serves its model"), std::string::npos) << out;
  auto worker = ChildProcess::Spawn(
      {BinDir() + "/segue-worker", "--coordinator", farm.endpoint(), "--models", dir / "models"},
      dir / "late-worker.log");
  ASSERT_TRUE(worker.ok()) << worker.message();
  ASSERT_EQ(RunCommand(Cli("status " + id + " --watch" + at), &out, true), 0) << out;
  EXPECT_EQ(Probe(dir / "farm/root/again.mp4").frames, 161) << out;
}

}  // namespace
}  // namespace segue
