// Co-denoising across workers: the coordinator's half of the per-step overlap exchange.
//
// A codenoise job runs as a gang: its segments split into contiguous groups, one per worker,
// all advancing one sampler step at a time. After each step, a group sends the latents of every
// frame that a segment outside the group also covers; once every group has sent step i, the
// coordinator folds each frame's values with BlendFrame (the same function the workers use for
// frames they hold alone) and answers each group with the consensus of the frames it sent.
// Values travel in half precision both ways (common/tensor/half.h); workers round the frames
// they blend locally the same way, so a frame's consensus is the same whoever holds its segments.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/blend/blend.h"
#include "common/plan/plan.h"
#include "common/status/status.h"

namespace segue {

struct FrameValues {
  uint32_t segment = 0;
  int64_t frame = 0;
  std::vector<float> data;  // [C, h, w] of that frame
};

struct FrameConsensus {
  int64_t frame = 0;
  std::shared_ptr<const std::vector<float>> data;  // one copy for every group that sent it
};

class StepExchange {
 public:
  // `first_step`: the step the gang starts at (above 0 when it resumes from a checkpoint).
  StepExchange(std::vector<SegmentSpan> segments, BlendMode mode, int groups,
               uint32_t first_step = 0);

  uint32_t step() const { return step_; }
  // Adds group `group`'s values for the current step. Errors for a repeated group or values
  // whose sizes differ.
  Status Add(int group, std::vector<FrameValues> values);
  bool Complete() const { return static_cast<int>(posted_.size()) == groups_; }
  // REQUIRES: Complete(). Per group, the consensus of each frame it sent (segment unused), in the
  // order it sent them; then moves on to the next step.
  Result<std::vector<std::vector<FrameConsensus>>> Merge();

 private:
  std::vector<SegmentSpan> segments_;
  BlendMode mode_;
  int groups_;
  uint32_t step_ = 0;
  std::map<int, std::vector<FrameValues>> posted_;  // group -> its values this step
};

// Splits segments [0, count) into `groups` contiguous runs of near-equal size: [first, end).
std::vector<std::pair<uint32_t, uint32_t>> SplitIntoGroups(uint32_t count, uint32_t groups);

// A codenoise job's running gang: which worker holds which group of segments, the attempt number
// they all share, the step exchange, and the gang checkpoints that have arrived.
struct Gang {
  uint32_t attempt = 0;
  struct Group {
    uint32_t first = 0, end = 0;  // segments [first, end)
    std::string worker;
  };
  std::vector<Group> groups;
  std::unique_ptr<StepExchange> exchange;
  std::vector<int64_t> exchange_shape;  // [C, h, w] of the frames being exchanged
  // A gang checkpoint counts once every segment's latents after its step have arrived.
  std::map<uint32_t, std::set<uint32_t>> checkpoint_arrivals;  // step -> segments
  uint64_t last_checkpoint_ms = 0;

  // The group `worker` holds, or -1.
  int GroupOf(const std::string& worker) const;
};

}  // namespace segue
