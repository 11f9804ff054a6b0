// Worker pools: the config file, and pools that grow and shrink with real worker processes —
// launched by the coordinator itself (local), through sbatch/squeue/scancel (slurm), or by
// scaling a Deployment (kubernetes). Slurm and kubectl are stand-in scripts put first on PATH
// (a seam for spawning processes); the workers they start are the real segue-worker.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "coordinator/pools.h"
#include "tests/support/test_util.h"
#include "tools/cli/client.h"

namespace segue {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

TEST(PoolsConfig, ReadsEveryProviderAndNamesBadFields) {
  TempDir dir;
  std::ofstream(dir / "ok.yaml") << "pools:\n"
                                    "  - {name: cpu, provider: local, size: 1, max: 3, "
                                    "worker_args: [--threads, '2']}\n"
                                    "  - name: gpu\n"
                                    "    provider: slurm\n"
                                    "    min: 0\n"
                                    "    max: 100\n"
                                    "    autoscale: true\n"
                                    "    cooldown: 60\n"
                                    "    sbatch_args: [--partition=gpu, --gres=gpu:1]\n"
                                    "  - {name: k8s, provider: kubernetes, deployment: w, "
                                    "namespace: render}\n";
  auto pools = LoadPoolsConfig(dir / "ok.yaml");
  ASSERT_TRUE(pools.ok()) << pools.message();
  ASSERT_EQ(pools->size(), 4u);  // and the built-in local
  EXPECT_EQ((*pools)[0].worker_args, (std::vector<std::string>{"--threads", "2"}));
  EXPECT_EQ((*pools)[1].provider, "slurm");
  EXPECT_TRUE((*pools)[1].autoscale);
  EXPECT_EQ((*pools)[1].sbatch_args.size(), 2u);
  EXPECT_EQ((*pools)[2].k8s_namespace, "render");
  EXPECT_EQ((*pools)[3].name, "local");

  auto bad = [&](const std::string& text, const std::string& where, const std::string& what) {
    std::ofstream(dir / "bad.yaml") << text;
    auto r = LoadPoolsConfig(dir / "bad.yaml");
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.message().rfind(dir / "bad.yaml:" + where, 0), 0u) << r.message();
    EXPECT_NE(r.message().find(what), std::string::npos) << r.message();
  };
  bad("pools:\n  - {name: a, provider: lsf}\n",
      "2:", "pools[0].provider: unsupported provider 'lsf'");
  bad("pools:\n  - {name: a, min: 5, max: 2}\n", "2:", "pools[0].max: must be >= min");
  bad("pools:\n  - {name: a, size: 9, max: 2}\n", "2:", "pools[0].size: must be between 0 and 2");
  bad("pools:\n  - {name: Big Pool}\n", "2:", "pools[0].name");
  bad("pools:\n  - {name: a, colour: red}\n", "2:", "pools[0].colour: unknown field");
  bad("workers: 3\n", "1:", "unknown field");
  // The coordinator refuses to start on a bad config, exit code 2.
  std::string out;
  EXPECT_EQ(RunCommand("'" + BinDir() + "/segue-coordinator' --config '" + dir / "bad.yaml" +
                           "' --state-dir '" + dir / "s" + "'",
                       &out, true),
            2)
      << out;
  EXPECT_NE(out.find("bad.yaml:1:"), std::string::npos) << out;
}

std::string WriteJob(const TempDir& dir, int segments) {
  const std::string path = dir / "job.yaml";
  std::ofstream(path) << "version: 1\nname: pooled\n"
                      << "video: {width: 64, height: 64, fps: 24, frames: " << segments * 8 << "}\n"
                      << "model: {name: zoom, steps: 40}\n"
                      << "segments: {length: 8, overlap: 0}\n"
                      << "timeline: [{at: 0s, prompt: golden}]\n";
  return path;
}

