#include "worker/host_model.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/model/model.h"
#include "common/util/process.h"
#include "worker/host_entry.h"

namespace segue {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kHostProtocol = 1;
constexpr int kMaxRank = 8;

// What the source knows across hosts: which models are unavailable, and why.
// Owns the run folder (hosts' sockets and logs): removed when the last host and the source are
// gone.
struct SourceState {
  explicit SourceState(std::string dir) : run_dir(std::move(dir)) {}
  ~SourceState() {
    std::error_code ec;
    std::filesystem::remove_all(run_dir, ec);
  }
  const std::string run_dir;
  std::mutex mu;
  std::map<std::string, std::string> unavailable;  // model -> reason. GUARDED_BY(mu)
};

// The last `lines` lines of `file` (of its last 4 KiB), without trailing newlines.
std::string Tail(const std::string& file, size_t lines = 12) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  const std::streamoff from = std::max<std::streamoff>(0, size - 4096);
  in.seekg(from);
  std::string text(static_cast<size_t>(std::max<std::streamoff>(0, size - from)), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  std::vector<std::string> all;
  std::istringstream split(text);
  for (std::string line; std::getline(split, line);) all.push_back(line);
  while (!all.empty() && all.back().empty()) all.pop_back();
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
    out += (out.empty() ? "" : "\n") + all[i];
  return out;
}

// Shared memory that carries a host's tensors (docs/MODELS.md, "The arena"): a memfd the host
// opens as /proc/WORKER_PID/fd/N and maps. A request's tensors are copied in once, from offset
// 0; the host places its answer's tensors after them, and the worker copies each out once. It
// grows as calls need and never shrinks; a host that does not take it gets frames instead.
class Arena {
 public:
  static constexpr size_t kMaxBytes = size_t{1} << 30;  // larger calls go by frames
  Arena() : fd_(memfd_create("segue-host-arena", MFD_CLOEXEC)) {}
  ~Arena() {
    if (data_) munmap(data_, size_);
    if (fd_ >= 0) close(fd_);
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  bool ok() const { return fd_ >= 0; }
  std::string path() const {
    return "/proc/" + std::to_string(getpid()) + "/fd/" + std::to_string(fd_);
  }
  uint8_t* data() const { return static_cast<uint8_t*>(data_); }
  size_t size() const { return size_; }

  // Makes it at least `bytes` long. False (and unchanged) when it cannot: memory is short, or
  // `bytes` is over kMaxBytes.
  bool Reserve(size_t bytes) {
    if (bytes <= size_) return true;
    if (fd_ < 0 || bytes > kMaxBytes) return false;
    const size_t grown = std::min(kMaxBytes, std::max(bytes, size_ + size_ / 2));
    const size_t rounded = (grown + (size_t{1} << 20) - 1) & ~((size_t{1} << 20) - 1);
    // fallocate, not ftruncate: a shortage is an error here, not a SIGBUS on first touch.
    if (posix_fallocate(fd_, 0, static_cast<off_t>(rounded)) != 0) return false;
    void* mapped = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (mapped == MAP_FAILED) return false;
    if (data_) munmap(data_, size_);
    data_ = mapped;
    size_ = rounded;
    return true;
  }

 private:
  int fd_;
  void* data_ = nullptr;
  size_t size_ = 0;
};

constexpr size_t Align64(size_t n) { return (n + 63) & ~size_t{63}; }

const char* DtypeName(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32:
      return "float32";
    case torch::kFloat64:
      return "float64";
    case torch::kInt64:
      return "int64";
    case torch::kBool:
      return "bool";
    default:
      return nullptr;
  }
}

// A host's failure: the call failed, and the host must be started again (`restart`), or the
// host answered with an error of its own and is fine.
struct HostFailure : std::runtime_error {
  HostFailure(const std::string& what, bool restart) : std::runtime_error(what), restart(restart) {}
  bool restart;
};

// One host process and its socket. Not thread-safe: the runtime calls a model from one thread.
class HostModel final : public model::Model {
 public:
  HostModel(HostEntry entry, std::string device, std::string run_dir,
            std::shared_ptr<SourceState> state)
      : entry_(std::move(entry)),
        device_(std::move(device)),
        run_dir_(std::move(run_dir)),
        state_(std::move(state)),
        log_(run_dir_ + "/host-" + entry_.model + ".log") {}

