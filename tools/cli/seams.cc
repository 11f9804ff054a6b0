#include "tools/cli/seams.h"

#include <algorithm>
#include <cstdlib>

#include "common/media/video.h"

namespace segue {
namespace {

// The median of `v` (the upper one of an even count); -1 when empty.
double Median(std::vector<double> v) {
  if (v.empty()) return -1.0;
  std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

}  // namespace

SeamReport ScoreSeams(const std::vector<SegmentSpan>& segments,
                      const std::vector<double>& changes) {
  SeamReport r;
  r.frames = static_cast<int64_t>(changes.size());
  r.changes = changes;
  const int64_t n = r.frames;
  std::vector<bool> in_overlap(static_cast<size_t>(n), false);
  for (size_t k = 0; k + 1 < segments.size(); ++k) {
    for (int64_t f = segments[k + 1].start; f < std::min(segments[k].end, n); ++f)
      in_overlap[static_cast<size_t>(f)] = true;
  }
  // Median change over frames in [from, to) that touch no overlap; -1 when there are none.
  auto median_away = [&](int64_t from, int64_t to) {
    std::vector<double> away;
    for (int64_t f = std::max<int64_t>(1, from); f < std::min(to, n); ++f) {
      if (!in_overlap[static_cast<size_t>(f)] && !in_overlap[static_cast<size_t>(f - 1)])
        away.push_back(changes[static_cast<size_t>(f)]);
    }
    return Median(std::move(away));
  };
  r.baseline = median_away(1, n);
  if (r.baseline < 0) {  // every frame touches an overlap: all of them
    r.baseline = std::max(
        0.0, Median(std::vector<double>(changes.begin() + std::min<int64_t>(1, n), changes.end())));
  }
  for (size_t k = 0; k + 1 < segments.size(); ++k) {
    JoinScore j;
    j.left = static_cast<int>(k);
    j.start = segments[k + 1].start;
    j.end = std::min(segments[k].end, n);
    // From the change into the overlap's first frame to the change out of its last.
    for (int64_t f = std::max<int64_t>(1, j.start); f <= std::min(j.end, n - 1); ++f) {
      j.peak = std::max(j.peak, changes[static_cast<size_t>(f)]);
    }
    j.ratio = r.baseline > 0 ? j.peak / r.baseline : 0;
    r.worst = std::max(r.worst, j.ratio);
    // The busier side: a transition that starts or ends at the overlap is busy on that side.
    const int64_t reach = segments[k].end - segments[k].start;
    j.local_baseline =
        std::max(median_away(j.start - reach, j.start), median_away(j.end + 1, j.end + 1 + reach));
    if (j.local_baseline < 0) j.local_baseline = r.baseline;
    j.local_ratio = j.local_baseline > 0 ? j.peak / j.local_baseline : 0;
    r.worst_local = std::max(r.worst_local, j.local_ratio);
    r.joins.push_back(j);
  }
  return r;
}

Result<SeamReport> MeasureSeams(const std::string& video,
                                const std::vector<SegmentSpan>& segments) {
  std::vector<double> changes;
  std::vector<uint8_t> prev;
  Status s = ReadVideoFrames(video, [&](int64_t, const uint8_t* rgb, int w, int h) {
    const size_t n = static_cast<size_t>(w) * h * 3;
    double d = 0;
    if (prev.size() == n) {
      int64_t sum = 0;
      for (size_t i = 0; i < n; ++i)
        sum += std::abs(static_cast<int>(rgb[i]) - static_cast<int>(prev[i]));
      d = static_cast<double>(sum) / static_cast<double>(n);
    }
    changes.push_back(d);
    prev.assign(rgb, rgb + n);
  });
  if (!s.ok()) return s;
  if (!segments.empty() && segments.back().end != static_cast<int64_t>(changes.size())) {
    return Result<SeamReport>::Error("the video has " + std::to_string(changes.size()) +
                                     " frames but the plan has " +
                                     std::to_string(segments.back().end));
  }
  return ScoreSeams(segments, changes);
}

}  // namespace segue
