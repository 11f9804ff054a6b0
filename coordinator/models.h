// The models the farm knows, by name, with the metadata their jobs are planned from
// (common/model/metadata.h): the built-ins from the start, the others as workers report them in
// Hello. One copy per name: a worker whose metadata for a name differs from the catalog's is
// refused, so that every job of a model is planned and rendered with the same numbers.
//
// Not thread-safe: used on the event loop.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/model/metadata.h"
#include "common/status/status.h"

namespace segue {

class ModelCatalog {
 public:
  ModelCatalog();  // the built-in models

  // Checks every model of `specs`, reported by `source` ("worker NAME"), against the catalog: an
  // error names the model, `source`, where the catalog's copy came from and the first
  // difference. Nothing is learnt unless all agree; then the new ones are.
  Status Learn(const std::vector<model::ModelMetadata>& specs, const std::string& source);
  // The metadata of `name`, or nullptr when no worker has reported it.
  const model::ModelMetadata* Find(const std::string& name) const;

 private:
  struct Entry {
    model::ModelMetadata meta;
    std::string source;  // "worker NAME", "job 7's plan", "the built-in model"
  };
  std::map<std::string, Entry> models_;
};

}  // namespace segue
