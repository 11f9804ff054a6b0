// The JSON API on the HTTP port (docs/API.md, docs/PROTOCOL.md "HTTP", docs/openapi.json): reads
// answered from the loop's state, and writes that are the farm port's requests by another road.
//
// A write (submit, cancel, retry, priority, drain, scale, autoscale) is turned into the Envelope
// a ZeroMQ client would send (WriteRequest), handed to the same HandleMessage with the identity
// its bearer token names, and its reply Envelope turned back into JSON (WriteReply) once the
// writes it made are durable: one implementation, one set of checks, one authorisation.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include <nlohmann/json.hpp>

#include "coordinator/handlers.h"
#include "coordinator/http.h"

namespace segue {

// A job id from a path or query part (a positive 64-bit number), or 0.
uint64_t IdOf(const std::string& s);

// The request a REST write stands for: the Envelope's bytes, or the answer when the request is
// wrong (its body, a field). nullopt: the path is not a write's (it may be a read's).
std::optional<std::variant<std::string, HttpResponse>> WriteRequest(const HttpRequest& request);
// Whether `path` is a write's (POST only).
bool IsWritePath(const std::string& path);

// The answer to a write from its reply Envelope: a job as GET /api/v1/jobs/ID shows it (201 and
// a Location for a new one), workers, pools, or a JSON error with the HTTP status of its code.
HttpResponse WriteReply(const void* payload, size_t size, const JobTable& jobs, uint64_t now_ms);

// A GET of the read side (jobs, a job, its logs, workers, pools, health, version, the OpenAPI
// document, the job schema); nullopt when `t.path` is not one.
std::optional<HttpResponse> ReadRequest(const HttpTarget& t, HandlerContext& c, uint64_t now_ms);

}  // namespace segue
