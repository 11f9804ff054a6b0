#include "coordinator/family.h"

#include <algorithm>
#include <filesystem>

namespace segue {
namespace {

namespace fs = std::filesystem;

// `base` (a final admitted or stored) as the start of a job derived from it: the same
// submission, owner, audio and chunking, every task PENDING, unplanned.
Job DerivedFrom(const Job& base, const JobFamily& family) {
  Job d;
  d.family = family;
  d.manifest_text = base.manifest_text;
  d.manifest_name = base.manifest_name;
  d.has_audio = base.has_audio;
  d.audio_name = base.audio_name;
  d.owner = base.owner;
  d.created_ms = d.updated_ms = base.created_ms;
  d.chunk_frames = base.chunk_frames;
  return d;
}

// Makes `d`'s manifest from its text and family, and plans it as `j` is planned (now when the
// farm knows the model, else when a worker that serves it joins).
Status Prepare(Job& d, const AdmissionOptions& o, const ModelCatalog& models) {
  auto m = ParseManifest(d.manifest_text, d.manifest_name, ManifestParseOptions{"", false});
  if (!m.ok()) return m.status();
  ApplyFamily(*m, d.family);
  d.manifest = *m;
  if (const model::ModelMetadata* known = models.Find(m->model_name))
    return PlanJob(d, *m, *known, o.chunk_frames, o.max_job_segments);
  return Status::Ok();
}

// Resolves `output` (absolute, from DerivedOutput) inside the output root, as a submitted
// output is, and refuses one that exists unless the manifest allows replacing it.
Status PlaceOutput(Job& d, const std::string& output, const AdmissionOptions& o, Env* env,
                   const std::string& field) {
  const bool png = d.manifest.output_codec == "png";
  const std::string rel = fs::path(output).lexically_relative(o.output_root).string();
  auto out = ResolveOutput(o.output_root, rel, png);
  if (!out.ok()) return Status::Error(d.manifest_name + ": " + field + ": " + out.message());
  if (!d.manifest.output_overwrite && env->Exists(*out))
    return Status::Error(d.manifest_name + ": " + field + ": its output '" + *out +
                         "' exists; set output.overwrite: true to replace it");
  d.output_path = *out;
  return Status::Ok();
}

}  // namespace

void ApplyFamily(Manifest& m, const JobFamily& f) {
  for (const auto& [section, take] : f.picks)
    if (section >= 0 && static_cast<size_t>(section) < m.timeline.size())
      m.timeline[static_cast<size_t>(section)].take = take;
  if (f.role == JobRole::kTake && f.section >= 0 &&
      static_cast<size_t>(f.section) < m.timeline.size())
    m.timeline[static_cast<size_t>(f.section)].take = f.take;
  if (f.role == JobRole::kFinal) return;
  for (Keyframe& k : m.timeline) k.takes = 1;
  if (f.role == JobRole::kPreview && m.preview) {
    m.steps = m.preview->steps;
    if (static_cast<size_t>(m.steps) != m.sigmas.size()) m.sigmas.clear();
  } else {
    m.preview.reset();
  }
}

std::string DerivedOutput(const std::string& output, bool png, const std::string& folder,
                          const std::string& suffix) {
  const fs::path p(output);
  const std::string ext = png ? "" : p.extension().string();
  const std::string stem = png ? p.filename().string() : p.stem().string();
  if (!folder.empty()) return (p.parent_path() / (stem + folder) / (suffix + ext)).string();
  return (p.parent_path() / (stem + suffix + ext)).string();
}

Result<std::vector<Job>> DeriveJobs(const Job& j, const AdmissionOptions& o, Env* env,
                                    const ModelCatalog& models) {
  using R = Result<std::vector<Job>>;
  const Manifest& m = j.manifest;
  const bool png = m.output_codec == "png";
  std::vector<Job> out;
  if (m.preview) {
    JobFamily f;
    f.role = JobRole::kPreview;
    Job d = DerivedFrom(j, f);
    if (Status s = Prepare(d, o, models); !s.ok()) return s;
    if (Status s =
            PlaceOutput(d, DerivedOutput(j.output_path, png, "", ".preview"), o, env, "preview");
        !s.ok())
      return s;
    d.name = j.name + " (preview)";
    // Above its final, so that it goes before other work of the final's priority too.
    d.priority = std::min(100, j.priority + 10);
    out.push_back(std::move(d));
  }
  for (size_t s = 0; s < m.timeline.size(); ++s) {
    for (int t = 2; t <= m.timeline[s].takes; ++t) {
      JobFamily f;
      f.role = JobRole::kTake;
      f.section = static_cast<int>(s);
      f.take = t;
      Job d = DerivedFrom(j, f);
      const std::string tag = "s" + std::to_string(s) + "-take" + std::to_string(t);
      const std::string field = "timeline[" + std::to_string(s) + "].takes";
      if (Status st = Prepare(d, o, models); !st.ok()) return st;
      if (Status st =
              PlaceOutput(d, DerivedOutput(j.output_path, png, ".takes", tag), o, env, field);
          !st.ok())
        return st;
      d.name = j.name + " (section " + std::to_string(s) + " take " + std::to_string(t) + ")";
      d.priority = j.priority;
      out.push_back(std::move(d));
    }
  }
  return R(std::move(out));
}

Result<Job> PickJob(const Job& from, const Job& root, const std::map<int, int>& picks,
                    const std::string& output, const AdmissionOptions& o, Env* env,
                    const ModelCatalog& models) {
  using R = Result<Job>;
  JobFamily f;
  f.role = JobRole::kPick;
  f.root = root.id;
  f.parent = from.id;
  f.picks = from.family.picks;
  const size_t sections = from.manifest.timeline.size();
  if (from.family.role == JobRole::kTake && from.family.section >= 0 &&
      static_cast<size_t>(from.family.section) < sections && from.family.take >= 1 &&
      from.family.take <= ManifestLimits::kMaxTakes)
    f.picks[from.family.section] = from.family.take;
  for (const auto& [section, take] : picks) {
    if (section < 0 || static_cast<size_t>(section) >= sections)
      return R::Error("section " + std::to_string(section) + ": job " + std::to_string(from.id) +
                      "'s timeline has sections 0 to " + std::to_string(sections - 1));
    if (take < 1 || take > ManifestLimits::kMaxTakes)
      return R::Error("take " + std::to_string(take) + ": takes are numbered 1 to " +
                      std::to_string(ManifestLimits::kMaxTakes));
    f.picks[section] = take;
  }
  // A section's take 1 is the manifest's own unless it wrote another: say it either way, so the
  // output name and the job's description show every choice.
  Job d = DerivedFrom(root, f);
  if (Status s = Prepare(d, o, models); !s.ok()) return s;
  std::string tag, said;
  for (const auto& [section, take] : f.picks) {
    tag += ".s" + std::to_string(section) + "-take" + std::to_string(take);
    said += (said.empty() ? "" : ", ") + std::string("section ") + std::to_string(section) +
            " take " + std::to_string(take);
  }
  const bool png = d.manifest.output_codec == "png";
  std::string path = DerivedOutput(root.output_path, png, "", tag.empty() ? ".pick" : tag);
  if (!output.empty()) {
    auto resolved = ResolveOutput(o.output_root, output, png);
    if (!resolved.ok()) return R::Error("output: " + resolved.message());
    path = *resolved;
  }
  if (Status s = PlaceOutput(d, path, o, env, "output"); !s.ok()) return s;
  d.name = root.name + " (picked: " + (said.empty() ? "every section take 1" : said) + ")";
  d.priority = root.priority;
  return d;
}

uint64_t WaitingFor(const JobTable& jobs, const Job& j) {
  if (IsFinished(j.state)) return 0;
  if (j.family.role == JobRole::kFinal && j.preview_job != 0) {
    auto it = jobs.find(j.preview_job);
    if (it != jobs.end() && !IsFinished(it->second.state)) return j.preview_job;
  }
  if (j.family.role == JobRole::kTake) {
    auto it = jobs.find(j.family.parent);
    if (it != jobs.end() && it->second.state != JobState::kDone) return it->first;
  }
  return 0;
}

void LinkFamilies(JobTable& jobs) {
  for (auto& [id, j] : jobs) {
    if (j.family.role != JobRole::kPreview) continue;
    auto it = jobs.find(j.family.parent);
    if (it != jobs.end()) it->second.preview_job = id;
  }
  for (auto& [id, j] : jobs) j.waiting_for = WaitingFor(jobs, j);
}

std::vector<uint64_t> DerivedJobsOf(const JobTable& jobs, uint64_t id) {
  std::vector<uint64_t> out;
  for (const auto& [other, j] : jobs)
    if (j.family.parent == id && j.family.role != JobRole::kPick && !IsFinished(j.state))
      out.push_back(other);
  return out;
}

}  // namespace segue