  ~HostModel() override { Stop(); }

  // Starts the host, with the retries a start gets: an error once max_starts starts in a row
  // failed (the model is then unavailable).
  Status Open() {
    for (;;) {
      try {
        Start();
        return Status::Ok();
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(state_->mu);
        if (state_->unavailable.count(entry_.model)) return Status::Error(e.what());
      }
    }
  }

  const model::ModelInfo& info() const override { return info_; }
  const HostCallTiming& timing() const { return timing_; }

  model::PromptEncoding EncodePrompt(const std::string& text) override {
    auto reply = Call("encode_prompt", {{"text", text}}, {});
    torch::Tensor tokens = Take(reply, "tokens"), mask = Take(reply, "mask");
    if (tokens.dim() == 1) tokens = tokens.unsqueeze(0);
    Require(tokens.dim() == 2 && tokens.size(0) > 0 && tokens.size(1) > 0 &&
                tokens.scalar_type() == torch::kFloat32,
            "encode_prompt answered tokens of shape " + Shape(tokens) + ", expected [L, D]");
    Require(mask.dim() == 1 && mask.size(0) == tokens.size(0),
            "encode_prompt answered a mask of shape " + Shape(mask) + " for " +
                std::to_string(tokens.size(0)) + " tokens");
    return {tokens, mask.to(torch::kBool)};
  }

  torch::Tensor Denoise(const torch::Tensor& latents, const torch::Tensor& sigma,
                        const model::Conditioning& cond) override {
    const int64_t B = latents.size(0);
    torch::Tensor levels = sigma.to(torch::kFloat32);
    if (info_.frame_noise_levels) {
      levels = cond.frame_sigma.defined()
                   ? cond.frame_sigma.to(torch::kFloat32)
                   : levels.unsqueeze(1).expand({B, latents.size(2)}).contiguous();
    }
    std::vector<std::pair<std::string, torch::Tensor>> in = {
        {"latents", latents.to(torch::kFloat32)},
        {"sigma", levels},
        {"prompt_tokens", cond.prompt_tokens.to(torch::kFloat32)},
        {"prompt_mask", cond.prompt_mask.to(torch::kBool)},
        {"prompt_weights", cond.prompt_weights.to(torch::kFloat32)},
        {"first_latent", torch::full({B}, cond.first_latent, torch::kInt64)},
        {"frame_times", cond.frame_times.to(torch::kFloat64)},
        {"fps", torch::full({B}, cond.fps, torch::kFloat64)}};
    if (info_.guidance == model::Guidance::kEmbedded)
      in.emplace_back("guidance", torch::full({B}, cond.guidance, torch::kFloat32));
    auto reply = Call("denoise", {}, in);
    torch::Tensor out = Take(reply, "prediction");
    Require(out.sizes() == latents.sizes() && out.scalar_type() == torch::kFloat32,
            "denoise answered shape " + Shape(out) + " for latents of shape " + Shape(latents));
    return out;
  }

  torch::Tensor Decode(const torch::Tensor& latents) override {
    auto reply = Call("decode", {}, {{"latents", latents.to(torch::kFloat32)}});
    torch::Tensor out = Take(reply, "frames");
    const int64_t frames = 1 + info_.temporal_compression * (latents.size(2) - 1);
    Require(out.dim() == 5 && out.size(0) == latents.size(0) && out.size(1) == 3 &&
                out.size(2) == frames && out.scalar_type() == torch::kFloat32,
            "decode answered shape " + Shape(out) + ", expected [B, 3, " + std::to_string(frames) +
                ", H, W]");
    return out;
  }

