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
};

const char* ActionName(Action action);
bool RoleAllows(Role role, Action action);

struct Identity {
  std::string name;
  Role role = Role::kViewer;
  std::string public_key;                 // Z85, 40 characters; empty for the local identity
  std::vector<std::string> worker_names;  // shell patterns (fnmatch) its workers may use

  // Whether a worker of this identity may call itself `worker_name`.
  bool MayNameWorker(const std::string& worker_name) const;
};

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

  // Adds `id`; false if its key or name is already there.
  bool Add(Identity id);
  // The identity of a Z85 public key, or nullptr.
  const Identity* Find(const std::string& public_key) const;
  size_t size() const { return by_key_.size(); }
  const std::map<std::string, Identity>& all() const { return by_key_; }

 private:
  std::map<std::string, Identity> by_key_;  // by Z85 public key
};

}  // namespace segue
