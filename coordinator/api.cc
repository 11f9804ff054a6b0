#include "coordinator/api.h"

#include <sodium.h>

#include <charconv>

#include "common/protocol/protocol.h"
#include "common/protocol/reports.h"
#include "common/protocol/transfer.h"
#include "coordinator/api_docs.h"
#include "coordinator/jobs.h"
#include "coordinator/reporting.h"

namespace segue {
namespace {

// "/api/v1/jobs/12/cancel" -> {"jobs", "12", "cancel"}; paths outside /api/v1/: empty.
std::vector<std::string> PathParts(const std::string& path) {
  const std::string prefix = "/api/v1/";
  std::vector<std::string> parts;
  if (path.rfind(prefix, 0) != 0) return parts;
  size_t at = prefix.size();
  for (;;) {
    const size_t slash = path.find('/', at);
    parts.push_back(path.substr(at, slash == std::string::npos ? std::string::npos : slash - at));
    if (slash == std::string::npos) break;
    at = slash + 1;
  }
  return parts;
}

// The fields of a write's JSON body, read with errors that name the field.
class Body {
 public:
  explicit Body(const std::string& text) {
    if (text.empty()) {
      json_ = nlohmann::json::object();
      return;
    }
    json_ = nlohmann::json::parse(text, nullptr, false);
    if (json_.is_discarded()) {
      error_ = "the body is not JSON";
    } else if (!json_.is_object()) {
      error_ = "the body must be a JSON object";
    }
  }
  const std::string& error() const { return error_; }
  bool Has(const char* field) const { return json_.contains(field) && !json_[field].is_null(); }
  std::string String(const char* field, size_t max_bytes) {
    if (!Has(field)) return "";
    const nlohmann::json& v = json_[field];
    if (!v.is_string()) return Fail(field, "expected a string"), "";
    const std::string s = v.get<std::string>();
    if (s.size() > max_bytes)
      return Fail(field, "longer than " + std::to_string(max_bytes) + " bytes"), "";
    if (s.find('\0') != std::string::npos) return Fail(field, "contains a NUL character"), "";
    return s;
  }
  int64_t Integer(const char* field, int64_t min, int64_t max) {
    if (!Has(field)) return Fail(field, "missing"), 0;
    const nlohmann::json& v = json_[field];
    if (!v.is_number_integer()) return Fail(field, "expected an integer"), 0;
    // Unsigned values past int64 read as negative here and fail the range, as they should.
    const int64_t n =
        v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX ? -1 : v.get<int64_t>();
    if (n < min || n > max)
      return Fail(field, "expected " + std::to_string(min) + " to " + std::to_string(max)), 0;
    return n;
  }
  bool Boolean(const char* field) {
    if (!Has(field)) return Fail(field, "missing"), false;
    if (!json_[field].is_boolean()) return Fail(field, "expected true or false"), false;
    return json_[field].get<bool>();
  }
  // Fields other than `known` are refused, as the manifest refuses unknown keys: a typo is
  // an error, not a silent default.
  void OnlyThese(std::initializer_list<const char*> known) {
    if (!json_.is_object()) return;
    for (const auto& [k, v] : json_.items()) {
      bool ok = false;
      std::string list;
      for (const char* f : known) {
        ok = ok || k == f;
        list += std::string(list.empty() ? "" : ", ") + f;
      }
      if (!ok) return Fail(k.substr(0, 64).c_str(), "unknown field (known: " + list + ")");
    }
  }

