#include "worker/worker.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <zmq.hpp>

#include "common/media/video.h"
#include "common/model/runtime.h"
#include "common/plan/plan.h"
#include "common/protocol/protocol.h"

namespace segue {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string HostName() {
  char buf[256] = {0};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

// What the task thread hands back to the socket thread: a ready-to-send envelope.
struct Outcome {
  std::string message;
  std::string summary;
};

Outcome Failure(uint64_t job, wire::TaskKind kind, uint32_t index, uint32_t attempt,
                const std::string& msg) {
  capnp::MallocMessageBuilder b;
  auto f = b.initRoot<wire::Envelope>().initTaskFailure();
  f.setJobId(job);
  f.setKind(kind);
  f.setIndex(index);
  f.setAttempt(attempt);
  f.setMessage(msg);
  return {Serialize(b), "failed: " + msg};
}

Outcome RunRender(model::Runtime& runtime, wire::RenderTask::Reader t) {
  const auto start = Clock::now();
  model::SegmentRequest r;
  r.model = t.getModel().cStr();
  r.steps = static_cast<int>(t.getSteps());
  r.width = static_cast<int>(t.getWidth());
  r.height = static_cast<int>(t.getHeight());
  if (t.getFpsNum() <= 0 || t.getFpsDen() <= 0) {
    return Failure(t.getJobId(), wire::TaskKind::RENDER, t.getSegment(), t.getAttempt(),
                   "bad frame rate in task");
  }
  r.fps = static_cast<double>(t.getFpsNum()) / static_cast<double>(t.getFpsDen());
  r.frame_start = t.getFrameStart();
  r.frame_count = t.getFrameCount();
  r.seed = t.getSeed();
  r.camera_motion = t.getCameraMotion().cStr();
  r.camera_speed = t.getCameraSpeed();
  std::vector<Keyframe> timeline;
  for (auto k : t.getTimeline())
    timeline.push_back(Keyframe{k.getFrame(), k.getTransitionFrames(), k.getPrompt().cStr()});
  if (timeline.empty() || r.steps <= 0 || r.frame_count <= 0) {
    return Failure(t.getJobId(), wire::TaskKind::RENDER, t.getSegment(), t.getAttempt(),
                   "task has no timeline, steps or frames");
  }
  // Per-frame conditioning, with prompts indexed in order of first use.
  std::vector<std::string> prompts;
  auto index_of = [&](int timeline_index) {
    const std::string& p = timeline[static_cast<size_t>(timeline_index)].prompt;
    for (size_t i = 0; i < prompts.size(); ++i) {
      if (prompts[i] == p) return static_cast<int>(i);
    }
    prompts.push_back(p);
    return static_cast<int>(prompts.size() - 1);
  };
  for (int64_t f = 0; f < r.frame_count; ++f) {
    FramePrompt fp = PromptAt(timeline, r.frame_start + f);
    r.frames.push_back({index_of(fp.a), index_of(fp.b), fp.mix});
  }
  r.prompts = prompts;
  auto latents = runtime.Render(r);
  if (!latents.ok())
    return Failure(t.getJobId(), wire::TaskKind::RENDER, t.getSegment(), t.getAttempt(),
                   latents.message());
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  capnp::MallocMessageBuilder b;
  auto res = b.initRoot<wire::Envelope>().initRenderResult();
  res.setJobId(t.getJobId());
  res.setSegment(t.getSegment());
  res.setAttempt(t.getAttempt());
  SetTensor(res.initLatents(), *latents);
  res.setElapsedMs(static_cast<uint64_t>(ms));
  std::ostringstream summary;
  summary << "job " << t.getJobId() << " segment " << t.getSegment() << " (frames " << r.frame_start
          << "-" << r.frame_start + r.frame_count << ") rendered in " << ms << " ms";
  return {Serialize(b), summary.str()};
}

Outcome RunEncode(model::Runtime& runtime, wire::EncodeTask::Reader t,
                  const std::string& work_dir) {
  const auto start = Clock::now();
  auto fail = [&](const std::string& msg) {
    return Failure(t.getJobId(), wire::TaskKind::ENCODE, t.getChunk(), t.getAttempt(), msg);
  };
  auto latents = GetTensor(t.getLatents());
  if (!latents.ok()) return fail(latents.message());
  if (latents->shape.size() != 4) return fail("latents must be [C, T, h, w]");
  const int width = static_cast<int>(t.getWidth()), height = static_cast<int>(t.getHeight());
  auto rgb = runtime.DecodeRgb(t.getModel().cStr(), *latents, width, height);
  if (!rgb.ok()) return fail(rgb.message());
  VideoSettings v;
  v.width = width;
  v.height = height;
  v.fps = Rational{t.getFpsNum(), t.getFpsDen()};
  v.codec = t.getCodec().cStr();
  v.crf = static_cast<int>(t.getCrf());
  v.preset = t.getPreset().size() ? t.getPreset().cStr() : "medium";
  const int64_t frames = latents->shape[1];
  fs::path file = fs::path(work_dir) /
                  ("segue-chunk-" + std::to_string(getpid()) + "-" + std::to_string(t.getJobId()) +
                   "-" + std::to_string(t.getChunk()) + ".mp4");
  Status s = EncodeChunkFile(file.string(), v, rgb->data(), frames);
  std::string bytes;
  if (s.ok()) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    bytes = ss.str();
  }
  std::error_code ec;
  fs::remove(file, ec);
  if (!s.ok()) return fail("encoding failed: " + s.message());
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  capnp::MallocMessageBuilder b;
  auto res = b.initRoot<wire::Envelope>().initEncodeResult();
  res.setJobId(t.getJobId());
  res.setChunk(t.getChunk());
  res.setAttempt(t.getAttempt());
  res.setContainer(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
  res.setFrames(static_cast<uint32_t>(frames));
  res.setElapsedMs(static_cast<uint64_t>(ms));
  return {Serialize(b), "job " + std::to_string(t.getJobId()) + " chunk " +
                            std::to_string(t.getChunk()) + " encoded in " + std::to_string(ms) +
                            " ms"};
}

class WorkerLoop {
 public:
  WorkerLoop(const WorkerOptions& o, std::unique_ptr<model::Runtime> runtime)
      : o_(o), runtime_(std::move(runtime)) {}

