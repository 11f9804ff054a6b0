// CURVE keys: a coordinator that admits only known keys. Its workers and clients with the right
// keys render a job; a plain worker, a worker with an unknown key and a client that does not know
// the coordinator's key get nowhere, and the coordinator keeps serving.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/security/curve.h"
#include "common/util/process.h"
#include "tests/support/test_util.h"
#include "tools/cli/client.h"

namespace segue {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

TEST(Curve, KeygenWritesASecretAndAPublicFile) {
  TempDir dir;
  std::string out;
  ASSERT_EQ(RunCommand(Cli("keygen '" + dir / "farm" + "'"), &out, true), 0) << out;
  struct stat st {};
  ASSERT_EQ(stat((dir / "farm.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto secret = LoadCurveKeys(dir / "farm.key", true);
  ASSERT_TRUE(secret.ok()) << secret.message();
  auto pub = LoadCurveKeys(dir / "farm.pub", false);
  ASSERT_TRUE(pub.ok()) << pub.message();
  EXPECT_EQ(pub->public_key, secret->public_key);
  EXPECT_TRUE(pub->secret_key.empty());
  EXPECT_FALSE(LoadCurveKeys(dir / "farm.pub", true).ok());  // no secret in the public file
  // Keys are never overwritten; a readable secret is refused.
  EXPECT_EQ(RunCommand(Cli("keygen '" + dir / "farm" + "'"), &out, true), 2) << out;
  fs::permissions(dir / "farm.key", fs::perms::others_read, fs::perm_options::add);
  auto loose = LoadCurveKeys(dir / "farm.key", true);
  ASSERT_FALSE(loose.ok());
  EXPECT_NE(loose.message().find("chmod 600"), std::string::npos) << loose.message();
}

TEST(Curve, OnlyKnownKeysJoinAndTheFarmWorks) {
  TempDir dir;
  std::string out;
  fs::create_directories(dir / "allowed");
  for (const char* name : {"farm", "w1", "admin", "intruder"})
    ASSERT_EQ(RunCommand(Cli("keygen '" + dir / name + "'"), &out, true), 0) << out;
  fs::copy_file(dir / "w1.pub", dir / "allowed/w1.pub");
  fs::copy_file(dir / "admin.pub", dir / "allowed/admin.pub");
  LocalFarm farm(dir / "farm", 0,
                 {"--curve-key", dir / "farm.key", "--curve-clients", dir / "allowed"});
  ASSERT_TRUE(farm.ok());
  auto worker = [&](const std::string& name, std::vector<std::string> args) {
    std::vector<std::string> argv = {BinDir() + "/segue-worker", "--coordinator", farm.endpoint(),
                                     "--name", name};
    argv.insert(argv.end(), args.begin(), args.end());
    return ChildProcess::Spawn(argv, dir / (name + ".log"));
  };
  auto good = worker("w1", {"--curve-server-key", dir / "farm.pub", "--curve-key", dir / "w1.key"});
  auto plain = worker("plain", {});
  auto stranger = worker(
      "stranger", {"--curve-server-key", dir / "farm.pub", "--curve-key", dir / "intruder.key"});
  ASSERT_TRUE(good.ok() && plain.ok() && stranger.ok());
  const std::string as_admin = " --coordinator " + farm.endpoint() + " --curve-server-key '" +
                               dir / "farm.pub" + "' --curve-key '" + dir / "admin.key" + "'";
  std::ofstream(dir / "job.yaml") << "version: 1\nname: sealed\n"
                                  << "video: {width: 64, height: 64, fps: 24, frames: 24}\n"
                                  << "model: {name: zoom, steps: 10}\n"
                                  << "segments: {length: 12, overlap: 2}\n"
                                  << "timeline: [{at: 0s, prompt: secret garden}]\n";
  ASSERT_EQ(RunCommand(Cli("submit '" + dir / "job.yaml" + "' --wait" + as_admin), &out, true), 0)
      << out;
  ASSERT_EQ(RunCommand(Cli("workers --json" + as_admin), &out, true), 0) << out;
  EXPECT_NE(out.find("\"w1\""), std::string::npos) << out;
  EXPECT_EQ(out.find("plain"), std::string::npos) << out;
  EXPECT_EQ(out.find("stranger"), std::string::npos) << out;
  // Clients: one that does not know the coordinator's key hears nothing; one whose key is not
  // allowed is refused the same way.
  EXPECT_EQ(
      RunCommand("SEGUE_TIMEOUT_MS=2000 " + Cli("jobs --coordinator " + farm.endpoint()) + " 2>&1",
                 &out),
      1)
      << out;
  EXPECT_NE(out.find("no answer"), std::string::npos) << out;
  EXPECT_EQ(RunCommand("SEGUE_TIMEOUT_MS=2000 " +
                           Cli("jobs --coordinator " + farm.endpoint() + " --curve-server-key '" +
                               dir / "farm.pub" + "' --curve-key '" + dir / "intruder.key" + "'") +
                           " 2>&1",
                       &out),
            1)
      << out;
  std::ifstream log(dir / "farm/coordinator.log");
  std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_NE(text.find("refused a connection"), std::string::npos) << text;
  // A worker with a bad key file is bad input.
  EXPECT_EQ(RunCommand("'" + BinDir() + "/segue-worker' --curve-server-key '" + dir / "nope.pub" +
                           "' 2>&1",
                       &out),
            2)
      << out;
  EXPECT_NE(out.find("--curve-server-key"), std::string::npos) << out;
}

// Secure by default: plain TCP on an address other hosts can reach is refused (exit 2, saying
// why and what to do) unless --insecure says so; loopback and CURVE need no flag.
TEST(Curve, ListeningBeyondLoopbackWithoutCurveNeedsInsecure) {
  TempDir dir;
  std::string out;
  const std::string coordinator = "'" + BinDir() + "/segue-coordinator' --state-dir '" +
                                  dir / "state" + "' --output-root '" + dir / "root" + "'";
  for (const std::string listen : {"tcp://0.0.0.0:0", "tcp://*:0", "tcp://[::]:0"}) {
    EXPECT_EQ(RunCommand(coordinator + " --listen '" + listen + "'", &out, true), 2) << out;
    EXPECT_NE(out.find("there is no --curve-key"), std::string::npos) << out;
    EXPECT_NE(out.find("--insecure"), std::string::npos) << out;
  }
  // With --insecure (or a key) it starts; it is stopped again at once.
  auto started = ChildProcess::Spawn(
      {BinDir() + "/segue-coordinator", "--listen", "tcp://0.0.0.0:0", "--state-dir",
       dir / "state2", "--output-root", dir / "root", "--insecure"},
      dir / "insecure.log");
  ASSERT_TRUE(started.ok()) << started.message();
  std::string log;
  for (int i = 0; i < 100 && log.find("--insecure: listening") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream in(dir / "insecure.log");
    log.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  EXPECT_NE(log.find("--insecure: listening on tcp://0.0.0.0:0 without CURVE"), std::string::npos)
      << log;
  EXPECT_TRUE(started->Running());
  started->Stop(2000);
}

}  // namespace
}  // namespace segue
