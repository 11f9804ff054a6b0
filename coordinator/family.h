// Job families: what a director iterates with (docs/MANIFEST.md, "Iterating"). A submitted job
// (the final) whose manifest asks for a `preview:` or for `takes:` of a section brings derived
// jobs with it, each a job of its own with its own output:
//
//   preview  the whole video at preview.steps and preview.scale, at a higher priority; the final
//            waits for it to finish before it is scheduled, so the preview is seen first.
//   take     section S re-seeded as take T (2..N); it waits until the final is done, so that
//            everything it shares with the final (segments, encoded chunks) is reused, not made
//            twice (coordinator/results.h): with `independent` it renders only the section's
//            segments.
//   pick     `segue pick JOB SECTION TAKE`: JOB's manifest with the takes chosen so far; every
//            segment some job already rendered with the same inputs is reused.
//
// Derived jobs keep the submitted manifest's text and their family (stored in the job record);
// ApplyFamily makes their manifest from both, on submit and on restore alike.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status/status.h"
#include "coordinator/admission.h"
#include "coordinator/jobs.h"

namespace segue {

// Applies `f` to the manifest `m` was parsed into: a take's section and a pick's sections use
// their chosen takes; a derived job asks for no takes or preview of its own (it has no family
// under it); a preview renders at preview.steps (PlanJob scales its size).
void ApplyFamily(Manifest& m, const JobFamily& f);

// A derived job's output: the final's `output` (absolute) with `suffix` before its extension
// (".preview", ".s2-take3") or, with `folder` non-empty, in the folder NAME.takes beside it
// ("NAME.takes/s2-take3.mp4"); png folders get the suffix on the folder's name.
std::string DerivedOutput(const std::string& output, bool png, const std::string& folder,
                          const std::string& suffix);

// The jobs the farm derives from the final `j` (admitted, not stored yet): its preview if its
// manifest asks for one, then every take beyond the first of every section, in timeline order.
// Each is planned when `j` is; its family's root and parent are 0 until `j` has an id (the
// journal sets them when it stores the family). An error names the manifest's field: a derived
// output that exists without output.overwrite, or one the output root refuses.
Result<std::vector<Job>> DeriveJobs(const Job& j, const AdmissionOptions& o, Env* env,
                                    const ModelCatalog& models);

// A pick: `from`'s manifest with the takes `picks` (section -> take) on top of `from`'s own
// picks, written to `output` (relative to the output root; empty: DerivedOutput of the root's
// output with the picks, ".s2-take3.s4-take2"). An error names what was wrong: a section the
// timeline does not have, a take beyond the manifest's limit, an output that exists.
// REQUIRES: `root` is `from`'s root (or `from` itself).
Result<Job> PickJob(const Job& from, const Job& root, const std::map<int, int>& picks,
                    const std::string& output, const AdmissionOptions& o, Env* env,
                    const ModelCatalog& models);

// The job `j` must wait for before it is scheduled, or 0: a final waits for its unfinished
// preview; a take for its final until the final is finished, so that the take reuses its
// segments and its encoded chunks (while the final is FAILED or CANCELLED the take is cancelled:
// ReleaseWaitingJobs). A job that is finished waits for nothing.
uint64_t WaitingFor(const JobTable& jobs, const Job& j);

// Sets every final's preview_job and every job's waiting_for from the families (after a restart).
void LinkFamilies(JobTable& jobs);

// The unfinished jobs derived from `j` (its preview and takes), to be cancelled with it.
std::vector<uint64_t> DerivedJobsOf(const JobTable& jobs, uint64_t j);

}  // namespace segue
