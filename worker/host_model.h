// Models served by model hosts (docs/MODELS.md, "Model hosts"): for each host entry of the
// models folder (host_entry.h) the worker starts a host process when the model is first needed,
// binds a ZeroMQ DEALER socket on a fresh ipc:// endpoint for it, and calls it once per model
// call. Torch-free interface: the runtime sees a model::ModelSource.
//
// Failure semantics: a call that times out, a host that exits, or an answer that is not the
// protocol's or has the wrong shape fails the call (its task) with a message naming the model
// and the last lines of the host's stderr; the host is stopped and started again, with backoff,
// by the next call. A host that fails to start (spawn and hello) `max_starts` times in a row
// makes its model unavailable on this worker until the worker restarts: the runtime reports it,
// and the worker tells the coordinator, which stops sending it that model's tasks.
#pragma once

#include <string>

#include "common/model/runtime.h"

namespace segue::model {
class Model;  // model.h (torch)
}

namespace segue {

// The hosts of `models_dir`'s entries, for `device`; sockets and host logs go under `run_dir`
// (created if need be, and removed with the source and its hosts: a failure's message carries
// the end of its host's log).
model::ModelSource HostModelSource(const std::string& models_dir, const std::string& device,
                                   const std::string& run_dir);

// What the last answered call of a model opened by HostModelSource took (segue-bench host): the
// worker's wall time from framing the request to holding the parsed answer, and the time the
// host says its adapter spent (the reply's "adapter_seconds"; 0 if it does not say). Their
// difference is what serving the model out of process costs. {0, 0} for other models.
struct HostCallTiming {
  double round_trip_s = 0;
  double adapter_s = 0;
};
HostCallTiming LastHostCallTiming(const model::Model& m);

}  // namespace segue