  int Run(const std::atomic<bool>& stop) {
    Connect();
    int tasks = 0;
    while (!stop.load()) {
      zmq::pollitem_t item{sock_->handle(), 0, ZMQ_POLLIN, 0};
      try {
        zmq::poll(&item, 1, std::chrono::milliseconds(50));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        throw;
      }
      if (item.revents & ZMQ_POLLIN) {
        zmq::message_t msg;
        while (sock_->recv(msg, zmq::recv_flags::dontwait)) {
          last_heard_ = Clock::now();
          int code = Handle(msg);
          if (code >= 0) return code;
        }
      }
      if (task_ && task_done_.load()) {
        task_->join();
        task_.reset();
        task_done_ = false;
        spdlog::info("{}", outcome_.summary);
        if (!outcome_.message.empty()) Send(outcome_.message);
        ++tasks;
        if (o_.max_tasks > 0 && tasks >= o_.max_tasks) {
          spdlog::info("finished {} tasks; leaving", tasks);
          return 0;
        }
        RequestWork();
      }
      const auto now = Clock::now();
      if (now - last_sent_hb_ > std::chrono::milliseconds(heartbeat_ms_)) {
        capnp::MallocMessageBuilder b;
        b.initRoot<wire::Envelope>().initHeartbeat().setBusy(task_ != nullptr);
        Send(Serialize(b));
        last_sent_hb_ = now;
      }
      if (now - last_heard_ > std::chrono::milliseconds(liveness_ms_)) {
        spdlog::warn("no word from the coordinator for {} ms; reconnecting", liveness_ms_);
        std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms_));
        backoff_ms_ = std::min(backoff_ms_ * 2, o_.reconnect_max_ms);
        Connect();
      }
    }
    return 0;
  }

  // The task thread may still run when we leave; it owns nothing the exit path needs.
  bool busy() const { return task_ != nullptr; }

