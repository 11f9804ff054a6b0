#include "worker/worker.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <zmq.hpp>

#include "common/blend/blend.h"
#include "common/media/video.h"
#include "common/model/runtime.h"
#include "common/plan/plan.h"
#include "common/plan/timeline.h"
#include "common/protocol/protocol.h"
#include "common/protocol/transfer.h"
#include "common/tensor/half.h"
#include "worker/host_model.h"
#include "worker/tasks.h"

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
  std::vector<std::string> messages;  // envelopes to send, in order (none: nothing to report)
  std::string summary;
};

// What a running task and the socket thread share. The task thread sends through its own PUSH
// socket (ZeroMQ sockets stay on one thread each); replies come back through here.
struct TaskLink {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> merged;  // GUARDED_BY(mu): CodenoiseMerged envelopes for the task
  bool cancelled = false;          // GUARDED_BY(mu)
  std::string cancel_reason;       // GUARDED_BY(mu)
  uint64_t job = 0;                // the running task's job (0: none)
  bool gang = false;               // the running task is co-denoising (it needs its partners)
};

constexpr char kTaskOutbox[] = "inproc://segue-task-outbox";

MetadataOf MetadataOfRuntime(model::Runtime& runtime) {
  return [&runtime](const std::string& name) { return runtime.Metadata(name); };
}

Outcome Failure(uint64_t job, wire::TaskKind kind, uint32_t index, uint32_t attempt,
                const std::string& msg) {
  capnp::MallocMessageBuilder b;
  auto f = b.initRoot<wire::Envelope>().initTaskFailure();
  f.setJobId(job);
  f.setKind(kind);
  f.setIndex(index);
  f.setAttempt(attempt);
  f.setMessage(msg);
  return {{Serialize(b)}, "failed: " + msg};
}

// The failure to report when the coordinator did not take result `message` (a transfer refused
// or dropped, `why`): the task fails at once instead of waiting out the task timeout. nullopt
// for other messages (a checkpoint, an exchange: the task goes on, or its gang stops).
std::optional<std::string> FailureForRefused(const std::string& message, const std::string& why) {
  auto in = Incoming::Parse(message.data(), message.size());
  if (!in.ok()) return std::nullopt;
  try {
    auto env = (*in)->envelope();
    const std::string text = "the coordinator did not take the result: " + why;
    if (env.isRenderResult()) {
      auto r = env.getRenderResult();
      return Failure(r.getJobId(), wire::TaskKind::RENDER, r.getSegment(), r.getAttempt(), text)
          .messages[0];
    }
    if (env.isEncodeResult()) {
      auto r = env.getEncodeResult();
      return Failure(r.getJobId(), wire::TaskKind::ENCODE, r.getChunk(), r.getAttempt(), text)
          .messages[0];
    }
  } catch (const kj::Exception&) {
  }
  return std::nullopt;
}

// Sends segment `segment`'s sampler state after `done` steps to the coordinator as a checkpoint.
void SendCheckpoint(zmq::socket_t& outbox, uint64_t job, uint32_t segment, uint32_t attempt,
                    int done, const model::LatentView& view) {
  // The sampler's whole state: the latents, then a multistep sampler's history ([1 + H, C, T,
  // h, w]), so that the resumed run is bitwise the uninterrupted one.
  Tensor x;
  const int64_t n = Tensor::NumElements(view.shape);
  x.shape = view.shape;
  if (!view.history.empty())
    x.shape.insert(x.shape.begin(), 1 + static_cast<int64_t>(view.history.size()));
  x.data.reserve(static_cast<size_t>(n) * (1 + view.history.size()));
  x.data.assign(view.data, view.data + n);
  for (const float* h : view.history) x.data.insert(x.data.end(), h, h + n);
  capnp::MallocMessageBuilder b;
  auto c = b.initRoot<wire::Envelope>().initCheckpoint();
  c.setJobId(job);
  c.setSegment(segment);
  c.setAttempt(attempt);
  c.setStep(static_cast<uint32_t>(done));
  SetTensor(c.initLatents(), x);
  std::string bytes = Serialize(b);
  outbox.send(zmq::buffer(bytes), zmq::send_flags::none);
}

