// segue-bench: measurements of segue, each against a baseline run in the same invocation.
//   segue-bench model   the reference model's render speed (frames/s per core), 1 thread
//   segue-bench plan    planning throughput for a 4-hour job
//   segue-bench farm    dispatch rate and latency (null model), farm efficiency (fixed cost)
//   segue-bench encode  chunked encoding on 2 workers + concatenation against one ffmpeg
//   segue-bench codenoise  one step's overlap exchange for 64 segments through the coordinator
//   segue-bench store   RocksDB checkpoint writes against plain files with fdatasync
//   segue-bench recovery  coordinator restart with the largest job the limits admit (50,000
//                         segments, --max-job-segments) in the store, and its submission
//   segue-bench memory  coordinator RSS with a 4-hour job; worker RSS against video length
//   segue-bench render  2 workers against 1 on the same job
//   segue-bench host    one denoise call through a model host against the same call in Python
//   segue-bench all     every one of them (with --quick: small sizes, a few minutes)
// Results print as text; --json FILE writes them as JSON too.
#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/model/runtime.h"
#include "common/plan/plan.h"
#include "common/util/memory.h"
#include "coordinator/options.h"
#include "tools/bench/bench_encode.h"
#include "tools/bench/bench_farm.h"
#include "tools/bench/bench_host.h"
#include "tools/bench/bench_system.h"

using namespace segue;
using Clock = std::chrono::steady_clock;

