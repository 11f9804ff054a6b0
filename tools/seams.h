// Seam report: how visible are the joins between segments in a rendered video?
//
// For every frame f >= 1, change(f) is the mean absolute RGB difference between frames f-1 and
// f. A join is the overlap [next.start, prev.end) of two neighbouring segments; its score is the
// largest change across its frames (from entering the overlap to leaving it) divided by the
// median change of the frames that touch no overlap. A hard cut scores high; a join nobody can
// see scores about 1.
#pragma once

#include <string>
#include <vector>

#include "common/plan/plan.h"
#include "common/status/status.h"

namespace segue {

struct JoinScore {
  int left = 0;       // segment index; the join is between left and left + 1
  int64_t start = 0;  // overlap [start, end)
  int64_t end = 0;
  double peak = 0;   // largest frame-to-frame change across the overlap
  double ratio = 0;  // peak / baseline
};

struct SeamReport {
  int64_t frames = 0;
  double baseline = 0;  // median frame-to-frame change away from overlaps
  std::vector<JoinScore> joins;
  double worst = 0;
  std::vector<double> changes;  // change(f) for every frame (changes[0] = 0)
};

// `changes[f]` is change(f) (changes[0] unused).
SeamReport ScoreSeams(const std::vector<SegmentSpan>& segments, const std::vector<double>& changes);

// Decodes `video` and scores it against `segments`.
Result<SeamReport> MeasureSeams(const std::string& video, const std::vector<SegmentSpan>& segments);

}  // namespace segue