// A small JPEG of a segment's middle latent frame, decoded on its own: what people watching the
// job see of it. Best effort: "" when it cannot be made (the result goes without it).
std::string SegmentThumbnail(model::Runtime& runtime, const std::string& model,
                             const Tensor& latents, int width, int height) {
  if (latents.shape.size() != 4 || latents.shape[1] < 1 || width <= 0 || height <= 0) return "";
  const int64_t c = latents.shape[0], t = latents.shape[1];
  const int64_t plane = latents.shape[2] * latents.shape[3];
  Tensor frame = Tensor::Zeros({c, 1, latents.shape[2], latents.shape[3]});
  const int64_t middle = t / 2;
  for (int64_t k = 0; k < c; ++k)
    std::copy_n(latents.data.begin() + (k * t + middle) * plane, plane,
                frame.data.begin() + k * plane);
  auto rgb = runtime.DecodeRgb(model, frame, width, height, 0, 1);
  if (!rgb.ok() || rgb->size() < static_cast<size_t>(width) * height * 3) {
    spdlog::debug("no thumbnail: {}", rgb.ok() ? "short picture" : rgb.message());
    return "";
  }
  auto jpeg = EncodeThumbnailJpeg(rgb->data(), width, height);
  if (!jpeg.ok()) spdlog::debug("no thumbnail: {}", jpeg.message());
  return jpeg.ok() ? *jpeg : "";
}

void SetThumbnail(wire::RenderResult::Builder res, const std::string& jpeg) {
  if (!jpeg.empty())
    res.setThumbnail(kj::arrayPtr(reinterpret_cast<const kj::byte*>(jpeg.data()), jpeg.size()));
}

Outcome RunRender(model::Runtime& runtime, wire::RenderTask::Reader t, TaskLink& link,
                  zmq::socket_t& outbox) {
  const auto start = Clock::now();
  auto req = ReadRenderTask(t, MetadataOfRuntime(runtime));
  if (!req.ok())
    return Failure(t.getJobId(), wire::TaskKind::RENDER, t.getSegment(), t.getAttempt(),
                   req.message());
  const model::SegmentRequest& r = *req;
  // Between steps: a cancelled job stops the render (the worker is free within a step), and
  // every K steps or T seconds the latents go to the coordinator as a checkpoint.
  const uint32_t every_steps = t.getCheckpointEverySteps(),
                 every_seconds = t.getCheckpointEverySeconds();
  auto last_checkpoint = Clock::now();
  auto together = runtime.RenderTogether({r}, [&](int i, std::vector<model::LatentView>& views) {
    {
      std::lock_guard<std::mutex> lock(link.mu);
      if (link.cancelled) return Status::Error("cancelled: " + link.cancel_reason);
    }
    const int done = i + 1;
    const bool due = (every_steps > 0 && done % static_cast<int>(every_steps) == 0) ||
                     (every_seconds > 0 &&
                      Clock::now() - last_checkpoint >= std::chrono::seconds(every_seconds));
    if (due && done < r.steps) {
      SendCheckpoint(outbox, t.getJobId(), t.getSegment(), t.getAttempt(), done, views[0]);
      last_checkpoint = Clock::now();
    }
    return Status::Ok();
  });
  {
    std::lock_guard<std::mutex> lock(link.mu);
    if (link.cancelled)
      return {{},
              "job " + std::to_string(t.getJobId()) + " segment " + std::to_string(t.getSegment()) +
                  " stopped: " + link.cancel_reason};
  }
  Result<Tensor> latents =
      together.ok() ? Result<Tensor>(std::move((*together)[0])) : Result<Tensor>(together.status());
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
  SetThumbnail(
      res, SegmentThumbnail(runtime, t.getModel().cStr(), *latents, static_cast<int>(t.getWidth()),
                            static_cast<int>(t.getHeight())));
  std::ostringstream summary;
  summary << "job " << t.getJobId() << " segment " << t.getSegment() << " (latent frames "
          << r.latent_start << "-" << r.latent_start + r.latent_count << ") rendered in " << ms
          << " ms";
  return {{Serialize(b)}, summary.str()};
}

Outcome RunEncode(model::Runtime& runtime, wire::EncodeTask::Reader t,
                  const std::string& work_dir) {
  const auto start = Clock::now();
  auto fail = [&](const std::string& msg) {
    return Failure(t.getJobId(), wire::TaskKind::ENCODE, t.getChunk(), t.getAttempt(), msg);
  };
  auto latents = ReadEncodeTask(t);
  if (!latents.ok()) return fail(latents.message());
  const int width = static_cast<int>(t.getWidth()), height = static_cast<int>(t.getHeight());
  const int64_t frames = t.getKeepFrames();
  auto rgb =
      runtime.DecodeRgb(t.getModel().cStr(), *latents, width, height, t.getSkipFrames(), frames);
  if (!rgb.ok()) return fail(rgb.message());
  VideoSettings v;
  v.width = width;
  v.height = height;
  v.fps = Rational{t.getFpsNum(), t.getFpsDen()};
  v.codec = t.getCodec().cStr();
  v.crf = static_cast<int>(t.getCrf());
  v.preset = t.getPreset().size() ? t.getPreset().cStr() : "medium";
  if (t.getProfile().size()) v.profile = t.getProfile().cStr();
  fs::path file = fs::path(work_dir) /
                  ("segue-chunk-" + std::to_string(getpid()) + "-" + std::to_string(t.getJobId()) +
                   "-" + std::to_string(t.getChunk()) + ChunkExtension(v.codec));
  Status s = EncodeChunkFile(file.string(), v, rgb->data(), frames);
  std::string bytes;
  if (s.ok()) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    bytes = ss.str();
    if (!in.good() && !in.eof())
      s = Status::Error("cannot read the chunk back from " + file.string());
    if (bytes.empty()) s = Status::Error("the chunk file " + file.string() + " came out empty");
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
  return {{Serialize(b)},
          "job " + std::to_string(t.getJobId()) + " chunk " + std::to_string(t.getChunk()) +
              " encoded in " + std::to_string(ms) + " ms"};
}

