#include "coordinator/events.h"

#include <algorithm>

namespace segue {

nlohmann::json FarmEvent::ToJson() const {
  nlohmann::json j = {{"id", std::to_string(id)},
                      {"type", type},
                      {"job", std::to_string(job)},
                      {"state", state},
                      {"ms", ms}};
  if (index >= 0) j["index"] = index;
  if (!detail.empty()) j["detail"] = detail;
  return j;
}

std::string FarmEvent::Sse() const {
  return "id: " + std::to_string(id) + "\nevent: " + type +
         "\ndata: " + ToJson().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n\n";
}

EventLog::EventLog(uint64_t first_id, size_t capacity)
    : first_id_(first_id), capacity_(std::max<size_t>(capacity, 1)), next_id_(first_id + 1) {}

std::vector<FarmEvent> EventLog::TakeStaged() {
  std::vector<FarmEvent> out;
  out.swap(staged_);
  return out;
}

void EventLog::Publish(std::vector<FarmEvent>& events) {
  for (FarmEvent& e : events) {
    e.id = next_id_++;
    kept_.push_back(e);
  }
  while (kept_.size() > capacity_) kept_.pop_front();
}

bool EventLog::Since(uint64_t after, uint64_t job, std::vector<const FarmEvent*>* out) const {
  // Complete when `after` is this run's and the event right after it is still kept.
  const uint64_t oldest = kept_.empty() ? next_id_ : kept_.front().id;
  const bool complete = after >= first_id_ && after + 1 >= oldest;
  // Ids are consecutive within a run: the first wanted event is found by arithmetic.
  const uint64_t from = std::max(after + 1, oldest);
  for (size_t i = from - oldest; i < kept_.size(); ++i)
    if (job == 0 || kept_[i].job == job) out->push_back(&kept_[i]);
  return complete;
}

}  // namespace segue
