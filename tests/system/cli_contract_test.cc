// The CLI as a contract a pipeline can script against (README.md, "Exit codes" and "JSON"):
// real coordinator, the segue CLI as a pipeline would run it. Job JSON in one shape with a
// schema version and 64-bit ids as strings; the job id printed first and flushed; exit codes by
// the job's final state; idempotent resubmission and cancel; metadata filters; paging; the
// coordinator's protocol version.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/util/process.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

using namespace std::chrono_literals;

const char* kShot = R"(version: 1
name: chorus
video: {width: 64, height: 48, fps: 12, frames: 24}
model: {name: zoom, steps: 4}
timeline: [{at: 0, prompt: "a hall of mirrors"}]
metadata: {show: hardest-part, shot: "010", version: v003}
output: {path: out/chorus.mp4, overwrite: true}
)";

class CliContract : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_ / "shot.yaml") << kShot;
    farm_ = std::make_unique<LocalFarm>(dir_ / "farm", 0);  // no workers: jobs stay QUEUED
    ASSERT_TRUE(farm_->ok());
  }
  // Runs `segue ARGS --coordinator ...`; its exit code, stdout in *out (stderr apart).
  int Segue(const std::string& args, std::string* out) {
    return RunCommand(
        Cli(args + " --coordinator " + farm_->endpoint()) + " 2>" + (dir_ / "stderr.txt"), out);
  }
  std::string Stderr() {
    std::ifstream in(dir_ / "stderr.txt");
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }

  // Whether `json` holds to docs/schema/job.schema.json (Debian's python3-jsonschema checks it).
  ::testing::AssertionResult FollowsTheJobSchema(const nlohmann::json& json) {
    std::ofstream(dir_ / "job.json", std::ios::trunc) << json.dump();
    std::string out;
    const int rc = RunCommand(
        "/usr/bin/python3 -c 'import json, sys, jsonschema; jsonschema.validate(json.load(open("
        "sys.argv[1])), json.load(open(sys.argv[2])))' '" +
            dir_ / "job.json" + "' '" + SourceDir() + "/docs/schema/job.schema.json' 2>&1",
        &out);
    if (rc == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << json.dump(2) << "\n" << out;
  }

  TempDir dir_;
  std::unique_ptr<LocalFarm> farm_;
};

TEST_F(CliContract, SubmitOnceWithAnIdAndFindTheJobByItsMetadata) {
  std::string out;
  ASSERT_EQ(Segue("submit '" + dir_ / "shot.yaml" + "' --json --submission-id shot010-take1", &out),
            0)
      << Stderr();
  const auto first = nlohmann::json::parse(out);
  EXPECT_EQ(first["schema_version"], 1);
  ASSERT_TRUE(first["id"].is_string()) << out;  // 64-bit values are strings
  EXPECT_EQ(first["existing"], false);
  // A resubmission after a lost reply: the same job, not a second one.
  ASSERT_EQ(Segue("submit '" + dir_ / "shot.yaml" + "' --json --submission-id shot010-take1", &out),
            0);
  const auto again = nlohmann::json::parse(out);
  EXPECT_EQ(again["id"], first["id"]);
  EXPECT_EQ(again["existing"], true);
  // Without an id, a second job.
  ASSERT_EQ(Segue("submit '" + dir_ / "shot.yaml" + "' --json", &out), 0);
  const std::string second = nlohmann::json::parse(out)["id"];
  EXPECT_NE(second, first["id"]);

  // Status: the same shape as jobs --json, with the metadata and the submission id.
  const std::string id = first["id"];
  ASSERT_EQ(Segue("status " + id + " --json", &out), 0);
  const auto status = nlohmann::json::parse(out);
  EXPECT_EQ(status["schema_version"], 1);
  EXPECT_EQ(status["metadata"]["shot"], "010");
  EXPECT_EQ(status["metadata"]["show"], "hardest-part");
  EXPECT_EQ(status["submission_id"], "shot010-take1");
  EXPECT_EQ(status["owner"], "local");
  EXPECT_TRUE(FollowsTheJobSchema(status));
  ASSERT_EQ(Segue("jobs --json --meta shot=010 --meta version=v003", &out), 0);
  auto listed = nlohmann::json::parse(out);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0], status) << "one job shape everywhere";
  ASSERT_EQ(Segue("jobs --json --meta shot=020", &out), 0);
  EXPECT_TRUE(nlohmann::json::parse(out).empty());
  // Paging: one at a time, the next page named on stderr.
  ASSERT_EQ(Segue("jobs --json --limit 1", &out), 0);
  ASSERT_EQ(nlohmann::json::parse(out).size(), 1u);
  EXPECT_NE(Stderr().find("--after " + id), std::string::npos) << Stderr();
  ASSERT_EQ(Segue("jobs --json --limit 1 --after " + id, &out), 0);
  EXPECT_EQ(nlohmann::json::parse(out)[0]["id"], second);
  ASSERT_EQ(Segue("jobs --json --state DONE", &out), 0);
  EXPECT_TRUE(nlohmann::json::parse(out).empty());
}