Outcome RenderResultsOf(model::Runtime& runtime, wire::CodenoiseTask::Reader t,
                        std::vector<Tensor>& latents, int64_t ms) {
  Outcome out;
  const uint64_t job = t.getJobId();
  const uint32_t attempt = t.getAttempt();
  auto tasks = t.getSegments();
  const uint32_t first = tasks.size() ? tasks[0].getSegment() : 0;
  for (size_t k = 0; k < latents.size(); ++k) {
    capnp::MallocMessageBuilder b;
    auto res = b.initRoot<wire::Envelope>().initRenderResult();
    res.setJobId(job);
    res.setSegment(first + static_cast<uint32_t>(k));
    res.setAttempt(attempt);
    SetTensor(res.initLatents(), latents[k]);
    res.setElapsedMs(static_cast<uint64_t>(ms));
    if (k < tasks.size())
      SetThumbnail(res, SegmentThumbnail(runtime, tasks[k].getModel().cStr(), latents[k],
                                         static_cast<int>(tasks[k].getWidth()),
                                         static_cast<int>(tasks[k].getHeight())));
    out.messages.push_back(Serialize(b));
  }
  out.summary = "job " + std::to_string(job) + " segments " + std::to_string(first) + "-" +
                std::to_string(first + latents.size() - 1) + " co-denoised in " +
                std::to_string(ms) + " ms";
  return out;
}