 private:
  void Fail(const char* field, const std::string& what) {
    if (error_.empty()) error_ = std::string("field '") + field + "': " + what;
  }
  nlohmann::json json_;
  std::string error_;
};

HttpResponse BadBody(const std::string& what) { return JsonError(400, "bad_request", what); }

std::variant<std::string, HttpResponse> SubmitEnvelope(const std::string& text) {
  Body b(text);
  b.OnlyThese({"manifest", "manifest_name", "audio", "audio_name", "output", "submission_id"});
  const std::string manifest = b.String("manifest", 1 << 20);
  const std::string name = b.String("manifest_name", 256);
  const std::string audio64 = b.String("audio", WireLimits::kMaxMessageBytes);
  const std::string audio_name = b.String("audio_name", 256);
  const std::string output = b.String("output", 4096);
  const std::string submission_id = b.String("submission_id", 128);
  if (!b.error().empty()) return BadBody(b.error());
  if (!b.Has("manifest")) return BadBody("field 'manifest': missing (the manifest's YAML text)");
  std::string audio(audio64.size() * 3 / 4 + 3, '\0');
  size_t audio_size = 0;
  if (!audio64.empty() &&
      sodium_base642bin(reinterpret_cast<unsigned char*>(audio.data()), audio.size(),
                        audio64.data(), audio64.size(), " \r\n", &audio_size, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0)
    return BadBody("field 'audio': expected the audio file's bytes in base64");
  audio.resize(audio_size);
  capnp::MallocMessageBuilder mb;
  auto s = mb.initRoot<wire::Envelope>().initSubmit();
  s.setManifestText(manifest);
  s.setManifestName(name.empty() ? "request" : name);
  if (!audio.empty()) {
    s.setAudioData(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(audio.data()), audio.size()));
    s.setAudioName(audio_name);
  }
  s.setOutputOverride(output);
  s.setSubmissionId(submission_id);
  return Serialize(mb);
}

const char* CodeName(wire::ErrorCode code) {
  switch (code) {
    case wire::ErrorCode::BAD_REQUEST:
      return "bad_request";
    case wire::ErrorCode::NOT_FOUND:
      return "not_found";
    case wire::ErrorCode::VERSION_MISMATCH:
      return "version_mismatch";
    case wire::ErrorCode::INTERNAL:
      return "internal";
    case wire::ErrorCode::REFUSED:
      return "refused";
    case wire::ErrorCode::DENIED:
      return "denied";
    case wire::ErrorCode::OVER_LIMIT:
      return "over_limit";
    default:
      return "failure";
  }
}

int HttpStatusOf(wire::ErrorCode code) {
  switch (code) {
    case wire::ErrorCode::BAD_REQUEST:
    case wire::ErrorCode::VERSION_MISMATCH:
      return 400;
    case wire::ErrorCode::NOT_FOUND:
      return 404;
    case wire::ErrorCode::REFUSED:
      return 409;
    case wire::ErrorCode::DENIED:
      return 403;
    case wire::ErrorCode::OVER_LIMIT:
      return 429;
    default:
      return 500;
  }
}

}  // namespace

uint64_t IdOf(const std::string& s) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() ? v : 0;
}

bool IsWritePath(const std::string& path) {
  const std::vector<std::string> p = PathParts(path);
  if (p.size() == 1) return p[0] == "jobs";
  if (p.size() != 3) return false;
  if (p[0] == "jobs") return p[2] == "cancel" || p[2] == "retry" || p[2] == "priority";
  if (p[0] == "workers") return p[2] == "drain";
  if (p[0] == "pools") return p[2] == "scale" || p[2] == "autoscale";
  return false;
}

std::optional<std::variant<std::string, HttpResponse>> WriteRequest(const HttpRequest& request) {
  const std::vector<std::string> p = PathParts(request.parsed.path);
  if (!IsWritePath(request.parsed.path)) return std::nullopt;
  if (p.size() == 1) return SubmitEnvelope(request.body);
  Body b(request.body);
  capnp::MallocMessageBuilder mb;
  auto env = mb.initRoot<wire::Envelope>();
  if (p[0] == "jobs") {
    const uint64_t id = IdOf(p[1]);
    if (id == 0) return JsonError(404, "not_found", "no job " + p[1].substr(0, 40));
    auto a = env.initJobAction();
    a.setJobId(id);
    if (p[2] == "priority") {
      b.OnlyThese({"priority"});
      a.setAction(wire::JobActionKind::PRIORITY);
      a.setPriority(static_cast<int32_t>(b.Integer("priority", 0, 100)));
    } else {
      b.OnlyThese({});
      a.setAction(p[2] == "cancel" ? wire::JobActionKind::CANCEL : wire::JobActionKind::RETRY);
    }
  } else if (p[0] == "workers") {
    b.OnlyThese({});
    env.initDrainWorker().setName(p[1]);
  } else if (p[2] == "scale") {
    b.OnlyThese({"size"});
    auto s = env.initPoolRequest().initScale();
    s.setName(p[1]);
    s.setSize(static_cast<uint32_t>(b.Integer("size", 0, 100000)));
  } else {
    b.OnlyThese({"enabled", "min", "max"});
    auto a = env.initPoolRequest().initAutoscale();
    a.setName(p[1]);
    a.setEnabled(b.Boolean("enabled"));
    if (b.Has("min") || b.Has("max")) {
      a.setMin(static_cast<uint32_t>(b.Integer("min", 0, 100000)));
      a.setMax(static_cast<uint32_t>(b.Integer("max", 0, 100000)));
    }
  }
  if (!b.error().empty()) return BadBody(b.error());
  return Serialize(mb);
}

