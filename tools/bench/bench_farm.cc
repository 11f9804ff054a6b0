#include "tools/bench/bench_farm.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <thread>
#include <zmq.hpp>

#include "common/plan/plan.h"
#include "common/protocol/protocol.h"
#include "common/util/temp_dir.h"
#include "coordinator/coordinator.h"
#include "tools/bench/bench_util.h"
#include "tools/bench/zmtp_dealer.h"
#include "tools/cli/client.h"

namespace segue {
namespace {

using bench::ServingThread;

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string WorkRequest() {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initWorkRequest().setCredits(1);
  return Serialize(b);
}

// What one run of simulated workers saw.
struct SimRun {
  double seconds = 0;  // from the start to the end marker (every result processed)
  // Per assignment asked for after the start: work request sent (paced: due) -> assignment
  // received, ms. (Requests sent before the start waited for the job to exist.)
  std::vector<double> latencies;
  uint64_t tasks = 0;
};

// How a simulated worker answers a render assignment.
struct SimPace {
  // Closed loop: the result (with the next request) goes this long after the assignment came;
  // zero: at once, as fast as the farm dispatches.
  Clock::duration cost{};
  // Paced (open loop), when not zero: worker i of n asks for work at
  // o + (i+1)*period/n + k*period, o being when the first assignment of the run arrived; its
  // latency runs from that due time, not from when it got round to asking (so a farm running late
  // is not excused by asking less often). The farm is then offered n/period tasks a second however
  // fast it answers.
  Clock::duration period{};
};

// `workers` simulated workers on one thread, each a ZMTP DEALER connection (tools/zmtp_dealer.h)
// speaking the worker protocol to `endpoint`, advertising `model`. A render assignment is
// answered as `pace` says, with zero latents of the right shape and, first, a request for the
// next task (as segue-worker does). The run ends when an encode assignment arrives (the
// coordinator issues it once every segment's result is stored) or after `limit`.
class SimulatedWorkers {
 public:
  SimulatedWorkers(const std::string& endpoint, int workers, const std::string& model, SimPace pace)
      : pace_(pace) {
    for (int i = 0; i < workers; ++i) {
      Sim s{ZmtpDealer(endpoint, "sim" + std::to_string(i)), {}, {}, {}, {}};
      capnp::MallocMessageBuilder b;
      auto h = b.initRoot<wire::Envelope>().initHello();
      h.setProtocolVersion(wire::PROTOCOL_VERSION);
      h.setName("sim" + std::to_string(i));
      h.setHost("bench");
      h.setDevice("cpu");
      h.initModels(1).set(0, model);
      // Its metadata (one latent frame per video frame), so that the job is planned at once.
      SetModelSpec(h.initModelSpecs(1)[0], model::PlanningMetadata(model));
      h.setMemoryBytes(1ull << 34);
      s.peer.Send(Serialize(b));
      sims_.push_back(std::move(s));
    }
  }

