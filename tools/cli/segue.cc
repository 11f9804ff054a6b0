// segue: the command line a pipeline TD types.
//   segue plan MANIFEST [--json] [--model-info F]  how the video is cut into segments
//   segue render MANIFEST [--workers N]      a local farm on this machine, start to finish
//   segue submit MANIFEST --coordinator A    hand a job to a running farm
//   segue status JOB [--json] [--watch]      one job's state and progress
//   segue jobs [--json]                      every job the coordinator knows
//   segue workers [--json]                   every worker the coordinator knows
//   segue takes JOB [--sheet PNG] [--json]  the takes of each section, and a contact sheet of them
//   segue pick JOB SECTION TAKE              a new output with that take, reusing what it can
//   segue cancel|retry JOB, segue priority JOB N, segue drain WORKER, segue logs JOB [--segment I]
//   segue seams VIDEO --plan P | --manifest M  how visible the joins between segments are
//   segue contact-sheet VIDEO --plan P -o S.png the frames around every join, as one picture
//   segue version [--coordinator A]          this segue's version and the coordinator's protocol
// Exit codes (README.md, "Exit codes"): 0 success; 1 failure (the farm unreachable, an internal
// error); 2 bad input (flags, manifests, unknown jobs); 3 the job FAILED and 4 it was CANCELLED
// (status, submit --wait); 5 denied (the identity's role); 6 over a limit of the coordinator.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <chrono>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "common/manifest/manifest.h"
#include "common/model/metadata.h"
#include "common/plan/plan.h"
#include "common/plan/timeline.h"
#include "common/protocol/protocol.h"
#include "common/security/curve.h"
#include "common/security/keyring.h"
#include "common/util/process.h"
#include "tools/cli/client.h"
#include "tools/cli/contact_sheet.h"
#include "tools/cli/progress.h"
#include "tools/cli/seams.h"

namespace fs = std::filesystem;
using namespace segue;

