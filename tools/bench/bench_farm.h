// segue-bench farm: the coordinator's own cost, measured against simulated workers.
//
// A real coordinator (in this process, on its own thread, with a real RocksDB store in a
// temporary folder) serves simulated workers that speak the real protocol over real ZeroMQ
// sockets on loopback. The simulated workers' "model" costs nothing (dispatch) or a fixed time
// per segment (efficiency), so what is measured is the farm: scheduling, the store's synced
// writes, messaging. Dispatch is measured twice: as fast as it goes (the rate), and offered a
// fixed rate by paced workers (the latency at that rate; at saturation a closed loop of n
// workers waits n / rate on average, whatever the farm does).
#pragma once

#include <nlohmann/json.hpp>

namespace segue {

struct FarmBenchOptions {
  int workers = 16;            // the efficiency run's
  int dispatch_workers = 32;   // the dispatch run's
  int dispatch_tasks = 20000;  // segments of the null-model job
  int paced_workers = 64;      // the paced run's: each asks once every paced_workers / paced_rate s
  int paced_rate = 20000;      // tasks/s offered in the paced run
  int efficiency_segments = 200;
  int task_ms = 100;  // the fixed-cost model's time per segment
  int rounds = 5;     // each figure is the median of this many rounds
};

// Runs both measurements, prints them, returns them as JSON. Throws std::runtime_error when the
// farm cannot be set up or a run does not finish.
nlohmann::json BenchFarm(const FarmBenchOptions& options);

// segue-bench codenoise: one sampler step's overlap exchange of a co-denoised job of `segments`
// segments (512x288 latents, overlap 12) over `workers` simulated gang members, through the
// coordinator; the baseline is a ROUTER that returns each member's values unmerged.
nlohmann::json BenchCodenoise(int segments, int workers, int steps);

}  // namespace segue
