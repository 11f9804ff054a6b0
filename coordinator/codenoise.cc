#include "coordinator/codenoise.h"

#include <algorithm>

namespace segue {

StepExchange::StepExchange(std::vector<SegmentSpan> segments, BlendMode mode, int groups,
                           uint32_t first_step)
    : segments_(std::move(segments)), mode_(mode), groups_(groups), step_(first_step) {}

Status StepExchange::Add(int group, std::vector<FrameValues> values) {
  if (group < 0 || group >= groups_) return Status::Error("no group " + std::to_string(group));
  if (posted_.count(group))
    return Status::Error("group " + std::to_string(group) + " sent step " + std::to_string(step_) +
                         " twice");
  for (const auto& v : values) {
    if (v.segment >= segments_.size() || v.frame < segments_[v.segment].start ||
        v.frame >= segments_[v.segment].end) {
      return Status::Error("segment " + std::to_string(v.segment) + " does not cover frame " +
                           std::to_string(v.frame));
    }
    if (v.data.size() != values.front().data.size() || v.data.empty())
      return Status::Error("frame values differ in size");
  }
  posted_.emplace(group, std::move(values));
  return Status::Ok();
}

Result<std::vector<std::vector<FrameConsensus>>> StepExchange::Merge() {
  using R = Result<std::vector<std::vector<FrameConsensus>>>;
  // frame -> segment -> values
  std::map<int64_t, std::map<uint32_t, const std::vector<float>*>> by_frame;
  size_t n = 0;
  for (const auto& [g, values] : posted_) {
    for (const auto& v : values) {
      by_frame[v.frame][v.segment] = &v.data;
      if (n == 0) n = v.data.size();
      if (v.data.size() != n) return R::Error("frame values differ in size between groups");
    }
  }
  std::map<int64_t, std::shared_ptr<const std::vector<float>>> consensus;
  for (const auto& [f, segs] : by_frame) {
    for (int k : SegmentsCovering(segments_, f, f + 1)) {
      if (!segs.count(static_cast<uint32_t>(k))) {
        return R::Error("frame " + std::to_string(f) + " of segment " + std::to_string(k) +
                        " was not sent");
      }
    }
    auto out = std::make_shared<std::vector<float>>(n);
    const auto& sent = segs;  // a structured binding cannot be captured before C++20's clang 16
    BlendFrame(
        segments_, f, mode_, [&](int k) { return sent.at(static_cast<uint32_t>(k))->data(); },
        static_cast<int64_t>(n), out->data());
    consensus.emplace(f, std::move(out));
  }
  std::vector<std::vector<FrameConsensus>> replies(static_cast<size_t>(groups_));
  for (const auto& [g, values] : posted_) {
    std::vector<int64_t> frames;
    for (const auto& v : values) {
      if (std::find(frames.begin(), frames.end(), v.frame) == frames.end())
        frames.push_back(v.frame);
    }
    for (int64_t f : frames) replies[static_cast<size_t>(g)].push_back({f, consensus.at(f)});
  }
  posted_.clear();
  ++step_;
  return replies;
}

std::vector<std::pair<uint32_t, uint32_t>> SplitIntoGroups(uint32_t count, uint32_t groups) {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  groups = std::max<uint32_t>(1, std::min(groups, count));
  uint32_t start = 0;
  for (uint32_t g = 0; g < groups; ++g) {
    uint32_t size = count / groups + (g < count % groups ? 1 : 0);
    out.emplace_back(start, start + size);
    start += size;
  }
  return out;
}

int Gang::GroupOf(const std::string& worker) const {
  for (size_t g = 0; g < groups.size(); ++g) {
    if (groups[g].worker == worker) return static_cast<int>(g);
  }
  return -1;
}

}  // namespace segue