 private:
  struct Reply {
    json header;
    std::map<std::string, torch::Tensor> tensors;
  };

  static std::string Shape(const torch::Tensor& t) {
    std::ostringstream os;
    os << t.sizes();
    return os.str();
  }

  // A wrong answer: the host is stopped (it may be in any state) and the call fails.
  void Require(bool ok, const std::string& what) {
    if (!ok) Fail(what, true);
  }

  [[noreturn]] void Fail(const std::string& what, bool restart) {
    if (restart) {
      Stop();
      ++restarts_in_a_row_;
    }
    std::string message = "model '" + entry_.model + "' (host " + entry_.file + "): " + what;
    const std::string tail = Tail(log_);
    if (!tail.empty()) message += "; the host's stderr ends:\n" + tail;
    throw HostFailure(message, restart);
  }

  torch::Tensor Take(Reply& r, const std::string& name) {
    auto it = r.tensors.find(name);
    if (it == r.tensors.end()) Fail("its answer has no tensor '" + name + "'", true);
    return it->second;
  }

  void Stop() {
    if (child_) {
      child_->Stop(2000);
      child_.reset();
    }
    sock_.reset();
  }

  void Start() {
    Stop();
    // Backoff after failures in a row (starts, or calls that stopped the host): 0.5 s, 1 s, 2 s,
    // ... at most 8 s.
    const int failures = std::max(start_failures_, restarts_in_a_row_);
    if (failures > 0) {
      const int ms = std::min(8000, 500 << std::min(failures - 1, 4));
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
    std::error_code ec;
    std::filesystem::create_directories(run_dir_, ec);
    const std::string endpoint = "ipc://" + run_dir_ + "/host-" + std::to_string(getpid()) + "-" +
                                 std::to_string(++starts_) + ".sock";
    try {
      sock_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
      sock_->set(zmq::sockopt::linger, 0);
      sock_->bind(endpoint);
      ChildProcess::Options o;
      o.log_file = log_;
      o.cwd = entry_.folder;
      o.env = entry_.environment;
      o.env.emplace_back("SEGUE_HOST_ENDPOINT", endpoint);
      o.env.emplace_back("SEGUE_HOST_MODEL", entry_.model);
      o.env.emplace_back("SEGUE_HOST_DEVICE", device_);
      auto child = ChildProcess::Spawn(entry_.command, o);
      if (!child.ok()) Fail(child.message(), true);
      child_.emplace(std::move(*child));
      spdlog::info("model {}: started its host (pid {}): {}", entry_.model, child_->pid(),
                   entry_.command[0]);
      json args = {{"protocol", kHostProtocol}, {"model", entry_.model}, {"device", device_}};
      if (arena_.ok()) args["arena"] = arena_.path();
      host_arena_ = false;
      Reply hello = Send("hello", std::move(args), {}, entry_.start_timeout_ms);
      model::ModelInfo info = InfoFrom(hello.header["result"]);
      const json& took = hello.header["result"]["arena"];
      host_arena_ = arena_.ok() && took.is_boolean() && took.get<bool>();
      if (started_ && !(static_cast<model::ModelMetadata&>(info) == info_))
        Fail("its metadata changed since it first started", true);
      info_ = info;
      started_ = true;
      start_failures_ = 0;
    } catch (const std::exception& e) {
      Stop();
      ++start_failures_;
      if (start_failures_ >= entry_.max_starts) {
        std::lock_guard<std::mutex> lock(state_->mu);
        state_->unavailable[entry_.model] =
            "its host failed to start " + std::to_string(start_failures_) + " times: " + e.what();
      }
      throw;
    }
  }

  model::ModelInfo InfoFrom(const json& result) {
    if (!result.is_object() || result.value("protocol", 0) != kHostProtocol ||
        !result.contains("metadata") || !result["metadata"].is_object())
      Fail("hello answered no metadata of host protocol " + std::to_string(kHostProtocol), true);
    const json& m = result["metadata"];
    model::ModelInfo info;
    info.name = entry_.model;
    try {
      auto integer = [&](const char* key, int* out, bool required) {
        if (!m.contains(key)) {
          if (required) throw std::runtime_error(std::string("missing '") + key + "'");
          return;
        }
        if (!m[key].is_number_integer())
          throw std::runtime_error(std::string(key) + ": not an int");
        const int64_t v = m[key].get<int64_t>();
        if (v < 0 || v > 1 << 20) throw std::runtime_error(std::string(key) + ": out of range");
        *out = static_cast<int>(v);
      };
      auto number = [&](const char* key, double* out) {
        if (!m.contains(key)) return;
        if (!m[key].is_number()) throw std::runtime_error(std::string(key) + ": not a number");
        *out = m[key].get<double>();
      };
      auto text = [&](const char* key, const std::string& fallback) {
        if (!m.contains(key)) return fallback;
        if (!m[key].is_string()) throw std::runtime_error(std::string(key) + ": not a string");
        return m[key].get<std::string>();
      };
      integer("latent_channels", &info.latent_channels, true);
      integer("spatial_compression", &info.spatial_compression, true);
      integer("temporal_compression", &info.temporal_compression, true);
      integer("patch_size", &info.patch_size, false);
      integer("decode_context_before", &info.decode_context_before, false);
      integer("decode_context_after", &info.decode_context_after, false);
      integer("default_steps", &info.default_steps, false);
      number("native_fps", &info.native_fps);
      number("output_min", &info.output_min);
      number("output_max", &info.output_max);
      if (!m.contains("native_frames") || !m["native_frames"].is_array() ||
          m["native_frames"].empty() || m["native_frames"].size() > 64)
        throw std::runtime_error("native_frames: expected a list of clip lengths");
      info.native_frames.clear();
      for (const auto& f : m["native_frames"]) {
        if (!f.is_number_integer()) throw std::runtime_error("native_frames: not ints");
        info.native_frames.push_back(static_cast<int>(f.get<int64_t>()));
      }
      // The adapter says what its weights are (a checkpoint's hash or revision). Without it the
      // farm cannot tell new weights from old, so its results are not reused (results.h).
      info.identity = text("identity", "");
      auto scope = model::ParseConditioningScope(text("conditioning", "per-frame"));
      if (!scope) throw std::runtime_error("conditioning: not per-frame or per-clip");
      info.conditioning = *scope;
      const std::string p = text("prediction", "");
      if (p == "x0")
        info.prediction = model::Prediction::kX0;
      else if (p == "epsilon")
        info.prediction = model::Prediction::kEpsilon;
      else if (p == "velocity")
        info.prediction = model::Prediction::kVelocity;
      else
        throw std::runtime_error("prediction: not x0, epsilon or velocity");
      const std::string g = text("guidance", "cfg");
      if (g == "cfg")
        info.guidance = model::Guidance::kClassifierFree;
      else if (g == "embedded")
        info.guidance = model::Guidance::kEmbedded;
      else if (g == "none")
        info.guidance = model::Guidance::kNone;
      else
        throw std::runtime_error("guidance: not cfg, embedded or none");
      if (m.contains("frame_noise_levels")) {
        if (!m["frame_noise_levels"].is_boolean())
          throw std::runtime_error("frame_noise_levels: not a bool");
        info.frame_noise_levels = m["frame_noise_levels"].get<bool>();
      }
    } catch (const std::runtime_error& e) {
      Fail(std::string("bad metadata: ") + e.what(), true);
    }
    if (Status s = model::CheckMetadata(info); !s.ok()) Fail(s.message(), true);
    return info;
  }

  // One call to a running host (started first if need be).
  Reply Call(const std::string& method, json args,
             const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      auto it = state_->unavailable.find(entry_.model);
      if (it != state_->unavailable.end())
        throw std::runtime_error("model '" + entry_.model +
                                 "' is unavailable on this worker: " + it->second);
    }
    if (!child_ || !child_->Running()) Start();
    return Send(method, std::move(args), tensors, entry_.call_timeout_ms);
  }

