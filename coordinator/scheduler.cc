#include "coordinator/scheduler.h"

#include <algorithm>

namespace segue {
namespace {

// A chunk is ready to encode when it waits and every segment covering its frames is DONE.
bool ChunkReady(const Job& j, size_t c) {
  if (j.chunk[c].state != TaskState::kPending) return false;
  const int64_t start = j.chunks[c].start, end = j.chunks[c].end;
  // The covering segments are a run (SegmentsCovering), walked without allocating, from the
  // first one not known to be DONE.
  auto it = std::partition_point(j.segments.begin(), j.segments.end(),
                                 [&](const SegmentSpan& s) { return s.end <= start; });
  it = std::max(it, j.segments.begin() + j.segments_done_below);
  for (; it != j.segments.end() && it->start < end; ++it) {
    if (j.seg[static_cast<size_t>(it->index)].state != TaskState::kDone) return false;
  }
  return true;
}

// A segment may start: independent always; chained once its predecessor is DONE; codenoise
// never alone (its segments start together, as a gang).
bool SegmentRunnable(const Job& j, size_t s) {
  if (j.seg[s].state != TaskState::kPending) return false;
  switch (j.strategy()) {
    case Strategy::kIndependent:
      return true;
    case Strategy::kChained:
      return s == 0 || j.seg[s - 1].state == TaskState::kDone;
    case Strategy::kCodenoise:
      return false;
  }
  return false;
}

// The workers idle for `j` in this pass: idle with credit, able to take it, not yet given a task.
std::vector<const Worker*> IdleFor(const Job& j, const WorkerRegistry::Map& workers,
                                   const std::vector<const Worker*>& taken) {
  std::vector<const Worker*> idle;
  for (const auto& [name, w] : workers) {
    if (w.idle() && Capable(j, w) && std::find(taken.begin(), taken.end(), &w) == taken.end())
      idle.push_back(&w);
  }
  return idle;
}

// The idle worker to give task `t` of `j`: one it has not failed on and that is not kept off the
// job; when every idle worker is, none while the farm has an eligible one (busy), else any.
const Worker* PickWorker(const Job& j, const Task& t, const std::vector<const Worker*>& idle,
                         const WorkerRegistry::Map& workers) {
  auto eligible = [&](const std::string& name) {
    if (std::find(t.failed_on.begin(), t.failed_on.end(), name) != t.failed_on.end()) return false;
    auto it = j.worker_failures.find(name);
    return it == j.worker_failures.end() || it->second < kKeepWorkerOffAfter;
  };
  for (const Worker* w : idle) {
    if (eligible(w->name)) return w;
  }
  for (const auto& [name, w] : workers) {
    if (Capable(j, w) && eligible(name)) return nullptr;
  }
  return idle.empty() ? nullptr : idle.front();
}

}  // namespace

bool StillHolds(const Job& j, const Decision& d) {
  if (IsFinished(j.state) || j.state == JobState::kStitching) return false;
  switch (d.kind) {
    case Decision::Kind::kEncode:
      return ChunkReady(j, d.index);
    case Decision::Kind::kRender:
      return SegmentRunnable(j, d.index);
    case Decision::Kind::kGang:
      return !j.gang && j.segments_done < j.segments.size();
    case Decision::Kind::kGangWait:
      return true;
  }
  return false;
}

std::vector<const Job*> RunnableJobs(const JobTable& jobs) {
  std::vector<const Job*> out;
  for (const auto& [id, j] : jobs) {
    if (!IsFinished(j.state) && j.state != JobState::kStitching && j.planned() &&
        j.waiting_for == 0)
      out.push_back(&j);
  }
  std::stable_sort(out.begin(), out.end(), [](const Job* a, const Job* b) {
    return a->priority != b->priority ? a->priority > b->priority : a->id < b->id;
  });
  return out;
}

bool Capable(const Job& j, const Worker& w) {
  const Manifest& m = j.manifest;
  if (!w.models.count(m.model_name)) return false;
  if (!m.require_device.empty() && w.device.substr(0, w.device.find(':')) != m.require_device)
    return false;
  if (m.require_memory > 0 && w.memory < m.require_memory) return false;
  for (const auto& t : m.require_tags) {
    if (!w.tags.count(t)) return false;
  }
  return true;
}

int64_t Demand(const JobTable& jobs) {
  int64_t demand = 0;
  for (const Job* j : RunnableJobs(jobs)) {
    const int64_t left = static_cast<int64_t>(j->segments.size() - j->segments_done);
    demand += j->strategy() == Strategy::kChained ? std::min<int64_t>(left, 1) : left;
    if (left == 0) demand += static_cast<int64_t>(j->chunks.size() - j->chunks_done);
  }
  return demand;
}

std::vector<Decision> Schedule(const JobTable& jobs, const WorkerRegistry::Map& workers,
                               uint64_t now_ms, const SchedulerOptions& options) {
  std::vector<Decision> out;
  const std::vector<const Job*> order = RunnableJobs(jobs);
  if (order.empty()) return out;
  std::vector<const Worker*> taken;  // given a task in this pass
  auto give = [&](Decision::Kind kind, const Job& j, size_t index, const Worker* w,
                  std::vector<const Worker*>& idle) {
    out.push_back({kind, j.id, static_cast<uint32_t>(index), {w->name}, 0});
    taken.push_back(w);
    idle.erase(std::find(idle.begin(), idle.end(), w));
  };
  // Encodes first: they finish jobs and free the store of latents.
  for (const Job* j : order) {
    std::vector<const Worker*> idle = IdleFor(*j, workers, taken);
    for (size_t c = j->chunks_done_below; c < j->chunks.size() && !idle.empty(); ++c) {
      if (!ChunkReady(*j, c)) continue;
      if (const Worker* w = PickWorker(*j, j->chunk[c], idle, workers))
        give(Decision::Kind::kEncode, *j, c, w, idle);
    }
  }
  for (const Job* j : order) {
    std::vector<const Worker*> idle = IdleFor(*j, workers, taken);
    if (idle.empty()) continue;
    if (j->strategy() == Strategy::kCodenoise) {
      if (j->gang || j->segments_done == j->segments.size()) continue;
      // Give busy workers a moment to free up: a gang cannot grow once started.
      size_t able = 0;
      for (const auto& [name, w] : workers) able += Capable(*j, w) ? 1 : 0;
      const uint64_t since = j->gang_wait_since != 0 ? j->gang_wait_since : now_ms;
      if (idle.size() < std::min(able, j->segments.size()) &&
          now_ms - since < options.gang_wait_ms) {
        out.push_back({Decision::Kind::kGangWait, j->id, 0, {}, since});
        continue;
      }
      Decision gang{Decision::Kind::kGang, j->id, 0, {}, 0};
      for (size_t g = 0; g < std::min(idle.size(), j->segments.size()); ++g) {
        gang.workers.push_back(idle[g]->name);
        taken.push_back(idle[g]);
      }
      out.push_back(std::move(gang));
      continue;
    }
    for (size_t s = j->segments_done_below; s < j->segments.size() && !idle.empty(); ++s) {
      if (!SegmentRunnable(*j, s)) continue;
      if (const Worker* w = PickWorker(*j, j->seg[s], idle, workers))
        give(Decision::Kind::kRender, *j, s, w, idle);
    }
  }
  return out;
}

}  // namespace segue