HttpResponse WriteReply(const void* payload, size_t size, const JobTable& jobs, uint64_t now_ms) {
  auto in = Incoming::Parse(payload, size);
  if (!in.ok()) return JsonError(500, "internal", "unreadable reply: " + in.message());
  try {
    auto env = (*in)->envelope();
    switch (env.which()) {
      case wire::Envelope::SUBMIT_REPLY: {
        auto r = env.getSubmitReply();
        auto it = jobs.find(r.getJobId());
        if (it == jobs.end()) return JsonError(500, "internal", "the new job is gone");
        HttpResponse out =
            Json(r.getExisting() ? 200 : 201, ReportJob(it->second, now_ms, true).ToJson());
        out.headers.emplace_back("Location", "/api/v1/jobs/" + std::to_string(r.getJobId()));
        return out;
      }
      case wire::Envelope::JOB_STATUS: {
        auto it = jobs.find(env.getJobStatus().getJobId());
        if (it != jobs.end()) return Json(200, ReportJob(it->second, now_ms, true).ToJson());
        return Json(200, FromWire(env.getJobStatus()).ToJson());
      }
      case wire::Envelope::WORKER_LIST: {
        nlohmann::json list = nlohmann::json::array();
        for (auto w : env.getWorkerList().getWorkers()) list.push_back(FromWire(w).ToJson());
        return Json(200, {{"workers", list}});
      }
      case wire::Envelope::POOL_LIST: {
        nlohmann::json list = nlohmann::json::array();
        for (auto p : env.getPoolList().getPools()) list.push_back(FromWire(p).ToJson());
        return Json(200, {{"pools", list}});
      }
      case wire::Envelope::ERROR: {
        const wire::ErrorCode code = CodeOf(env.getError());
        return JsonError(HttpStatusOf(code), CodeName(code), env.getError().getMessage().cStr());
      }
      default:
        return JsonError(500, "internal", "an unexpected reply");
    }
  } catch (const kj::Exception& e) {
    return JsonError(500, "internal",
                     std::string("unreadable reply: ") + e.getDescription().cStr());
  }
}

