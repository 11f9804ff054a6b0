#include "coordinator/results.h"

#include <capnp/any.h>
#include <capnp/message.h>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <tuple>
#include <unordered_map>

#include "common/plan/plan.h"
#include "common/protocol/protocol.h"
#include "common/util/digest.h"
#include "coordinator/assignments.h"

namespace segue {
namespace {

// SHA-256 over the parts given, each preceded by its length (so that parts cannot run into each
// other), as hex.
class Digest {
 public:
  explicit Digest(std::string_view domain) {
    crypto_hash_sha256_init(&state_);
    Add(domain);
  }
  Digest& Add(std::string_view part) {
    const uint64_t n = part.size();
    crypto_hash_sha256_update(&state_, reinterpret_cast<const unsigned char*>(&n), sizeof n);
    crypto_hash_sha256_update(&state_, reinterpret_cast<const unsigned char*>(part.data()),
                              part.size());
    return *this;
  }
  // A Cap'n Proto struct in its canonical form: the same values give the same bytes.
  template <typename Reader>
  Digest& AddStruct(Reader r) {
    const kj::Array<capnp::word> words = capnp::AnyStruct::Reader(r).canonicalize();
    return Add(std::string_view(reinterpret_cast<const char*>(words.begin()),
                                words.size() * sizeof(capnp::word)));
  }
  Digest& AddNumber(uint64_t v) { return Add(std::to_string(v)); }
  std::string Hex() {
    unsigned char out[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&state_, out);
    return HexOf(out, sizeof out);
  }