// Co-denoises a group of consecutive segments. After every step, frames covered only by the
// group's segments are averaged here; frames that segments of other groups also cover go to
// the coordinator, whose consensus comes back through `link`.
Outcome RunCodenoise(model::Runtime& runtime, wire::CodenoiseTask::Reader t, TaskLink& link,
                     zmq::socket_t& outbox) {
  const auto start = Clock::now();
  const uint64_t job = t.getJobId();
  const uint32_t attempt = t.getAttempt();
  auto tasks = t.getSegments();
  const uint32_t first = tasks.size() ? tasks[0].getSegment() : 0;
  auto fail = [&](const std::string& msg) {
    return Failure(job, wire::TaskKind::CODENOISE, first, attempt, msg);
  };
  auto group = ReadCodenoiseTask(t, MetadataOfRuntime(runtime));
  if (!group.ok()) return fail(group.message());
  const std::vector<SegmentSpan>& spans = group->spans;
  std::vector<model::SegmentRequest>& requests = group->requests;
  const BlendMode mode = group->blend;
  const uint32_t end = first + tasks.size();
  // Frames of the group: exchanged (another group's segment covers them too) or local.
  std::vector<int64_t> local, shared;
  for (int64_t f = spans[first].start; f < spans[end - 1].end; ++f) {
    bool external = false;
    for (int c : SegmentsCovering(spans, f, f + 1))
      external |= c < static_cast<int>(first) || c >= static_cast<int>(end);
    (external ? shared : local).push_back(f);
  }
  // Checkpoints: every K steps (each group decides alike), or when the coordinator asks (its
  // time trigger); a group that exchanges nothing keeps time itself.
  const uint32_t every_steps = tasks[0].getCheckpointEverySteps(),
                 every_seconds = tasks[0].getCheckpointEverySeconds();
  const int steps = requests[0].steps;
  auto last_checkpoint = Clock::now();
  std::vector<float> buf, out;
  auto after_step = [&](int step, std::vector<model::LatentView>& views) -> Status {
    bool asked = false;
    const int64_t C = views[0].shape[0], hw = views[0].shape[2] * views[0].shape[3], n = C * hw;
    auto plane = [&](uint32_t k, int64_t f, int64_t c) {
      const model::LatentView& v = views[k - first];
      return v.data + (c * v.shape[1] + (f - spans[k].start)) * hw;
    };
    auto gather = [&](uint32_t k, int64_t f, float* dst) {
      for (int64_t c = 0; c < C; ++c) std::copy(plane(k, f, c), plane(k, f, c) + hw, dst + c * hw);
    };
    auto scatter = [&](int64_t f, const float* src) {  // into every group segment covering f
      for (int k : SegmentsCovering(spans, f, f + 1)) {
        if (k < static_cast<int>(first) || k >= static_cast<int>(end)) continue;
        for (int64_t c = 0; c < C; ++c)
          std::copy(src + c * hw, src + (c + 1) * hw, plane(static_cast<uint32_t>(k), f, c));
      }
    };
    if (!shared.empty()) {
      capnp::MallocMessageBuilder b;
      auto x = b.initRoot<wire::Envelope>().initCodenoiseExchange();
      x.setJobId(job);
      x.setAttempt(attempt);
      x.setStep(static_cast<uint32_t>(step));
      std::vector<std::pair<uint32_t, int64_t>> items;
      for (int64_t f : shared) {
        for (int k : SegmentsCovering(spans, f, f + 1)) {
          if (k >= static_cast<int>(first) && k < static_cast<int>(end))
            items.emplace_back(static_cast<uint32_t>(k), f);
        }
      }
      auto slices = x.initSlices(static_cast<unsigned>(items.size()));
      Tensor frame = Tensor::Zeros({C, views[0].shape[2], views[0].shape[3]});
      for (size_t i = 0; i < items.size(); ++i) {
        gather(items[i].first, items[i].second, frame.data.data());
        slices[static_cast<unsigned>(i)].setSegment(items[i].first);
        slices[static_cast<unsigned>(i)].setFrame(items[i].second);
        SetTensorHalf(slices[static_cast<unsigned>(i)].initLatents(), frame.shape,
                      frame.data.data());
      }
      std::string bytes = Serialize(b);
      outbox.send(zmq::buffer(bytes), zmq::send_flags::none);
      // Wait for the consensus of this step (or a cancel).
      std::string reply;
      {
        std::unique_lock<std::mutex> lock(link.mu);
        if (!link.cv.wait_for(lock, std::chrono::minutes(10),
                              [&] { return link.cancelled || !link.merged.empty(); })) {
          return Status::Error("no co-denoising consensus from the coordinator for 10 minutes");
        }
        if (link.cancelled) return Status::Error("cancelled: " + link.cancel_reason);
        reply = std::move(link.merged.front());
        link.merged.pop_front();
      }
      auto in = Incoming::Parse(reply.data(), reply.size());
      if (!in.ok()) return Status::Error("bad consensus: " + in.message());
      auto m = (*in)->envelope().getCodenoiseMerged();
      if (m.getStep() != static_cast<uint32_t>(step))
        return Status::Error("consensus for the wrong step");
      asked = m.getCheckpoint();
      for (auto sl : m.getSlices()) {
        auto values = GetTensor(sl.getLatents());
        if (!values.ok() || static_cast<int64_t>(values->data.size()) != n)
          return Status::Error("bad consensus values");
        scatter(sl.getFrame(), values->data.data());
      }
    }
    buf.resize(static_cast<size_t>(n * (end - first)));
    out.resize(static_cast<size_t>(n));
    for (int64_t f : local) {
      auto cover = SegmentsCovering(spans, f, f + 1);
      if (cover.size() < 2) continue;  // one segment: nothing to agree on
      // Rounded to half precision on the way in and out, exactly as the exchange through the
      // coordinator rounds (the wire carries halves): the consensus of a frame does not depend
      // on whether one worker or two held its segments.
      for (int k : cover) {
        float* v = buf.data() + (k - first) * n;
        gather(static_cast<uint32_t>(k), f, v);
        RoundToHalves(v, static_cast<size_t>(n));
      }
      BlendFrame(
          spans, f, mode, [&](int k) { return buf.data() + (k - first) * n; }, n, out.data());
      RoundToHalves(out.data(), static_cast<size_t>(n));
      scatter(f, out.data());
    }
    const int done = step + 1;
    const bool due =
        done < steps && (asked || (every_steps > 0 && done % static_cast<int>(every_steps) == 0) ||
                         (shared.empty() && every_seconds > 0 &&
                          Clock::now() - last_checkpoint >= std::chrono::seconds(every_seconds)));
    if (due) {
      for (uint32_t k = first; k < end; ++k)
        SendCheckpoint(outbox, job, k, attempt, done, views[k - first]);
      last_checkpoint = Clock::now();
    }
    std::lock_guard<std::mutex> lock(link.mu);
    if (link.cancelled) return Status::Error("cancelled: " + link.cancel_reason);
    return Status::Ok();
  };
  auto latents = runtime.RenderTogether(requests, after_step);
  if (!latents.ok()) {
    std::lock_guard<std::mutex> lock(link.mu);
    if (link.cancelled)
      return {{}, "job " + std::to_string(job) + " co-denoising stopped: " + link.cancel_reason};
    return fail(latents.message());
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  return RenderResultsOf(runtime, t, *latents, ms);
}

class WorkerLoop {
 public:
  WorkerLoop(const WorkerOptions& o, std::unique_ptr<model::Runtime> runtime)
      : o_(o), runtime_(std::move(runtime)) {}

  int Run(const std::atomic<bool>& stop) {
    outbox_.bind(kTaskOutbox);
    Connect();
    int tasks = 0;
    while (!stop.load()) {
      zmq::pollitem_t items[] = {{sock_->handle(), 0, ZMQ_POLLIN, 0},
                                 {outbox_.handle(), 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, 2, std::chrono::milliseconds(50));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        throw;
      }
      if (items[1].revents & ZMQ_POLLIN) {  // the task thread's messages for the coordinator
        zmq::message_t msg;
        while (outbox_.recv(msg, zmq::recv_flags::dontwait))
          if (msg.size() > 0) Send(msg.to_string());  // empty: the task is done (StartTask)
      }
      auto& item = items[0];
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
        ++tasks;
        const bool last = o_.max_tasks > 0 && tasks >= o_.max_tasks;
        // The request for the next task goes first: the coordinator then stores the result and
        // hands out the next task in one turn, behind one disk sync, instead of two turns and
        // two syncs (it holds the credit until the result frees this worker).
        // A model that became unavailable in this task is reported before anything else, so
        // the coordinator does not hand its tasks straight back here.
        if (runtime_->UnavailableModels().size() != reported_unavailable_) SendHeartbeat();
        if (!last && !draining_) RequestWork();
        for (auto& m : outcome_.messages) Send(std::move(m));
        {
          std::lock_guard<std::mutex> lock(link_.mu);
          link_.job = 0;
          link_.merged.clear();
          link_.cancelled = false;
        }
        if (last) return Leave("finished " + std::to_string(tasks) + " tasks");
        if (draining_) return Leave("drained");
      }
      if (draining_ && !task_) return Leave("drained");
      const auto now = Clock::now();
      if (now - last_sent_hb_ > std::chrono::milliseconds(heartbeat_ms_)) SendHeartbeat();
      if (now - last_heard_ > std::chrono::milliseconds(liveness_ms_)) {
        spdlog::warn("no word from the coordinator for {} ms; reconnecting", liveness_ms_);
        std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms_));
        backoff_ms_ = std::min(backoff_ms_ * 2, o_.reconnect_max_ms);
        Connect();
      }
    }
    return Leave("stopped");
  }

  void SendHeartbeat() {
    capnp::MallocMessageBuilder b;
    auto hb = b.initRoot<wire::Envelope>().initHeartbeat();
    hb.setBusy(task_ != nullptr);
    // Models whose host stopped starting since we joined: the coordinator stops sending their
    // tasks here.
    const auto unavailable = runtime_->UnavailableModels();
    SetUnavailable(hb.initUnavailableModels(static_cast<unsigned>(unavailable.size())),
                   unavailable);
    reported_unavailable_ = unavailable.size();
    Send(Serialize(b));
    last_sent_hb_ = Clock::now();
  }

  // Says goodbye (so the coordinator forgets this worker at once) and returns the exit code.
  int Leave(const std::string& why) {
    spdlog::info("{}; leaving", why);
    capnp::MallocMessageBuilder b;
    b.initRoot<wire::Envelope>().initGoodbye().setReason(why);
    Send(Serialize(b));
    return 0;
  }

  // The task thread may still run when we leave; it owns nothing the exit path needs.
  bool busy() const { return task_ != nullptr; }

  void CancelGang(const std::string& why) {
    std::lock_guard<std::mutex> lock(link_.mu);
    if (link_.job == 0 || !link_.gang) return;
    link_.cancelled = true;
    link_.cancel_reason = why;
    link_.cv.notify_all();
  }

 private:
  void Connect() {
    // A co-denoising gang does not survive a reconnect; a plain task does: its result is sent on
    // the new connection, and the coordinator takes it or fences it off by its attempt number.
    CancelGang("reconnected to the coordinator");
    sock_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
    sock_->set(zmq::sockopt::linger, 2000);  // a last result still leaves when we exit
    sock_->set(zmq::sockopt::routing_id, o_.name);
    sock_->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(WireLimits::kMaxMessageBytes));
    sock_->set(zmq::sockopt::sndhwm, kSendQueue);
    if (!o_.curve_server_key.empty())
      MakeCurveClient(*sock_, o_.curve_server_key, o_.curve_keys);  // checked at start-up
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
    h.setMemoryBytes(o_.memory_bytes > 0 ? o_.memory_bytes
                                         : static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                                               static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
    h.setPool(o_.pool);
    auto tags = h.initTags(static_cast<unsigned>(o_.tags.size()));
    for (size_t i = 0; i < o_.tags.size(); ++i) tags.set(static_cast<unsigned>(i), o_.tags[i]);
    auto models = runtime_->Models();
    // Each model's metadata, for planning: learnt once, at the first Hello (before any task
    // runs on the runtime). A model that does not load is still named, without metadata: its
    // tasks fail with the reason. A model host that cannot start is unavailable instead (below).
    if (!specs_) {
      specs_.emplace();
      for (const auto& name : models) {
        auto meta = runtime_->Metadata(name);
        if (meta.ok())
          specs_->push_back(*meta);
        else
          spdlog::warn("model {} does not load: {}", name, meta.message());
      }
    }
    const auto unavailable = runtime_->UnavailableModels();
    std::erase_if(models, [&](const std::string& m) {
      return std::any_of(unavailable.begin(), unavailable.end(),
                         [&](const auto& u) { return u.first == m; });
    });
    SetUnavailable(h.initUnavailableModels(static_cast<unsigned>(unavailable.size())), unavailable);
    auto list = h.initModels(static_cast<unsigned>(models.size()));
    for (size_t i = 0; i < models.size(); ++i) list.set(static_cast<unsigned>(i), models[i]);
    auto specs = h.initModelSpecs(static_cast<unsigned>(specs_->size()));
    for (size_t i = 0; i < specs_->size(); ++i)
      SetModelSpec(specs[static_cast<unsigned>(i)], (*specs_)[i]);
    Send(Serialize(b));
    // Large messages still waiting to be granted (a result) are asked for again: a restarted
    // coordinator has forgotten them, and the same one replaces the old request.
    for (const std::string& request : transfers_.Requests()) SendFrame(request);
  }

  static void SetUnavailable(capnp::List<wire::UnavailableModel>::Builder list,
                             const std::vector<std::pair<std::string, std::string>>& models) {
    for (size_t i = 0; i < models.size(); ++i) {
      list[static_cast<unsigned>(i)].setModel(models[i].first);
      list[static_cast<unsigned>(i)].setReason(models[i].second.substr(0, 2000));
    }
  }

  // Sends a message: whole, or announced as a transfer when larger than a frame.
  void Send(std::string bytes) {
    bool given_up = false;
    const std::string frame = transfers_.Prepare(std::move(bytes), &given_up);
    if (given_up)
      spdlog::warn("gave up the oldest large message the coordinator has not answered for");
    if (!frame.empty()) SendFrame(frame);  // else its request goes when one is answered
  }

  void SendFrame(const std::string& frame) {
    try {
      if (!sock_->send(zmq::buffer(frame), zmq::send_flags::dontwait))
        spdlog::warn("send failed: {} messages wait for the coordinator already", kSendQueue);
    } catch (const zmq::error_t& e) {
      spdlog::warn("send failed: {}", e.what());
    }
  }

  // The coordinator's answer to a transfer: the parts go, or the message was not taken. A result
  // whose transfer the coordinator drops after its parts went (a broken connection, a stall)
  // fails its task at once too, rather than at the task timeout.
  void OnTransferReply(wire::TransferReply::Reader reply) {
    HandleTransferReply(reply);
    for (const std::string& request : transfers_.NextRequests()) SendFrame(request);
  }

  void HandleTransferReply(wire::TransferReply::Reader reply) {
    std::string why, message;
    const uint64_t id = reply.getTransfer();
    auto outcome = transfers_.OnReply(
        reply, [&](std::string part) { SendFrame(part); }, &why, &message);
    if (outcome == OutgoingTransfers::Outcome::kSent) {
      if (auto failure = FailureForRefused(message, "dropped while it was sent")) {
        sent_results_[id] = std::move(*failure);
        while (sent_results_.size() > 64) sent_results_.erase(sent_results_.begin());
      }
      return;
    }
    if (outcome == OutgoingTransfers::Outcome::kUnknown) {
      auto it = sent_results_.find(id);
      if (it == sent_results_.end() || !reply.hasRefusal() || reply.getRefusal().size() == 0)
        return;
      spdlog::error("the coordinator dropped a result while it was sent: {}",
                    reply.getRefusal().cStr());
      SendFrame(it->second);
      sent_results_.erase(it);
      return;
    }
    spdlog::error("the coordinator did not take a message of {} bytes: {}", message.size(), why);
    if (auto failure = FailureForRefused(message, why)) SendFrame(*failure);
  }

  void RequestWork() {
    capnp::MallocMessageBuilder b;
    b.initRoot<wire::Envelope>().initWorkRequest().setCredits(task_ ? 0 : 1);
    Send(Serialize(b));
  }

  // Parts of a large message wait in ZeroMQ's queue while the connection drains them.
  static constexpr int kSendQueue =
      1000 + static_cast<int>(WireLimits::kMaxMessageBytes / TransferLimits::kPartBytes);

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
          spdlog::info("joined {} as {} (device {})", o_.coordinator, o_.name, o_.device);
          if (!task_) RequestWork();
          return -1;
        case wire::Envelope::ASSIGNMENT:
          StartTask(std::move(*in));
          return -1;
        case wire::Envelope::HEARTBEAT:
        case wire::Envelope::CHECKPOINT_ACK:
          return -1;
        case wire::Envelope::TRANSFER_REPLY:
          OnTransferReply(env.getTransferReply());
          return -1;
        case wire::Envelope::CODENOISE_MERGED: {
          std::lock_guard<std::mutex> lock(link_.mu);
          if (link_.job == env.getCodenoiseMerged().getJobId()) {
            link_.merged.emplace_back(static_cast<const char*>(msg.data()), msg.size());
            link_.cv.notify_all();
          }
          return -1;
        }
        case wire::Envelope::DRAIN:
          spdlog::info("draining: finishing the current task, then leaving");
          draining_ = true;
          return task_ ? -1 : 0;
        case wire::Envelope::CANCEL: {
          std::lock_guard<std::mutex> lock(link_.mu);
          if (link_.job == env.getCancel().getJobId()) {
            spdlog::info("job {}: told to stop: {}", link_.job, env.getCancel().getReason().cStr());
            link_.cancelled = true;
            link_.cancel_reason = env.getCancel().getReason().cStr();
            link_.cv.notify_all();
          }
          return -1;
        }
        case wire::Envelope::ERROR: {
          auto e = env.getError();
          // Refused as it is, or denied for its key's identity: trying again would not help.
          if (CodeOf(e) == wire::ErrorCode::VERSION_MISMATCH ||
              CodeOf(e) == wire::ErrorCode::REFUSED || CodeOf(e) == wire::ErrorCode::DENIED) {
            spdlog::error("refused by the coordinator: {}", e.getMessage().cStr());
            return 4;
          }
          if (CodeOf(e) == wire::ErrorCode::NOT_FOUND) {  // forgotten (a restart): say hello again
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
    {
      auto a = in->envelope().getAssignment();
      std::lock_guard<std::mutex> lock(link_.mu);
      link_.job = a.isRender()   ? a.getRender().getJobId()
                  : a.isEncode() ? a.getEncode().getJobId()
                                 : a.getCodenoise().getJobId();
      link_.cancelled = false;
      link_.gang = a.isCodenoise();
      link_.merged.clear();
    }
    task_ = std::make_unique<std::thread>([this, msg = std::shared_ptr<Incoming>(std::move(in))] {
      // The task thread's own way to the coordinator (via the socket thread).
      zmq::socket_t push(ctx_, zmq::socket_type::push);
      push.set(zmq::sockopt::linger, 1000);
      push.connect(kTaskOutbox);
      try {
        auto a = msg->envelope().getAssignment();
        if (a.isRender()) {
          outcome_ = RunRender(*runtime_, a.getRender(), link_, push);
        } else if (a.isCodenoise()) {
          outcome_ = RunCodenoise(*runtime_, a.getCodenoise(), link_, push);
        } else {
          std::string dir = o_.work_dir.empty() ? fs::temp_directory_path().string() : o_.work_dir;
          outcome_ = RunEncode(*runtime_, a.getEncode(), dir);
        }
      } catch (const kj::Exception& e) {
        outcome_ = {{}, std::string("malformed task: ") + e.getDescription().cStr()};
      }
      task_done_ = true;
      // An empty message wakes the socket thread's poll at once: without it the result waited
      // for the poll's timeout, up to 50 ms a task (a quarter of a small segment's time).
      push.send(zmq::message_t(), zmq::send_flags::dontwait);
    });
  }

  WorkerOptions o_;
  std::unique_ptr<model::Runtime> runtime_;
  std::optional<std::vector<model::ModelMetadata>> specs_;  // reported in Hello; set at the first
  zmq::context_t ctx_{1};
  std::unique_ptr<zmq::socket_t> sock_;
  // The failures to report for results sent in parts, should the coordinator drop them after
  // all (by transfer id; the newest 64).
  std::map<uint64_t, std::string> sent_results_;
  // Large messages announced and not yet granted. Ids start from the clock, so that a restarted
  // worker's are not taken for its predecessor's.
  OutgoingTransfers transfers_{
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count())};
  zmq::socket_t outbox_{ctx_, zmq::socket_type::pull};  // task thread -> coordinator
  TaskLink link_;
  bool draining_ = false;
  std::unique_ptr<std::thread> task_;
  std::atomic<bool> task_done_{false};
  Outcome outcome_;  // written by the task thread before task_done_, read after
  uint32_t heartbeat_ms_ = 1000, liveness_ms_ = 10000;
  int backoff_ms_ = 100;
  Clock::time_point last_heard_ = Clock::now(), last_sent_hb_ = Clock::now();
  size_t reported_unavailable_ = 0;  // models the coordinator was last told are unavailable
};

}  // namespace

