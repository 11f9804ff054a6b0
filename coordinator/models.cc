#include "coordinator/models.h"

namespace segue {

ModelCatalog::ModelCatalog() {
  for (const model::ModelMetadata& m : model::BuiltinMetadataList())
    models_[m.name] = Entry{m, "the built-in model"};
}

Status ModelCatalog::Learn(const std::vector<model::ModelMetadata>& specs,
                           const std::string& source) {
  for (const model::ModelMetadata& m : specs) {
    auto it = models_.find(m.name);
    if (it == models_.end()) continue;
    const std::string diff = model::MetadataDifference(m, it->second.meta);
    if (diff.empty()) {
      // Known now: the model of a job stored before identities were learns its weights'.
      if (it->second.meta.identity.empty()) it->second.meta.identity = m.identity;
      continue;
    }
    return Status::Error("model '" + m.name + "' of " + source + " differs from that of " +
                         it->second.source + ": " + diff +
                         " (every worker must serve a model name with the same metadata)");
  }
  for (const model::ModelMetadata& m : specs) models_.emplace(m.name, Entry{m, source});
  return Status::Ok();
}

const model::ModelMetadata* ModelCatalog::Find(const std::string& name) const {
  auto it = models_.find(name);
  return it == models_.end() ? nullptr : &it->second.meta;
}

}  // namespace segue