namespace {

constexpr int kBadInput = 2;
constexpr int kJobFailed = 3;
constexpr int kJobCancelled = 4;
constexpr int kDenied = 5;
constexpr int kOverLimit = 6;
std::atomic<bool> g_interrupted{false};
void OnSignal(int) { g_interrupted = true; }

int Fail(const std::string& msg, int code = 1) {
  std::cerr << "segue: " << msg << "\n";
  return code;
}

// The exit code of a failed call: what the coordinator's error code says, else `otherwise`
// (no reply at all: 1).
int ExitFor(const Client& client, int otherwise = kBadInput) {
  switch (static_cast<wire::ErrorCode>(client.last_error_code())) {
    case wire::ErrorCode::DENIED:
      return kDenied;
    case wire::ErrorCode::OVER_LIMIT:
      return kOverLimit;
    case wire::ErrorCode::BAD_REQUEST:
    case wire::ErrorCode::NOT_FOUND:
      return kBadInput;
    case wire::ErrorCode::NONE:
      return 1;  // no reply, or a reply that did not parse
    default:
      return otherwise == kBadInput ? 1 : otherwise;
  }
}

// The exit code of a job's final state: 0 DONE (or not finished), 3 FAILED, 4 CANCELLED.
int ExitForState(const JobInfo& j) {
  return j.state == "FAILED" ? kJobFailed : j.state == "CANCELLED" ? kJobCancelled : 0;
}

std::string ReadFile(const std::string& path, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read '" + path + "': " + std::strerror(errno);
    return "";
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- plan ------------------------------------------------------------------------------------

// A manifest's plan for its model (the built-in's metadata, or one latent frame per video frame
// for a TorchScript model): the segments in latent frames.
struct ManifestPlan {
  Manifest manifest;
  model::ModelMetadata model;
  LatentGeometry geometry;
  std::vector<SegmentSpan> segments;
};

// A model's metadata from a JSON file (`segue plan --model-info`): the fields of
// common/model/metadata.h by name; those left out keep their defaults.
Result<model::ModelMetadata> LoadModelInfo(const std::string& path, const std::string& name) {
  using R = Result<model::ModelMetadata>;
  std::string error;
  const std::string text = ReadFile(path, &error);
  if (!error.empty()) return R::Error(error);
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return R::Error(path + ": not a JSON object of model metadata");
  model::ModelMetadata m;
  m.name = name;
  try {
    for (auto [key, out] : std::vector<std::pair<const char*, int*>>{
             {"latent_channels", &m.latent_channels},
             {"temporal_compression", &m.temporal_compression},
             {"spatial_compression", &m.spatial_compression},
             {"patch_size", &m.patch_size},
             {"decode_context_before", &m.decode_context_before},
             {"decode_context_after", &m.decode_context_after}}) {
      if (j.contains(key)) *out = j.at(key).get<int>();
    }
    if (j.contains("native_frames"))
      m.native_frames = j.at("native_frames").get<std::vector<int>>();
    if (j.contains("native_fps")) m.native_fps = j.at("native_fps").get<double>();
    if (j.contains("output_min")) m.output_min = j.at("output_min").get<double>();
    if (j.contains("output_max")) m.output_max = j.at("output_max").get<double>();
    if (j.contains("identity")) m.identity = j.at("identity").get<std::string>();
    if (j.contains("conditioning")) {
      auto scope = model::ParseConditioningScope(j.at("conditioning").get<std::string>());
      if (!scope) return R::Error(path + ": conditioning must be per-frame or per-clip");
      m.conditioning = *scope;
    }
  } catch (const nlohmann::json::exception& e) {
    return R::Error(path + ": " + e.what());
  }
  if (Status s = model::CheckMetadata(m); !s.ok()) return R::Error(path + ": " + s.message());
  return m;
}

Result<ManifestPlan> PlanManifest(const std::string& path, bool check_audio,
                                  const std::string& model_info = "") {
  auto m = LoadManifestFile(path, check_audio);
  if (!m.ok()) return m.status();
  ManifestPlan p;
  p.manifest = std::move(*m);
  p.model = model::PlanningMetadata(p.manifest.model_name);
  if (!model_info.empty()) {
    auto info = LoadModelInfo(model_info, p.manifest.model_name);
    if (!info.ok()) return info.status();
    p.model = *info;
  }
  auto g = FitToModel(p.manifest, p.model);
  if (!g.ok()) return g.status();
  p.geometry = *g;
  p.segments = PlanLatentSegments(p.geometry, p.manifest.seed);
  SeedTakes(p.geometry, p.manifest.timeline, p.segments);
  return p;
}

int CmdPlan(const std::string& path, bool json, const std::string& model_info) {
  auto plan = PlanManifest(path, true, model_info);
  if (!plan.ok()) return Fail(plan.message(), kBadInput);
  const Manifest& m = plan->manifest;
  const LatentGeometry& g = plan->geometry;
  const int r = g.timeline.r();
  const int64_t length = g.timeline.FramesOf(g.length), overlap = int64_t{g.overlap} * r;
  if (json) {
    // 64-bit values (seeds) are strings, as in every segue JSON; fps is a number, with the
    // exact fraction beside it.
    nlohmann::json j;
    j["schema_version"] = 1;
    j["frames"] = m.frames;
    j["fps"] = m.fps.value();
    j["fps_fraction"] = std::to_string(m.fps.num) + "/" + std::to_string(m.fps.den);
    j["model"] = m.model_name;
    j["temporal_compression"] = r;
    j["latents"] = g.latents;
    j["length"] = length;
    j["overlap"] = overlap;
    j["latent_length"] = g.length;
    j["latent_overlap"] = g.overlap;
    if (!g.adjusted.empty()) j["adjusted"] = g.adjusted;
    j["segments"] = nlohmann::json::array();
    for (const auto& s : plan->segments) {
      const int64_t start = g.VideoStart(s.start), end = g.VideoEnd(s.end);
      j["segments"].push_back({{"index", s.index},
                               {"start", start},
                               {"end", end},
                               {"latent_start", s.start},
                               {"latent_end", s.end},
                               {"seed", std::to_string(s.seed)},
                               {"prompts", PromptsOf(m.timeline, start, end)}});
    }
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  std::cout << m.name << ": " << m.frames << " frames (" << m.width << "x" << m.height << " at "
            << m.fps.ToString() << " fps), " << plan->segments.size() << " segments of "
            << std::min<int64_t>(m.frames, length) << " frames, overlap " << overlap
            << ", strategy " << StrategyName(m.strategy) << "\n";
  if (r > 1) {
    std::cout << "  model " << m.model_name << " compresses time " << r << "x: " << g.latents
              << " latent frames (" << g.timeline.FramesOf(g.latents) << " frames, trimmed to "
              << m.frames << "), segments of " << g.length << " latent frames, overlap "
              << g.overlap << "\n";
  }
  if (!g.adjusted.empty()) std::cout << "  rounded to fit the model: " << g.adjusted << "\n";
  for (const auto& s : plan->segments) {
    const int64_t start = g.VideoStart(s.start), end = g.VideoEnd(s.end);
    auto prompts = PromptsOf(m.timeline, start, end);
    std::cout << "  #" << s.index << "  [" << start << ", " << end << ")";
    if (r > 1) std::cout << "  latent [" << s.start << ", " << s.end << ")";
    std::cout << "  seed " << s.seed << "  ";
    for (size_t i = 0; i < prompts.size(); ++i)
      std::cout << (i ? " -> " : "") << "\"" << prompts[i] << "\"";
    std::cout << "\n";
  }
  return 0;
}

// ---- submit ----------------------------------------------------------------------------------

Result<SubmitRequest> BuildSubmit(const std::string& path, const Manifest& m) {
  SubmitRequest r;
  std::string error;
  r.manifest_text = ReadFile(path, &error);
  if (!error.empty()) return Result<SubmitRequest>::Error(error);
  r.manifest_name = fs::path(path).filename().string();
  if (m.audio_path) {
    r.audio_data = ReadFile(m.audio_file, &error);
    if (!error.empty()) return Result<SubmitRequest>::Error(error);
    r.audio_name = fs::path(m.audio_file).filename().string();
  }
  return r;
}

// How long to wait for the coordinator's answer: $SEGUE_TIMEOUT_MS, default 15 s.
int ClientTimeoutMs() {
  const char* v = getenv("SEGUE_TIMEOUT_MS");
  const long long ms = v ? std::strtoll(v, nullptr, 10) : 0;  // 0 for what is not a number
  return ms > 0 && ms <= 86400000 ? static_cast<int>(ms) : 15000;
}

// Polls until the job finishes; returns its last state.
Result<JobInfo> Follow(Client& client, uint64_t job, bool show) {
  ProgressDisplay display(stderr);
  while (true) {
    auto st = client.Status(job);
    if (!st.ok()) {
      display.Finish();
      return st;
    }
    if (show) display.Update(*st);
    if (st->Finished() || g_interrupted) {
      display.Finish();
      return st;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

std::vector<JobInfo> TakesOf(const std::vector<JobInfo>& family) {
  std::vector<JobInfo> takes;
  for (const JobInfo& j : family)
    if (j.family.role == "take") takes.push_back(j);
  std::stable_sort(takes.begin(), takes.end(), [](const JobInfo& a, const JobInfo& b) {
    return a.family.section != b.family.section ? a.family.section < b.family.section
                                                : a.family.take < b.family.take;
  });
  return takes;
}

// Follows a submitted job and the jobs the farm derived from it (docs/MANIFEST.md,
// "Iterating"): its preview first, said on stdout as soon as it is delivered ("preview: PATH"),
// then the job itself, then its takes. Returns the job's last status.
Result<JobInfo> FollowFamily(Client& client, uint64_t job, bool show, bool say) {
  auto st = client.Status(job);
  if (!st.ok()) return st;
  if (st->family.preview_job != 0) {
    if (show) std::cerr << "segue: the preview first (job " << st->family.preview_job << ")\n";
    auto p = Follow(client, st->family.preview_job, show);
    if (!p.ok()) return p.status();
    if (say && p->state == "DONE") std::cout << "preview: " << p->output << std::endl;
    if (p->state != "DONE")
      std::cerr << "segue: preview job " << p->id << " " << p->state
                << (p->error.empty() ? "" : ": " + p->error) << "\n";
    if (g_interrupted) return p;
  }
  st = Follow(client, job, show);
  if (!st.ok() || st->state != "DONE" || g_interrupted) return st;
  JobFilter filter;
  filter.family = job;
  auto family = client.Jobs(filter);
  if (!family.ok()) return family.status();
  const std::vector<JobInfo> takes = TakesOf(*family);
  for (size_t i = 0; i < takes.size() && !g_interrupted; ++i) {
    if (show)
      std::cerr << "segue: take " << takes[i].family.take << " of section "
                << takes[i].family.section << " (job " << takes[i].id << ", " << i + 1 << " of "
                << takes.size() << ")\n";
    auto t = Follow(client, takes[i].id, show);
    if (!t.ok()) return t.status();
  }
  return st;
}

// Prints the job id first (flushed: a pipeline reads it before the job ends), then, with --wait,
// follows the job; the exit code is its final state's.
int CmdSubmit(const std::string& path, const std::string& coordinator, const std::string& output,
              bool wait, bool json, const std::string& submission_id) {
  auto m = LoadManifestFile(path);
  if (!m.ok()) return Fail(m.message(), kBadInput);
  auto req = BuildSubmit(path, *m);
  if (!req.ok()) return Fail(req.message(), kBadInput);
  req->output_override = output;
  req->submission_id = submission_id;
  Client client(CoordinatorAddress(coordinator), ClientTimeoutMs());
  auto r = client.Submit(*req);
  if (!r.ok()) return Fail(r.message(), ExitFor(client));
  if (json) {
    std::cout << nlohmann::json{{"schema_version", kJobSchemaVersion},
                                {"id", std::to_string(r->job_id)},
                                {"frames", r->frames},
                                {"segments", r->segments},
                                {"output", r->output},
                                {"existing", r->existing}}
                     .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
              << std::endl;
  } else {
    std::cout << "job id: " << r->job_id << std::endl;
    std::cout << "job " << r->job_id << (r->existing ? " (submitted before with this id)" : "")
              << " accepted: " << r->frames << " frames ";
    if (r->segments > 0)
      std::cout << "in " << r->segments << " segments";
    else  // the coordinator plans it when a worker that serves its model joins
      std::cout << "(waiting for a worker that serves model " << m->model_name << " to plan it)";
    std::cout << ", output " << r->output << std::endl;
  }
  if (!wait) return 0;
  auto st = FollowFamily(client, r->job_id, !json, !json);
  if (!st.ok()) return Fail(st.message(), ExitFor(client, 1));
  if (json)
    std::cout << st->ToJson().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
              << std::endl;
  if (st->state != "DONE")
    std::cerr << "segue: job " << r->job_id << " " << st->state
              << (st->error.empty() ? "" : ": " + st->error) << "\n";
  return ExitForState(*st);
}

// ---- status / jobs ---------------------------------------------------------------------------

Result<uint64_t> ParseJobId(const std::string& s) {
  uint64_t id = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), id);
  if (ec != std::errc() || p != s.data() + s.size() || id == 0) {
    return Result<uint64_t>::Error(
        "'" + s + "' is not a job id (a positive number, as `segue submit` prints)");
  }
  return id;
}

void PrintJob(const JobInfo& j) {
  const uint32_t pending = j.segments_total - j.segments_done - j.segments_running;
  std::cout << "job " << j.id << " (" << j.name << "): " << j.state << ", priority " << j.priority
            << (j.owner.empty() || j.owner == "local" ? "" : ", owner " + j.owner) << "\n"
            << "  " << ProgressDisplay::Line(j, 30) << "\n"
            << "  segments: " << j.segments_done << " done, " << j.segments_running << " running, "
            << pending << " waiting; chunks: " << j.chunks_done << " of " << j.chunks_total
            << " encoded\n";
  if (!j.segment_states.empty())
    std::cout << "  [" << ProgressDisplay::SegmentStrip(j.segment_states, 64)
              << "]  # done  > running  . waiting  x failed\n";
  if (j.segments_total == 0 && j.state == "QUEUED")  // no plan yet (coordinator/jobs.h)
    std::cout << "  waiting for a worker that serves its model: it is planned when one joins\n";
  if (!j.output.empty()) std::cout << "  output: " << j.output << "\n";
  if (!j.error.empty()) std::cout << "  error: " << j.error << "\n";
}

// What PrintJob says of a job's family (docs/MANIFEST.md, "Iterating"), `preview` the status of
// a final's preview when it has one.
void PrintFamily(const JobInfo& j, const JobInfo* preview) {
  const FamilyInfo& f = j.family;
  if (preview)
    std::cout << "  preview: job " << preview->id << " " << preview->state
              << (preview->output.empty() ? "" : ", " + preview->output) << "\n";
  if (f.role == "preview") std::cout << "  the preview of job " << f.parent << "\n";
  if (f.role == "take")
    std::cout << "  take " << f.take << " of section " << f.section << " (frames "
              << f.section_start << "-" << f.section_end << ") of job " << f.parent
              << "; pick it with: segue pick " << f.parent << " " << f.section << " " << f.take
              << "\n";
  if (f.role == "pick") {
    std::cout << "  picked from job " << f.parent << ":";
    for (const auto& [section, take] : f.picks)
      std::cout << " section " << section << " take " << take << ";";
    std::cout << "\n";
  }
  if (f.waiting_for != 0)
    std::cout << "  waiting for job " << f.waiting_for
              << (f.role == "take" ? " to render every segment (then it renders what the take "
                                     "changes and reuses the rest)"
                                   : " (its preview) to finish")
              << "\n";
}

// The frames of [start, end) a takes sheet shows: kSheetColumns spread evenly.
std::vector<int64_t> SheetFrames(int64_t start, int64_t end) {
  std::vector<int64_t> frames;
  const int64_t len = std::max<int64_t>(1, end - start);
  for (int c = 0; c < kSheetColumns; ++c)
    frames.push_back(start + std::min(len - 1, (2 * c + 1) * len / (2 * kSheetColumns)));
  return frames;
}

// A section's segments a thumbnail sheet shows: kSheetColumns spread evenly, or all of them.
std::vector<uint32_t> SheetSegments(const std::vector<uint32_t>& segments) {
  if (segments.size() <= kSheetColumns) return segments;
  std::vector<uint32_t> out;
  for (size_t c = 0; c < kSheetColumns; ++c)
    out.push_back(segments[(2 * c + 1) * segments.size() / (2 * kSheetColumns)]);
  return out;
}

// Where the takes' outputs cannot be read here (the CLI runs on another machine than the farm's
// storage; `unreadable` is the first that cannot), the contact sheet is made of the segments'
// thumbnails, which the coordinator keeps.
int PrintThumbnailSheet(Client& client, const JobInfo& root, const std::string& unreadable,
                        const std::vector<std::pair<uint64_t, std::vector<uint32_t>>>& rows,
                        const std::string& sheet) {
  std::vector<std::vector<std::string>> jpegs;
  for (const auto& [job, segments] : rows) {
    auto got = client.Thumbnails(job, segments);
    if (!got.ok()) {
      const bool old = got.message().find("unexpected message type") != std::string::npos;
      return Fail("contact sheet: " + unreadable + " cannot be read here, and " +
                      (old ? "the coordinator is older than thumbnail requests (upgrade it, or run "
                             "segue takes where the outputs can be read)"
                           : "its thumbnails cannot be had: " + got.message()),
                  ExitFor(client, 1));
    }
    jpegs.push_back(std::move(*got));
  }
  std::string path = sheet;
  if (path.empty()) {
    const fs::path out(root.output);
    path = (out.has_extension() ? out.stem() : out.filename()).string() + "-takes.png";
  }
  std::vector<DarkCell> dark;
  auto layout = WriteThumbnailSheet(jpegs, path, 160, &dark);
  // A dark cell as the director can look it up: the take's job and the segment.
  auto name = [&](const DarkCell& d) {
    return "job " + std::to_string(rows[d.row].first) + " segment " +
           std::to_string(rows[d.row].second[static_cast<size_t>(d.column)]) + ": " +
           (d.why.empty() ? "no thumbnail" : d.why);
  };
  if (!layout.ok()) {
    std::cout << "contact sheet: not made: " << unreadable << " cannot be read here, and "
              << layout.message() << (dark.empty() ? "" : " (" + name(dark.front()) + ")") << "\n";
    return 1;
  }
  std::cout << "contact sheet: " << path << " (" << unreadable
            << " cannot be read here: made of the coordinator's thumbnails, the middle frame of "
               "each of a section's segments, up to "
            << kSheetColumns << "; a row per take, sections in order, take 1 first)\n";
  if (!dark.empty())
    std::cout << "  " << dark.size() << " cell" << (dark.size() == 1 ? " is" : "s are")
              << " dark; the first, " << name(dark.front()) << "\n";
  return 0;
}

// segue takes: each section's takes (take 1 is the job's own output), and a contact sheet of them
// at `sheet` (empty: NAME.takes/contact-sheet.png beside the job's output) once all are DONE;
// made of `client`'s coordinator's thumbnails where the outputs cannot be read here (`client`
// null: they are local, as in `segue render`).
int PrintTakes(Client* client, const JobInfo& root, const std::vector<JobInfo>& takes,
               const std::string& sheet) {
  std::cout << "job " << root.id << " (" << root.name << "): takes of ";
  std::map<int, std::vector<const JobInfo*>> by_section;
  for (const JobInfo& t : takes) by_section[t.family.section].push_back(&t);
  std::cout << by_section.size() << " section" << (by_section.size() == 1 ? "" : "s")
            << "; choose with: segue pick " << root.id << " SECTION TAKE\n";
  bool all_done = root.state == "DONE";
  std::vector<TakeRow> rows;
  std::vector<std::pair<uint64_t, std::vector<uint32_t>>> thumbnails;  // per row: job, segments
  for (const auto& [section, list] : by_section) {
    const FamilyInfo& f = list.front()->family;
    std::cout << "section " << section << ", frames " << f.section_start << "-" << f.section_end
              << ": \"" << f.section_prompt << "\"";
    if (!f.section_segments.empty())
      std::cout << " (segments " << f.section_segments.front() << "-" << f.section_segments.back()
                << ")";
    else
      std::cout << " (no segment of its own: its takes are take 1)";
    std::cout << "\n";
    printf("  take %-3d job %-6llu %-10s %s\n", 1, static_cast<unsigned long long>(root.id),
           root.state.c_str(), root.output.c_str());
    rows.push_back({root.output, SheetFrames(f.section_start, f.section_end)});
    thumbnails.push_back({root.id, SheetSegments(f.section_segments)});
    for (const JobInfo* t : list) {
      printf("  take %-3u job %-6llu %-10s %s\n", t->family.take,
             static_cast<unsigned long long>(t->id), t->state.c_str(),
             (t->error.empty() ? t->output : t->error).c_str());
      all_done = all_done && t->state == "DONE";
      rows.push_back({t->output, SheetFrames(f.section_start, f.section_end)});
      thumbnails.push_back({t->id, SheetSegments(f.section_segments)});
    }
  }
  if (!all_done) {
    std::cout << "contact sheet: once every take is DONE\n";
    return 0;
  }
  std::error_code ec;
  for (const TakeRow& row : rows)
    if (client && !fs::exists(row.video, ec))
      return PrintThumbnailSheet(*client, root, row.video, thumbnails, sheet);
  const fs::path out = fs::path(root.output);
  std::string path = sheet;
  if (path.empty()) {
    const std::string stem =
        root.output.size() && fs::is_directory(out) ? out.filename().string() : out.stem().string();
    path = (out.parent_path() / (stem + ".takes") / "contact-sheet.png").string();
  }
  auto layout = WriteTakesSheet(rows, path, 160);
  if (!layout.ok()) {
    std::cout << "contact sheet: not made: " << layout.message() << "\n";
    return 1;
  }
  std::cout << "contact sheet: " << path << " (a row per take, sections in order, take 1 first; "
            << kSheetColumns << " frames across each section)\n";
  return 0;
}

int CmdTakes(const std::string& job, const std::string& sheet, const std::string& coordinator,
             bool json) {
  auto id = ParseJobId(job);
  if (!id.ok()) return Fail(id.message(), kBadInput);
  Client client(CoordinatorAddress(coordinator), ClientTimeoutMs());
  auto st = client.Status(*id);
  if (!st.ok()) return Fail(st.message(), ExitFor(client));
  const uint64_t root_id = st->family.Root(st->id);
  auto root = root_id == st->id ? st : client.Status(root_id);
  if (!root.ok()) return Fail(root.message(), ExitFor(client));
  JobFilter filter;
  filter.family = root_id;
  auto family = client.Jobs(filter);
  if (!family.ok()) return Fail(family.message(), ExitFor(client, 1));
  const std::vector<JobInfo> takes = TakesOf(*family);
  if (json) {
    nlohmann::json j;
    j["schema_version"] = 1;
    j["job"] = root->ToJson();
    j["takes"] = nlohmann::json::array();
    for (const JobInfo& t : takes) j["takes"].push_back(t.ToJson());
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  if (takes.empty()) {
    std::cout << "job " << root_id << " has no takes: give a section `takes: N` in the manifest "
              << "(docs/MANIFEST.md, \"Takes\")\n";
    return 0;
  }
  return PrintTakes(&client, *root, takes, sheet);
}

int CmdPick(const std::string& job, int section, int take, const std::string& output,
            const std::string& coordinator, bool wait, bool json) {
  auto id = ParseJobId(job);
  if (!id.ok()) return Fail(id.message(), kBadInput);
  Client client(CoordinatorAddress(coordinator), ClientTimeoutMs());
  auto r =
      client.Pick(*id, {{static_cast<uint32_t>(section), static_cast<uint32_t>(take)}}, output);
  if (!r.ok()) return Fail(r.message(), ExitFor(client));
  auto st = client.Status(r->job_id);
  if (!st.ok()) return Fail(st.message(), ExitFor(client, 1));
  if (json && !wait) {
    std::cout << st->ToJson().dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  if (!json) {
    std::cout << "job id: " << r->job_id << std::endl;
    std::cout << "job " << r->job_id << ": job " << *id << " with section " << section << " take "
              << take << "; " << st->segments_done << " of " << st->segments_total
              << " segments reused, " << st->segments_total - st->segments_done
              << " to render; output " << r->output << std::endl;
  }
  if (!wait) return 0;
  st = Follow(client, r->job_id, !json);
  if (!st.ok()) return Fail(st.message(), ExitFor(client, 1));
  if (json)
    std::cout << st->ToJson().dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  else if (st->state == "DONE")
    std::cout << "output: " << st->output << "\n";
  return ExitForState(*st);
}

// segue plan --against JOB: the coordinator plans the manifest against what it has stored.
int CmdPlanAgainst(const std::string& path, const std::string& against,
                   const std::string& coordinator, bool json) {
  auto plan = PlanManifest(path, false);
  if (!plan.ok()) return Fail(plan.message(), kBadInput);
  auto id = ParseJobId(against);
  if (!id.ok()) return Fail("--against: " + id.message(), kBadInput);
  std::string error;
  const std::string text = ReadFile(path, &error);
  if (!error.empty()) return Fail(error, kBadInput);
  Client client(CoordinatorAddress(coordinator), ClientTimeoutMs());
  auto p = client.Plan(text, fs::path(path).filename().string(), *id);
  if (!p.ok()) return Fail(p.message(), ExitFor(client, 1));
  size_t render = 0;
  for (const auto& s : p->segments) render += s.reuse ? 0 : 1;
  if (json) {
    nlohmann::json j;
    j["schema_version"] = 1;
    j["against"] = std::to_string(p->against_job);
    j["strategy"] = p->strategy;
    j["render"] = render;
    j["reuse"] = p->segments.size() - render;
    j["segments"] = nlohmann::json::array();
    for (const auto& s : p->segments) {
      nlohmann::json e = {{"index", s.index},     {"start", s.frame_start},
                          {"end", s.frame_end},   {"action", s.reuse ? "reuse" : "render"},
                          {"reasons", s.reasons}, {"key", s.key}};
      if (s.reuse) {
        e["from_job"] = std::to_string(s.from_job);
        e["from_segment"] = s.from_segment;
      }
      j["segments"].push_back(e);
    }
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  std::cout << plan->manifest.name << " against job " << p->against_job << " (strategy "
            << p->strategy << "): " << render << " of " << p->segments.size()
            << " segments render, " << p->segments.size() - render << " reused\n";
  for (const auto& s : p->segments) {
    std::cout << "  #" << s.index << "  [" << s.frame_start << ", " << s.frame_end << ")  ";
    if (s.reuse) {
      std::cout << "reuse (job " << s.from_job << " segment " << s.from_segment << ")\n";
      continue;
    }
    std::cout << "render: ";
    for (size_t i = 0; i < s.reasons.size(); ++i) std::cout << (i ? "; " : "") << s.reasons[i];
    std::cout << "\n";
  }
  return 0;
}

int CmdStatus(const std::string& job, const std::string& coordinator, bool json, bool watch) {
  auto id = ParseJobId(job);
  if (!id.ok()) return Fail(id.message(), kBadInput);
  Client client(CoordinatorAddress(coordinator), ClientTimeoutMs());
  auto st = watch ? Follow(client, *id, !json) : client.Status(*id);
  if (!st.ok()) return Fail(st.message(), ExitFor(client));
  if (json) {
    std::cout << st->ToJson().dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return ExitForState(*st);
  }
  PrintJob(*st);
  std::optional<JobInfo> preview;
  if (st->family.preview_job != 0)
    if (auto p = client.Status(st->family.preview_job); p.ok()) preview = *p;
  PrintFamily(*st, preview ? &*preview : nullptr);
  return ExitForState(*st);
}

int CmdJobs(const std::string& coordinator, bool json, const JobFilter& filter) {
  Client client(CoordinatorAddress(coordinator), ClientTimeoutMs());
  uint64_t next = 0;
  auto jobs = client.Jobs(filter, &next);
  if (!jobs.ok()) return Fail(jobs.message(), ExitFor(client, 1));
  if (next != 0) std::cerr << "segue: more jobs match: the next page is --after " << next << "\n";
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& job : *jobs) j.push_back(job.ToJson());
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  printf("%-6s %-28s %-12s %-10s %5s %9s %s\n", "ID", "NAME", "OWNER", "STATE", "PRIO", "PROGRESS",
         "OUTPUT / ERROR");
  for (const auto& j : *jobs) {
    printf("%-6llu %-28.28s %-12.12s %-10s %5d %8.0f%% %s\n", static_cast<unsigned long long>(j.id),
           j.name.c_str(), j.owner.c_str(), j.state.c_str(), j.priority, j.progress * 100,
           !j.error.empty() ? j.error.c_str() : j.output.c_str());
  }
  return 0;
}

int CmdJobAction(const std::string& action, const std::string& job, const std::string& coordinator,
                 int priority, bool json) {
  auto id = ParseJobId(job);
  if (!id.ok()) return Fail(id.message(), kBadInput);
  Client client(CoordinatorAddress(coordinator), ClientTimeoutMs());
  Result<JobInfo> r = action == "cancel"  ? client.Cancel(*id)
                      : action == "retry" ? client.Retry(*id)
                                          : client.SetPriority(*id, priority);
  if (!r.ok()) return Fail(r.message(), ExitFor(client));
  if (json) {
    std::cout << r->ToJson().dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  PrintJob(*r);
  return 0;
}

int CmdVersion(const std::string& coordinator, bool json) {
  Client client(CoordinatorAddress(coordinator), ClientTimeoutMs());
  auto v = client.Version();
  if (!v.ok()) {
    std::cout << "segue " << SEGUE_VERSION << " (protocol " << wire::PROTOCOL_VERSION << ")\n";
    return Fail("coordinator: " + v.message(), ExitFor(client, 1));
  }
  if (json) {
    std::cout << nlohmann::json{{"version", SEGUE_VERSION},
                                {"protocol_version", wire::PROTOCOL_VERSION},
                                {"coordinator",
                                 {{"version", v->version},
                                  {"protocol_version", v->protocol_version},
                                  {"max_message_bytes", std::to_string(v->max_message_bytes)},
                                  {"identity", v->identity},
                                  {"role", v->role}}}}
                     .dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
              << "\n";
  } else {
    std::cout << "segue " << SEGUE_VERSION << " (protocol " << wire::PROTOCOL_VERSION << ")\n"
              << "coordinator: segue " << v->version << " (protocol " << v->protocol_version
              << "); you are '" << v->identity << "' (" << v->role << ")\n";
  }
  if (v->protocol_version != wire::PROTOCOL_VERSION) {
    std::cerr << "segue: the coordinator speaks protocol " << v->protocol_version << ", this segue "
              << wire::PROTOCOL_VERSION << "\n";
    return 1;
  }
  return 0;
}

int CmdDrain(const std::string& worker, const std::string& coordinator, bool json) {
  Client client(CoordinatorAddress(coordinator), ClientTimeoutMs());
  auto r = client.Drain(worker);
  if (!r.ok()) return Fail(r.message(), ExitFor(client));
  if (json) {
    std::cout << r->ToJson().dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  std::cout << "worker " << r->name << " is draining: it finishes "
            << (r->task.empty() ? "nothing" : r->task) << " and leaves\n";
  return 0;
}

int CmdLogs(const std::string& job, int segment, const std::string& coordinator, bool json) {
  auto id = ParseJobId(job);
  if (!id.ok()) return Fail(id.message(), kBadInput);
  Client client(CoordinatorAddress(coordinator), ClientTimeoutMs());
  auto lines = client.Logs(*id, segment);
  if (!lines.ok()) return Fail(lines.message(), ExitFor(client));
  if (json) {  // as GET /api/v1/jobs/ID/logs has them
    nlohmann::json out = nlohmann::json::array();
    for (const auto& l : *lines) {
      const size_t sp = l.find(' ');
      out.push_back({{"ms", std::atoll(l.substr(0, sp).c_str())},
                     {"text", sp == std::string::npos ? "" : l.substr(sp + 1)}});
    }
    std::cout << nlohmann::json{{"lines", out}}.dump(2, ' ', false,
                                                     nlohmann::json::error_handler_t::replace)
              << "\n";
    return 0;
  }
  for (const auto& l : *lines) {
    // "MS text": print the time as ISO 8601 UTC.
    const size_t sp = l.find(' ');
    const long long ms = std::atoll(l.substr(0, sp).c_str());
    const std::time_t secs = static_cast<std::time_t>(ms / 1000);
    char when[32];
    std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", std::gmtime(&secs));
    printf("%s.%03lldZ %s\n", when, ms % 1000,
           sp == std::string::npos ? "" : l.substr(sp + 1).c_str());
  }
  return 0;
}

int CmdWorkers(const std::string& coordinator, bool json) {
  Client client(CoordinatorAddress(coordinator), ClientTimeoutMs());
  auto workers = client.Workers();
  if (!workers.ok()) return Fail(workers.message());
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& w : *workers) j.push_back(w.ToJson());
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  printf("%-28s %-16s %-8s %-6s %-26s %6s %8s\n", "NAME", "HOST", "DEVICE", "STATE", "TASK", "DONE",
         "FAILURES");
  for (const auto& w : *workers) {
    printf("%-28.28s %-16.16s %-8s %-6s %-26.26s %6u %8u\n", w.name.c_str(), w.host.c_str(),
           w.device.c_str(), w.state.c_str(), w.task.c_str(), w.tasks_done, w.failures);
  }
  // Models a worker has but cannot serve (a model host that does not start): no task of theirs
  // goes to it.
  for (const auto& w : *workers) {
    for (const auto& [model, why] : w.unavailable)
      printf("%s: model %s unavailable: %s\n", w.name.c_str(), model.c_str(), why.c_str());
  }
  return 0;
}

// ---- pools ---------------------------------------------------------------------------------

// `action`: ls | scale | autoscale.
// An age such as 90m, 12h or 7d (s, m, h, d), in milliseconds.
Result<uint64_t> ParseAge(const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = text.substr(used);
  const double scale = unit == "s" ? 1e3 : unit == "m" ? 6e4 : unit == "h" ? 3.6e6 : 8.64e7;
  if (used == 0 || !(v > 0) || v > 1e5 ||
      (unit != "s" && unit != "m" && unit != "h" && unit != "d"))
    return Result<uint64_t>::Error("expected a time such as 90m, 12h or 7d, got '" + text + "'");
  return static_cast<uint64_t>(v * scale);
}

// Milliseconds since the epoch as local "YYYY-MM-DD HH:MM"; "-" for 0.
std::string FormatClock(uint64_t ms) {
  if (ms == 0) return "-";
  const time_t t = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  localtime_r(&t, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%d %H:%M", &tm);
  return out;
}

// segue cache ls | prune: finished jobs' stored results (docs/MANIFEST.md, Iterating).
int CmdCache(bool prune, const std::string& to, const std::string& older_than, bool all,
             const std::string& coordinator, bool json) {
  uint64_t to_bytes = UINT64_MAX, older_ms = 0;
  if (prune) {
    if (!all && to.empty() && older_than.empty())
      return Fail("cache prune: say what to evict: --to SIZE, --older-than TIME or --all",
                  kBadInput);
    if (all) to_bytes = 0;
    if (!to.empty()) {
      auto b = ParseBytes(to);
      if (!b.ok()) return Fail("--to: " + b.message(), kBadInput);
      to_bytes = *b;
    }
    if (!older_than.empty()) {
      auto age = ParseAge(older_than);
      if (!age.ok()) return Fail("--older-than: " + age.message(), kBadInput);
      older_ms = *age;
    }
  }
  Client client(CoordinatorAddress(coordinator), ClientTimeoutMs());
  auto c = prune ? client.PruneCache(to_bytes, older_ms) : client.Cache();
  if (!c.ok()) return Fail(c.message(), ExitFor(client, 1));
  if (json) {
    nlohmann::json j;
    j["schema_version"] = 1;
    j["bytes"] = std::to_string(c->bytes);
    j["unfinished_bytes"] = std::to_string(c->live_bytes);
    j["limit_bytes"] = std::to_string(c->limit_bytes);
    j["hits"] = c->hits;
    j["misses"] = c->misses;
    j["evicted_segments"] = c->evicted_segments;
    j["evicted_chunks"] = c->evicted_chunks;
    j["evicted_bytes"] = std::to_string(c->evicted_bytes);
    j["jobs"] = nlohmann::json::array();
    for (const auto& e : c->jobs)
      j["jobs"].push_back({{"id", std::to_string(e.job)},
                           {"name", e.name},
                           {"state", e.state},
                           {"segments", e.segments},
                           {"chunks", e.chunks},
                           {"bytes", std::to_string(e.bytes)},
                           {"last_used_ms", e.last_used_ms}});
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  auto mib = [](uint64_t b) { return std::to_string((b + (1 << 19)) >> 20) + " MiB"; };
  if (prune)
    std::cout << "evicted " << c->evicted_segments << " segment results and " << c->evicted_chunks
              << " chunks (" << mib(c->evicted_bytes) << ")\n";
  std::cout << "stored results of finished jobs: " << mib(c->bytes) << " of " << mib(c->limit_bytes)
            << " (least recently used evicted first); unfinished jobs " << mib(c->live_bytes)
            << "; " << c->hits << " segments reused, " << c->misses
            << " rendered since the coordinator started\n";
  if (c->jobs.empty()) return 0;
  printf("%-6s %-28s %-10s %8s %6s %10s %s\n", "JOB", "NAME", "STATE", "SEGMENTS", "CHUNKS", "SIZE",
         "LAST USED");
  for (const auto& e : c->jobs)
    printf("%-6llu %-28s %-10s %8u %6u %10s %s\n", static_cast<unsigned long long>(e.job),
           e.name.substr(0, 28).c_str(), e.state.c_str(), e.segments, e.chunks,
           mib(e.bytes).c_str(), FormatClock(e.last_used_ms).c_str());
  return 0;
}

int CmdPool(const std::string& action, const std::string& pool, int size, int min, int max,
            bool off, const std::string& coordinator, bool json) {
  Client client(CoordinatorAddress(coordinator), ClientTimeoutMs());
  Result<std::vector<PoolInfo>> r =
      action == "scale" ? client.ScalePool(pool, static_cast<uint32_t>(size))
      : action == "autoscale"
          ? client.AutoscalePool(pool, !off, static_cast<uint32_t>(min), static_cast<uint32_t>(max))
          : client.Pools();
  if (!r.ok()) return Fail(r.message(), ExitFor(client));
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& p : *r) j.push_back(p.ToJson());
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  printf("%-16s %-10s %5s %7s %5s %5s %5s %5s %-9s %s\n", "POOL", "PROVIDER", "SIZE", "MEMBERS",
         "IDLE", "BUSY", "MIN", "MAX", "AUTOSCALE", "LAST CHANGE");
  for (const auto& p : *r) {
    printf("%-16.16s %-10s %5u %7u %5u %5u %5u %5u %-9s %s\n", p.name.c_str(), p.provider.c_str(),
           p.size, p.members, p.idle, p.busy, p.min, p.max, p.autoscale ? "on" : "off",
           p.last_change.c_str());
  }
  return 0;
}

// ---- seams ---------------------------------------------------------------------------------

Result<std::vector<SegmentSpan>> LoadPlan(const std::string& plan_path,
                                          const std::string& manifest_path) {
  using R = Result<std::vector<SegmentSpan>>;
  if (!manifest_path.empty()) {
    auto plan = PlanManifest(manifest_path, false);
    if (!plan.ok()) return R::Error(plan.message());
    // In video frames, as the video is.
    std::vector<SegmentSpan> out = plan->segments;
    for (SegmentSpan& s : out) {
      s.start = plan->geometry.VideoStart(s.start);
      s.end = plan->geometry.VideoEnd(s.end);
    }
    return out;
  }
  std::string error;
  std::string text = ReadFile(plan_path, &error);
  if (!error.empty()) return R::Error(error);
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("segments") || !j["segments"].is_array()) {
    return R::Error(plan_path + ": not a plan (expected the JSON of `segue plan --json`)");
  }
  std::vector<SegmentSpan> out;
  for (size_t i = 0; i < j["segments"].size(); ++i) {
    const auto& s = j["segments"][i];
    if (!s.is_object() || !s.contains("start") || !s.contains("end") ||
        !s["start"].is_number_integer() || !s["end"].is_number_integer() ||
        s["end"].get<int64_t>() <= s["start"].get<int64_t>()) {
      return R::Error(plan_path + ": segments[" + std::to_string(i) +
                      "] needs integer start < end");
    }
    out.push_back({static_cast<int>(i), s["start"].get<int64_t>(), s["end"].get<int64_t>(), 0});
    if (i > 0 && out[i].start <= out[i - 1].start) {
      return R::Error(plan_path + ": segments[" + std::to_string(i) + "] is out of order");
    }
  }
  return out;
}

int CmdSeams(const std::string& video, const std::string& plan, const std::string& manifest,
             bool json) {
  if (plan.empty() == manifest.empty())
    return Fail("seams: give exactly one of --plan or --manifest", kBadInput);
  auto segments = LoadPlan(plan, manifest);
  if (!segments.ok()) return Fail(segments.message(), kBadInput);
  auto report = MeasureSeams(video, *segments);
  if (!report.ok()) return Fail(report.message(), kBadInput);
  if (json) {
    nlohmann::json j = {{"frames", report->frames},
                        {"baseline", report->baseline},
                        {"worst_ratio", report->worst},
                        {"worst_local_ratio", report->worst_local},
                        {"changes", report->changes}};
    j["joins"] = nlohmann::json::array();
    for (const auto& s : report->joins) {
      j["joins"].push_back({{"left", s.left},
                            {"start", s.start},
                            {"end", s.end},
                            {"peak", s.peak},
                            {"ratio", s.ratio},
                            {"local_baseline", s.local_baseline},
                            {"local_ratio", s.local_ratio}});
    }
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  printf("%lld frames; median frame-to-frame change away from overlaps: %.3f\n",
         static_cast<long long>(report->frames), report->baseline);
  printf("%-8s %-16s %10s %8s %13s %12s\n", "JOIN", "OVERLAP", "PEAK", "RATIO", "LOCAL MEDIAN",
         "LOCAL RATIO");
  for (const auto& s : report->joins) {
    char range[48];
    snprintf(range, sizeof range, "[%lld, %lld)", static_cast<long long>(s.start),
             static_cast<long long>(s.end));
    printf("%3d|%-4d %-16s %10.3f %8.2f %13.3f %12.2f\n", s.left, s.left + 1, range, s.peak,
           s.ratio, s.local_baseline, s.local_ratio);
  }
  printf("worst ratio: %.2f against the whole video, %.2f against each join's own segments\n",
         report->worst, report->worst_local);
  return 0;
}

int CmdContactSheet(const std::string& video, const std::string& plan, const std::string& manifest,
                    const std::string& out, int thumb_width, int max_rows, bool json) {
  if (plan.empty() == manifest.empty())
    return Fail("contact-sheet: give exactly one of --plan or --manifest", kBadInput);
  auto segments = LoadPlan(plan, manifest);
  if (!segments.ok()) return Fail(segments.message(), kBadInput);
  if (fs::path(out).extension() != ".png")
    return Fail("--output: '" + out + "' should end in .png", kBadInput);
  auto layout = WriteContactSheet(video, *segments, out, thumb_width, max_rows);
  if (!layout.ok()) return Fail(layout.message(), kBadInput);
  if (json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const SheetRow& row : layout->rows)
      rows.push_back({{"join", {row.left, row.left + 1}}, {"frames", row.frames}});
    std::cout << nlohmann::json{{"path", out},
                                {"width", layout->width},
                                {"height", layout->height},
                                {"rows", rows}}
                     .dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
              << "\n";
    return 0;
  }
  for (size_t r = 0; r < layout->rows.size(); ++r) {
    const SheetRow& row = layout->rows[r];
    printf("row %zu: join %d|%d, frames", r + 1, row.left, row.left + 1);
    for (int64_t f : row.frames) printf(" %lld", static_cast<long long>(f));
    printf("\n");
  }
  printf("contact sheet: %s (%dx%d, %zu joins)\n", out.c_str(), layout->width, layout->height,
         layout->rows.size());
  return 0;
}

// ---- render ----------------------------------------------------------------------------------

int CmdRender(const std::string& path, int workers, const std::string& output_flag,
              const std::string& state_dir, int threads, const std::string& preset,
              int chunk_frames, const std::string& models, bool json) {
  auto m = LoadManifestFile(path);
  if (!m.ok()) return Fail(m.message(), kBadInput);
  auto req = BuildSubmit(path, *m);
  if (!req.ok()) return Fail(req.message(), kBadInput);
  fs::path out = output_flag.empty() ? fs::absolute(path).parent_path() / m->output_path
                                     : fs::absolute(output_flag);
  out = out.lexically_normal();
  if (out.filename().empty() && m->output_codec == "png") out = out.parent_path();  // "frames/"
  if (out.filename().empty())
    return Fail("--output: '" + out.string() + "' names a folder, not a file", kBadInput);
  req->output_override = out.filename().string();
  fs::path state = fs::absolute(state_dir).lexically_normal();
  std::error_code ec;
  fs::create_directories(state / "logs", ec);
  if (ec)
    return Fail("--state-dir: cannot create '" + state.string() + "': " + ec.message(), kBadInput);

  const std::string bin = ExecutableDir();
  const fs::path endpoint_file = state / ("render-" + std::to_string(getpid()) + ".endpoint");
  fs::remove(endpoint_file, ec);
  auto coord = ChildProcess::Spawn(
      {bin + "/segue-coordinator", "--listen", "tcp://127.0.0.1:*", "--state-dir",
       (state / "store").string(), "--output-root", out.parent_path().string(), "--endpoint-file",
       endpoint_file.string(), "--encoder-preset", preset, "--chunk-frames",
       std::to_string(chunk_frames)},
      (state / "logs" / "coordinator.log").string());
  if (!coord.ok()) return Fail(coord.message());
  std::string endpoint;
  for (int i = 0; i < 600 && endpoint.empty(); ++i) {
    if (!coord->Running()) {
      return Fail("the coordinator stopped at start-up; see " +
                  (state / "logs" / "coordinator.log").string());
    }
    std::ifstream f(endpoint_file);
    std::getline(f, endpoint);
    if (endpoint.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  fs::remove(endpoint_file, ec);
  if (endpoint.empty()) return Fail("the coordinator did not start within 30 s");
  std::vector<ChildProcess> pool;
  for (int i = 0; i < workers; ++i) {
    std::vector<std::string> argv = {bin + "/segue-worker",
                                     "--coordinator",
                                     endpoint,
                                     "--threads",
                                     std::to_string(threads),
                                     "--name",
                                     "local-" + std::to_string(getpid()) + "-" + std::to_string(i)};
    if (!models.empty()) argv.insert(argv.end(), {"--models", fs::absolute(models).string()});
    auto w = ChildProcess::Spawn(
        argv, (state / "logs" / ("worker-" + std::to_string(i) + ".log")).string());
    if (!w.ok()) return Fail(w.message());
    pool.push_back(std::move(*w));
  }
  std::cerr << "segue: rendering " << path << " (" << m->frames << " frames, " << m->width << "x"
            << m->height << " at " << m->fps.ToString() << " fps) on " << workers << " local worker"
            << (workers == 1 ? "" : "s") << "; state in " << state.string() << "\n";
  Client client(endpoint);
  // All workers in before the job: a codenoise gang forms from the workers present.
  for (int i = 0; i < 600; ++i) {
    auto ws = client.Workers();
    if (ws.ok() && static_cast<int>(ws->size()) >= workers) break;
    if (g_interrupted) return Fail("interrupted", 130);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto r = client.Submit(*req);
  if (!r.ok()) return Fail(r.message(), kBadInput);
  auto st = FollowFamily(client, r->job_id, !json, !json);
  std::vector<JobInfo> takes;
  if (st.ok() && st->state == "DONE" && !g_interrupted) {
    JobFilter filter;
    filter.family = r->job_id;
    if (auto family = client.Jobs(filter); family.ok()) takes = TakesOf(*family);
  }
  for (auto& w : pool) w.Stop();
  coord->Stop();
  if (g_interrupted)
    return Fail(
        "interrupted; the job stays in " + state.string() + " (rerun resumes the farm's state)",
        130);
  if (!st.ok()) return Fail(st.message());
  if (st->state != "DONE") {
    return Fail("job " + std::to_string(r->job_id) + " " + st->state + ": " + st->error +
                " (logs in " + (state / "logs").string() + ")");
  }
  if (json) {
    std::cout << st->ToJson().dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  std::cout << "output: " << st->output << "\n";
  if (!takes.empty()) PrintTakes(nullptr, *st, takes, "");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Line by line even into a pipe: a pipeline reads the job id before the job ends.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  CLI::App app{
      "segue: a render farm for long generative videos.\n"
      "Renders a YAML manifest (timeline of prompts, camera, model) into one frame-exact video "
      "with its song.",
      "segue"};
  app.require_subcommand(1);
  std::string coordinator;
  std::string curve_server, curve_key;
  auto add_coord = [&](CLI::App* sub) {
    sub->add_option("--coordinator", coordinator,
                    "coordinator endpoint (default $SEGUE_COORDINATOR or tcp://127.0.0.1:7450)");
    sub->add_option("--curve-server-key", curve_server,
                    "the coordinator's public key file, when it uses CURVE (default "
                    "$SEGUE_CURVE_SERVER_KEY)");
    sub->add_option("--curve-key", curve_key,
                    "your key file, when the coordinator admits known keys only (default "
                    "$SEGUE_CURVE_KEY)");
  };

  std::string manifest, output, state_dir = ".segue-state", job, preset = "medium", models_dir;
  bool json = false, watch = false, wait = false;
  int workers = 2, threads = 1, chunk_frames = 96;

  auto* plan =
      app.add_subcommand("plan", "show how a manifest is cut into segments (validates it too)");
  plan->add_option("manifest", manifest, "the manifest (YAML)")->required();
  plan->add_flag("--json", json, "print {\"frames\": N, \"segments\": [...]} instead of text");
  std::string model_info;
  plan->add_option("--model-info", model_info,
                   "JSON of the model's metadata (temporal_compression, spatial_compression, "
                   "patch_size, native_frames, ...; docs/MODELS.md) to plan a model that is not "
                   "built in; without it such a model is planned with one latent frame per frame");
  std::string against;
  plan->add_option("--against", against,
                   "job id: ask the coordinator which segments would render again and why, and "
                   "which it would reuse from results it has stored (any job's)");
  add_coord(plan);

  auto* render = app.add_subcommand(
      "render", "render a manifest on this machine: a coordinator and local workers");
  render->add_option("manifest", manifest, "the manifest (YAML)")->required();
  render->add_flag("--json", json,
                   "print the finished job as JSON (as status --json); progress goes to stderr");
  render->add_option("--workers", workers, "local worker processes")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  render->add_option("--threads", threads, "model threads per worker")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  render->add_option("--output", output,
                     "output file (default: output.path of the manifest, relative to its folder)");
  render->add_option("--state-dir", state_dir, "folder for the RocksDB state and logs")
      ->capture_default_str();
  render->add_option("--preset", preset, "x264 preset for the chunks")->capture_default_str();
  render->add_option("--models", models_dir, "folder of TorchScript models for the local workers")
      ->check(CLI::ExistingDirectory);
  render->add_option("--chunk-frames", chunk_frames, "frames per encoded chunk")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();

  auto* submit = app.add_subcommand(
      "submit",
      "submit a manifest to a running coordinator; the first line printed is `job id: N`");
  submit->add_option("manifest", manifest, "the manifest (YAML)")->required();
  submit->add_option(
      "--output", output,
      "output path relative to the coordinator's output root (default: output.path)");
  submit->add_flag("--wait", wait,
                   "follow the job with a progress bar until it finishes; exit 3 if it FAILED, "
                   "4 if it was CANCELLED");
  std::string submission_id;
  submit->add_option("--submission-id", submission_id,
                     "your id for this submission (1-128 printable characters): submitting again "
                     "with the same id returns the same job instead of a second one");
  submit->add_flag("--json", json,
                   "print the accepted job as one JSON line (and, with --wait, the finished job "
                   "as another)");
  add_coord(submit);

  auto* status = app.add_subcommand("status", "show a job's state, progress and output");
  status->add_option("job", job, "job id")->required();
  status->add_flag("--json", json, "print JSON (state, progress, output, ...)");
  status->add_flag("--watch", watch, "follow the job until it finishes");
  add_coord(status);

  std::string plan_file, manifest_file;
  auto* seams = app.add_subcommand(
      "seams", "score how visible the joins between segments are in a rendered video");
  seams->add_option("video", manifest, "the rendered video")->required();
  seams->add_option("--plan", plan_file, "the plan, as `segue plan --json` prints it");
  seams->add_option("--manifest", manifest_file, "or the manifest the video was rendered from");
  seams->add_flag("--json", json, "print JSON");

  std::string sheet_out;
  int thumb_width = 240, max_rows = 100;
  auto* sheet = app.add_subcommand(
      "contact-sheet", "a PNG grid of the frames around every segment join, to judge seams by eye");
  sheet->add_option("video", manifest, "the rendered video (or a png output's folder)")->required();
  sheet->add_option("--plan", plan_file, "the plan, as `segue plan --json` prints it");
  sheet->add_option("--manifest", manifest_file, "or the manifest the video was rendered from");
  sheet->add_option("-o,--output", sheet_out, "the PNG to write")->required();
  sheet->add_flag("--json", json, "print {\"path\", \"width\", \"height\", \"rows\"}");
  sheet->add_option("--thumb-width", thumb_width, "width of each frame on the sheet, in pixels")
      ->capture_default_str()
      ->check(CLI::Range(16, 4096));
  sheet
      ->add_option("--max-rows", max_rows,
                   "at most this many joins (every k-th join on longer videos)")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));

  int priority = 50, segment = -1;
  std::string worker_name;
  auto* cancel = app.add_subcommand("cancel", "cancel a job; its workers stop within a step");
  cancel->add_option("job", job, "job id")->required();
  cancel->add_flag("--json", json, "print the job as JSON (as status --json)");
  add_coord(cancel);
  auto* retry = app.add_subcommand(
      "retry", "put a FAILED or CANCELLED job back in the queue (finished segments are kept)");
  retry->add_option("job", job, "job id")->required();
  retry->add_flag("--json", json, "print the job as JSON (as status --json)");
  add_coord(retry);
  auto* prio = app.add_subcommand("priority", "change a job's priority (0-100, higher first)");
  prio->add_option("job", job, "job id")->required();
  prio->add_option("priority", priority, "new priority")->required()->check(CLI::Range(0, 100));
  prio->add_flag("--json", json, "print the job as JSON (as status --json)");
  add_coord(prio);
  auto* drain =
      app.add_subcommand("drain", "let a worker finish its task, take no more, and leave");
  drain->add_option("worker", worker_name, "worker name (see segue workers)")->required();
  drain->add_flag("--json", json, "print the worker as JSON (as workers --json)");
  add_coord(drain);
  auto* logs = app.add_subcommand("logs", "a job's event log, from the coordinator's store");
  logs->add_option("job", job, "job id")->required();
  logs->add_option("--segment", segment, "only lines about this segment")
      ->check(CLI::NonNegativeNumber);
  logs->add_flag("--json", json, "print {\"lines\": [{\"ms\", \"text\"}]}");
  add_coord(logs);

  auto* workers_cmd = app.add_subcommand("workers", "list the coordinator's workers");
  workers_cmd->add_flag("--json", json, "print JSON");
  add_coord(workers_cmd);

  auto* pool_cmd = app.add_subcommand("pool", "the coordinator's worker pools");
  pool_cmd->require_subcommand(1);
  std::string pool_name;
  int pool_size = 0, pool_min = 0, pool_max = 0;
  bool pool_off = false;
  auto* pool_ls = pool_cmd->add_subcommand("ls", "list pools: provider, size, members, autoscale");
  pool_ls->add_flag("--json", json, "print JSON");
  add_coord(pool_ls);
  auto* pool_scale =
      pool_cmd->add_subcommand("scale",
                               "set a pool's size (turns its autoscale off); shrinking "
                               "drains idle workers");
  pool_scale->add_option("pool", pool_name, "pool name (see segue pool ls)")->required();
  pool_scale->add_option("size", pool_size, "workers wanted")
      ->required()
      ->check(CLI::Range(0, 10000));
  pool_scale->add_flag("--json", json, "print the pools as JSON (as pool ls --json)");
  add_coord(pool_scale);
  auto* pool_auto = pool_cmd->add_subcommand(
      "autoscale", "size a pool from the runnable work, between --min and --max");
  pool_auto->add_option("pool", pool_name, "pool name (see segue pool ls)")->required();
  auto* min_opt =
      pool_auto->add_option("--min", pool_min, "fewest workers")->check(CLI::Range(0, 10000));
  auto* max_opt =
      pool_auto->add_option("--max", pool_max, "most workers")->check(CLI::Range(0, 10000));
  auto* off_opt = pool_auto->add_flag("--off", pool_off, "turn autoscaling off (the size stays)");
  off_opt->excludes(min_opt)->excludes(max_opt);
  pool_auto->add_flag("--json", json, "print the pools as JSON (as pool ls --json)");
  add_coord(pool_auto);

  std::string sheet_path;
  auto* takes_cmd = app.add_subcommand(
      "takes",
      "each section's takes (a manifest's timeline[].takes) with their jobs and outputs, and a "
      "contact sheet of them once all are DONE");
  takes_cmd->add_option("job", job, "the submitted job (or any job of its family)")->required();
  takes_cmd->add_option("--sheet", sheet_path,
                        "write the contact sheet here (default: NAME.takes/contact-sheet.png "
                        "beside the job's output, made of its frames; where the outputs cannot "
                        "be read here, NAME-takes.png in this folder, made of the coordinator's "
                        "thumbnails of the sections' segments)");
  takes_cmd->add_flag("--json", json, "print {\"job\", \"takes\": [...]}, each as status --json");
  add_coord(takes_cmd);
  int pick_section = 0, pick_take = 1;
  auto* pick_cmd = app.add_subcommand(
      "pick",
      "a new job: JOB's manifest with SECTION's take TAKE (and JOB's own picks); every segment "
      "already rendered with the same inputs is reused: with independent nothing renders");
  pick_cmd->add_option("job", job, "the job to pick from (a take, a pick, or the submitted job)")
      ->required();
  pick_cmd->add_option("section", pick_section, "the section: the timeline entry's index, from 0")
      ->required()
      ->check(CLI::Range(0, ManifestLimits::kMaxTimelineEntries - 1));
  pick_cmd->add_option("take", pick_take, "the take, from 1 (1: the manifest's own)")
      ->required()
      ->check(CLI::Range(1, ManifestLimits::kMaxTakes));
  pick_cmd->add_option("--output", output,
                       "where the new output goes, relative to the coordinator's output root "
                       "(default: beside the job's, named by the picks: NAME.s3-take2.mp4)");
  pick_cmd->add_flag("--wait", wait, "follow the new job to the end");
  pick_cmd->add_flag("--json", json, "print the new job as status --json");
  add_coord(pick_cmd);

  auto* cache_cmd = app.add_subcommand(
      "cache", "finished jobs' stored segment results, which edited resubmissions reuse");
  cache_cmd->require_subcommand(1);
  auto* cache_ls = cache_cmd->add_subcommand(
      "ls", "the stored results by job, least recently used first, and the cache's figures");
  cache_ls->add_flag("--json", json, "print JSON");
  add_coord(cache_ls);
  auto* cache_prune = cache_cmd->add_subcommand(
      "prune", "evict finished jobs' results, least recently used first (admins)");
  std::string cache_to, cache_older;
  bool cache_all = false;
  cache_prune->add_option("--to", cache_to, "until they take at most this, e.g. 50GiB");
  cache_prune->add_option("--older-than", cache_older,
                          "and every one unused for this long, e.g. 7d, 12h");
  cache_prune->add_flag("--all", cache_all, "every one");
  cache_prune->add_flag("--json", json, "print what is left as JSON (as cache ls --json)");
  add_coord(cache_prune);

  std::string key_path;
  auto* keygen = app.add_subcommand(
      "keygen", "make a CURVE keypair: PATH.key (secret, mode 600) and PATH.pub (public)");
  keygen->add_option("path", key_path, "where to write, without extension, e.g. /etc/segue/farm")
      ->required();
  keygen->add_flag("--json", json, "print {\"secret\", \"public\", \"public_key\"}");

  std::string token_name;
  auto* token = app.add_subcommand(
      "token",
      "make a bearer token for the HTTP API: prints the token (give it to the client, e.g. "
      "SEGUE_TOKEN) and the keys-file entry that holds only its SHA-256");
  token->add_option("name", token_name, "the identity's name in the keys file")->required();
  std::string token_role = "submitter";
  token->add_option("--role", token_role, "admin, submitter or viewer")->capture_default_str();
  token->add_flag("--json", json, "print {\"token\", \"token_sha256\"}");

  auto* jobs = app.add_subcommand("jobs", "list the coordinator's jobs, oldest first");
  jobs->add_flag("--json", json, "print JSON (an array of jobs, each as `status --json`)");
  JobFilter filter;
  std::vector<std::string> meta_filters;
  jobs->add_option("--state", filter.states,
                   "only jobs in this state (QUEUED, RUNNING, STITCHING, DONE, FAILED, "
                   "CANCELLED); repeat for several")
      ->check(CLI::IsMember({"QUEUED", "RUNNING", "STITCHING", "DONE", "FAILED", "CANCELLED"}));
  jobs->add_option("--owner", filter.owner, "only this identity's jobs");
  jobs->add_option("--name", filter.name, "only jobs of this name");
  jobs->add_option("--meta", meta_filters,
                   "only jobs whose metadata has KEY=VALUE (the manifest's metadata:); repeat "
                   "for several");
  jobs->add_option("--limit", filter.limit, "at most this many (0: all)")
      ->check(CLI::Range(0, 1000000));
  jobs->add_option("--after", filter.after_id, "only ids above this (the next page)");
  add_coord(jobs);

  auto* version = app.add_subcommand(
      "version",
      "this segue's version and, with a coordinator, its protocol version and who it "
      "takes you for");
  version->add_flag("--json", json, "print JSON");
  add_coord(version);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kBadInput;
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);
  // The client library reads the CURVE key files from the environment.
  if (!curve_server.empty()) setenv("SEGUE_CURVE_SERVER_KEY", curve_server.c_str(), 1);
  if (!curve_key.empty()) setenv("SEGUE_CURVE_KEY", curve_key.c_str(), 1);
  if (keygen->parsed()) {
    auto keys = GenerateCurveKeys();
    if (!keys.ok()) return Fail(keys.message());
    for (const char* ext : {".key", ".pub"}) {
      if (fs::exists(key_path + ext))
        return Fail("'" + key_path + ext + "' exists; keys are not overwritten", kBadInput);
    }
    Status s = WriteCurveKeys(*keys, key_path + ".key", key_path + ".pub");
    if (!s.ok()) return Fail(s.message(), kBadInput);
    if (json) {
      std::cout << nlohmann::json{{"secret", key_path + ".key"},
                                  {"public", key_path + ".pub"},
                                  {"public_key", keys->public_key}}
                       .dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
                << "\n";
      return 0;
    }
    std::cout << "secret: " << key_path << ".key (keep it on the coordinator or the worker it "
              << "names)\npublic: " << key_path << ".pub\npublic key: " << keys->public_key << "\n";
    return 0;
  }
  if (token->parsed()) {
    if (!ParseRole(token_role))
      return Fail("--role: '" + token_role + "' is not a role", kBadInput);
    const std::string secret = NewToken();
    const std::string digest = TokenDigest(secret);
    if (json) {
      std::cout << nlohmann::json{{"token", secret}, {"token_sha256", digest}}.dump(
                       2, ' ', false, nlohmann::json::error_handler_t::replace)
                << "\n";
      return 0;
    }
    std::cout << "token: " << secret << "\n(give it to the client only: Authorization: Bearer "
              << "TOKEN, or SEGUE_TOKEN for the Python client; it is not kept anywhere)\n\n"
              << "keys file entry:\n  - name: " << token_name << "\n    role: " << token_role
              << "\n    token_sha256: \"" << digest << "\"\n";
    return 0;
  }
  // Every command that talks to a coordinator: a malformed address is bad input, said at once.
  for (CLI::App* talks : {submit, status, jobs, workers_cmd, cancel, retry, prio, drain, logs,
                          pool_ls, pool_scale, pool_auto, version, takes_cmd, pick_cmd}) {
    if (!talks->parsed()) continue;
    if (Status s = CheckEndpoint(CoordinatorAddress(coordinator)); !s.ok())
      return Fail(std::string(coordinator.empty() ? "SEGUE_COORDINATOR: " : "--coordinator: ") +
                      s.message(),
                  kBadInput);
  }
  if (plan->parsed())
    return against.empty() ? CmdPlan(manifest, json, model_info)
                           : CmdPlanAgainst(manifest, against, coordinator, json);
  if (render->parsed())
    return CmdRender(manifest, workers, output, state_dir, threads, preset, chunk_frames,
                     models_dir, json);
  if (submit->parsed()) return CmdSubmit(manifest, coordinator, output, wait, json, submission_id);
  if (status->parsed()) return CmdStatus(job, coordinator, json, watch);
  if (jobs->parsed()) {
    for (const std::string& kv : meta_filters) {
      const size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0)
        return Fail("--meta: expected KEY=VALUE, got '" + kv + "'", kBadInput);
      filter.metadata.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    }
    return CmdJobs(coordinator, json, filter);
  }
  if (version->parsed()) return CmdVersion(coordinator, json);
  if (workers_cmd->parsed()) return CmdWorkers(coordinator, json);
  if (cancel->parsed()) return CmdJobAction("cancel", job, coordinator, 0, json);
  if (retry->parsed()) return CmdJobAction("retry", job, coordinator, 0, json);
  if (prio->parsed()) return CmdJobAction("priority", job, coordinator, priority, json);
  if (drain->parsed()) return CmdDrain(worker_name, coordinator, json);
  if (logs->parsed()) return CmdLogs(job, segment, coordinator, json);
  if (seams->parsed()) return CmdSeams(manifest, plan_file, manifest_file, json);
  if (pool_ls->parsed()) return CmdPool("ls", "", 0, 0, 0, false, coordinator, json);
  if (takes_cmd->parsed()) return CmdTakes(job, sheet_path, coordinator, json);
  if (pick_cmd->parsed())
    return CmdPick(job, pick_section, pick_take, output, coordinator, wait, json);
  if (cache_ls->parsed()) return CmdCache(false, "", "", false, coordinator, json);
  if (cache_prune->parsed())
    return CmdCache(true, cache_to, cache_older, cache_all, coordinator, json);
  if (pool_scale->parsed())
    return CmdPool("scale", pool_name, pool_size, 0, 0, false, coordinator, json);
  if (pool_auto->parsed()) {
    if (!pool_off && (min_opt->count() == 0 || max_opt->count() == 0))
      return Fail("pool autoscale: give --min and --max (or --off)", kBadInput);
    if (!pool_off && pool_min > pool_max)
      return Fail("pool autoscale: --min must not exceed --max", kBadInput);
    return CmdPool("autoscale", pool_name, 0, pool_min, pool_max, pool_off, coordinator, json);
  }
  if (sheet->parsed())
    return CmdContactSheet(manifest, plan_file, manifest_file, sheet_out, thumb_width, max_rows,
                           json);
  return kBadInput;
}
