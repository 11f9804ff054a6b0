// segue-bench store | recovery | memory | render: the store's write rate, restart time, memory
// and the speed-up from a second worker, each against a baseline run in the same invocation.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace segue {

// Checkpoint-sized blobs written into RocksDB (synced batches) against plain files written with
// fdatasync each.
nlohmann::json BenchStore(int blobs);
// A coordinator starting on a store holding `segments` segments, until it answers, against one
// starting on an empty store.
nlohmann::json BenchRecovery(int segments);
// The coordinator's peak RSS planning and tracking a 4-hour job (against an idle one), and a
// worker's peak RSS over a short and a 10x longer job.
nlohmann::json BenchMemory(bool quick);
// `segue render` of one job with 2 workers against 1.
nlohmann::json BenchRender(bool quick);
// segue-bench iterate: a director's loop on `manifest` (the example music video): the full render,
// then the same after one keyframe's prompt is edited, on one farm of 2 workers (only what an
// edit reaches renders). Each render with its preview.
struct IterateOptions {
  std::string manifest = "configs/examples/the_hardest_part.yaml";
  std::string edit = "middle";  // "middle", "all" (each in turn), or a keyframe's number from 1
  int chunk_frames = 0;         // > 0: the coordinator's --chunk-frames
  int repeat = 1;               // the timeline played this many times in a row (a longer video)
};
nlohmann::json BenchIterate(const IterateOptions& options, bool quick);

}  // namespace segue
