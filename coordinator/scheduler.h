// The scheduler: which idle worker gets which task, as a pure function of the jobs, the workers
// and the time (after OpenCue's "plan, but do not commit"). It returns decisions and changes,
// sends and writes nothing; the core (coordinator/core.h) carries them out, in order.
//
// One pass: first every encode task whose frames are ready (they finish jobs and free the store
// of latents), then render tasks and gangs, jobs in dispatch order (higher priority first, then
// first come). A task goes to an idle worker that has the job's model and meets its
// requirements, has not failed the task and is not kept off the job; when only such workers are
// idle it waits for a better one if the farm has one, and takes one of them if not (a small farm
// must still make progress). Independent segments run as soon as a worker is free; a chained
// segment once its predecessor is DONE; a codenoise job starts as one gang over the idle workers
// able to take it (one per segment at most), after waiting up to gang_wait_ms for busy ones (a
// gang cannot grow later).
// Each job's walk starts after the prefix of tasks known DONE, so a pass costs the running
// window, not the job's length.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "coordinator/jobs.h"
#include "coordinator/workers.h"

namespace segue {

struct Decision {
  enum class Kind {
    kEncode,    // chunk `index` of `job` to workers[0]
    kRender,    // segment `index` of `job` to workers[0]
    kGang,      // `job`'s gang over `workers`, one group each (coordinator/codenoise.h)
    kGangWait,  // `job`'s gang waits for busy workers, since `since_ms` (to be kept in the job)
  };
  Kind kind = Kind::kRender;
  uint64_t job = 0;
  uint32_t index = 0;
  std::vector<std::string> workers;
  uint64_t since_ms = 0;
};

struct SchedulerOptions {
  uint64_t gang_wait_ms = 2000;
};

// One pass over `jobs` and `workers` at `now_ms`: the decisions, in the order to carry them out.
// Each worker appears in at most one.
std::vector<Decision> Schedule(const JobTable& jobs, const WorkerRegistry::Map& workers,
                               uint64_t now_ms, const SchedulerOptions& options);

// Whether decision `d` of a pass may still be carried out once the ones before it were: carrying
// one out can change a job (a segment whose latents turn out unreadable is queued again, a chunk
// that cannot be blended fails its job), which a later decision of the same pass did not see.
bool StillHolds(const Job& j, const Decision& d);

// Unfinished jobs not being assembled, higher priority first, then first come.
std::vector<const Job*> RunnableJobs(const JobTable& jobs);
// Whether `w` can take `j`'s tasks: it has the model and meets the job's requirements.
bool Capable(const Job& j, const Worker& w);
// Tasks that could run now or run, over all runnable jobs: what pools size themselves to. A
// chained job counts one segment at a time; a job whose segments are done counts its chunks.
int64_t Demand(const JobTable& jobs);

}  // namespace segue
