#include "tools/bench/bench_host.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>

#include "common/model/model.h"
#include "common/util/temp_dir.h"
#include "tools/bench/bench_util.h"
#include "worker/host_model.h"

namespace segue {
namespace {

namespace fs = std::filesystem;
using bench::Clock;
using bench::Median;
using bench::Since;

// worker/host in the source tree: the binary is build/bin/segue-bench.
std::string FindHostPath() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  for (fs::path dir = exe.parent_path(); !ec && dir.has_parent_path() && dir != dir.root_path();
       dir = dir.parent_path())
    if (fs::exists(dir / "worker/host/segue_host/__init__.py")) return dir / "worker/host";
  throw std::runtime_error(
      "cannot find worker/host (the model host package) above the segue-bench binary; give "
      "--host-path");
}

}  // namespace

nlohmann::json BenchHost(const HostBenchOptions& o) {
  const std::string host_path = o.host_path.empty() ? FindHostPath() : o.host_path;
  if (o.shape.size() != 5) throw std::runtime_error("--shape: B x C x T x h x w");
  TempDir dir;
  fs::create_directories(dir / "models");
  std::ofstream(dir / "models/tinywan.host.yaml")
      << "command: [/usr/bin/python3, -m, segue_host, --adapter, '" << o.adapter << "', --threads, "
      << o.threads << "]\nenvironment: {PYTHONPATH: '" << host_path
      << (std::getenv("PYTHONPATH") ? std::string(":") + std::getenv("PYTHONPATH") : "") << "'}\n"
      << "call_timeout_seconds: 21600\n";
  auto source = HostModelSource(dir / "models", "cpu", dir / "run");
  auto opened = source.open("tinywan");
  if (!opened.ok()) throw std::runtime_error(opened.message());
  model::Model& m = **opened;

  torch::manual_seed(0);
  const int64_t B = o.shape[0], T = o.shape[2];
  auto prompt = m.EncodePrompt("an endless zoom across decades of a couple's life");
  model::Conditioning cond;
  cond.prompt_tokens = prompt.tokens.unsqueeze(0);
  cond.prompt_mask = prompt.mask.unsqueeze(0);
  cond.prompt_weights = torch::ones({B, T, 1});
  cond.frame_times = torch::arange(T, torch::kFloat64).mul(4.0 / 16).unsqueeze(0).expand({B, T});
  cond.fps = 16;
  const torch::Tensor sigma = torch::full({B}, 0.5f);
  // A warm-up call on a small window: the host's first call pays for torch's lazy set-up.
  auto small = torch::randn({B, o.shape[1], 2, 4, 4});
  model::Conditioning small_cond = cond;
  small_cond.prompt_weights = torch::ones({B, 2, 1});
  small_cond.frame_times = torch::zeros({B, 2}, torch::kFloat64);
  m.Denoise(small, sigma, small_cond);

  const torch::Tensor latents = torch::randn(o.shape);
  const size_t bytes = static_cast<size_t>(latents.numel()) * sizeof(float);
  std::vector<double> round_trip, adapter, overhead;
  for (int i = 0; i < o.calls; ++i) {
    m.Denoise(latents, sigma, cond);
    const HostCallTiming t = LastHostCallTiming(m);
    round_trip.push_back(t.round_trip_s);
    adapter.push_back(t.adapter_s);
    overhead.push_back((t.round_trip_s - t.adapter_s) * 1e3);
  }
  // One copy of the latents, as the worker makes framing them.
  std::vector<char> copy(bytes);
  std::vector<double> copies;
  for (int i = 0; i < 9; ++i) {
    const auto t0 = Clock::now();
    std::memcpy(copy.data(), latents.data_ptr(), bytes);
    copies.push_back(Since(t0));
    if (copy[bytes / 2] == 42) std::cerr << "";  // the copy is used
  }
  const double copy_s = Median(copies), overhead_s = Median(overhead) / 1e3;
  std::string shape;
  for (auto d : o.shape) shape += (shape.empty() ? "" : "x") + std::to_string(d);
  nlohmann::json j = {{"bench", "host"},
                      {"adapter", o.adapter},
                      {"latents", shape},
                      {"latent_bytes", bytes},
                      {"calls", o.calls},
                      {"host_threads", o.threads},
                      {"round_trip_s", Median(round_trip)},
                      {"in_python_s", Median(adapter)},
                      {"host_overhead_ms", overhead_s * 1e3},
                      {"host_overhead_ms_each", overhead},
                      {"one_copy_ms", copy_s * 1e3},
                      {"target_overhead_ms", 5 + copy_s * 1e3}};
  std::cout << "host: " << o.adapter << " denoise of " << shape << " latents (" << bytes / 1e6
            << " MB): " << Median(round_trip) << " s through the host, " << Median(adapter)
            << " s inside Python; the host adds " << overhead_s * 1e3
            << " ms (target: under 5 ms plus one copy of the latents, " << copy_s * 1e3
            << " ms here)\n";
  return j;
}

}  // namespace segue
