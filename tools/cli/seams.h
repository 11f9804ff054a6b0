// Seam report: how visible are the joins between segments in a rendered video?
//
// For every frame f >= 1, change(f) is the mean absolute RGB difference between frames f-1 and
// f. A join is the overlap [next.start, prev.end) of two neighbouring segments; its score is the
// largest change across its frames (from entering the overlap to leaving it) divided by the
// median change of the frames that touch no overlap. A hard cut scores high; a join nobody can
// see scores about 1.
//
// That whole-video median is low where the picture is calm and a prompt transition is not, so a
// join inside a transition scores above 1 although nothing is wrong with it. Each join therefore
// also gets a local score: its peak against the median change of the frames touching no overlap
// within one segment length before the overlap, or after it, whichever is busier (the whole-video
// median when there are none). A transition that starts or ends at a join then scores about 1
// there, while a join that is busier than both its sides (a cut, a crossfade between different
// pictures) still stands out.
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
  double peak = 0;            // largest frame-to-frame change across the overlap
  double ratio = 0;           // peak / baseline
  double local_baseline = 0;  // median change away from overlaps on the join's busier side
  double local_ratio = 0;     // peak / local_baseline
};

struct SeamReport {
  int64_t frames = 0;
  double baseline = 0;  // median frame-to-frame change away from overlaps
  std::vector<JoinScore> joins;
  double worst = 0;
  double worst_local = 0;
  std::vector<double> changes;  // change(f) for every frame (changes[0] = 0)
};

// `changes[f]` is change(f) (changes[0] unused).
SeamReport ScoreSeams(const std::vector<SegmentSpan>& segments, const std::vector<double>& changes);

// Decodes `video` and scores it against `segments`.
Result<SeamReport> MeasureSeams(const std::string& video, const std::vector<SegmentSpan>& segments);

}  // namespace segue
