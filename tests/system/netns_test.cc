// Several hosts: the coordinator and a worker in separate network namespaces joined by a veth
// link (made inside the test). The worker's link goes down mid-segment: its task is requeued.
// The link comes back: the worker reconnects by itself and finishes the job.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/util/process.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

using namespace std::chrono_literals;

// Two namespaces and a veth pair between them, removed at scope exit.
class TwoHosts {
 public:
  TwoHosts() {
    const std::string id = std::to_string(getpid() % 100000);
    coord_ns_ = "segue-c-" + id;
    work_ns_ = "segue-w-" + id;
    subnet_ = "10.201." + std::to_string(getpid() % 250) + ".";
    std::string out;
    ok_ = RunCommand("ip netns add " + coord_ns_ + " && ip netns add " + work_ns_ +
                         " && ip link add vc" + id + " netns " + coord_ns_ + " type veth peer vw" +
                         id + " netns " + work_ns_ + " && ip -n " + coord_ns_ + " addr add " +
                         subnet_ + "1/24 dev vc" + id + " && ip -n " + work_ns_ + " addr add " +
                         subnet_ + "2/24 dev vw" + id + " && ip -n " + coord_ns_ + " link set vc" +
                         id + " up && ip -n " + work_ns_ + " link set vw" + id + " up && ip -n " +
                         coord_ns_ + " link set lo up && ip -n " + work_ns_ + " link set lo up",
                     &out, true) == 0;
    error_ = out;
    worker_link_ = "vw" + id;
  }
  ~TwoHosts() {
    RunCommand("ip netns del " + coord_ns_ + " 2>/dev/null; ip netns del " + work_ns_ +
               " 2>/dev/null");
  }
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  const std::string& coordinator_ns() const { return coord_ns_; }
  const std::string& worker_ns() const { return work_ns_; }
  std::string coordinator_ip() const { return subnet_ + "1"; }
  bool WorkerLink(bool up) {
    return RunCommand("ip -n " + work_ns_ + " link set " + worker_link_ + (up ? " up" : " down")) ==
           0;
  }

 private:
  bool ok_ = false;
  std::string error_, coord_ns_, work_ns_, subnet_, worker_link_;
};

TEST(Network, WorkerLinkDownRequeuesItsTaskAndItRejoinsWhenBack) {
  std::string out;
  if (geteuid() != 0 || RunCommand("command -v ip", &out) != 0)
    GTEST_SKIP() << "needs root and iproute2 to make network namespaces";
  TwoHosts hosts;
  if (!hosts.ok()) GTEST_SKIP() << "cannot make network namespaces here: " << hosts.error();
  TempDir dir;
  const std::string ip = "/usr/sbin/ip";
  const std::string endpoint = "tcp://" + hosts.coordinator_ip() + ":7450";
  auto coordinator =
      ChildProcess::Spawn({ip,
                           "netns",
                           "exec",
                           hosts.coordinator_ns(),
                           BinDir() + "/segue-coordinator",
                           "--listen",
                           endpoint,
                           "--state-dir",
                           dir / "state",
                           "--output-root",
                           dir / "root",
                           "--heartbeat-ms",
                           "200",
                           "--liveness-ms",
                           "1500",
                           "--checkpoint-steps",
                           "10",
                           "--encoder-preset",
                           "veryfast",
                           "--insecure"},  // the test's own namespaces: no one else can reach them
                          dir / "coordinator.log");
  ASSERT_TRUE(coordinator.ok()) << coordinator.message();
  auto worker =
      ChildProcess::Spawn({ip, "netns", "exec", hosts.worker_ns(), BinDir() + "/segue-worker",
                           "--coordinator", endpoint, "--name", "remote"},
                          dir / "worker.log");
  ASSERT_TRUE(worker.ok()) << worker.message();
  // The CLI runs beside the coordinator (the test's own namespace reaches neither host).
  auto cli = [&](const std::string& args, std::string* output) {
    return RunCommand(ip + " netns exec " + hosts.coordinator_ns() + " " +
                          Cli(args + " --coordinator " + endpoint),
                      output, true);
  };
  std::ofstream(dir / "job.yaml") << "version: 1\nname: remote\n"
                                  << "video: {width: 256, height: 144, fps: 24, duration: 3s}\n"
                                  << "model: {name: zoom, steps: 120}\n"
                                  << "segments: {length: 24, overlap: 6}\n"
                                  << "timeline: [{at: 0s, prompt: sea at night}]\n";
  bool submitted = false;
  for (int i = 0; i < 100 && !submitted; ++i) {  // the coordinator may still be starting
    submitted = cli("submit '" + dir / "job.yaml" + "'", &out) == 0;
    if (!submitted) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(submitted) << out;
  const std::string job = SubmittedJobId(out);
  // Wait for the remote worker to hold a segment, then cut its link.
  bool busy = false;
  for (int i = 0; i < 400 && !busy; ++i) {
    cli("workers --json", &out);
    busy = out.find("\"task\": \"job") != std::string::npos;
    if (!busy) std::this_thread::sleep_for(25ms);
  }
  ASSERT_TRUE(busy) << out;
  ASSERT_TRUE(hosts.WorkerLink(false));
  std::string logs;
  bool requeued = false;
  for (int i = 0; i < 200 && !requeued; ++i) {
    cli("logs " + job, &logs);
    requeued = logs.find("requeued: worker presumed dead (remote)") != std::string::npos;
    if (!requeued) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(requeued) << logs;
  ASSERT_TRUE(hosts.WorkerLink(true));
  nlohmann::json status;
  for (int i = 0; i < 1200; ++i) {
    ASSERT_EQ(cli("status " + job + " --json", &out), 0) << out;
    status = nlohmann::json::parse(out.substr(out.find('{')));
    if (status["state"] == "DONE" || status["state"] == "FAILED") break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(status["state"], "DONE") << status.dump();
  cli("logs " + job, &logs);
  const size_t cut = logs.find("requeued: worker presumed dead (remote)");
  ASSERT_NE(cut, std::string::npos);
  EXPECT_NE(logs.find("done by remote", cut), std::string::npos)
      << "the worker should work again after rejoining:\n"
      << logs;
  std::ifstream wlog(dir / "worker.log");
  std::string wtext((std::istreambuf_iterator<char>(wlog)), {});
  EXPECT_NE(wtext.find("reconnecting"), std::string::npos) << wtext;
  worker->Stop();
  coordinator->Stop();
}

}  // namespace
}  // namespace segue