 private:
  void Connect() {
    sock_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
    sock_->set(zmq::sockopt::linger, 0);
    sock_->set(zmq::sockopt::routing_id, o_.name);
    sock_->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(WireLimits::kMaxMessageBytes));
    sock_->connect(o_.coordinator);
    last_heard_ = Clock::now();
    capnp::MallocMessageBuilder b;
    auto h = b.initRoot<wire::Envelope>().initHello();
    h.setProtocolVersion(wire::PROTOCOL_VERSION);
    h.setName(o_.name);
    h.setHost(HostName());
    h.setDevice(o_.device);
    h.setPid(static_cast<uint32_t>(getpid()));
    h.setThreads(static_cast<uint32_t>(o_.threads));
    auto models = runtime_->Models();
    auto list = h.initModels(static_cast<unsigned>(models.size()));
    for (size_t i = 0; i < models.size(); ++i) list.set(static_cast<unsigned>(i), models[i]);
    Send(Serialize(b));
  }

  void Send(const std::string& bytes) {
    try {
      sock_->send(zmq::buffer(bytes), zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      spdlog::warn("send failed: {}", e.what());
    }
  }

  void RequestWork() {
    capnp::MallocMessageBuilder b;
    b.initRoot<wire::Envelope>().initWorkRequest().setCredits(task_ ? 0 : 1);
    Send(Serialize(b));
  }

  // Returns an exit code to stop with, or -1 to go on.
  int Handle(const zmq::message_t& msg) {
    auto in = Incoming::Parse(msg.data(), msg.size());
    if (!in.ok()) {
      spdlog::warn("ignored a bad message from the coordinator: {}", in.message());
      return -1;
    }
    try {
      auto env = (*in)->envelope();
      switch (env.which()) {
        case wire::Envelope::WELCOME:
          heartbeat_ms_ = std::max<uint32_t>(50, env.getWelcome().getHeartbeatMs());
          liveness_ms_ = std::max<uint32_t>(200, env.getWelcome().getLivenessMs());
          backoff_ms_ = 100;
          spdlog::info("joined {} as {}", o_.coordinator, o_.name);
          if (!task_) RequestWork();
          return -1;
        case wire::Envelope::ASSIGNMENT:
          StartTask(std::move(*in));
          return -1;
        case wire::Envelope::HEARTBEAT:
          return -1;
        case wire::Envelope::ERROR: {
          auto e = env.getError();
          if (e.getCode() == 4) {
            spdlog::error("refused by the coordinator: {}", e.getMessage().cStr());
            return 4;
          }
          if (e.getCode() == 3) {  // the coordinator forgot us (restart): introduce ourselves again
            Connect();
            return -1;
          }
          spdlog::warn("coordinator says: {}", e.getMessage().cStr());
          return -1;
        }
        default:
          spdlog::warn("ignored an unexpected message from the coordinator");
          return -1;
      }
    } catch (const kj::Exception& e) {
      spdlog::warn("ignored a malformed message from the coordinator: {}",
                   e.getDescription().cStr());
      return -1;
    }
  }

  void StartTask(std::unique_ptr<Incoming> in) {
    if (task_) {
      spdlog::warn("got a task while busy; ignoring it (the coordinator will requeue it)");
      return;
    }
    task_done_ = false;
    task_ = std::make_unique<std::thread>([this, msg = std::shared_ptr<Incoming>(std::move(in))] {
      try {
        auto a = msg->envelope().getAssignment();
        if (a.isRender()) {
          outcome_ = RunRender(*runtime_, a.getRender());
        } else {
          std::string dir = o_.work_dir.empty() ? fs::temp_directory_path().string() : o_.work_dir;
          outcome_ = RunEncode(*runtime_, a.getEncode(), dir);
        }
      } catch (const kj::Exception& e) {
        outcome_ = {"", std::string("malformed task: ") + e.getDescription().cStr()};
      }
      task_done_ = true;
    });
  }

  WorkerOptions o_;
  std::unique_ptr<model::Runtime> runtime_;
  zmq::context_t ctx_{1};
  std::unique_ptr<zmq::socket_t> sock_;
  std::unique_ptr<std::thread> task_;
  std::atomic<bool> task_done_{false};
  Outcome outcome_;  // written by the task thread before task_done_, read after
  uint32_t heartbeat_ms_ = 1000, liveness_ms_ = 10000;
  int backoff_ms_ = 100;
  Clock::time_point last_heard_ = Clock::now(), last_sent_hb_ = Clock::now();
};

}  // namespace

int RunWorker(const WorkerOptions& options, const std::atomic<bool>& stop) {
  WorkerOptions o = options;
  if (o.name.empty()) {
    std::random_device rd;
    char nonce[8];
    snprintf(nonce, sizeof nonce, "%04x", rd() & 0xffff);
    o.name = HostName() + "-" + std::to_string(getpid()) + "-" + nonce;
  }
  auto runtime = model::Runtime::Create(model::RuntimeOptions{o.device, o.threads});
  if (!runtime.ok()) {
    spdlog::error("{}", runtime.message());
    return 2;
  }
  WorkerLoop loop(o, std::move(*runtime));
  int code = loop.Run(stop);
  if (loop.busy()) std::_Exit(code);  // a model call cannot be interrupted; leave without it
  return code;
}

}  // namespace segue
