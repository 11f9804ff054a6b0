// What a coordinator restart keeps of a task's history: a coordinator in this process over a real
// store, raw protocol peers on real ZeroMQ sockets, stopped and started again on the same store.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>
#include <zmq.hpp>

#include "common/protocol/protocol.h"
#include "coordinator/coordinator.h"
#include "coordinator/journal.h"
#include "tests/support/fake_worker.h"
#include "tests/support/test_util.h"
#include "tools/cli/client.h"

namespace segue {
namespace {

using namespace std::chrono_literals;

// A coordinator serving on its own thread until this goes away.
class Serving {
 public:
  explicit Serving(const CoordinatorOptions& o) {
    auto c = Coordinator::Create(o);
    if (!c.ok()) {
      ADD_FAILURE() << c.message();
      return;
    }
    coordinator_ = std::move(*c);
    thread_ = std::thread([this] { coordinator_->Run(stop_); });
  }
  ~Serving() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  bool ok() const { return coordinator_ != nullptr; }
  std::string endpoint() const { return coordinator_->endpoint(); }

 private:
  std::unique_ptr<Coordinator> coordinator_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A worker reduced to its messages (tests/support/fake_worker.h), on a real socket.
class Peer {
 public:
  Peer(zmq::context_t&, const std::string& endpoint, const std::string& name)
      : worker_(name), connection_(worker_, endpoint) {}
  void AskForWork() { connection_.Send(FakeWorker::WorkRequest(1)); }
  // The render assignment that arrives within `wait` as (job, segment, attempt), or nullopt.
  std::optional<std::tuple<uint64_t, uint32_t, uint32_t>> Assignment(
      std::chrono::milliseconds wait) {
    const auto until = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < until) {
      auto a = connection_.NextAssignment(std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now()));
      if (a && a->kind == wire::TaskKind::RENDER)
        return std::make_tuple(a->job, a->index, a->attempt);
    }
    return std::nullopt;
  }
  void Fail(uint64_t job, uint32_t segment, uint32_t attempt) {
    FakeAssignment a;
    a.job = job;
    a.index = segment;
    a.attempt = attempt;
    connection_.Send(FakeWorker::Failure(a, "out of memory"));
  }

