#include "coordinator/models.h"

namespace segue {

ModelCatalog::ModelCatalog() {
  for (const model::ModelMetadata& m : model::BuiltinMetadataList())
    models_[m.name] = Entry{m, "built-in"};
}

Status ModelCatalog::Learn(const std::vector<model::ModelMetadata>& specs,
                           const std::string& worker) {
  for (const model::ModelMetadata& m : specs) {
    auto it = models_.find(m.name);
    if (it == models_.end()) continue;
    const std::string diff = model::MetadataDifference(m, it->second.meta);
    if (diff.empty()) continue;
    const std::string first = it->second.reported_by == "built-in"
                                  ? "the built-in model's"
                                  : "worker " + it->second.reported_by + "'s";
    return Status::Error("model '" + m.name + "' of worker " + worker + " differs from " + first +
                         ": " + diff +
                         " (every worker must serve a model name with the same "
                         "metadata)");
  }
  for (const model::ModelMetadata& m : specs) models_.emplace(m.name, Entry{m, worker});
  return Status::Ok();
}

const model::ModelMetadata* ModelCatalog::Find(const std::string& name) const {
  auto it = models_.find(name);
  return it == models_.end() ? nullptr : &it->second.meta;
}

}  // namespace segue