Result<std::vector<std::string>> ParseDeviceList(std::string_view spec) {
  using R = Result<std::vector<std::string>>;
  std::vector<std::string> devices;
  if (!spec.empty() && spec.find_first_not_of("0123456789") == std::string_view::npos) {
    const int n = spec.size() <= 3 ? std::stoi(std::string(spec)) : 0;  // at most 3 digits
    if (n < 1 || n > 64)
      return R::Error("--device '" + std::string(spec) + "': a count of GPUs is 1 to 64");
    for (int i = 0; i < n; ++i) devices.push_back("cuda:" + std::to_string(i));
    return devices;
  }
  size_t start = 0;
  while (true) {
    const size_t comma = spec.find(',', start);
    std::string one(
        spec.substr(start, comma == std::string_view::npos ? spec.npos : comma - start));
    const bool gpu = one.rfind("cuda", 0) == 0;
    if (one != "cpu" && !gpu)
      return R::Error("--device '" + std::string(spec) + "': '" + one +
                      "' is not a device (cpu, cuda, cuda:N; a list of them; or a count of GPUs)");
    if (gpu && std::find(devices.begin(), devices.end(), one) != devices.end())
      return R::Error("--device '" + std::string(spec) + "': '" + one + "' is named twice");
    if (devices.size() >= 64) return R::Error("--device: at most 64 devices");
    devices.push_back(std::move(one));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return devices;
}

int RunWorker(const WorkerOptions& options, const std::atomic<bool>& stop) {
  WorkerOptions o = options;
  if (o.name.empty()) {
    std::random_device rd;
    char nonce[8];
    snprintf(nonce, sizeof nonce, "%04x", rd() & 0xffff);
    o.name = HostName() + "-" + std::to_string(getpid()) + "-" + nonce;
  }
  auto devices = ParseDeviceList(o.device);
  if (!devices.ok()) {
    spdlog::error("{}", devices.message());
    return 2;
  }
  // Model hosts' sockets and logs: a short path (ipc:// paths are limited to 107 bytes).
  const char* tmp = std::getenv("TMPDIR");
  const std::string run_dir = std::string(tmp && *tmp && std::strlen(tmp) < 40 ? tmp : "/tmp") +
                              "/segue-hosts-" + std::to_string(getpid());
  // One slot per device, each a farm worker of its own. Every runtime is made before any slot
  // joins, so a device the machine lacks stops the worker at start (exit 2), not half-joined.
  const size_t n = devices->size();
  std::vector<WorkerOptions> slots(n, o);
  std::vector<std::unique_ptr<WorkerLoop>> loops;
  for (size_t i = 0; i < n; ++i) {
    WorkerOptions& s = slots[i];
    s.device = (*devices)[i];
    if (n > 1) s.name = o.name + "." + std::to_string(i);
    model::RuntimeOptions ro{s.device, s.threads, s.models_dir, {}};
    if (!s.models_dir.empty())
      ro.sources.push_back(HostModelSource(s.models_dir, s.device,
                                           n > 1 ? run_dir + "/" + std::to_string(i) : run_dir));
    auto runtime = model::Runtime::Create(ro);
    if (!runtime.ok()) {
      spdlog::error("{}", runtime.message());
      return 2;
    }
    loops.push_back(std::make_unique<WorkerLoop>(s, std::move(*runtime)));
  }
  if (n > 1) {
    std::string list;
    for (const auto& s : slots) list += (list.empty() ? "" : ", ") + s.name + " on " + s.device;
    spdlog::info("{} task slots, one per device, each its own farm worker: {}", n, list);
  }
  std::vector<int> codes(n, 0);
  std::vector<std::thread> threads;
  for (size_t i = 1; i < n; ++i) threads.emplace_back([&, i] { codes[i] = loops[i]->Run(stop); });
  codes[0] = loops[0]->Run(stop);
  for (auto& t : threads) t.join();
  const int code = *std::max_element(codes.begin(), codes.end());
  for (const auto& loop : loops)
    if (loop->busy()) std::_Exit(code);  // a model call cannot be interrupted; leave without it
  return code;
}

}  // namespace segue