  Reply Send(const std::string& method, json args,
             const std::vector<std::pair<std::string, torch::Tensor>>& tensors, int timeout_ms) {
    const auto began = Clock::now();
    const uint64_t id = ++next_id_;
    json header = {{"id", id}, {"method", method}, {"args", std::move(args)}};
    json descs = json::array();
    std::vector<torch::Tensor> bodies;
    for (const auto& [name, t] : tensors) {
      const char* dtype = DtypeName(t.scalar_type());
      if (!dtype) Fail("cannot send a " + std::string(c10::toString(t.scalar_type())), false);
      torch::Tensor c = t.to(torch::kCPU).contiguous();
      descs.push_back({{"name", name}, {"dtype", dtype}, {"shape", c.sizes().vec()}});
      bodies.push_back(c);
    }
    // Each tensor is copied once: into the arena when the host takes one and it has room for
    // the request and the answer this method gave last time, else into its own frame.
    size_t end = 0;
    std::vector<size_t> offsets;
    for (const auto& b : bodies) {
      offsets.push_back(end);
      end = Align64(end + static_cast<size_t>(b.numel() * b.element_size()));
    }
    // Room for the answer: as much again as the request (a denoise answer is the latents'
    // size), or as much as this method's last answer, if more.
    const size_t room = end + std::max(end, answer_bytes_[method]);
    const bool in_arena = host_arena_ && room > 0 && arena_.Reserve(room);
    arena_free_ = in_arena ? end : 0;
    if (in_arena) {
      for (size_t i = 0; i < bodies.size(); ++i) {
        descs[i]["offset"] = offsets[i];
        std::memcpy(arena_.data() + offsets[i], bodies[i].data_ptr(),
                    static_cast<size_t>(bodies[i].numel() * bodies[i].element_size()));
      }
      header["arena"] = {{"bytes", arena_.size()}, {"free", end}};
    }
    header["tensors"] = descs;
    // A REP socket on the host: an empty delimiter frame first.
    zmq::multipart_t out;
    out.addstr("");
    out.addstr(header.dump());
    if (!in_arena)
      for (const auto& b : bodies) out.addmem(b.data_ptr(), b.numel() * b.element_size());
    // Waits for `events` on the socket (the host connected, the answer arrived), watching the
    // host and the clock.
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    auto wait_for = [&](short events) {
      for (;;) {
        zmq::pollitem_t item{static_cast<void*>(*sock_), 0, events, 0};
        zmq::poll(&item, 1, std::chrono::milliseconds(100));
        if (item.revents & events) return;
        if (child_ && !child_->Running()) {
          const int code = child_->Wait(0);
          Fail("its host exited (status " + std::to_string(code) + ") during " + method, true);
        }
        if (Clock::now() >= deadline)
          Fail(method + " got no answer in " + std::to_string(timeout_ms / 1000) + " s", true);
      }
    };
    wait_for(ZMQ_POLLOUT);  // a DEALER takes a message once its peer is connected
    if (!out.send(*sock_, ZMQ_DONTWAIT))
      Fail("its socket did not take the " + method + " call", true);
    wait_for(ZMQ_POLLIN);
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(*sock_, std::back_inserter(frames), zmq::recv_flags::dontwait))
      Fail("its answer to " + method + " did not arrive whole", true);
    Reply reply;
    try {
      reply = Parse(method, id, std::move(frames), in_arena);
    } catch (const json::exception& e) {
      Fail("its answer to " + method + " is not the protocol's: " + e.what(), true);
    }
    restarts_in_a_row_ = 0;
    const json& result = reply.header["result"];
    const double adapter = result.is_object() && result.contains("adapter_seconds") &&
                                   result["adapter_seconds"].is_number()
                               ? result["adapter_seconds"].get<double>()
                               : 0.0;
    timing_ = {std::chrono::duration<double>(Clock::now() - began).count(), adapter};
    return reply;
  }