  // Serves until the end marker or `limit`; `start` is when the clock of the run starts.
  SimRun Run(Clock::time_point start, std::chrono::seconds limit) {
    SimRun run;
    const std::string want = WorkRequest();
    // One epoll set over every connection: the thread sleeps until a message comes or the next
    // result falls due. epoll_pwait2 takes its timeout to the nanosecond (epoll_wait's is whole
    // milliseconds); the thread's timer slack is cut from the default 50 us to 1 ns so that the
    // wake-up is not put off to batch it with others. One timer is armed per sleep: a timerfd
    // re-armed every turn, as before, was over a quarter of this thread's CPU in a profile (on
    // this VM, arming a timer is dear). No spinning, which would take a core from the coordinator
    // under test (there are two).
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) throw std::runtime_error("epoll_create1: " + std::string(strerror(errno)));
    struct CloseFd {
      int& fd;
      ~CloseFd() {
        close(fd);
        fd = -1;
        prctl(PR_SET_TIMERSLACK, 0UL, 0UL, 0UL, 0UL);  // 0: back to the thread's default
      }
    } close_epfd{epfd_};
    for (size_t i = 0; i < sims_.size(); ++i) Watch(sims_[i].peer.fd(), i, EPOLL_CTL_ADD);
    std::vector<epoll_event> events(sims_.size());
    std::vector<std::string> messages;
    while (Clock::now() - start < limit) {
      Clock::time_point next = Clock::now() + std::chrono::milliseconds(50);  // the next due
      for (auto& s : sims_) {
        if (!s.result.empty()) next = std::min(next, s.due);
      }
      const auto wait = std::max(Clock::duration{}, next - Clock::now());
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
      const timespec timeout{static_cast<time_t>(ns / 1000000000),
                             static_cast<long>(ns % 1000000000)};
      const int n =
          epoll_pwait2(epfd_, events.data(), static_cast<int>(events.size()), &timeout, nullptr);
      // Every waiting message is read first, stamped as it arrives: one thread serves all the
      // workers, and a latency stamped only once the thread got round to the message would also
      // count the time it spent answering the ones before it.
      inbox_.clear();
      for (int e = 0; e < n; ++e) {
        const uint64_t key = events[e].data.u64;
        Sim& s = sims_[key];
        if (events[e].events & EPOLLOUT) {
          s.peer.Flush();
          if (!s.peer.wants_write()) Watch(s.peer.fd(), key, EPOLL_CTL_MOD);
        }
        if (!(events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
        messages.clear();
        const bool open = s.peer.Receive(messages);
        const auto arrived = Clock::now();
        for (auto& m : messages) inbox_.push_back({key, std::move(m), arrived});
        if (!open) throw std::runtime_error("the coordinator closed a worker's connection");
      }
      for (size_t i = 0; i < sims_.size(); ++i) {
        if (!sims_[i].result.empty() && Clock::now() >= sims_[i].due) Deliver(i, want);
      }
      for (auto& [i, msg, arrived] : inbox_) {
        Sim& s = sims_[i];
        auto in = Incoming::Parse(msg.data(), msg.size());
        if (!in.ok()) throw std::runtime_error("bad message from the coordinator");
        auto env = (*in)->envelope();
        if (env.isWelcome()) {
          s.asked = Clock::now();
          Send(i, want);
        } else if (env.isError()) {
          throw std::runtime_error(std::string("coordinator: ") +
                                   env.getError().getMessage().cStr());
        } else if (env.isAssignment() && env.getAssignment().isEncode()) {
          run.seconds = Seconds(arrived - start);
          return run;
        } else if (env.isAssignment() && env.getAssignment().isRender()) {
          auto t = env.getAssignment().getRender();
          if (s.asked >= start) run.latencies.push_back(1000.0 * Seconds(arrived - s.asked));
          ++run.tasks;
          capnp::MallocMessageBuilder b;
          auto r = b.initRoot<wire::Envelope>().initRenderResult();
          r.setJobId(t.getJobId());
          r.setSegment(t.getSegment());
          r.setAttempt(t.getAttempt());
          SetTensor(r.initLatents(),
                    Tensor::Zeros({4, t.getLatentCount(), t.getHeight() / 8, t.getWidth() / 8}));
          r.setElapsedMs(static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::milliseconds>(pace_.cost).count()));
          s.result = Serialize(b);
          if (pace_.period > Clock::duration{}) {
            if (paced_origin_ == Clock::time_point{}) paced_origin_ = arrived;
            if (s.paced == Clock::time_point{})
              s.paced = paced_origin_ + pace_.period * static_cast<int64_t>(i + 1) /
                                            static_cast<int64_t>(sims_.size());
            s.due = s.paced;
            s.paced += pace_.period;
          } else {
            s.due = Clock::now() + pace_.cost;
          }
          if (Clock::now() >= s.due) Deliver(i, want);
        }
      }
    }
    throw std::runtime_error("the run did not finish within " + std::to_string(limit.count()) +
                             " s");
  }