// Polls until `pred` holds for the coordinator's pools and workers, or `seconds` pass.
bool WaitForPools(
    Client& client,
    const std::function<bool(const std::vector<PoolInfo>&, const std::vector<WorkerInfo>&)>& pred,
    int seconds = 60) {
  for (int i = 0; i < seconds * 20; ++i) {
    auto pools = client.Pools();
    auto workers = client.Workers();
    if (pools.ok() && workers.ok() && pred(*pools, *workers)) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

const PoolInfo* Named(const std::vector<PoolInfo>& pools, const std::string& name) {
  for (const auto& p : pools) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

// The built-in local pool: scaled by hand, then autoscaled from the work and back to its minimum,
// shrinking only by draining idle workers.
TEST(Pools, LocalPoolScalesByHandAndWithTheWork) {
  TempDir dir;
  // The built-in local pool, with a short cooldown so that the test need not wait 30 s.
  std::ofstream(dir / "coordinator.yaml") << "pools: [{name: local, max: 4, cooldown: 1}]\n";
  LocalFarm farm(
      dir / "farm", 0,
      {"--config", dir / "coordinator.yaml", "--heartbeat-ms", "200", "--liveness-ms", "3000"});
  ASSERT_TRUE(farm.ok());
  Client client(farm.endpoint(), 5000);
  std::string out;
  ASSERT_EQ(RunCommand(Cli("pool scale local 2 --coordinator " + farm.endpoint()), &out, true), 0)
      << out;
  EXPECT_TRUE(WaitForPools(client, [](const auto& pools, const auto& workers) {
    return Named(pools, "local")->idle == 2 && workers.size() == 2;
  })) << "two local workers should join";
  ASSERT_EQ(RunCommand(Cli("pool scale local 0 --coordinator " + farm.endpoint()), &out, true), 0);
  EXPECT_TRUE(WaitForPools(client, [](const auto& pools, const auto& workers) {
    return Named(pools, "local")->members == 0 && workers.empty();
  })) << "drained workers should leave";
  // Out of range: bad input.
  EXPECT_EQ(RunCommand(Cli("pool scale local 99 --coordinator " + farm.endpoint()), &out, true), 2);
  EXPECT_NE(out.find("between its min 0 and max 4"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(Cli("pool scale nope 1 --coordinator " + farm.endpoint()), &out, true), 2);
  EXPECT_NE(out.find("no pool named 'nope'"), std::string::npos) << out;

  // Autoscale: 6 segments of work, at most 3 workers.
  ASSERT_EQ(RunCommand(Cli("pool autoscale local --min 0 --max 3 --coordinator " + farm.endpoint()),
                       &out, true),
            0)
      << out;
  ASSERT_EQ(RunCommand(Cli("submit '" + WriteJob(dir, 6) + "' --coordinator " + farm.endpoint()),
                       &out, true),
            0)
      << out;
  const uint64_t job = std::stoull(SubmittedJobId(out));
  int most = 0;
  EXPECT_TRUE(WaitForPools(client, [&](const auto& pools, const auto&) {
    most = std::max<int>(most, static_cast<int>(Named(pools, "local")->members));
    auto st = client.Status(job);
    return st.ok() && st->state == "DONE";
  })) << "the job should finish on autoscaled workers";
  EXPECT_EQ(most, 3);  // grew to its max, not past it
  EXPECT_TRUE(WaitForPools(client, [](const auto& pools, const auto& workers) {
    const PoolInfo* p = Named(pools, "local");
    return p->size == 0 && p->members == 0 && workers.empty();
  })) << "with no work left the pool should drain back to its minimum";
  ASSERT_EQ(RunCommand(Cli("pool ls --json --coordinator " + farm.endpoint()), &out), 0);
  EXPECT_NE(out.find("\"autoscale\": true"), std::string::npos) << out;
}

// Writes stand-ins for sbatch, squeue and scancel that run the batch script at once on this
// machine, like a one-node cluster with room for everything.
std::string FakeSlurm(const TempDir& dir) {
  const std::string bin = dir / "fake-bin";
  fs::create_directories(bin);
  std::ofstream(bin + "/sbatch") << R"SH(#!/bin/bash
set -e
for a in "$@"; do
  case "$a" in
    --export=*) IFS=, read -ra kv <<< "${a#--export=}"
                for p in "${kv[@]}"; do [ "$p" = ALL ] || export "$p"; done ;;
    --output=*) out="${a#--output=}" ;;
  esac
  script="$a"
done
id=$(( $(cat "$FAKE_SLURM/next" 2>/dev/null || echo 100) + 1 ))
echo "$id" > "$FAKE_SLURM/next"
echo "sbatch $*" >> "$FAKE_SLURM/calls"
SLURM_JOB_ID=$id setsid bash "$script" > "${out//%j/$id}" 2>&1 < /dev/null &
echo $! > "$FAKE_SLURM/$id.pid"
echo "$id"
)SH";
  std::ofstream(bin + "/squeue") << R"SH(#!/bin/bash
for a in "$@"; do case "$a" in --jobs=*) id="${a#--jobs=}" ;; esac; done
if kill -0 "$(cat "$FAKE_SLURM/$id.pid" 2>/dev/null)" 2>/dev/null; then echo RUNNING; fi
)SH";
  std::ofstream(bin + "/scancel") << R"SH(#!/bin/bash
