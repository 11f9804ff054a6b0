// Re-rendering only what changed: every segment's result is known by a content key, a digest of
// everything that determines its bits, and a job whose segment has the key of a result already
// stored (by any job) takes that result instead of rendering it again. Determinism makes the two
// the same bits (docs/ARCHITECTURE.md, Re-rendering only what changed).
//
// What a segment's key covers: the render task its worker would get (RenderAssignment), which is
// the model's name, sampler, steps, shift, sigmas, eta, guidance, negative prompt, picture size
// and rate, its place in the latent timeline, its seed, the keyframes that reach it (prompts,
// weights, transitions) and the camera; the model's metadata; and what its strategy makes it
// depend on: a chained segment its guide's key (the previous segment's, so a change flows down
// the chain), a co-denoised segment every segment's of its job (each step of one depends on all).
// Not covered: the job's id, the attempt, checkpoint settings and the output's encoding, which
// do not change the latents.
//
// The cache is the jobs' own stored latents: a key is looked up among the DONE segments of every
// job the coordinator knows (no index to keep in step with them), and a reused result is copied
// into the new job, which then owns it like any it rendered. The copy costs no bytes: the store
// lets both records name the same value file (Store::Batch::Copy), which goes with the last; the
// cache counts such a result once and evicts it from all its holders together.
// Results of finished jobs are what the cache may evict (EvictResults): no unfinished job needs
// them, since their outputs are assembled (or they failed or were cancelled: a retry renders an
// evicted segment again). Each result's last use (made or reused) is kept in its task record, so
// the least recently used go first, across restarts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "coordinator/assignments.h"
#include "coordinator/jobs.h"
#include "coordinator/journal.h"
#include "coordinator/state_machine.h"

namespace segue {

// A segment's key and the digests of its parts, to say why two keys differ. All are hex SHA-256.
struct SegmentKey {
  std::string key;
  std::string model, settings, place, seed, prompts, camera, depends;
};

// The keys of every segment of `j`, with their parts (`with_parts`: the digests WhyDifferent
// compares; without, only `key`, `prompts` and `depends`). REQUIRES: j is planned.
std::vector<SegmentKey> SegmentKeys(const Job& j, bool with_parts = true);
// Just the keys, worked out once per plan (kept in j.result_keys); all empty when the model's
// weights are not known (a job stored before identities were, a host whose adapter reports
// none): such results are neither stored by key nor reused. REQUIRES: j is planned.
const std::vector<std::string>& ResultKeys(Job& j);
// The keys of `j`'s encoded chunks: a digest of the encode task (codec, quality, preset, size,
// rate, its frames and its decode window) with the keys and places of the segments its window
// blends, so a chunk's key changes exactly when one of them, or how it is encoded, does (kept in
// j.chunk_keys). REQUIRES: j is planned.
const std::vector<std::string>& ChunkKeys(Job& j, const AssignmentOptions& o);

// Why segment `now` renders where `before` (the same place in another job) rendered: the parts
// that differ, in words ("its prompts changed", "its guide, segment 3, changes"); empty when the
// keys are equal.
std::vector<std::string> WhyDifferent(const SegmentKey& now, const SegmentKey& before,
                                      Strategy strategy, uint32_t index);

// Where a stored result with each of `keys` is: (job, segment) among the DONE segments of the
// jobs in `jobs` other than `except`, the newest job first; {0, 0} for a key none has.
struct StoredResult {
  uint64_t job = 0;
  uint32_t segment = 0;
};
std::vector<StoredResult> FindStoredResults(const JobTable& jobs,
                                            const std::vector<std::string>& keys, uint64_t except,
                                            TaskKind kind = TaskKind::kRender);

// Completes every PENDING segment of `j` whose key another job's stored result has, with a copy
// of that result (a co-denoised job: only when every segment has one, as its gang renders all or
// none); logged on the job as "reused from job N segment M". Then the same for its chunks whose
// segments are all done. The results used count as used now. REQUIRES: j is in `jobs`.
struct Reuse {
  uint32_t hits = 0;      // segments taken from stored results
  uint32_t misses = 0;    // PENDING segments no stored result had
  uint64_t bytes = 0;     // of the results taken
  uint32_t chunks = 0;    // encoded chunks taken
  bool assemble = false;  // every chunk is done now: the caller assembles the job
};
Reuse ReuseStoredResults(JobTable& jobs, Journal& journal, StateMachine& machine, Env* env,
                         const AssignmentOptions& o, Job& j);

// ---- The cache's size --------------------------------------------------------------------------

// The bytes segment `s` of `j`'s stored latents take (C x T x h x w floats).
uint64_t ResultBytes(const Job& j, uint32_t s);

// The stored results of finished jobs (what the cache may evict), by job, oldest use first; and
// the bytes unfinished jobs' results take (never evicted). A result several jobs hold (reused:
// the same key, the same bytes in the store) counts once in the totals, in `live_bytes` while an
// unfinished job holds it, and in each of its finished holders' `CachedJob`.
struct CachedJob {
  uint64_t job = 0;
  uint32_t segments = 0, chunks = 0;
  uint64_t bytes = 0;
  uint64_t last_used_ms = 0;  // the newest use of any of them
};
struct CacheContents {
  std::vector<CachedJob> jobs;
  uint64_t bytes = 0;       // of those results
  uint64_t live_bytes = 0;  // of unfinished jobs' results
};
CacheContents CachedResults(const JobTable& jobs);

// Deletes finished jobs' results (segments' latents and encoded chunks), least recently used
// first, until they take at most `to_bytes`, and every one not used since `unused_before_ms` (0:
// none). A result goes from every job holding it at once, and not while an unfinished job holds
// it. An evicted task stays DONE in its job, without a key; a retry of its job does it again.
struct Evicted {
  uint64_t segments = 0, chunks = 0, bytes = 0;
};
Evicted EvictResults(JobTable& jobs, Journal& journal, uint64_t to_bytes,
                     uint64_t unused_before_ms = 0);

}  // namespace segue
