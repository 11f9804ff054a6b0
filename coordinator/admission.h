// Admission: whether a submitted job may enter, and as what. The coordinator never trusts a
// client: it parses and validates the manifest again, checks that the audio came with it and that
// FFmpeg can read it (a job must not fail at the very end over its audio), resolves the output
// path inside its output root (never outside: no absolute paths, no "..", no symlink out) and
// refuses an existing output unless the manifest allows replacing it. An admitted job is planned
// but not stored: the caller hands it to the journal.
#pragma once

#include <string>

#include "common/env/env.h"
#include "common/protocol/segue.capnp.h"
#include "common/status/status.h"
#include "coordinator/jobs.h"
#include "coordinator/models.h"

namespace segue {

struct AdmissionOptions {
  std::string output_root;  // canonical
  std::string scratch_dir;  // where the audio is probed (STATE/tmp)
  uint32_t chunk_frames = 96;
  int64_t max_job_segments = 0;  // a job planning more is refused (0: no limit)
};

// The job `submit` asks for (id 0, every task PENDING), or why not, naming the manifest and the
// field. It is planned with its model's metadata from `models`; a job of a model no worker has
// reported yet is admitted unplanned (Job::planned), to be planned when one joins.
// REQUIRES: `env` is the coordinator's.
Result<Job> Admit(wire::Submit::Reader submit, const AdmissionOptions& options, Env* env,
                  const ModelCatalog& models);

// `rel` as a path inside the canonical `root`, or why not. `folder`: the output is a folder (png
// frames), so an existing file there is the conflict, not an existing folder.
Result<std::string> ResolveOutput(const std::string& root, const std::string& rel, bool folder);

// Whether `output` (ResolveOutput's answer at submit) still resolves to itself, inside `root`:
// a symlink made under the root after submit must not carry the output elsewhere. Checked
// again just before assembly writes.
Status CheckOutputStillInRoot(const std::string& root, const std::string& output);

}  // namespace segue
