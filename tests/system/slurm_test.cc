// Slurm for real: a one-node cluster on this machine (slurm-wlm and munge from Debian, set up by
// tests/system/slurm/one-node-cluster.sh), a coordinator pool that launches its workers with sbatch
// through deploy/slurm/segue-worker.sbatch, scaled up, rendering a job, and scaled down. Skips,
// saying why, only where Slurm cannot be had (no root, no packages, daemons that will not run).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "tests/support/test_util.h"
#include "tools/cli/client.h"

namespace segue {
namespace {

using namespace std::chrono_literals;

class OneNodeCluster {
 public:
  explicit OneNodeCluster(const std::string& dir) : dir_(dir) {
    code_ = RunCommand(
        "'" + SourceDir() + "/tests/system/slurm/one-node-cluster.sh' start '" + dir + "'", &log_,
        true);
  }
  ~OneNodeCluster() {
    RunCommand("'" + SourceDir() + "/tests/system/slurm/one-node-cluster.sh' stop '" + dir_ + "'");
  }
  int code() const { return code_; }
  const std::string& log() const { return log_; }
  std::string conf() const { return dir_ + "/slurm.conf"; }

 private:
  std::string dir_, log_;
  int code_ = -1;
};

std::string Squeue(const std::string& conf) {
  std::string out;
  RunCommand("SLURM_CONF='" + conf + "' squeue --noheader --format='%j %T'", &out);
  return out;
}

TEST(Slurm, PoolLaunchesWorkersWithSbatchRendersAndScalesDown) {
  TempDir dir;
  OneNodeCluster cluster(dir / "slurm");
  if (cluster.code() == 3) GTEST_SKIP() << "no Slurm here: " << cluster.log();
  ASSERT_EQ(cluster.code(), 0) << cluster.log();
  setenv("SLURM_CONF", cluster.conf().c_str(), 1);  // for the coordinator's sbatch and squeue
  std::ofstream(dir / "coordinator.yaml")
      << "pools:\n"
      << "  - name: hpc\n    provider: slurm\n    max: 3\n"
      << "    script: " << SourceDir() << "/deploy/slurm/segue-worker.sbatch\n"
      << "    sbatch_args: [--cpus-per-task=1, --time=10]\n";
  LocalFarm farm(dir / "farm", 0,
                 {"--config", dir / "coordinator.yaml", "--worker-binary",
                  BinDir() + "/segue-worker", "--heartbeat-ms", "200", "--liveness-ms", "5000"});
  unsetenv("SLURM_CONF");
  ASSERT_TRUE(farm.ok());
  std::string out;
  ASSERT_EQ(RunCommand(Cli("pool scale hpc 2 --coordinator " + farm.endpoint()), &out, true), 0)
      << out;
  Client client(farm.endpoint(), 5000);
  bool joined = false;
  for (int i = 0; i < 600 && !joined; ++i) {
    auto ws = client.Workers();
    int from_slurm = 0;
    for (const auto& w : ws.ok() ? *ws : std::vector<WorkerInfo>{}) from_slurm += w.pool == "hpc";
    joined = from_slurm == 2;
    if (!joined) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(joined) << "two workers from Slurm should join; squeue:\n" << Squeue(cluster.conf());
  EXPECT_EQ(Squeue(cluster.conf()).find("RUNNING") != std::string::npos, true)
      << Squeue(cluster.conf());

  std::ofstream(dir / "job.yaml") << "version: 1\nname: on-slurm\n"
                                  << "video: {width: 128, height: 64, fps: 24, duration: 2s}\n"
                                  << "model: {name: zoom, steps: 20}\n"
                                  << "segments: {length: 16, overlap: 4}\n"
                                  << "timeline: [{at: 0s, prompt: snow}]\n";
  ASSERT_EQ(
      RunCommand(Cli("submit '" + dir / "job.yaml" + "' --wait --coordinator " + farm.endpoint()),
                 &out, true),
      0)
      << out;
  std::string logs;
  RunCommand(Cli("logs " + SubmittedJobId(out) + " --coordinator " + farm.endpoint()), &logs);
  EXPECT_NE(logs.find("done by hpc-"), std::string::npos) << logs;

  // Scaled down: the idle workers are drained, leave, and their batch jobs end.
  ASSERT_EQ(RunCommand(Cli("pool scale hpc 0 --coordinator " + farm.endpoint()), &out, true), 0);
  bool gone = false;
  for (int i = 0; i < 300 && !gone; ++i) {
    auto ws = client.Workers();
    gone = ws.ok() && ws->empty() && Squeue(cluster.conf()).find("segue-") == std::string::npos;
    if (!gone) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(gone) << "squeue:\n" << Squeue(cluster.conf());
}

}  // namespace
}  // namespace segue