namespace {

double Seconds(Clock::time_point a) {
  return std::chrono::duration<double>(Clock::now() - a).count();
}

nlohmann::json BenchModel(int width, int height, int frames, int steps, int reps) {
  auto rt = model::Runtime::Create({"cpu", 1, ""});
  if (!rt.ok()) throw std::runtime_error(rt.message());
  model::SegmentRequest r;
  r.width = width, r.height = height, r.steps = steps, r.latent_count = frames, r.fps = 24;
  r.prompts = {"two teenagers meet at a high-school dance, 1990s, film grain"};
  r.frames.assign(static_cast<size_t>(frames), {0, 0, 0.f});
  double render_s = 0, decode_s = 0;
  for (int i = 0; i < reps; ++i) {
    r.seed = static_cast<uint64_t>(i + 1);
    auto t0 = Clock::now();
    auto lat = (*rt)->Render(r);
    render_s += Seconds(t0);
    if (!lat.ok()) throw std::runtime_error(lat.message());
    t0 = Clock::now();
    auto rgb = (*rt)->DecodeRgb("zoom", *lat, width, height);
    decode_s += Seconds(t0);
  }
  const double f = static_cast<double>(frames) * reps;
  nlohmann::json j = {{"bench", "model"},
                      {"width", width},
                      {"height", height},
                      {"steps", steps},
                      {"frames", f},
                      {"render_fps_per_core", f / render_s},
                      {"decode_fps_per_core", f / decode_s},
                      {"target_render_fps_per_core", 60}};
  std::cout << "model zoom " << width << "x" << height << ", " << steps
            << " steps, 1 thread: render " << j["render_fps_per_core"].get<double>()
            << " frames/s, decode " << j["decode_fps_per_core"].get<double>()
            << " frames/s (target: render >= 60 frames/s per core)\n";
  return j;
}

nlohmann::json BenchPlan() {
  const int64_t n = 345600;  // 4 hours at 24 fps
  auto t0 = Clock::now();
  auto segs = PlanSegments(n, 48, 12, 42);
  double plan_s = Seconds(t0);
  nlohmann::json j = {
      {"bench", "plan"}, {"frames", n}, {"segments", segs.size()}, {"seconds", plan_s}};
  std::cout << "plan: " << segs.size() << " segments for a 4-hour job in " << plan_s * 1000
            << " ms\n";
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  segue::KeepFreedMemoryForReuse();  // as segue-coordinator and segue-worker do
  CLI::App app{"segue-bench: benchmarks of segue (see docs/PERFORMANCE.md)", "segue-bench"};
  app.fallthrough();  // --json and --quick also after the subcommand
  app.require_subcommand(1);
  std::string json_path;
  bool quick = false;
  app.add_option("--json", json_path, "also write results as JSON to this file");
  app.add_flag("--quick", quick, "small sizes");
  int width = 512, height = 288, frames = 48, steps = 30, reps = 3;
  auto* model = app.add_subcommand("model", "reference model render and decode speed on one core");
  model->add_option("--width", width)->capture_default_str();
  model->add_option("--height", height)->capture_default_str();
  model->add_option("--frames", frames)->capture_default_str();
  model->add_option("--steps", steps)->capture_default_str();
  model->add_option("--reps", reps)->capture_default_str();
  auto* plan = app.add_subcommand("plan", "planning a 4-hour job");
  FarmBenchOptions farm_options;
  auto* farm = app.add_subcommand(
      "farm",
      "the coordinator against simulated workers: dispatch rate at saturation and latency at a "
      "paced rate with a null model, efficiency (ideal / wall time) with a fixed-cost model");
  farm->add_option("--workers", farm_options.workers, "simulated workers of the efficiency run")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  farm->add_option("--dispatch-workers", farm_options.dispatch_workers,
                   "simulated workers of the dispatch run")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  farm->add_option("--tasks", farm_options.dispatch_tasks, "tasks of the null-model jobs")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  farm->add_option("--paced-workers", farm_options.paced_workers,
                   "simulated workers of the paced dispatch run")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  farm->add_option("--paced-rate", farm_options.paced_rate,
                   "tasks/s the paced workers offer together")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  farm->add_option("--segments", farm_options.efficiency_segments, "segments of the fixed-cost job")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  farm->add_option("--task-ms", farm_options.task_ms, "the fixed-cost model's time per segment")
      ->capture_default_str()
      ->check(CLI::Range(1, 60000));
  farm->add_option("--rounds", farm_options.rounds,
                   "rounds of every run; each figure is the median of the rounds' (--quick: 3)")
      ->capture_default_str()
      ->check(CLI::Range(1, 101));
  EncodeBenchOptions encode_options;
  auto* encode = app.add_subcommand("encode",
                                    "chunks encoded by 2 workers and concatenated, against one "
                                    "ffmpeg command on the same frames");
  encode->add_option("--width", encode_options.width)
      ->capture_default_str()
      ->check(CLI::Range(16, 7680));
  encode->add_option("--height", encode_options.height)
      ->capture_default_str()
      ->check(CLI::Range(16, 4320));
  encode->add_option("--frames", encode_options.frames)
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  encode->add_option("--chunk-frames", encode_options.chunk_frames)
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  encode->add_option("--workers", encode_options.workers)
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  encode->add_option("--preset", encode_options.preset, "x264 preset")->capture_default_str();
  int gang_segments = 64, gang_workers = 8, gang_steps = 20;
  auto* codenoise = app.add_subcommand(
      "codenoise",
      "one sampler step's overlap exchange of a co-denoised job, through the coordinator");
  codenoise->add_option("--segments", gang_segments)
      ->capture_default_str()
      ->check(CLI::Range(2, 10000));
  codenoise->add_option("--workers", gang_workers)
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  codenoise->add_option("--steps", gang_steps, "exchange rounds measured")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  int store_blobs = 200;
  // The largest job a coordinator admits by default (--max-job-segments).
  int recovery_segments = static_cast<int>(CoordinatorOptions{}.max_job_segments);
  auto* store = app.add_subcommand(
      "store", "checkpoint writes into RocksDB against plain files with fdatasync");
  store->add_option("--blobs", store_blobs, "checkpoints of 1.7 MB written")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  auto* recovery = app.add_subcommand(
      "recovery", "a coordinator restarting on a store with the largest job it admits");
  recovery->add_option("--segments", recovery_segments, "the job's segments")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  auto* memory = app.add_subcommand(
      "memory", "coordinator RSS with a 4-hour job; worker RSS over short and long jobs");
  auto* render = app.add_subcommand("render", "segue render with 2 workers against 1");
  IterateOptions iterate_options;
  auto* iterate = app.add_subcommand(
      "iterate", "the example music video rendered, then again after a one-prompt edit");
  iterate->add_option("--manifest", iterate_options.manifest, "the video (its song beside it)")
      ->capture_default_str();
  iterate
      ->add_option("--edit", iterate_options.edit,
                   "the keyframe whose prompt is edited: middle, all (each in turn, each against "
                   "the full render) or its number from 1")
      ->capture_default_str()
      ->check([](const std::string& v) -> std::string {
        if (v == "middle" || v == "all") return "";
        const bool number =
            !v.empty() && v.size() < 4 && v[0] != '0' &&
            std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
        return number ? "" : "expected middle, all or a keyframe's number from 1";
      });
  iterate
      ->add_option("--chunk-frames", iterate_options.chunk_frames,
                   "frames per encoded chunk (the coordinator's --chunk-frames; default its own)")
      ->check(CLI::Range(1, 100000));
  iterate
      ->add_option("--repeat", iterate_options.repeat,
                   "a longer video: the manifest's timeline played this many times in a row "
                   "(times in seconds)")
      ->capture_default_str()
      ->check(CLI::Range(1, 20));
  HostBenchOptions host_options;
  std::string host_shape = "1x16x21x60x104";
  auto* host = app.add_subcommand(
      "host", "one tinywan denoise call through a model host against the same call in Python");
  host->add_option("--shape", host_shape,
                   "the latents, B x C x T x h x w (Wan 2.1 480p, 81 frames)")
      ->capture_default_str();
  host->add_option("--calls", host_options.calls, "timed calls; figures are their medians")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  host->add_option("--threads", host_options.threads, "torch threads in the host")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  host->add_option("--adapter", host_options.adapter,
                   "the adapter to serve (a segue_host adapter, or module:Class on PYTHONPATH)")
      ->capture_default_str();
  host->add_option("--host-path", host_options.host_path,
                   "the model host package's folder (default: worker/host above the binary)");
  auto* all = app.add_subcommand("all", "every benchmark, one after the other");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  std::cout << std::unitbuf;  // each figure shows as soon as it is measured
  nlohmann::json results = nlohmann::json::array();
  try {
    const bool every = all->parsed();
    if (model->parsed() || every)
      results.push_back(BenchModel(width, height, frames, quick ? 10 : steps, quick ? 1 : reps));
    if (plan->parsed() || every) results.push_back(BenchPlan());
    if (encode->parsed() || every) {
      if (quick) encode_options.frames = std::min(encode_options.frames, 192);
      results.push_back(BenchEncode(encode_options));
    }
    if (farm->parsed() || every) {
      if (quick) {
        farm_options.dispatch_tasks = std::min(farm_options.dispatch_tasks, 2000);
        farm_options.rounds = std::min(farm_options.rounds, 3);
      }
      results.push_back(BenchFarm(farm_options));
    }
    if (codenoise->parsed() || every)
      results.push_back(BenchCodenoise(gang_segments, gang_workers, quick ? 5 : gang_steps));
    if (store->parsed() || every) results.push_back(BenchStore(quick ? 100 : store_blobs));
    if (recovery->parsed() || every)
      results.push_back(
          BenchRecovery(quick ? std::min(recovery_segments, 2000) : recovery_segments));
    if (memory->parsed() || every) results.push_back(BenchMemory(quick));
    if (render->parsed() || every) results.push_back(BenchRender(quick));
    if (iterate->parsed() || every) results.push_back(BenchIterate(iterate_options, quick));
    if (host->parsed() || every) {
      host_options.shape.clear();
      std::stringstream dims(quick ? "1x16x5x16x16" : host_shape);
      for (std::string d; std::getline(dims, d, 'x');) {
        char* end = nullptr;
        const long long v = std::strtoll(d.c_str(), &end, 10);
        if (d.empty() || *end != '\0' || v < 1 || v > 100000) {
          std::cerr << "segue-bench: --shape '" << host_shape << "': expected B x C x T x h x w\n";
          return 2;
        }
        host_options.shape.push_back(v);
      }
      if (host_options.shape.size() != 5) {
        std::cerr << "segue-bench: --shape '" << host_shape << "': expected 5 sizes\n";
        return 2;
      }
      results.push_back(BenchHost(host_options));
    }
  } catch (const std::invalid_argument& e) {  // a flag that does not fit its input
    std::cerr << "segue-bench: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "segue-bench: " << e.what() << "\n";
    return 1;
  }
  if (!json_path.empty()) std::ofstream(json_path) << results.dump(2) << "\n";
  return 0;
}
