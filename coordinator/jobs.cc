#include "coordinator/jobs.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

namespace segue {

const char* JobRoleName(JobRole r) {
  switch (r) {
    case JobRole::kFinal:
      return "final";
    case JobRole::kPreview:
      return "preview";
    case JobRole::kTake:
      return "take";
    case JobRole::kPick:
      return "pick";
  }
  return "final";
}

const char* JobStateName(JobState s) {
  switch (s) {
    case JobState::kQueued:
      return "QUEUED";
    case JobState::kRunning:
      return "RUNNING";
    case JobState::kStitching:
      return "STITCHING";
    case JobState::kDone:
      return "DONE";
    case JobState::kFailed:
      return "FAILED";
    case JobState::kCancelled:
      return "CANCELLED";
  }
  return "UNKNOWN";
}

bool IsFinished(JobState s) {
  return s == JobState::kDone || s == JobState::kFailed || s == JobState::kCancelled;
}

std::string TaskName(TaskKind kind, uint32_t index) {
  return (kind == TaskKind::kEncode ? "chunk " : "segment ") + std::to_string(index);
}

std::string AudioExtension(const std::string& name) {
  std::string ext = std::filesystem::path(name).extension().string();
  if (ext.size() > 8) return "";
  for (char c : ext) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.') return "";
  }
  return ext;
}

Status PlanJob(Job& j, const Manifest& m, const model::ModelMetadata& meta,
               uint32_t default_chunk_frames, int64_t max_segments) {
  Manifest fitted = m;
  if (j.family.role == JobRole::kPreview && m.preview) {
    const int q = std::max(1, meta.spatial_multiple());
    auto scaled = [&](int v) {
      return std::max(q, static_cast<int>(v * m.preview->scale) / q * q);
    };
    fitted.width = scaled(m.width);
    fitted.height = scaled(m.height);
  }
  auto geometry = FitToModel(fitted, meta);
  if (!geometry.ok()) return geometry.status();
  const int64_t count = CountSegments(geometry->latents, geometry->length, geometry->overlap);
  if (max_segments > 0 && count > max_segments)
    return Status::Error(m.name + ": segments: the job plans " + std::to_string(count) +
                         " segments, above this coordinator's limit of " +
                         std::to_string(max_segments) +
                         " per job (--max-job-segments): use longer segments, less overlap, or "
                         "split the video into several jobs");
  j.manifest = std::move(fitted);
  j.model = meta;
  j.geometry = *geometry;
  j.blend = *ParseBlendMode(m.blend);
  j.segments = PlanLatentSegments(j.geometry, m.seed);
  SeedTakes(j.geometry, m.timeline, j.segments);
  j.seg.assign(j.segments.size(), Task{});
  j.result_keys.clear();
  j.chunk_keys.clear();
  if (j.chunk_frames == 0) j.chunk_frames = default_chunk_frames;
  const int chunk_latents =
      std::max(1, static_cast<int>(j.chunk_frames) / meta.temporal_compression);
  j.chunks = PlanChunks(j.geometry.latents, chunk_latents);
  j.chunk.assign(j.chunks.size(), Task{});
  return Status::Ok();
}

std::vector<const Job*> FindJobs(const JobTable& jobs, const JobQuery& q, uint64_t* next_after_id) {
  auto matches = [&q](const Job& j) {
    if (!q.states.empty() && !q.states.count(JobStateName(j.state))) return false;
    if (!q.owner.empty() && j.owner != q.owner) return false;
    if (!q.name.empty() && j.name != q.name) return false;
    if (q.family != 0 && j.id != q.family && j.family.root != q.family) return false;
    for (const auto& [k, v] : q.metadata) {
      auto it = j.manifest.metadata.find(k);
      if (it == j.manifest.metadata.end() || it->second != v) return false;
    }
    return true;
  };
  std::vector<const Job*> page;
  *next_after_id = 0;
  for (auto it = jobs.upper_bound(q.after_id); it != jobs.end(); ++it) {
    if (!matches(it->second)) continue;
    if (q.limit > 0 && page.size() == q.limit) {
      *next_after_id = page.back()->id;
      break;
    }
    page.push_back(&it->second);
  }
  return page;
}

}  // namespace segue