 private:
  struct Sim {
    ZmtpDealer peer;
    Clock::time_point asked{};  // when it last asked for work (paced: was due to)
    Clock::time_point due{};    // when its result goes, with its next request
    Clock::time_point paced{};  // paced: its next due time after `due`
    std::string result;         // the result it holds until `due`
  };
  void Watch(int fd, uint64_t key, int op, uint32_t events = EPOLLIN) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = key;
    if (epoll_ctl(epfd_, op, fd, &ev) != 0)
      throw std::runtime_error("epoll_ctl: " + std::string(strerror(errno)));
  }
  // Sends what connection i has queued; what the socket did not take waits for it to turn
  // writable.
  void Flush(size_t i) {
    ZmtpDealer& peer = sims_[i].peer;
    const bool waiting = peer.wants_write();
    peer.Flush();
    if (!waiting && peer.wants_write()) Watch(peer.fd(), i, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
  }
  void Send(size_t i, std::string_view body) {
    sims_[i].peer.Queue(body);
    Flush(i);
  }
  // As segue-worker does: the request for the next task, then the result, in one write (a
  // ZeroMQ I/O thread, segue-worker's too, writes the messages it finds queued in one go).
  void Deliver(size_t i, const std::string& request) {
    Sim& s = sims_[i];
    s.asked = std::min(s.due, Clock::now());
    s.peer.Queue(request);
    s.peer.Queue(s.result);
    Flush(i);
    s.result.clear();
  }
  struct Arrival {
    size_t sim;
    std::string msg;
    Clock::time_point at;
  };
  SimPace pace_;
  Clock::time_point paced_origin_{};  // paced: when the run's first assignment arrived
  std::vector<Sim> sims_;
  std::vector<Arrival> inbox_;  // this wake-up's messages, in arrival order
  int epfd_ = -1;               // Run's epoll set
};

std::string JobManifest(const std::string& name, const std::string& model, int segments,
                        int length) {
  return "version: 1\nname: " + name +
         "\nvideo: {width: 8, height: 8, fps: 24, frames: " + std::to_string(segments * length) +
         "}\nmodel: {name: " + model + ", steps: 1}\nsegments: {length: " + std::to_string(length) +
         ", overlap: 0}\ntimeline: [{at: 0s, prompt: bench}]\noutput: {path: out/" + name +
         ".mp4}\n";
}

// A coordinator on its own thread over a fresh store; one job of `segments` segments submitted
// once the simulated workers have joined; returns what they saw.
SimRun RunFarm(const std::string& name, int workers, int segments, int length, SimPace pace) {
  TempDir dir;
  CoordinatorOptions o;
  o.listen = "tcp://127.0.0.1:*";
  o.state_dir = dir / "state";
  o.output_root = dir / "root";
  o.liveness_ms = 600000;              // the simulated workers send no heartbeats
  o.chunk_frames = segments * length;  // one encode task, the end marker
  auto coordinator = Coordinator::Create(o);
  if (!coordinator.ok()) throw std::runtime_error(coordinator.message());
  SimRun run;
  {
    ServingThread serve([&](const std::atomic<bool>& stop) { (*coordinator)->Run(stop); });
    SimulatedWorkers sims((*coordinator)->endpoint(), workers, name, pace);
    Client client((*coordinator)->endpoint(), 10000);
    for (int i = 0; i < 200; ++i) {  // every worker in before the job
      auto ws = client.Workers();
      if (ws.ok() && ws->size() == static_cast<size_t>(workers)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    SubmitRequest req;
    req.manifest_text = JobManifest(name, name, segments, length);
    req.manifest_name = name + ".yaml";
    const auto start = Clock::now();
    auto sub = client.Submit(req);
    if (!sub.ok()) throw std::runtime_error(sub.message());
    run = sims.Run(start, std::chrono::seconds(600));
  }
  if (run.tasks != static_cast<uint64_t>(segments))
    throw std::runtime_error(name + ": " + std::to_string(run.tasks) + " assignments for " +
                             std::to_string(segments) + " segments");
  return run;
}

// The baseline of dispatch: the same simulated workers against a ROUTER that answers every
// work request at once with a canned assignment and keeps no state, no store, no schedule.
SimRun RunEcho(int workers, int tasks, SimPace pace) {
  zmq::context_t ctx(1);
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.set(zmq::sockopt::backlog, 1024);  // as the coordinator's: every worker connects at once
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  ServingThread echo([&](const std::atomic<bool>& stop) {
    capnp::MallocMessageBuilder wb;
    wb.initRoot<wire::Envelope>().initWelcome().setWorkerId("sim");
    const std::string welcome = Serialize(wb);
    capnp::MallocMessageBuilder ab;
    auto t = ab.initRoot<wire::Envelope>().initAssignment().initRender();
    t.setJobId(1);
    t.setWidth(8);
    t.setHeight(8);
    t.setLatentCount(2);
    const std::string assignment = Serialize(ab);
    capnp::MallocMessageBuilder eb;
    eb.initRoot<wire::Envelope>().initAssignment().initEncode().setJobId(1);
    const std::string done = Serialize(eb);
    int given = 0, results = 0;
    while (!stop) {
      zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(50));
      zmq::message_t id, body;
      while (router.recv(id, zmq::recv_flags::dontwait)) {
        (void)router.recv(body);
        auto in = Incoming::Parse(body.data(), body.size());
        if (!in.ok()) continue;
        auto env = (*in)->envelope();
        const std::string* reply = nullptr;
        if (env.isHello()) reply = &welcome;
        if (env.isWorkRequest() && given < tasks) {
          reply = &assignment;
          ++given;
        }
        if (env.isRenderResult() && ++results == tasks) reply = &done;
        if (!reply) continue;
        router.send(id, zmq::send_flags::sndmore);
        router.send(zmq::buffer(*reply), zmq::send_flags::none);
      }
    }
  });
  SimulatedWorkers sims(endpoint, workers, "echo", pace);
  return sims.Run(Clock::now(), std::chrono::seconds(600));
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

// A gang member: answers its CodenoiseTask by exchanging zero latents for each step.
struct GangMember {
  ZmtpDealer peer;
  std::string exchange;  // this member's CodenoiseExchange for the current step
  uint64_t job = 0;
  uint32_t attempt = 0;
  std::vector<std::pair<uint32_t, int64_t>> items;  // (segment, frame) it exchanges
};

std::string ExchangeMessage(const GangMember& m, uint32_t step) {
  capnp::MallocMessageBuilder b;
  auto x = b.initRoot<wire::Envelope>().initCodenoiseExchange();
  x.setJobId(m.job);
  x.setAttempt(m.attempt);
  x.setStep(step);
  auto slices = x.initSlices(static_cast<unsigned>(m.items.size()));
  const Tensor frame = Tensor::Zeros({4, 36, 64});
  for (size_t i = 0; i < m.items.size(); ++i) {
    slices[static_cast<unsigned>(i)].setSegment(m.items[i].first);
    slices[static_cast<unsigned>(i)].setFrame(m.items[i].second);
    SetTensorHalf(slices[static_cast<unsigned>(i)].initLatents(), frame.shape, frame.data.data());
  }
  return Serialize(b);
}

// Runs `steps` exchange rounds over the members once each holds its task; returns the seconds of
// each round, from the first exchange sent to the last answer received. The members' exchanges
// are built before the clock starts: workers build theirs at the same time, each on its own
// machine, where one thread here would build eight in a row inside the round.
std::vector<double> RunGang(std::vector<GangMember>& members, int steps) {
  std::vector<pollfd> fds(members.size());
  std::vector<std::string> got;
  std::vector<double> rounds;
  for (int s = 0; s < steps; ++s) {
    for (auto& m : members) m.exchange = ExchangeMessage(m, static_cast<uint32_t>(s));
    const auto t0 = Clock::now();
    for (auto& m : members) m.peer.Send(m.exchange);  // what the socket cannot take waits
    size_t answered = 0;
    while (answered < members.size()) {
      if (Clock::now() - t0 > std::chrono::seconds(60))
        throw std::runtime_error("no co-denoising consensus within 60 s");
      for (size_t i = 0; i < members.size(); ++i) {
        const bool writing = members[i].peer.wants_write();
        fds[i] = {members[i].peer.fd(), static_cast<short>(POLLIN | (writing ? POLLOUT : 0)), 0};
      }
      poll(fds.data(), fds.size(), 100);
      for (size_t i = 0; i < members.size(); ++i) {
        if (fds[i].revents & POLLOUT) members[i].peer.Flush();
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        got.clear();
        if (!members[i].peer.Receive(got))
          throw std::runtime_error("the coordinator closed a gang member's connection");
        for (const auto& msg : got) {
          auto in = Incoming::Parse(msg.data(), msg.size());
          if (in.ok() && (*in)->envelope().isCodenoiseMerged()) ++answered;
        }
      }
    }
    rounds.push_back(Seconds(Clock::now() - t0));
  }
  return rounds;
}

// Which (segment, frame) pairs a member holding segments [first, end) exchanges: frames that a
// segment outside its group also covers (the worker's own rule).
std::vector<std::pair<uint32_t, int64_t>> SharedItems(const std::vector<SegmentSpan>& spans,
                                                      uint32_t first, uint32_t end) {
  std::vector<std::pair<uint32_t, int64_t>> out;
  for (int64_t f = spans[first].start; f < spans[end - 1].end; ++f) {
    const auto cover = SegmentsCovering(spans, f, f + 1);
    bool external = false;
    for (int c : cover) external |= c < static_cast<int>(first) || c >= static_cast<int>(end);
    if (!external) continue;
    for (int c : cover) {
      if (c >= static_cast<int>(first) && c < static_cast<int>(end))
        out.emplace_back(static_cast<uint32_t>(c), f);
    }
  }
  return out;
}

}  // namespace

nlohmann::json BenchCodenoise(int segments, int workers, int steps) {
  spdlog::set_level(spdlog::level::warn);
  const int length = 48, overlap = 12;
  const int64_t frames = static_cast<int64_t>(segments) * (length - overlap) + overlap;
  const auto spans = PlanSegments(frames, length, overlap, 1);
  // Through the coordinator: a codenoise job; the gang forms over the simulated workers.
  TempDir dir;
  CoordinatorOptions o;
  o.listen = "tcp://127.0.0.1:*";
  o.state_dir = dir / "state";
  o.output_root = dir / "root";
  o.liveness_ms = 600000;
  o.gang_wait_ms = 60000;
  auto coordinator = Coordinator::Create(o);
  if (!coordinator.ok()) throw std::runtime_error(coordinator.message());
  std::vector<double> farm_rounds;
  size_t slices = 0;
  {
    ServingThread serve([&](const std::atomic<bool>& stop) { (*coordinator)->Run(stop); });
    std::vector<GangMember> members;
    for (int i = 0; i < workers; ++i) {
      GangMember m{
          ZmtpDealer((*coordinator)->endpoint(), "gang" + std::to_string(i)), {}, 0, 0, {}};
      capnp::MallocMessageBuilder b;
      auto h = b.initRoot<wire::Envelope>().initHello();
      h.setProtocolVersion(wire::PROTOCOL_VERSION);
      h.setName("gang" + std::to_string(i));
      h.initModels(1).set(0, "zoom");
      m.peer.Queue(Serialize(b));
      m.peer.Send(WorkRequest());
      members.push_back(std::move(m));
    }
    Client client((*coordinator)->endpoint(), 10000);
    for (int i = 0; i < 400; ++i) {
      auto ws = client.Workers();
      if (ws.ok() && ws->size() == static_cast<size_t>(workers)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    // The hello came before the work request: ask again now that everyone is in.
    for (auto& m : members) m.peer.Send(WorkRequest());
    SubmitRequest req;
    req.manifest_name = "gang.yaml";
    req.manifest_text =
        "version: 1\nname: gang\nvideo: {width: 512, height: 288, fps: 24, frames: " +
        std::to_string(frames) + "}\nmodel: {name: zoom, steps: " + std::to_string(steps + 1) +
        "}\nsegments: {length: 48, overlap: 12, strategy: codenoise}\ntimeline: [{at: 0s, "
        "prompt: bench}]\n";
    auto sub = client.Submit(req);
    if (!sub.ok()) throw std::runtime_error(sub.message());
    // Each member's task.
    size_t assigned = 0;
    const auto t0 = Clock::now();
    while (assigned < members.size()) {
      if (Clock::now() - t0 > std::chrono::seconds(30))
        throw std::runtime_error("the gang did not form");
      for (auto& m : members) {
        std::vector<std::string> got;
        if (!m.peer.Receive(got))
          throw std::runtime_error("the coordinator closed a gang member's connection");
        for (const auto& msg : got) {
          auto in = Incoming::Parse(msg.data(), msg.size());
          if (!in.ok()) continue;
          auto env = (*in)->envelope();
          if (!env.isAssignment() || !env.getAssignment().isCodenoise()) continue;
          auto t = env.getAssignment().getCodenoise();
          m.job = t.getJobId();
          m.attempt = t.getAttempt();
          const uint32_t first = t.getSegments()[0].getSegment();
          m.items = SharedItems(spans, first, first + t.getSegments().size());
          ++assigned;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    for (const auto& m : members) slices += m.items.size();
    farm_rounds = RunGang(members, steps);
  }

  // Baseline: a ROUTER that returns each member's exchange as it is, once all have sent.
  std::vector<double> echo_rounds;
  {
    zmq::context_t ctx(1);
    zmq::socket_t router(ctx, zmq::socket_type::router);
    router.set(zmq::sockopt::linger, 0);
    router.bind("tcp://127.0.0.1:*");
    const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
    ServingThread echo([&](const std::atomic<bool>& done) {
      std::vector<std::pair<std::string, std::string>> posted;
      while (!done) {
        zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, std::chrono::milliseconds(50));
        zmq::message_t id, body;
        while (router.recv(id, zmq::recv_flags::dontwait)) {
          (void)router.recv(body);
          auto in = Incoming::Parse(body.data(), body.size());
          if (!in.ok() || !(*in)->envelope().isCodenoiseExchange()) continue;
          // Answer with a CodenoiseMerged carrying the same slices, as the coordinator would.
          auto x = (*in)->envelope().getCodenoiseExchange();
          capnp::MallocMessageBuilder b;
          auto m = b.initRoot<wire::Envelope>().initCodenoiseMerged();
          m.setStep(x.getStep());
          m.setSlices(x.getSlices());
          posted.emplace_back(id.to_string(), Serialize(b));
          if (posted.size() < static_cast<size_t>(workers)) continue;
          for (auto& [who, reply] : posted) {
            router.send(zmq::buffer(who), zmq::send_flags::sndmore);
            router.send(zmq::buffer(reply), zmq::send_flags::none);
          }
          posted.clear();
        }
      }
    });
    std::vector<GangMember> members;
    for (int i = 0; i < workers; ++i) {
      GangMember m{ZmtpDealer(endpoint, "gang" + std::to_string(i)), {}, 1, 1, {}};
      const uint32_t per = static_cast<uint32_t>(segments / workers);
      const uint32_t first = static_cast<uint32_t>(i) * per;
      const uint32_t end = i == workers - 1 ? static_cast<uint32_t>(segments) : first + per;
      m.items = SharedItems(spans, first, end);
      members.push_back(std::move(m));
    }
    echo_rounds = RunGang(members, steps);
  }
  const double farm = bench::Median(farm_rounds), base = bench::Median(echo_rounds);
  std::cout << "codenoise: one step's overlap exchange, " << segments << " segments on " << workers
            << " workers (" << slices << " frame slices of 18 KiB, half precision): " << farm * 1000
            << " ms through the coordinator (median of " << steps
            << " steps); echo router: " << base * 1000 << " ms; ratio " << farm / base
            << " (target < 5 ms)\n";
  return {{"bench", "codenoise"}, {"segments", segments},   {"workers", workers},
          {"slices", slices},     {"step_ms", farm * 1000}, {"echo_step_ms", base * 1000},
          {"ratio", farm / base}, {"target_ms", 5}};
}

nlohmann::json BenchFarm(const FarmBenchOptions& o) {
  spdlog::set_level(spdlog::level::warn);
  // Rounds, each every run below on a fresh store (baselines first); the figures are the medians
  // of the rounds' (every round is printed and kept in the JSON).
  struct Round {
    double rate, echo_rate, p50, p99;  // saturation: as fast as the farm dispatches
    double paced_rate, paced_p50, paced_p99, echo_paced_p99;  // offered `paced_rate` tasks/s
    double efficiency, wall;
  };
  std::vector<Round> rounds;
  const int efficiency_rounds = (o.efficiency_segments + o.workers - 1) / o.workers;
  const double ideal = efficiency_rounds * o.task_ms / 1000.0;
  // Each of the paced workers asks once per period: the offered rate is the target rate.
  const SimPace paced{{},
                      std::chrono::nanoseconds(static_cast<int64_t>(
                          1e9 * o.paced_workers / static_cast<double>(o.paced_rate)))};
  auto rate_of = [](const SimRun& r) { return static_cast<double>(r.tasks) / r.seconds; };
  for (int i = 0; i < o.rounds; ++i) {
    // Dispatch at saturation: the null model, answered at once.
    SimRun echo = RunEcho(o.dispatch_workers, o.dispatch_tasks, {});
    SimRun null = RunFarm("null-model", o.dispatch_workers, o.dispatch_tasks, 2, {});
    // Dispatch latency at the target rate.
    SimRun echo_paced = RunEcho(o.paced_workers, o.dispatch_tasks, paced);
    SimRun null_paced = RunFarm("paced", o.paced_workers, o.dispatch_tasks, 2, paced);
    // Efficiency: a fixed cost per segment; ideal = the makespan of indivisible equal tasks.
    SimRun fixed = RunFarm("fixed-cost", o.workers, o.efficiency_segments, 8,
                           {std::chrono::milliseconds(o.task_ms), {}});
    Round r{rate_of(null),
            rate_of(echo),
            Percentile(null.latencies, 0.50),
            Percentile(null.latencies, 0.99),
            rate_of(null_paced),
            Percentile(null_paced.latencies, 0.50),
            Percentile(null_paced.latencies, 0.99),
            Percentile(echo_paced.latencies, 0.99),
            ideal / fixed.seconds,
            fixed.seconds};
    std::cout << "  round " << i + 1 << ": saturation " << r.rate << " tasks/s (echo "
              << r.echo_rate << "), latency p50 " << r.p50 << " ms, p99 " << r.p99 << " ms; paced "
              << r.paced_rate << " tasks/s, latency p50 " << r.paced_p50 << " ms, p99 "
              << r.paced_p99 << " ms (echo " << r.echo_paced_p99 << " ms); efficiency "
              << r.efficiency << "\n";
    rounds.push_back(r);
  }
  auto all_of = [&](double Round::*field) {
    std::vector<double> v;
    for (const Round& r : rounds) v.push_back(r.*field);
    return v;
  };
  auto median_of = [&](double Round::*field) { return bench::Median(all_of(field)); };
  const double rate = median_of(&Round::rate), echo_rate = median_of(&Round::echo_rate);
  const double p50 = median_of(&Round::p50), p99 = median_of(&Round::p99);
  const double paced_rate = median_of(&Round::paced_rate);
  const double paced_p50 = median_of(&Round::paced_p50), paced_p99 = median_of(&Round::paced_p99);
  const double echo_paced_p99 = median_of(&Round::echo_paced_p99);
  const double efficiency = median_of(&Round::efficiency), wall = median_of(&Round::wall);
  std::cout << "farm dispatch, null model, " << o.dispatch_workers << " simulated workers, "
            << o.dispatch_tasks << " tasks, as fast as it goes: " << rate
            << " tasks/s (baseline, a stateless echo router: " << echo_rate << " tasks/s; ratio "
            << rate / echo_rate << "; target >= 20000 tasks/s); latency p50 " << p50 << " ms, p99 "
            << p99 << " ms (at saturation every worker waits its turn: the latency is the "
            << "workers over the rate)\n";
  std::cout << "farm dispatch latency at " << o.paced_rate << " tasks/s offered ("
            << o.paced_workers << " simulated workers, each asking every "
            << std::chrono::duration<double, std::milli>(paced.period).count() << " ms): served "
            << paced_rate << " tasks/s, p50 " << paced_p50 << " ms, p99 " << paced_p99
            << " ms (echo router: p99 " << echo_paced_p99 << " ms; ratio "
            << paced_p99 / echo_paced_p99 << "; target p99 < 2 ms)\n";
  std::cout << "farm efficiency, fixed-cost model (" << o.task_ms << " ms/segment), "
            << o.efficiency_segments << " segments on " << o.workers << " simulated workers: wall "
            << wall << " s, ideal " << ideal << " s, efficiency " << efficiency
            << " (target >= 0.98)\n";
  std::cout << "(each figure the median of " << o.rounds << " rounds)\n";
  return {{"bench", "farm"},
          {"rounds", o.rounds},
          {"dispatch",
           {{"workers", o.dispatch_workers},
            {"tasks", o.dispatch_tasks},
            {"tasks_per_second", rate},
            {"baseline_echo_tasks_per_second", echo_rate},
            {"ratio", rate / echo_rate},
            {"latency_ms_p50", p50},
            {"latency_ms_p99", p99},
            {"rounds_tasks_per_second", all_of(&Round::rate)},
            {"rounds_latency_ms_p99", all_of(&Round::p99)},
            {"target_tasks_per_second", 20000}}},
          {"dispatch_paced",
           {{"workers", o.paced_workers},
            {"tasks", o.dispatch_tasks},
            {"offered_tasks_per_second", o.paced_rate},
            {"tasks_per_second", paced_rate},
            {"latency_ms_p50", paced_p50},
            {"latency_ms_p99", paced_p99},
            {"baseline_echo_latency_ms_p99", echo_paced_p99},
            {"ratio", paced_p99 / echo_paced_p99},
            {"rounds_latency_ms_p99", all_of(&Round::paced_p99)},
            {"target_latency_ms_p99", 2}}},
          {"efficiency",
           {{"workers", o.workers},
            {"segments", o.efficiency_segments},
            {"task_ms", o.task_ms},
            {"wall_seconds", wall},
            {"ideal_seconds", ideal},
            {"efficiency", efficiency},
            {"rounds_efficiency", all_of(&Round::efficiency)},
            {"target", 0.98}}}};
}

}  // namespace segue
