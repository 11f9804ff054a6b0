// The HTTP API's documents, served as they are in the repository: docs/openapi.json at
// /api/v1/openapi.json and docs/schema/job.schema.json (which it refers to) at
// /api/v1/schema/job.schema.json. Built into the binary from those files (api_docs.cc.in).
#pragma once

namespace segue {

const char* OpenApiJson();
const char* JobSchemaJson();

}  // namespace segue