  // `in_arena`: the request offered the arena (answers may sit in it, past arena_free_).
  Reply Parse(const std::string& method, uint64_t id, std::vector<zmq::message_t> frames,
              bool in_arena) {
    if (frames.size() < 2 || frames[0].size() != 0)
      Fail("its answer to " + method + " is not a host protocol message", true);
    Reply r;
    r.header = json::parse(frames[1].to_string_view(), nullptr, false);
    if (!r.header.is_object()) Fail("its answer to " + method + " has no JSON header", true);
    if (r.header.value("id", uint64_t{0}) != id)
      Fail("its answer to " + method + " is for another call", true);
    if (!r.header.value("ok", false)) {
      const json& e = r.header["error"];
      Fail(method + " failed: " + (e.is_string() ? e.get<std::string>() : "no reason given"),
           false);
    }
    const json& descs = r.header["tensors"];
    size_t framed = 0;
    if (descs.is_array())
      for (const auto& d : descs) framed += d.is_object() && d.contains("offset") ? 0 : 1;
    if (!descs.is_array() || framed != frames.size() - 2)
      Fail("its answer to " + method + " lists " + std::to_string(framed) +
               " tensors in frames and carries " + std::to_string(frames.size() - 2),
           true);
    size_t next_frame = 2, answer = 0;
    for (size_t i = 0; i < descs.size(); ++i) {
      json d = descs[i];  // a copy: operator[] of a missing key gives null
      const bool shared = d.contains("offset");
      zmq::message_t empty;
      zmq::message_t& body = shared ? empty : frames[next_frame++];
      if (!d.is_object() || !d["name"].is_string() || !d["dtype"].is_string() ||
          !d["shape"].is_array() || d["shape"].size() > kMaxRank)
        Fail("its answer to " + method + " describes a tensor badly", true);
      std::vector<int64_t> shape;
      int64_t count = 1;
      for (const auto& v : d["shape"]) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > (1LL << 40))
          Fail("its answer to " + method + " has a bad tensor shape", true);
        shape.push_back(v.get<int64_t>());
        count = count * shape.back();
        if (count > (1LL << 40)) Fail("its answer to " + method + " is too large", true);
      }
      const std::string dtype = d["dtype"].get<std::string>();
      const std::map<std::string, std::pair<torch::ScalarType, int>> kinds = {
          {"float32", {torch::kFloat32, 4}},   {"float16", {torch::kFloat16, 2}},
          {"bfloat16", {torch::kBFloat16, 2}}, {"float64", {torch::kFloat64, 8}},
          {"int64", {torch::kInt64, 8}},       {"bool", {torch::kBool, 1}}};
      auto kind = kinds.find(dtype);
      if (kind == kinds.end()) Fail("its answer has a tensor of dtype '" + dtype + "'", true);
      const size_t bytes = static_cast<size_t>(count * kind->second.second);
      const auto options = torch::TensorOptions().dtype(kind->second.first);
      const bool half =
          kind->second.first == torch::kFloat16 || kind->second.first == torch::kBFloat16;
      torch::Tensor t;
      if (shared) {
        // In the arena, past the request's tensors: copied out once (widened, for halves).
        const json& at = d["offset"];
        const uint64_t offset = at.is_number_unsigned() ? at.get<uint64_t>() : 1;  // 1: refused
        if (!in_arena || offset % 64 != 0 || offset < arena_free_ || offset > arena_.size() ||
            bytes > arena_.size() - offset)
          Fail("its answer to " + method +
                   " places a tensor outside the arena's free part or off a 64-byte boundary",
               true);
        t = torch::from_blob(arena_.data() + offset, shape, options);
        t = half ? t.to(torch::kFloat32) : t.clone();
      } else {
        if (body.size() != bytes)
          Fail("its answer's tensor '" + d["name"].get<std::string>() + "' has " +
                   std::to_string(body.size()) + " bytes for " + dtype + " " + d["shape"].dump(),
               true);
        // The frame's bytes become the tensor without a copy (a float32 answer), or are widened
        // to float32 once (float16, bfloat16).
        auto owner = std::make_shared<zmq::message_t>(std::move(body));
        t = torch::from_blob(
            owner->data(), shape, [owner](void*) {}, options);
        if (half) t = t.to(torch::kFloat32);
      }
      answer += Align64(bytes);
      r.tensors[d["name"].get<std::string>()] = t;
    }
    answer_bytes_[method] = answer;  // room the next call of `method` offers for its answer
    return r;
  }

  HostEntry entry_;
  std::string device_, run_dir_;
  std::shared_ptr<SourceState> state_;
  std::string log_;
  zmq::context_t ctx_{1};
  std::unique_ptr<zmq::socket_t> sock_;
  std::optional<ChildProcess> child_;
  model::ModelInfo info_;
  bool started_ = false;
  int start_failures_ = 0;     // in a row
  int restarts_in_a_row_ = 0;  // calls that stopped the host, since the last good answer
  uint64_t starts_ = 0, next_id_ = 0;
  HostCallTiming timing_;    // of the last call answered
  Arena arena_;              // outlives host restarts: each new host is given its path
  bool host_arena_ = false;  // the running host said it maps the arena
  size_t arena_free_ = 0;    // where the current call's answers may start
  std::map<std::string, size_t> answer_bytes_;  // per method, its last answer's size
};

}  // namespace

