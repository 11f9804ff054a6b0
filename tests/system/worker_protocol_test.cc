// segue-worker's side of the protocol, seen from a ROUTER standing in for the coordinator: a real
// worker process on loopback, the messages it sends in the order it sends them.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/protocol/protocol.h"
#include "common/util/process.h"
#include "tests/support/test_util.h"

namespace segue {
namespace {

using namespace std::chrono_literals;

struct Received {
  std::string identity;
  wire::Envelope::Which which;
};

// The next message from a worker within `wait`, or nullopt.
std::optional<Received> Next(zmq::socket_t& router, std::chrono::milliseconds wait) {
  zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, wait) <= 0) return std::nullopt;
  zmq::message_t id, body;
  if (!router.recv(id, zmq::recv_flags::dontwait)) return std::nullopt;
  (void)router.recv(body);
  auto in = Incoming::Parse(body.data(), body.size());
  if (!in.ok()) return std::nullopt;
  return Received{id.to_string(), (*in)->envelope().which()};
}

// Skips heartbeats.
std::optional<Received> NextNotHeartbeat(zmq::socket_t& router, std::chrono::milliseconds wait) {
  const auto until = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < until) {
    auto r = Next(router, 100ms);
    if (r && r->which != wire::Envelope::HEARTBEAT) return r;
  }
  return std::nullopt;
}

void SendTo(zmq::socket_t& router, const std::string& identity, const std::string& bytes) {
  router.send(zmq::buffer(identity), zmq::send_flags::sndmore);
  router.send(zmq::buffer(bytes), zmq::send_flags::none);
}

// A real segue-worker joined to `router` (which stands in for the coordinator): spawned, its Hello
// answered with a Welcome, its first work request read. `identity` is its routing id.
struct JoinedWorker {
  std::optional<ChildProcess> process;
  std::string identity;
};

JoinedWorker JoinWorker(zmq::socket_t& router, const TempDir& dir) {
  JoinedWorker j;
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  auto worker = ChildProcess::Spawn(
      {BinDir() + "/segue-worker", "--coordinator", endpoint, "--name", "w0"}, dir / "worker.log");
  EXPECT_TRUE(worker.ok()) << worker.message();
  if (!worker.ok()) return j;
  j.process.emplace(std::move(*worker));
  auto hello = NextNotHeartbeat(router, 20000ms);
  EXPECT_TRUE(hello.has_value() && hello->which == wire::Envelope::HELLO);
  if (!hello) return j;
  capnp::MallocMessageBuilder b;
  auto w = b.initRoot<wire::Envelope>().initWelcome();
  w.setWorkerId("w0");
  w.setHeartbeatMs(1000);
  w.setLivenessMs(10000);
  SendTo(router, hello->identity, Serialize(b));
  auto first = NextNotHeartbeat(router, 5000ms);
  EXPECT_TRUE(first.has_value() && first->which == wire::Envelope::WORK_REQUEST);
  if (first) j.identity = first->identity;
  return j;
}

// A ROUTER on loopback standing in for the coordinator, and a scratch folder for the worker's log.
class WorkerProtocol : public ::testing::Test {
 protected:
  void SetUp() override {
    router.set(zmq::sockopt::linger, 0);
    router.bind("tcp://127.0.0.1:*");
  }
  TempDir dir;
  zmq::context_t ctx{1};
  zmq::socket_t router{ctx, zmq::socket_type::router};
};

// A finished task's worker asks for its next one before it sends the result: the coordinator
// then stores the result and hands out the next task in one turn, behind one disk sync.
TEST_F(WorkerProtocol, AsksForTheNextTaskBeforeSendingTheResult) {
  JoinedWorker worker = JoinWorker(router, dir);
  ASSERT_FALSE(worker.identity.empty());
  {
    capnp::MallocMessageBuilder b;
    auto t = b.initRoot<wire::Envelope>().initAssignment().initRender();
    t.setJobId(1);
    t.setSegment(0);
    t.setAttempt(1);
    t.setModel("zoom");
    t.setSteps(2);
    t.setSampler("euler");
    t.setShift(1.0);
    t.setGuidance(1.0);
    t.setWidth(64);
    t.setHeight(32);
    t.setFpsNum(12);
    t.setFpsDen(1);
    t.setLatentStart(0);
    t.setLatentCount(8);
    t.setTotalLatents(8);
    t.setSeed(7);
    t.setCameraMotion("zoom-in");
    t.setCameraSpeed(1.0);
    auto k = t.initTimeline(1)[0];
    k.setFrame(0);
    k.setPrompt("hello");
    SendTo(router, worker.identity, Serialize(b));
  }
  // What follows the assignment, checkpoints aside: the request first, then the result.
  std::vector<wire::Envelope::Which> after;
  while (after.size() < 2) {
    auto r = NextNotHeartbeat(router, 30000ms);
    ASSERT_TRUE(r.has_value()) << "the worker went quiet; its log is " << dir / "worker.log";
    if (r->which == wire::Envelope::CHECKPOINT) continue;
    ASSERT_NE(r->which, wire::Envelope::TASK_FAILURE) << "see " << dir / "worker.log";
    after.push_back(r->which);
  }
  EXPECT_EQ(after[0], wire::Envelope::WORK_REQUEST);
  EXPECT_EQ(after[1], wire::Envelope::RENDER_RESULT);
}

// Absurd sizes in an assignment (a broken or hostile coordinator's) fail that task with a
// reason; the worker used to die of bad_alloc. It keeps serving: the next request follows.
TEST_F(WorkerProtocol, AbsurdTaskSizesFailTheTaskAndTheWorkerServesOn) {
  JoinedWorker worker = JoinWorker(router, dir);
  ASSERT_FALSE(worker.identity.empty());
  for (int kind = 0; kind < 2; ++kind) {
    capnp::MallocMessageBuilder b;
    auto a = b.initRoot<wire::Envelope>().initAssignment();
    if (kind == 0) {
      auto t = a.initEncode();
      t.setJobId(1);
      t.setChunk(0);
      t.setAttempt(1);
      t.setModel("zoom");
      t.setWidth(7680);
      t.setHeight(4320);
      t.setFpsNum(24);
      t.setFpsDen(1);
      t.setKeepFrames(4000000000u);  // 4 billion frames of 8K
      t.setCodec("h264");
      SetTensor(t.initLatents(), Tensor::Zeros({1, 1, 1, 1}));
    } else {
      auto t = a.initRender();
      t.setJobId(1);
      t.setSegment(0);
      t.setAttempt(1);
      t.setModel("zoom");
      t.setSteps(2);
      t.setSampler("euler");
      t.setWidth(16384);
      t.setHeight(16384);
      t.setFpsNum(24);
      t.setFpsDen(1);
      t.setLatentCount(4000000000u);
      t.setTotalLatents(4000000000u);
      auto k = t.initTimeline(1)[0];
      k.setFrame(0);
      k.setPrompt("hello");
    }
    SendTo(router, worker.identity, Serialize(b));
    bool failed = false;
    for (int i = 0; i < 2 && !failed; ++i) {
      auto r = NextNotHeartbeat(router, 20000ms);
      ASSERT_TRUE(r.has_value()) << "the worker went quiet; its log is " << dir / "worker.log";
      failed = r->which == wire::Envelope::TASK_FAILURE;
    }
    EXPECT_TRUE(failed) << "kind " << kind;
    EXPECT_TRUE(worker.process->Running());
  }
}

}  // namespace
}  // namespace segue