TEST_F(CliContract, ExitCodesFollowTheJobAndCancelIsIdempotent) {
  // submit --wait prints the job id first, at once, even into a pipe; it ends with the job.
  auto waiting = ChildProcess::Spawn({BinDir() + "/segue", "submit", dir_ / "shot.yaml", "--wait",
                                      "--coordinator", farm_->endpoint()},
                                     dir_ / "wait.log");
  ASSERT_TRUE(waiting.ok());
  std::string log;
  for (int i = 0; i < 100 && log.find("job id: ") == std::string::npos; ++i) {
    std::this_thread::sleep_for(50ms);
    std::ifstream in(dir_ / "wait.log");
    log.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_EQ(log.rfind("job id: ", 0), 0u) << log;  // the first line
  const std::string id = std::to_string(std::stoull(log.substr(8)));
  EXPECT_TRUE(waiting->Running());
  std::string out;
  EXPECT_EQ(Segue("status " + id, &out), 0) << "QUEUED is not a failure";
  EXPECT_EQ(Segue("cancel " + id, &out), 0) << Stderr();
  EXPECT_EQ(waiting->Wait(20000), 4) << "submit --wait of a job that was cancelled";
  EXPECT_EQ(Segue("status " + id, &out), 4);
  ASSERT_EQ(Segue("status " + id + " --json", &out), 4);
  EXPECT_TRUE(FollowsTheJobSchema(nlohmann::json::parse(out)));
  EXPECT_EQ(Segue("cancel " + id, &out), 0) << "cancelling again changes nothing: " << Stderr();
  EXPECT_NE(out.find("CANCELLED"), std::string::npos) << out;
  // Unknown jobs are bad input.
  EXPECT_EQ(Segue("status 999", &out), 2);
  EXPECT_EQ(Segue("cancel 999", &out), 2);
}

// Every command prints JSON with --json, jobs in the one job shape.
TEST_F(CliContract, EveryCommandSpeaksJson) {
  std::string out;
  for (const char* cmd :
       {"plan",     "render",        "submit", "status",  "jobs",    "cancel",     "retry",
        "priority", "drain",         "logs",   "workers", "pool ls", "pool scale", "pool autoscale",
        "seams",    "contact-sheet", "keygen", "token",   "version", "cache ls",   "cache prune",
        "takes",    "pick"}) {
    RunCommand(Cli(std::string(cmd) + " --help"), &out, true);
    EXPECT_NE(out.find("--json"), std::string::npos) << "segue " << cmd << " has no --json";
  }
  ASSERT_EQ(Segue("submit '" + dir_ / "shot.yaml" + "' --json", &out), 0) << Stderr();
  const std::string id = nlohmann::json::parse(out)["id"];
  for (const std::string& action : {"priority " + id + " 70", "cancel " + id, "retry " + id}) {
    ASSERT_EQ(Segue(action + " --json", &out), 0) << action << ": " << Stderr();
    const auto job = nlohmann::json::parse(out, nullptr, false);
    EXPECT_TRUE(FollowsTheJobSchema(job)) << action;
    EXPECT_EQ(job["id"], id);
  }
  EXPECT_EQ(nlohmann::json::parse(out)["priority"], 70);
  // Takes and picks: the submitted job (no takes) and a pick of its only section, in the job shape.
  ASSERT_EQ(Segue("takes " + id + " --json", &out), 0) << Stderr();
  const auto takes = nlohmann::json::parse(out);
  EXPECT_TRUE(FollowsTheJobSchema(takes["job"]));
  EXPECT_TRUE(takes["takes"].empty());
  ASSERT_EQ(Segue("pick " + id + " 0 2 --json", &out), 0) << Stderr();
  const auto pick = nlohmann::json::parse(out);
  EXPECT_TRUE(FollowsTheJobSchema(pick));
  EXPECT_EQ(pick["family"]["role"], "pick");
  EXPECT_EQ(pick["family"]["parent"], id);
  EXPECT_EQ(Segue("pick " + id + " 5 2", &out), 2);  // the manifest has one section
  ASSERT_EQ(Segue("logs " + id + " --json", &out), 0) << Stderr();
  const auto logs = nlohmann::json::parse(out);
  ASSERT_FALSE(logs["lines"].empty());
  EXPECT_TRUE(logs["lines"][0]["ms"].is_number_integer());
  EXPECT_NE(logs["lines"][0]["text"].get<std::string>().find("submitted"), std::string::npos);
  ASSERT_EQ(Segue("pool scale local 0 --json", &out), 0) << Stderr();
  EXPECT_EQ(nlohmann::json::parse(out)[0]["name"], "local");
  ASSERT_EQ(Segue("cache ls --json", &out), 0) << Stderr();
  EXPECT_EQ(nlohmann::json::parse(out)["schema_version"], 1);
  // A prune must say what to evict.
  EXPECT_EQ(Segue("cache prune", &out), 2);
  EXPECT_EQ(Segue("cache prune --older-than soon", &out), 2);
  ASSERT_EQ(Segue("cache prune --older-than 7d --json", &out), 0) << Stderr();
  EXPECT_EQ(nlohmann::json::parse(out)["evicted_segments"], 0);
  ASSERT_EQ(RunCommand(Cli("keygen '" + dir_ / "k" + "' --json"), &out), 0);
  EXPECT_EQ(nlohmann::json::parse(out)["public_key"].get<std::string>().size(), 40u);
}

// No answer is told apart by its cause: nothing listening, or a port that does not speak segue.
TEST_F(CliContract, AFarmThatIsDownIsToldApartFromAPortThatIsNotACoordinators) {
  std::string out;
  // A port nobody listens on (the coordinator's own, once it is stopped).
  const std::string endpoint = farm_->endpoint();
  farm_.reset();
  EXPECT_EQ(
      RunCommand("SEGUE_TIMEOUT_MS=1500 " + Cli("jobs --coordinator " + endpoint) + " 2>&1", &out),
      1);
  EXPECT_NE(out.find("no coordinator at " + endpoint + ": nothing accepted a connection"),
            std::string::npos)
      << out;
  // A port that answers, but not ZeroMQ: a coordinator's HTTP port.
  LocalFarm web(dir_ / "web", 0, {"--http", "127.0.0.1:0"});
  ASSERT_TRUE(web.ok());
  std::string http;
  std::ifstream(dir_ / "web/state/coordinator.http") >> http;
  EXPECT_EQ(RunCommand("SEGUE_TIMEOUT_MS=1500 " + Cli("jobs --coordinator tcp://" + http) + " 2>&1",
                       &out),
            1);
  EXPECT_NE(out.find("something listens at tcp://" + http + " but does not speak segue's protocol"),
            std::string::npos)
      << out;
}

TEST_F(CliContract, VersionNamesTheProtocolAndTheCaller) {
  std::string out;
  ASSERT_EQ(Segue("version --json", &out), 0) << Stderr();
  const auto v = nlohmann::json::parse(out);
  EXPECT_EQ(v["coordinator"]["protocol_version"], v["protocol_version"]);
  EXPECT_EQ(v["coordinator"]["identity"], "local");
  EXPECT_EQ(v["coordinator"]["role"], "admin");
  EXPECT_EQ(v["coordinator"]["version"], v["version"]);
}

}  // namespace
}  // namespace segue
