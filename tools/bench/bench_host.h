// segue-bench host: what serving a model out of process costs. One denoise call of the tinywan
// adapter (worker/host) through a real model host, timed by the worker from framing the request
// to holding the parsed answer, against the same call timed inside the host's Python process
// (the reply's adapter_seconds); the difference is set beside one copy of the latents.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace segue {

struct HostBenchOptions {
  std::vector<int64_t> shape = {1, 16, 21, 60, 104};  // Wan 2.1, 480p, 81 frames
  int calls = 3;                                      // timed calls (after one warm-up)
  int threads = 2;                                    // torch threads in the host
  std::string adapter = "tinywan";  // segue_host's --adapter: a name or module:Class
  std::string host_path;  // worker/host (default: found from the binary's place in the tree)
};

nlohmann::json BenchHost(const HostBenchOptions& options);

}  // namespace segue