 private:
  FakeWorker worker_;
  FakeWorker::Connection connection_;
};

bool WaitForWorkers(Client& client, size_t n) {
  for (int i = 0; i < 200; ++i) {
    auto ws = client.Workers();
    if (ws.ok() && ws->size() == n) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

// A coordinator over DIR/state; the raw peers send no heartbeats.
CoordinatorOptions Options(const TempDir& dir) {
  CoordinatorOptions o;
  o.listen = "tcp://127.0.0.1:*";
  o.state_dir = dir / "state";
  o.output_root = dir / "root";
  o.liveness_ms = 600000;
  return o;
}

SubmitRequest OneSegmentJob() {
  SubmitRequest req;
  req.manifest_name = "one.yaml";
  req.manifest_text =
      "version: 1\nvideo: {width: 64, height: 32, fps: 12, frames: 8}\nmodel: {name: zoom, "
      "steps: 2}\nsegments: {length: 8, overlap: 0}\ntimeline: [{at: 0, prompt: hello}]\n"
      "output: {path: out/one.mp4}\n";
  return req;
}

// A first coordinator over `o`: w0 joins, the one-segment job is submitted and w0 takes its task,
// (job, segment, attempt) into *assigned; `then` runs before the coordinator stops.
testing::AssertionResult FirstAssignment(
    const CoordinatorOptions& o, zmq::context_t& ctx,
    std::tuple<uint64_t, uint32_t, uint32_t>* assigned,
    const std::function<void(Peer& w0, Client& client)>& then = {}) {
  Serving first(o);
  if (!first.ok()) return testing::AssertionFailure() << "the coordinator did not start";
  Peer w0(ctx, first.endpoint(), "w0");
  Client client(first.endpoint(), 5000);
  if (!WaitForWorkers(client, 1)) return testing::AssertionFailure() << "w0 did not join";
  auto sub = client.Submit(OneSegmentJob());
  if (!sub.ok()) return testing::AssertionFailure() << sub.message();
  w0.AskForWork();
  auto a = w0.Assignment(5000ms);
  if (!a.has_value()) return testing::AssertionFailure() << "w0 got no task";
  *assigned = *a;
  if (then) then(w0, client);
  return testing::AssertionSuccess();
}

// The workers a task failed on outlive a restart: the task still avoids them, and its job fails
// once it has failed on max_attempts distinct workers, counting those before the restart.
TEST(Restore, ATaskRemembersTheWorkersItFailedOn) {
  TempDir dir;
  CoordinatorOptions o = Options(dir);
  o.max_attempts = 2;
  zmq::context_t ctx(1);
  std::tuple<uint64_t, uint32_t, uint32_t> first;
  ASSERT_TRUE(FirstAssignment(o, ctx, &first, [&](Peer& w0, Client& client) {
    const auto [job, segment, attempt] = first;
    w0.Fail(job, segment, attempt);
    for (int i = 0; i < 200; ++i) {  // the failure is recorded before the coordinator stops
      auto st = client.Status(job);
      if (st.ok() && st->segments_running == 0) break;
      std::this_thread::sleep_for(10ms);
    }
  }));
  const uint64_t job = std::get<0>(first);
  Serving second(o);
  ASSERT_TRUE(second.ok());
  Peer w0(ctx, second.endpoint(), "w0");
  Peer w1(ctx, second.endpoint(), "w1");
  Client client(second.endpoint(), 5000);
  ASSERT_TRUE(WaitForWorkers(client, 2));
  // w0 asks first, alone: it failed this task, and w1 could take it, so it gets nothing.
  w0.AskForWork();
  EXPECT_FALSE(w0.Assignment(500ms).has_value());
  w1.AskForWork();
  auto a = w1.Assignment(5000ms);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(std::get<0>(*a), job);
  w1.Fail(job, std::get<1>(*a), std::get<2>(*a));
  JobInfo last;
  for (int i = 0; i < 200 && !last.Finished(); ++i) {
    auto st = client.Status(job);
    if (st.ok()) last = *st;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(last.state, "FAILED");
  EXPECT_NE(last.error.find("failed on 2 worker(s)"), std::string::npos) << last.error;
}

// A coordinator over `o` in which worker `name` joins and asks for work: the assignment it gets
// as (job, segment, attempt) into *assigned. The coordinator stops on return.
testing::AssertionResult AssignmentAfterRestart(
    const CoordinatorOptions& o, zmq::context_t& ctx, const std::string& name,
    std::tuple<uint64_t, uint32_t, uint32_t>* assigned) {
  Serving serving(o);
  if (!serving.ok()) return testing::AssertionFailure() << "the coordinator did not start";
  Peer w(ctx, serving.endpoint(), name);
  Client client(serving.endpoint(), 5000);
  if (!WaitForWorkers(client, 1)) return testing::AssertionFailure() << name << " did not join";
  w.AskForWork();
  auto a = w.Assignment(5000ms);
  if (!a.has_value()) return testing::AssertionFailure() << name << " got no task";
  *assigned = *a;
  return testing::AssertionSuccess();
}

// An assignment leaves the coordinator without being written (only what ends one is), so after
// a crash the store does not know the attempt a worker may still hold. The restart must not hand
// the task out again under that attempt number: the old worker's result would pass the fence.
// Here the store is put back as a crash leaves it (the task PENDING at the attempt before the
// one w0 holds), and the worker that holds the lost attempt comes back and asks again.
TEST(Restore, ARestartSkipsTheAttemptOfAnAssignmentItMayHaveLost) {
  TempDir dir;
  const CoordinatorOptions o = Options(dir);
  zmq::context_t ctx(1);
  std::tuple<uint64_t, uint32_t, uint32_t> first;
  ASSERT_TRUE(FirstAssignment(o, ctx, &first));
  const uint64_t job = std::get<0>(first);
  const uint32_t held = std::get<2>(first);  // the attempt w0 holds
  {                                          // what a crash leaves on disk
    auto journal = Journal::Open(o.state_dir, Env::Default(), std::chrono::microseconds(0));
    ASSERT_TRUE(journal.ok()) << journal.message();
    Task t;
    t.state = TaskState::kPending;
    t.attempt = held - 1;
    (*journal)->PutTask(job, TaskKind::kRender, 0, t);
    ASSERT_TRUE((*journal)->TrySyncAll().ok());
  }
  std::tuple<uint64_t, uint32_t, uint32_t> again;
  ASSERT_TRUE(AssignmentAfterRestart(o, ctx, "w0", &again));
  EXPECT_EQ(std::get<0>(again), job);
  EXPECT_GT(std::get<2>(again), held);
}

// The attempt number a restart skips to must itself be on disk: otherwise a second restart
// reads the same stored number, skips to the same place, and hands out again the attempt a
// worker of the first restart holds.
TEST(Restore, ASecondRestartSkipsPastWhatTheFirstHandedOut) {
  TempDir dir;
  const CoordinatorOptions o = Options(dir);
  zmq::context_t ctx(1);
  std::tuple<uint64_t, uint32_t, uint32_t> first, second, third;
  ASSERT_TRUE(FirstAssignment(o, ctx, &first));
  ASSERT_TRUE(AssignmentAfterRestart(o, ctx, "w1", &second));
  EXPECT_EQ(std::get<0>(second), std::get<0>(first));
  EXPECT_GT(std::get<2>(second), std::get<2>(first));
  ASSERT_TRUE(AssignmentAfterRestart(o, ctx, "w2", &third));
  EXPECT_EQ(std::get<0>(third), std::get<0>(first));
  EXPECT_GT(std::get<2>(third), std::get<2>(second));
}

}  // namespace
}  // namespace segue
