#include "coordinator/workers.h"

#include <algorithm>

namespace segue {

Worker& WorkerRegistry::Join(const std::string& identity, const WorkerHello& hello,
                             uint64_t now_ms) {
  auto existing = by_name_.find(hello.name);
  if (existing != by_name_.end()) name_of_identity_.erase(existing->second.identity);
  Worker& w = by_name_[hello.name];
  w.identity = identity;
  w.name = hello.name;
  w.host = hello.host;
  w.device = hello.device;
  w.models = hello.models;
  w.unavailable.clear();
  MarkUnavailable(w, hello.unavailable);
  w.tags = hello.tags;
  w.memory = hello.memory;
  w.pool = hello.pool;
  w.key = hello.key;
  w.principal = hello.principal;
  w.credits = 0;
  w.task.reset();
  w.last_seen_ms = now_ms;
  name_of_identity_[identity] = hello.name;
  return w;
}

std::vector<std::string> WorkerRegistry::MarkUnavailable(
    Worker& w, const std::map<std::string, std::string>& models) {
  std::vector<std::string> added;
  for (const auto& [model, why] : models) {
    w.models.erase(model);
    if (w.unavailable.emplace(model, why).second) added.push_back(model);
  }
  return added;
}

Worker* WorkerRegistry::Heard(const std::string& identity, uint64_t now_ms) {
  auto it = name_of_identity_.find(identity);
  if (it == name_of_identity_.end()) return nullptr;
  auto w = by_name_.find(it->second);
  if (w == by_name_.end()) return nullptr;
  w->second.last_seen_ms = now_ms;
  return &w->second;
}

const Worker* WorkerRegistry::ByIdentity(const std::string& identity) const {
  auto it = name_of_identity_.find(identity);
  if (it == name_of_identity_.end()) return nullptr;
  auto w = by_name_.find(it->second);
  return w == by_name_.end() ? nullptr : &w->second;
}

Worker* WorkerRegistry::ByName(const std::string& name) {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &it->second;
}

void WorkerRegistry::Remove(const std::string& name) {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return;
  name_of_identity_.erase(it->second.identity);
  by_name_.erase(it);
}

std::vector<std::string> WorkerRegistry::Lost(uint64_t now_ms, uint64_t liveness_ms) const {
  std::vector<std::string> lost;
  for (const auto& [name, w] : by_name_) {
    if (now_ms - w.last_seen_ms > liveness_ms) lost.push_back(name);
  }
  return lost;
}

void WorkerRegistry::Free(Worker& w, uint64_t now_us) {
  w.task.reset();
  if (w.credits > 0 && w.waiting_since_us == 0) w.waiting_since_us = now_us;
}

void WorkerRegistry::Ask(Worker& w, uint32_t credits, uint64_t now_us) {
  w.credits = std::min<uint32_t>(credits, 4);
  if (w.credits > 0 && !w.task && w.waiting_since_us == 0) w.waiting_since_us = now_us;
}

}  // namespace segue
