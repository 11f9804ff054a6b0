// Worker pools: groups of workers the coordinator starts and stops itself, through a provider.
//
//   local       segue-worker child processes on the coordinator's machine
//   slurm       one batch job per worker (sbatch), cancelled with scancel while still pending
//   kubernetes  the replicas of a worker Deployment (kubectl scale)
//
// A pool has a wanted size between a minimum and a maximum; with autoscale on, the wanted size
// follows the farm's runnable work, changing at most once per cooldown. A pool grows by launching
// workers and shrinks only by draining idle ones (and by cancelling workers that have not joined
// yet): a segment in progress is never cut short to save a machine.
//
// Pools are defined in the coordinator's config file (configs/coordinator.yaml); a pool named
// `local` exists without one. Changes made at run time (segue pool scale/autoscale) are kept by
// the coordinator in its store and survive a restart. Workers say which pool launched them
// (segue-worker --pool), so a restarted coordinator counts the workers its predecessor launched.
//
// Not thread-safe: owned by the coordinator's event loop.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/status/status.h"

namespace segue {

struct PoolConfig {
  std::string name;
  std::string provider = "local";  // local | slurm | kubernetes
  int size = 0, min = 0, max = 4;
  bool autoscale = false;
  int cooldown_s = 30;
  std::vector<std::string> worker_args;  // more segue-worker flags (local, slurm)
  std::string slurm_script = "deploy/slurm/segue-worker.sbatch";
  std::vector<std::string> sbatch_args;
  std::string deployment = "segue-worker";  // kubernetes
  std::string k8s_namespace = "default";
};

// Reads the `pools:` list of a coordinator config file. Errors name FILE:LINE:COLUMN and the
// field. The built-in `local` pool is added when the file does not define one.
Result<std::vector<PoolConfig>> LoadPoolsConfig(const std::string& path);
// The same for the text of a config file; `path` names it in errors.
Result<std::vector<PoolConfig>> ParsePoolsConfig(const std::string& text, const std::string& path);
// The pools when there is no config file: `local`, empty, up to 4 workers.
std::vector<PoolConfig> DefaultPools();

// How providers reach the outside world: the coordinator's endpoint for workers to join, the
// worker binary, where logs go, and how commands run (a seam: tests put scripts on PATH).
struct PoolEnvironment {
  std::string endpoint;
  std::string worker_binary;
  std::string log_dir;
  // The coordinator's CURVE key file, if it uses CURVE: local workers use it as theirs too (they
  // run beside the coordinator, as the same user).
  std::string curve_key_file;
  // Runs argv, returns its stdout or an error naming the command and its exit status.
  std::function<Result<std::string>(const std::vector<std::string>&)> run;
};

// What the coordinator sees of the pools' workers at one moment.
struct PoolView {
  struct Worker {
    std::string name;
    bool idle = false;
    bool draining = false;
  };
  std::map<std::string, std::vector<Worker>> connected;  // pool name -> its joined workers
  int64_t demand = 0;  // tasks that could run now or are running, over all jobs
};

struct PoolStatus {
  PoolConfig config;
  int members = 0, idle = 0, busy = 0;
  std::string last_change;
};

class PoolManager {
 public:
  PoolManager(std::vector<PoolConfig> pools, PoolEnvironment env);
  ~PoolManager();

  // Settings kept across restarts: called with (pool, "size min max autoscale") on each change.
  void OnChange(std::function<void(const std::string&, const std::string&)> persist) {
    persist_ = std::move(persist);
  }
  // Applies settings saved by OnChange's callback.
  void Restore(const std::string& pool, const std::string& saved);

  // Launches and cancels workers to match each pool's wanted size; returns the workers to drain.
  std::vector<std::string> Tick(const PoolView& view, uint64_t now_ms);

  Status Scale(const std::string& pool, int size);
  Status Autoscale(const std::string& pool, bool enabled, int min, int max);
  std::vector<PoolStatus> List(const PoolView& view) const;

 private:
  struct Pool;
  Pool* Find(const std::string& name);
  void Persist(const Pool& p);
  std::vector<std::unique_ptr<Pool>> pools_;
  PoolEnvironment env_;
  std::function<void(const std::string&, const std::string&)> persist_;
  uint64_t next_name_ = 0;
  std::string name_salt_;
};

}  // namespace segue