std::optional<HttpResponse> ReadRequest(const HttpTarget& t, HandlerContext& c, uint64_t now_ms) {
  const std::string& path = t.path;
  if (path == "/api/v1/openapi.json") return HttpResponse{200, "application/json", OpenApiJson()};
  if (path == "/api/v1/schema/job.schema.json")
    return HttpResponse{200, "application/schema+json", JobSchemaJson()};
  if (path == "/api/v1/version")
    return Json(200, {{"version", SEGUE_VERSION},
                      {"protocol_version", wire::PROTOCOL_VERSION},
                      {"max_message_bytes", std::to_string(WireLimits::kMaxMessageBytes)},
                      {"part_bytes", std::to_string(TransferLimits::kPartBytes)}});
  if (path == "/api/v1/health") {
    size_t unfinished = 0;
    for (const auto& [id, j] : c.jobs) unfinished += IsFinished(j.state) ? 0 : 1;
    return Json(200, {{"status", "ok"},
                      {"unfinished_jobs", unfinished},
                      {"workers", c.workers.all().size()},
                      {"held_messages", c.outbox.held()}});
  }
  if (path == "/api/v1/workers") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [name, w] : c.workers.all()) list.push_back(ReportWorker(w).ToJson());
    return Json(200, {{"workers", list}});
  }
  if (path == "/api/v1/pools") {
    nlohmann::json list = nlohmann::json::array();
    if (c.pools)
      for (const auto& p : c.pools->List(ViewOfPools(c))) list.push_back(ReportPool(p).ToJson());
    return Json(200, {{"pools", list}});
  }
  if (path == "/api/v1/jobs") {
    JobQuery q;
    for (const auto& [k, v] : t.query) {
      if (k == "state") {
        q.states.insert(v);
      } else if (k == "owner") {
        q.owner = v;
      } else if (k == "name") {
        q.name = v;
      } else if (k == "meta") {
        const size_t eq = v.find('=');
        if (eq == std::string::npos || eq == 0)
          return JsonError(400, "bad_request", "meta: expected KEY=VALUE, got '" + v + "'");
        q.metadata.emplace_back(v.substr(0, eq), v.substr(eq + 1));
      } else if (k == "after") {
        q.after_id = IdOf(v);
      } else if (k == "family") {
        q.family = IdOf(v);
      } else if (k == "limit") {
        q.limit = static_cast<uint32_t>(std::min<uint64_t>(IdOf(v), 1000000));
      } else {
        return JsonError(400, "bad_request",
                         "unknown parameter '" + k +
                             "' (known: state, owner, name, meta, after, family, limit)");
      }
    }
    uint64_t next = 0;
    nlohmann::json list = nlohmann::json::array();
    for (const Job* j : FindJobs(c.jobs, q, &next))
      list.push_back(ReportJob(*j, now_ms, true).ToJson());
    return Json(200, {{"jobs", list},
                      {"next_after",
                       next ? nlohmann::json(std::to_string(next)) : nlohmann::json(nullptr)}});
  }
  const std::vector<std::string> p = PathParts(path);
  if (p.size() == 5 && p[0] == "jobs" && p[2] == "segments" && p[4] == "thumbnail") {
    const uint64_t id = IdOf(p[1]);
    auto it = id ? c.jobs.find(id) : c.jobs.end();
    if (it == c.jobs.end()) return JsonError(404, "not_found", "no job " + p[1].substr(0, 40));
    const uint64_t segment = p[3] == "0" ? 0 : IdOf(p[3]);
    if ((segment == 0 && p[3] != "0") || segment >= it->second.seg.size())
      return JsonError(404, "not_found", "job " + p[1] + " has no segment " + p[3].substr(0, 40));
    auto jpeg = c.journal.Thumbnail(id, static_cast<uint32_t>(segment));
    if (!jpeg.ok())
      return JsonError(404, "not_found",
                       "segment " + p[3] + " of job " + p[1] + " has no thumbnail (yet)");
    HttpResponse r{200, "image/jpeg", std::move(*jpeg)};
    return r;
  }
  if (p.size() >= 2 && p.size() <= 3 && p[0] == "jobs") {
    const uint64_t id = IdOf(p[1]);
    auto it = id ? c.jobs.find(id) : c.jobs.end();
    if (it == c.jobs.end()) return JsonError(404, "not_found", "no job " + p[1].substr(0, 40));
    if (p.size() == 2) return Json(200, ReportJob(it->second, now_ms, true).ToJson());
    if (p[2] == "logs") {
      auto lines = c.journal.Events(
          id, [](const std::string&) { return true; }, 100000);
      if (!lines.ok()) return JsonError(500, "internal", lines.message());
      nlohmann::json out = nlohmann::json::array();
      for (const std::string& l : *lines) {
        const size_t sp = l.find(' ');
        out.push_back({{"ms", IdOf(l.substr(0, sp))},
                       {"text", sp == std::string::npos ? "" : l.substr(sp + 1)}});
      }
      return Json(200, {{"lines", out}});
    }
  }
  return std::nullopt;
}

}  // namespace segue