 private:
  crypto_hash_sha256_state state_;
};

}  // namespace

std::vector<SegmentKey> SegmentKeys(const Job& j, bool with_parts) {
  std::vector<SegmentKey> keys(j.segments.size());
  capnp::MallocMessageBuilder spec_message;
  auto spec = spec_message.initRoot<wire::ModelSpec>();
  SetModelSpec(spec, j.model);
  const std::string model =
      Digest("model").Add(j.manifest.model_name).AddStruct(spec.asReader()).Hex();
  const bool codenoise = j.strategy() == Strategy::kCodenoise;
  for (size_t s = 0; s < j.segments.size(); ++s) {
    capnp::MallocMessageBuilder b;
    auto t = b.initRoot<wire::RenderTask>();
    FillRenderTask(j, static_cast<uint32_t>(s), 0, AssignmentOptions{}, t);
    // What does not change the latents: which job and attempt, and checkpointing. The segment's
    // index is implied by its place and seed; the job's length matters only to co-denoising.
    t.setJobId(0);
    t.setSegment(0);
    t.setCheckpointEverySteps(0);
    t.setCheckpointEverySeconds(0);
    if (!codenoise) t.setTotalLatents(0);
    SegmentKey& k = keys[s];
    k.model = model;
    // The conditioning of each of its latent frames, as the worker derives it from the keyframes
    // (worker/tasks.cc, ReadRenderTask: PromptAt at each latent frame's first video frame): a
    // keyframe sent along only as the predecessor of one whose transition is over changes
    // nothing, and does not change the key.
    Digest prompts("prompts");
    const SegmentSpan& span = j.segments[s];
    for (int64_t f = span.start; f < span.end && !j.manifest.timeline.empty(); ++f) {
      const FramePrompt fp = PromptAt(j.manifest.timeline, j.geometry.timeline.FirstFrame(f));
      uint32_t mix = 0;
      std::memcpy(&mix, &fp.mix, sizeof mix);
      prompts.Add(j.manifest.timeline[static_cast<size_t>(fp.a)].prompt);
      prompts.Add(j.manifest.timeline[static_cast<size_t>(fp.b)].prompt).AddNumber(mix);
    }
    k.prompts = prompts.Hex();
    t.initTimeline(0);  // in the key through its conditioning, above
    k.key = Digest("segue-result/1")
                .Add(model)
                .Add(k.prompts)
                .AddStruct(t.asReader())
                .Hex();  // its own; dependencies are added below
    if (!with_parts) continue;
    // The parts below say what differs (WhyDifferent); the key is over the whole task.
    Digest settings("settings");
    settings.Add(t.getModel().cStr()).AddNumber(t.getSteps()).Add(t.getSampler().cStr());
    settings.Add(std::to_string(t.getShift())).Add(std::to_string(t.getShiftFromTokens()));
    for (float sigma : t.getSigmas()) settings.Add(std::to_string(sigma));
    settings.Add(std::to_string(t.getEta())).Add(std::to_string(t.getGuidance()));
    settings.Add(t.getNegativePrompt().cStr()).AddNumber(t.getWidth()).AddNumber(t.getHeight());
    settings.AddNumber(t.getFpsNum()).AddNumber(t.getFpsDen());
    k.settings = settings.Hex();
    k.place = Digest("place")
                  .AddNumber(static_cast<uint64_t>(t.getLatentStart()))
                  .AddNumber(t.getLatentCount())
                  .AddNumber(static_cast<uint64_t>(t.getTotalLatents()))
                  .Hex();
    k.seed = Digest("seed").AddNumber(t.getSeed()).Hex();
    k.camera = Digest("camera")
                   .Add(t.getCameraMotion().cStr())
                   .Add(std::to_string(t.getCameraSpeed()))
                   .Hex();
  }
  // What the strategy makes each segment depend on.
  if (j.strategy() == Strategy::kChained) {
    for (size_t s = 1; s < keys.size(); ++s) {
      keys[s].depends = keys[s - 1].key;  // already its final key: the chain flows down
      keys[s].key = Digest("chained").Add(keys[s].key).Add(keys[s].depends).Hex();
    }
  } else if (codenoise) {
    // The gang's exchange also depends on how overlaps are blended, the plan's segment length
    // and overlap, and the job's seed (the co-denoising task carries them).
    Digest gang("gang");
    gang.Add(j.manifest.blend).AddNumber(static_cast<uint64_t>(j.geometry.length));
    gang.AddNumber(static_cast<uint64_t>(j.geometry.overlap)).AddNumber(j.manifest.seed);
    for (const SegmentKey& k : keys) gang.Add(k.key);
    const std::string all = gang.Hex();
    for (SegmentKey& k : keys) {
      k.depends = all;
      k.key = Digest("codenoise").Add(k.key).Add(all).Hex();
    }
  }
  return keys;
}

const std::vector<std::string>& ResultKeys(Job& j) {
  if (j.result_keys.size() != j.segments.size()) {
    j.result_keys.clear();
    if (j.model.identity.empty()) {
      j.result_keys.assign(j.segments.size(), "");  // weights unknown: nothing to match on
    } else {
      for (SegmentKey& k : SegmentKeys(j, false)) j.result_keys.push_back(std::move(k.key));
    }
  }
  return j.result_keys;
}

std::vector<std::string> WhyDifferent(const SegmentKey& now, const SegmentKey& before,
                                      Strategy strategy, uint32_t index) {
  std::vector<std::string> why;
  if (now.key == before.key) return why;
  if (now.model != before.model) why.push_back("the model or its metadata changed");
  if (now.settings != before.settings)
    why.push_back("the render settings changed (sampler, steps, guidance, size or rate)");
  if (now.place != before.place) why.push_back("its place in the video moved");
  if (now.seed != before.seed) why.push_back("its seed changed");
  if (now.prompts != before.prompts) why.push_back("its prompts changed");
  if (now.camera != before.camera) why.push_back("the camera changed");
  if (why.empty() && now.depends != before.depends) {
    if (strategy == Strategy::kChained)
      why.push_back("its guide, segment " + std::to_string(index - 1) + ", changes");
    else
      why.push_back("it is co-denoised with segments that change (or blend differently)");
  }
  if (why.empty()) why.push_back("its render task changed");
  return why;
}

std::vector<StoredResult> FindStoredResults(const JobTable& jobs,
                                            const std::vector<std::string>& keys, uint64_t except,
                                            TaskKind kind) {
  std::map<std::string_view, size_t> wanted;
  for (size_t i = 0; i < keys.size(); ++i)
    if (!keys[i].empty()) wanted.emplace(keys[i], i);
  std::vector<StoredResult> found(keys.size());
  for (auto it = jobs.rbegin(); it != jobs.rend(); ++it) {  // the newest job first
    const Job& o = it->second;
    if (o.id == except) continue;
    const std::vector<Task>& tasks = o.tasks(kind);
    for (size_t s = 0; s < tasks.size(); ++s) {
      const Task& t = tasks[s];
      if (t.state != TaskState::kDone || t.result_key.empty()) continue;
      auto w = wanted.find(t.result_key);
      if (w == wanted.end()) continue;
      for (size_t i = w->second; i < keys.size(); ++i) {  // every segment of this key
        if (keys[i] != t.result_key) continue;
        if (found[i].job == 0) found[i] = {o.id, static_cast<uint32_t>(s)};
      }
    }
  }
  return found;
}

Reuse ReuseStoredResults(JobTable& jobs, Journal& journal, StateMachine& machine, Env* env,
                         const AssignmentOptions& o, Job& j) {
  Reuse out;
  if (!j.planned() || IsFinished(j.state)) return out;
  const std::vector<std::string>& keys = ResultKeys(j);
  const std::vector<StoredResult> found = FindStoredResults(jobs, keys, j.id);
  for (size_t s = 0; s < found.size(); ++s)
    out.misses += found[s].job == 0 && j.seg[s].state == TaskState::kPending ? 1 : 0;
  if (j.strategy() == Strategy::kCodenoise && out.misses > 0) {
    out.misses = 0;  // the gang renders every segment
    for (size_t s = 0; s < found.size(); ++s)
      out.misses += j.seg[s].state == TaskState::kPending ? 1 : 0;
    return out;
  }
  // One use time for every result taken here, copies and donors alike: the cache's order
  // between them is then the jobs' (the older job's goes first), not the clock's ticks.
  const uint64_t now = env->NowMillis();
  for (size_t s = 0; s < found.size(); ++s) {
    if (found[s].job == 0 || j.seg[s].state != TaskState::kPending) continue;
    auto latents = journal.Latents(found[s].job, found[s].segment);
    if (!latents.ok()) {  // gone (damaged): rendered like any other
      spdlog::warn("job {}: cannot reuse job {} segment {}: {}", j.id, found[s].job,
                   found[s].segment, latents.message());
      ++out.misses;
      continue;
    }
    // Read above to know it is whole; the new job's record names the same bytes (no copy).
    machine.ReuseSegment(j, static_cast<uint32_t>(s), found[s].job, found[s].segment,
                         "reused from job " + std::to_string(found[s].job) + " segment " +
                             std::to_string(found[s].segment) + " (unchanged)",
                         now);
    ++out.hits;
    out.bytes += ResultBytes(j, static_cast<uint32_t>(s));
    // The donor's result was just used: the last the cache would evict.
    Job& donor = jobs.at(found[s].job);
    Task& t = donor.seg[found[s].segment];
    t.result_used_ms = now;
    journal.PutTask(donor.id, TaskKind::kRender, found[s].segment, t);
  }
  // Chunks whose segments are all done (a chunk reused while one of its segments still renders
  // would let the job finish before that segment).
  const std::vector<std::string>& chunk_keys = ChunkKeys(j, o);
  const std::vector<StoredResult> chunks =
      FindStoredResults(jobs, chunk_keys, j.id, TaskKind::kEncode);
  for (size_t c = 0; c < chunks.size(); ++c) {
    if (chunks[c].job == 0 || j.chunk[c].state != TaskState::kPending) continue;
    const DecodeWindow w = ChunkWindow(j, static_cast<uint32_t>(c));
    const std::vector<int> cover = SegmentsCovering(j.segments, w.first, w.end_with_context);
    if (std::any_of(cover.begin(), cover.end(),
                    [&](int s) { return j.seg[static_cast<size_t>(s)].state != TaskState::kDone; }))
      continue;
    auto container = journal.Chunk(chunks[c].job, chunks[c].segment);
    if (!container.ok()) continue;  // gone: encoded like any other
    Task& t = j.chunk[c];
    t.result_key = chunk_keys[c];
    t.result_used_ms = now;
    t.result_bytes = container->size();
    out.assemble =
        machine.ReuseChunk(j, static_cast<uint32_t>(c), chunks[c].job, chunks[c].segment,
                           "reused from job " + std::to_string(chunks[c].job) + " chunk " +
                               std::to_string(chunks[c].segment) + " (unchanged)");
    ++out.chunks;
    Job& donor = jobs.at(chunks[c].job);
    Task& d = donor.chunk[chunks[c].segment];
    d.result_used_ms = t.result_used_ms;  // as for segments, above
    journal.PutTask(donor.id, TaskKind::kEncode, chunks[c].segment, d);
  }
  if (out.hits > 0 || out.chunks > 0)
    spdlog::info("job {}: reused {} of {} segments and {} of {} chunks from earlier jobs", j.id,
                 out.hits, j.segments.size(), out.chunks, j.chunks.size());
  return out;
}

const std::vector<std::string>& ChunkKeys(Job& j, const AssignmentOptions& o) {
  if (j.chunk_keys.size() == j.chunks.size()) return j.chunk_keys;
  const std::vector<std::string>& segment_keys = ResultKeys(j);
  j.chunk_keys.clear();
  if (j.model.identity.empty()) {
    j.chunk_keys.assign(j.chunks.size(), "");
    return j.chunk_keys;
  }
  for (size_t c = 0; c < j.chunks.size(); ++c) {
    // The encode task as its worker gets it, without the job, the attempt and the latents.
    capnp::MallocMessageBuilder b;
    auto t = b.initRoot<wire::EncodeTask>();
    FillEncodeTask(j, static_cast<uint32_t>(c), 0, o, t);
    t.setJobId(0);
    t.setChunk(0);
    Digest d("chunk/1");
    d.AddStruct(t.asReader()).Add(j.manifest.blend);
    // The latents its window blends: the covering segments' keys and places.
    const DecodeWindow w = ChunkWindow(j, static_cast<uint32_t>(c));
    for (int s : SegmentsCovering(j.segments, w.first, w.end_with_context)) {
      const SegmentSpan& span = j.segments[static_cast<size_t>(s)];
      d.Add(segment_keys[static_cast<size_t>(s)]);
      d.AddNumber(static_cast<uint64_t>(span.start)).AddNumber(static_cast<uint64_t>(span.end));
    }
    j.chunk_keys.push_back(d.Hex());
  }
  return j.chunk_keys;
}

uint64_t ResultBytes(const Job& j, uint32_t s) {
  const int sc = std::max(1, j.model.spatial_compression);
  return uint64_t{4} * static_cast<uint64_t>(j.model.latent_channels) *
         static_cast<uint64_t>(j.segments[s].length()) *
         static_cast<uint64_t>(j.manifest.width / sc) *
         static_cast<uint64_t>(j.manifest.height / sc);
}

namespace {

// The bytes a DONE task's result takes in the store.
uint64_t StoredBytes(const Job& j, TaskKind kind, size_t i) {
  return kind == TaskKind::kRender ? ResultBytes(j, static_cast<uint32_t>(i))
                                   : j.chunk[i].result_bytes;
}

// A stored result with every job's record of it. Records with one key hold the same bits, and a
// reused one names the same bytes in the store (Store::Batch::Copy), so the cache counts and
// evicts a result once, whichever jobs hold it.
struct Holder {
  uint64_t job;
  TaskKind kind;
  uint32_t index;
};
struct StoredResultGroup {
  std::vector<Holder> holders;  // in job order
  uint64_t bytes = 0;
  uint64_t used_ms = 0;  // the newest use by any holder
  bool live = false;     // an unfinished job holds it: never evicted
};

// Every stored result with a key, by kind and key (in no order); `keyless_live` gets the bytes of
// unfinished jobs' results without one (never reused, so never shared).
std::unordered_map<std::string, StoredResultGroup> StoredResults(const JobTable& jobs,
                                                                 uint64_t* keyless_live) {
  std::unordered_map<std::string, StoredResultGroup> groups;  // kind's byte + key
  for (const auto& [id, j] : jobs) {
    for (TaskKind kind : {TaskKind::kRender, TaskKind::kEncode}) {
      const std::vector<Task>& tasks = j.tasks(kind);
      for (size_t i = 0; i < tasks.size(); ++i) {
        const Task& t = tasks[i];
        if (t.state != TaskState::kDone) continue;
        const uint64_t bytes = StoredBytes(j, kind, i);
        if (t.result_key.empty()) {
          if (!IsFinished(j.state)) *keyless_live += bytes;
          continue;
        }
        StoredResultGroup& g = groups[static_cast<char>(kind) + t.result_key];
        g.holders.push_back({id, kind, static_cast<uint32_t>(i)});
        g.bytes = std::max(g.bytes, bytes);
        g.used_ms = std::max(g.used_ms, t.result_used_ms);
        g.live = g.live || !IsFinished(j.state);
      }
    }
  }
  return groups;
}

}  // namespace

CacheContents CachedResults(const JobTable& jobs) {
  CacheContents out;
  std::map<uint64_t, CachedJob> by_job;
  for (const auto& [key, g] : StoredResults(jobs, &out.live_bytes)) {
    (g.live ? out.live_bytes : out.bytes) += g.bytes;
    if (g.live) continue;
    for (const Holder& h : g.holders) {
      CachedJob& c = by_job[h.job];
      c.job = h.job;
      ++(h.kind == TaskKind::kRender ? c.segments : c.chunks);
      c.bytes += g.bytes;
      c.last_used_ms = std::max(c.last_used_ms, g.used_ms);
    }
  }
  for (const auto& [id, c] : by_job) out.jobs.push_back(c);
  std::sort(out.jobs.begin(), out.jobs.end(), [](const CachedJob& a, const CachedJob& b) {
    return std::tie(a.last_used_ms, a.job) < std::tie(b.last_used_ms, b.job);
  });
  return out;
}

Evicted EvictResults(JobTable& jobs, Journal& journal, uint64_t to_bytes,
                     uint64_t unused_before_ms) {
  uint64_t keyless_live = 0;
  std::vector<StoredResultGroup> candidates;
  uint64_t total = 0;
  for (auto& [key, g] : StoredResults(jobs, &keyless_live)) {
    if (g.live) continue;
    total += g.bytes;
    candidates.push_back(std::move(g));
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const StoredResultGroup& a, const StoredResultGroup& b) {
              const Holder &x = a.holders.front(), &y = b.holders.front();
              return std::tie(a.used_ms, x.job, x.kind, x.index) <
                     std::tie(b.used_ms, y.job, y.kind, y.index);
            });
  Evicted out;
  for (const StoredResultGroup& g : candidates) {
    if (total <= to_bytes && (unused_before_ms == 0 || g.used_ms >= unused_before_ms)) break;
    for (const Holder& h : g.holders) {
      Task& t = jobs.at(h.job).tasks(h.kind)[h.index];
      if (h.kind == TaskKind::kRender) {
        journal.DeleteLatents(h.job, h.index);
        ++out.segments;
      } else {
        journal.DeleteChunk(h.job, h.index);
        ++out.chunks;
      }
      t.result_key.clear();
      journal.PutTask(h.job, h.kind, h.index, t);
    }
    total -= g.bytes;
    out.bytes += g.bytes;
  }
  if (out.segments + out.chunks > 0)
    spdlog::info("result cache: evicted {} segments and {} chunks ({} MiB) of finished jobs",
                 out.segments, out.chunks, out.bytes >> 20);
  return out;
}

}  // namespace segue
