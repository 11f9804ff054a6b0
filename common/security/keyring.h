// Identities and roles: who each CURVE key is, and what it may do.
//
// A keys file (`segue-coordinator --keys FILE`) names every peer the coordinator admits:
//
//   identities:
//     - name: ops                 # shown in logs, job owners and `segue workers`
//       role: admin               # admin | submitter | worker | viewer
//       key: "Z85 public key"     # or key_file: alice.pub (a zcert file, relative to this file)
//     - name: gpu-node-07
//       role: worker
//       workers: ["gpu-node-07*"] # names its workers may take (default: NAME, NAME.*, NAME-*)
//     - name: shotgrid
//       role: submitter
//       token_sha256: "64 hex digits"  # the HTTP API's bearer token, by its SHA-256 (segue token)
//
// An identity has a key, a token or both: a key for the farm port (ZeroMQ, CURVE), a token for
// the HTTP API (`Authorization: Bearer TOKEN`). The file holds only the token's digest, so it
// gives away nothing a client could use.
//
// Roles, each with everything of the roles before it but worker:
//   viewer     reads: status, jobs, workers, logs
//   submitter  submits, and cancels, retries and reprioritises its own jobs
//   admin      everything: any job, drains, pools, and joining as a worker
//   worker     joins as a worker under a name its identity allows, takes tasks, returns results;
//              nothing else (a worker's key cannot even read the job list)
//
// A KeyRing is a value: the coordinator swaps in a new one when the file changes.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status/status.h"

namespace segue {

enum class Role { kViewer, kSubmitter, kWorker, kAdmin };

const char* RoleName(Role role);
std::optional<Role> ParseRole(std::string_view text);

// What a request asks to do, as roles see it.
enum class Action {
  kRead,         // status, job list, workers, logs
  kSubmit,       // a new job
  kActOnOwnJob,  // cancel, retry or reprioritise a job the peer submitted
  kActOnAnyJob,  // the same on someone else's job
  kAdminFarm,    // drain workers, scale pools, autoscale
  kWork,         // Hello, work requests, heartbeats, results
  kSendLarge,    // a message larger than one frame, in parts (a transfer: segue.capnp)
};

const char* ActionName(Action action);
bool RoleAllows(Role role, Action action);

struct Identity {
  std::string name;
  Role role = Role::kViewer;
  std::string public_key;                 // Z85, 40 characters; empty: none (or the local one)
  std::vector<std::string> worker_names;  // shell patterns (fnmatch) its workers may use
  std::string token_sha256 = {};          // 64 lower-case hex digits; empty: none

  // Whether a worker of this identity may call itself `worker_name`.
  bool MayNameWorker(const std::string& worker_name) const;
};

// The SHA-256 of `token`, as 64 lower-case hex digits (what token_sha256 holds).
std::string TokenDigest(std::string_view token);
// A new random API token: 43 characters of URL-safe base64 (256 bits).
std::string NewToken();

// The identity of every peer when the coordinator has no keys (loopback, or --insecure): one
// admin that may name its workers anything.
Identity LocalIdentity();

class KeyRing {
 public:
  // Parses a keys file's text. `path` names it in errors (FILE:LINE:COLUMN: field: what) and
  // locates `key_file:` entries. Never throws.
  static Result<KeyRing> Parse(std::string_view text, const std::string& path);
  // Reads and parses `path` (at most 4 MiB).
  static Result<KeyRing> Load(const std::string& path);

  // Adds `id`; false if its name, key or token is already there, or it has neither.
  bool Add(Identity id);
  // The identity of a Z85 public key, or nullptr.
  const Identity* Find(const std::string& public_key) const;
  // The identity whose token is `token` (the token itself, not its digest), or nullptr.
  const Identity* FindToken(std::string_view token) const;
  size_t size() const { return by_name_.size(); }
  // Every identity, by name.
  const std::map<std::string, Identity>& all() const { return by_name_; }

 private:
  std::map<std::string, Identity> by_name_;
  std::map<std::string, std::string> name_by_key_;    // Z85 public key -> name
  std::map<std::string, std::string> name_by_token_;  // token digest -> name
};

}  // namespace segue
