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
  // Clients: one that does not know the coordinator's key gets no answer, and is told that the
  // two sides do not agree on CURVE; one whose key is not allowed is told its key was refused.
  EXPECT_EQ(
      RunCommand("SEGUE_TIMEOUT_MS=2000 " + Cli("jobs --coordinator " + farm.endpoint()) + " 2>&1",
                 &out),
      1)
      << out;
  EXPECT_NE(out.find("does not speak segue's protocol"), std::string::npos) << out;
  EXPECT_NE(out.find("agree on CURVE"), std::string::npos) << out;
  EXPECT_EQ(RunCommand("SEGUE_TIMEOUT_MS=2000 " +
                           Cli("jobs --coordinator " + farm.endpoint() + " --curve-server-key '" +
                               dir / "farm.pub" + "' --curve-key '" + dir / "intruder.key" + "'") +
                           " 2>&1",
                       &out),
            1)
      << out;
  EXPECT_NE(out.find("refused this client's CURVE key"), std::string::npos) << out;
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

// Roles over real sockets: a keys file names each key; the coordinator checks every request
// against its sender's role, binds worker names to keys and reads the file again when it changes.
TEST(Curve, RolesFromTheKeysFileOverRealSockets) {
  TempDir dir;
  std::string out;
  for (const char* name : {"farm", "ops", "alice", "bob", "node7", "viewer"})
    ASSERT_EQ(RunCommand(Cli("keygen '" + dir / name + "'"), &out, true), 0) << out;
  auto write_keys = [&](const std::string& viewer_role) {
    std::ofstream(dir / "keys.yaml", std::ios::trunc)
        << "identities:\n"
        << "  - {name: ops, role: admin, key_file: ops.pub}\n"
        << "  - {name: alice, role: submitter, key_file: alice.pub}\n"
        << "  - {name: bob, role: submitter, key_file: bob.pub}\n"
        << "  - {name: node7, role: worker, key_file: node7.pub}\n"
        << "  - {name: dashboard, role: " << viewer_role << ", key_file: viewer.pub}\n";
  };
  write_keys("viewer");
  LocalFarm farm(dir / "farm", 0, {"--curve-key", dir / "farm.key", "--keys", dir / "keys.yaml"});
  ASSERT_TRUE(farm.ok());
  auto as = [&](const std::string& who) {
    return " --coordinator " + farm.endpoint() + " --curve-server-key '" + dir / "farm.pub" +
           "' --curve-key '" + dir / (who + ".key") + "'";
  };
  auto worker = [&](const std::string& name, const std::string& key) {
    return ChildProcess::Spawn(
        {BinDir() + "/segue-worker", "--coordinator", farm.endpoint(), "--name", name,
         "--curve-server-key", dir / "farm.pub", "--curve-key", dir / (key + ".key")},
        dir / (name + ".log"));
  };
  auto node7 = worker("node7", "node7");
  ASSERT_TRUE(node7.ok());
  // The worker's key may not take a name outside its own: that worker is told so and exits 4.
  auto impostor = worker("gpu-9", "node7");
  ASSERT_TRUE(impostor.ok());
  int code = -1;
  for (int i = 0; i < 200 && impostor->Running(); ++i) std::this_thread::sleep_for(50ms);
  ASSERT_FALSE(impostor->Running());
  code = impostor->Wait();
  EXPECT_EQ(code, 4);
  std::ifstream impostor_log(dir / "gpu-9.log");
  const std::string said((std::istreambuf_iterator<char>(impostor_log)), {});
  EXPECT_NE(said.find("identity 'node7' may not name a worker 'gpu-9'"), std::string::npos) << said;

  std::ofstream(dir / "job.yaml") << "version: 1\nname: owned\n"
                                  << "video: {width: 64, height: 64, fps: 24, frames: 24}\n"
                                  << "model: {name: zoom, steps: 4}\n"
                                  << "segments: {length: 12, overlap: 2}\n"
                                  << "timeline: [{at: 0s, prompt: a garden}]\n"
                                  << "output: {overwrite: true}\n";
  ASSERT_EQ(RunCommand(Cli("submit '" + dir / "job.yaml" + "' --wait" + as("alice")), &out, true),
            0)
      << out;
  const std::string id = std::to_string(std::stoull(out.substr(out.find("job id: ") + 8)));
  ASSERT_EQ(RunCommand(Cli("status " + id + " --json" + as("bob")), &out, true), 0) << out;
  EXPECT_NE(out.find("\"owner\": \"alice\""), std::string::npos) << out;
  // Bob reads alice's job but may not retry it; alice may.
  EXPECT_NE(RunCommand(Cli("retry " + id + as("bob")), &out, true), 0) << out;
  EXPECT_NE(out.find("denied: job " + id + " belongs to 'alice'"), std::string::npos) << out;
  // Neither submitter runs the farm; the viewer reads and submits nothing; a worker's key reads
  // nothing.
  EXPECT_NE(RunCommand(Cli("drain node7" + as("alice")), &out, true), 0) << out;
  EXPECT_NE(out.find("(submitter) may not drain workers"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(Cli("jobs" + as("viewer")), &out, true), 0) << out;
  EXPECT_NE(out.find("alice"), std::string::npos) << out;
  EXPECT_NE(RunCommand(Cli("submit '" + dir / "job.yaml" + "'" + as("viewer")), &out, true), 0);
  EXPECT_NE(out.find("'dashboard' (viewer) may not submit jobs"), std::string::npos) << out;
  EXPECT_NE(RunCommand(Cli("jobs" + as("node7")), &out, true), 0) << out;
  EXPECT_NE(out.find("(worker) may not read"), std::string::npos) << out;
  ASSERT_EQ(RunCommand(Cli("workers --json" + as("ops")), &out, true), 0) << out;
  EXPECT_NE(out.find("\"identity\": \"node7\""), std::string::npos) << out;
  EXPECT_EQ(out.find("gpu-9"), std::string::npos) << out;

  // The keys file changes: the viewer becomes a submitter without a restart.
  write_keys("submitter");
  bool submitted = false;
  for (int i = 0; i < 100 && !submitted; ++i) {
    submitted =
        RunCommand(Cli("submit '" + dir / "job.yaml" + "'" + as("viewer")), &out, true) == 0;
    if (!submitted) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(submitted) << out;
  std::ifstream log(dir / "farm/coordinator.log");
  const std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_NE(text.find("reloaded: 6 identities"), std::string::npos) << text;
  EXPECT_NE(text.find("identity 'bob' (submitter) may act only on its own jobs"), std::string::npos)
      << text;
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
  // CURVE without identities would make every key an admin: --keys is wanted too.
  ASSERT_EQ(RunCommand(Cli("keygen '" + dir / "farm" + "'"), &out, true), 0) << out;
  EXPECT_EQ(
      RunCommand(coordinator + " --listen tcp://0.0.0.0:0 --curve-key '" + dir / "farm.key" + "'",
                 &out, true),
      2)
      << out;
  EXPECT_NE(out.find("there is no --keys"), std::string::npos) << out;
  // A keys file with a mistake is bad input, named with its line.
  std::ofstream(dir / "keys.yaml") << "identities:\n  - {name: a, role: boss, key: x}\n";
  EXPECT_EQ(RunCommand(coordinator + " --curve-key '" + dir / "farm.key" + "' --keys '" +
                           dir / "keys.yaml" + "'",
                       &out, true),
            2)
      << out;
  EXPECT_NE(out.find("keys.yaml:2:21: identities[0].role: 'boss' is not a role"), std::string::npos)
      << out;
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