HostCallTiming LastHostCallTiming(const model::Model& m) {
  const auto* host = dynamic_cast<const HostModel*>(&m);
  return host ? host->timing() : HostCallTiming{};
}

model::ModelSource HostModelSource(const std::string& models_dir, const std::string& device,
                                   const std::string& run_dir) {
  auto state = std::make_shared<SourceState>(run_dir);
  model::ModelSource s;
  // An entry whose devices leave this one out is not served here; one that does not parse is
  // (opening it reports why it is unavailable).
  s.names = [models_dir, device] {
    std::vector<std::string> out;
    for (const auto& name : HostEntryNames(models_dir)) {
      auto entry = LoadHostEntry(models_dir + "/" + name + kHostEntrySuffix);
      if (!entry.ok() || HostEntryServes(*entry, device)) out.push_back(name);
    }
    return out;
  };
  s.open = [models_dir, device, run_dir,
            state](const std::string& name) -> Result<std::unique_ptr<model::Model>> {
    using R = Result<std::unique_ptr<model::Model>>;
    {
      std::lock_guard<std::mutex> lock(state->mu);
      auto it = state->unavailable.find(name);
      if (it != state->unavailable.end())
        return R::Error("model '" + name + "' is unavailable on this worker: " + it->second);
    }
    auto entry = LoadHostEntry(models_dir + "/" + name + kHostEntrySuffix);
    if (!entry.ok()) {
      std::lock_guard<std::mutex> lock(state->mu);
      state->unavailable[name] = entry.message();
      return entry.status();
    }
    auto m = std::make_unique<HostModel>(std::move(*entry), device, run_dir, state);
    if (Status st = m->Open(); !st.ok()) return st;
    return R(std::unique_ptr<model::Model>(std::move(m)));
  };
  s.unavailable = [state] {
    std::lock_guard<std::mutex> lock(state->mu);
    return std::vector<std::pair<std::string, std::string>>(state->unavailable.begin(),
                                                            state->unavailable.end());
  };
  return s;
}

}  // namespace segue