echo "scancel $*" >> "$FAKE_SLURM/calls"
kill "$(cat "$FAKE_SLURM/$1.pid")" 2>/dev/null || true
)SH";
  std::ofstream(bin + "/kubectl") << R"SH(#!/bin/bash
echo "kubectl $*" >> "$FAKE_SLURM/calls"
)SH";
  for (const char* f : {"sbatch", "squeue", "scancel", "kubectl"})
    fs::permissions(bin + "/" + f, fs::perms::owner_all, fs::perm_options::add);
  return bin;
}

TEST(Pools, SlurmAndKubernetesPoolsGoThroughTheirCommands) {
  TempDir dir;
  const std::string bin = FakeSlurm(dir);
  setenv("FAKE_SLURM", dir.path().c_str(), 1);
  const std::string path = getenv("PATH");
  setenv("PATH", (bin + ":" + path).c_str(), 1);
  const std::string script = SourceDir() + "/deploy/slurm/segue-worker.sbatch";
  std::ofstream(dir / "coordinator.yaml")
      << "pools:\n"
      << "  - {name: gpu, provider: slurm, max: 4, script: '" << script
      << "', sbatch_args: [--partition=gpu]}\n"
      << "  - {name: k8s, provider: kubernetes, max: 8, deployment: segue-worker, namespace: "
         "render}\n";
  LocalFarm farm(dir / "farm", 0,
                 {"--config", dir / "coordinator.yaml", "--worker-binary",
                  BinDir() + "/segue-worker", "--heartbeat-ms", "200", "--liveness-ms", "3000"});
  setenv("PATH", path.c_str(), 1);
  ASSERT_TRUE(farm.ok());
  Client client(farm.endpoint(), 5000);
  std::string out;
  ASSERT_EQ(RunCommand(Cli("pool scale gpu 2 --coordinator " + farm.endpoint()), &out, true), 0)
      << out;
  EXPECT_TRUE(WaitForPools(client, [](const auto& pools, const auto& workers) {
    return Named(pools, "gpu")->idle == 2 && workers.size() == 2;
  })) << "two Slurm-launched workers should join";
  // They render a job.
  ASSERT_EQ(
      RunCommand(Cli("submit '" + WriteJob(dir, 4) + "' --wait --coordinator " + farm.endpoint()),
                 &out, true),
      0)
      << out;
  std::string calls;
  {
    std::ifstream in(dir / "calls");
    calls.assign(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_NE(calls.find("--partition=gpu"), std::string::npos) << calls;
  EXPECT_NE(calls.find("SEGUE_POOL=gpu"), std::string::npos) << calls;
  // Down to one: an idle worker is drained and its batch job ends with it.
  ASSERT_EQ(RunCommand(Cli("pool scale gpu 1 --coordinator " + farm.endpoint()), &out, true), 0);
  EXPECT_TRUE(WaitForPools(client, [](const auto& pools, const auto& workers) {
    return Named(pools, "gpu")->members == 1 && workers.size() == 1;
  }));

  // kubernetes: the Deployment's replicas follow the pool's size.
  ASSERT_EQ(RunCommand(Cli("pool scale k8s 3 --coordinator " + farm.endpoint()), &out, true), 0)
      << out;
  {
    std::ifstream in(dir / "calls");
    calls.assign(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_NE(calls.find("kubectl scale deployment/segue-worker --replicas=3 --namespace=render"),
            std::string::npos)
      << calls;
  // The stand-in cluster's jobs outlive the coordinator: end them.
  RunCommand("for f in '" + dir.path() + "'/*.pid; do kill $(cat \"$f\") 2>/dev/null; done; true");
}

}  // namespace
}  // namespace segue
