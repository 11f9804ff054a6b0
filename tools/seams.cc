#include "tools/seams.h"

#include <algorithm>
#include <cstdlib>

#include "common/media/video.h"

namespace segue {

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
  std::vector<double> away;
  for (int64_t f = 1; f < n; ++f) {
    if (!in_overlap[static_cast<size_t>(f)] && !in_overlap[static_cast<size_t>(f - 1)])
      away.push_back(changes[static_cast<size_t>(f)]);
  }
  if (away.empty()) {
    for (int64_t f = 1; f < n; ++f) away.push_back(changes[static_cast<size_t>(f)]);
  }
  if (!away.empty()) {
    std::nth_element(away.begin(), away.begin() + static_cast<long>(away.size() / 2), away.end());
    r.baseline = away[away.size() / 2];
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
