#include "common/security/keyring.h"

#include <sodium.h>

#include <fnmatch.h>
#include <yaml-cpp/yaml.h>
#include <zmq.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/security/curve.h"
#include "common/util/digest.h"
#include "common/util/yaml_error.h"

namespace segue {
namespace {

constexpr size_t kMaxFileBytes = 4 << 20;
constexpr size_t kMaxIdentities = 100000;
constexpr size_t kMaxPatterns = 64;

[[noreturn]] void Fail(const std::string& file, const YAML::Node& n, const std::string& field,
                       const std::string& what) {
  FailAt(file, n, field, what);
}

bool ValidName(const std::string& s) {
  return !s.empty() && s.size() <= 100 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_' || c == '@';
  });
}

bool ValidZ85PublicKey(const std::string& key) {
  uint8_t raw[32];
  return key.size() == 40 && zmq_z85_decode(raw, key.c_str()) != nullptr;
}

std::string Scalar(const std::string& file, const YAML::Node& n, const std::string& field) {
  if (!n.IsScalar()) Fail(file, n, field, "expected a value");
  return n.Scalar();
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kViewer:
      return "viewer";
    case Role::kSubmitter:
      return "submitter";
    case Role::kWorker:
      return "worker";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

std::optional<Role> ParseRole(std::string_view text) {
  for (Role r : {Role::kViewer, Role::kSubmitter, Role::kWorker, Role::kAdmin})
    if (text == RoleName(r)) return r;
  return std::nullopt;
}

const char* ActionName(Action action) {
  switch (action) {
    case Action::kRead:
      return "read the farm's state";
    case Action::kSubmit:
      return "submit jobs";
    case Action::kActOnOwnJob:
      return "act on its own jobs";
    case Action::kActOnAnyJob:
      return "act on other owners' jobs";
    case Action::kAdminFarm:
      return "drain workers or change pools";
    case Action::kWork:
      return "act as a worker";
    case Action::kSendLarge:
      return "send messages larger than one frame (only results and submissions are)";
  }
  return "?";
}

bool RoleAllows(Role role, Action action) {
  switch (role) {
    case Role::kAdmin:
      return true;
    case Role::kWorker:
      return action == Action::kWork || action == Action::kSendLarge;
    case Role::kSubmitter:
      return action == Action::kRead || action == Action::kSubmit ||
             action == Action::kActOnOwnJob || action == Action::kSendLarge;
    case Role::kViewer:
      return action == Action::kRead;
  }
  return false;
}

bool Identity::MayNameWorker(const std::string& worker_name) const {
  return std::any_of(worker_names.begin(), worker_names.end(), [&](const std::string& p) {
    return fnmatch(p.c_str(), worker_name.c_str(), 0) == 0;
  });
}

Identity LocalIdentity() { return Identity{"local", Role::kAdmin, "", {"*"}}; }

std::string TokenDigest(std::string_view token) {
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(token.data()), token.size());
  return HexOf(digest, sizeof digest);
}

std::string NewToken() {
  if (sodium_init() < 0) std::abort();  // no source of randomness: nothing safe to hand out
  unsigned char bytes[32];
  randombytes_buf(bytes, sizeof bytes);
  char text[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(text, sizeof text, bytes, sizeof bytes,
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  return text;
}

bool KeyRing::Add(Identity id) {
  if (id.public_key.empty() && id.token_sha256.empty()) return false;
  if (by_name_.count(id.name) || name_by_key_.count(id.public_key) ||
      name_by_token_.count(id.token_sha256))
    return false;
  if (!id.public_key.empty()) name_by_key_[id.public_key] = id.name;
  if (!id.token_sha256.empty()) name_by_token_[id.token_sha256] = id.name;
  const std::string name = id.name;
  by_name_.emplace(name, std::move(id));
  return true;
}

const Identity* KeyRing::Find(const std::string& public_key) const {
  auto it = name_by_key_.find(public_key);
  return it == name_by_key_.end() ? nullptr : &by_name_.at(it->second);
}

const Identity* KeyRing::FindToken(std::string_view token) const {
  if (token.empty()) return nullptr;
  auto it = name_by_token_.find(TokenDigest(token));
  return it == name_by_token_.end() ? nullptr : &by_name_.at(it->second);
}

Result<KeyRing> KeyRing::Load(const std::string& path) {
  using R = Result<KeyRing>;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return R::Error(path + ": not a readable file");
  if (std::filesystem::file_size(path, ec) > kMaxFileBytes)
    return R::Error(path + ": larger than the 4 MiB limit");
  std::ifstream in(path, std::ios::binary);
  if (!in) return R::Error(path + ": cannot read it");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  return Parse(text, path);
}

Result<KeyRing> KeyRing::Parse(std::string_view text, const std::string& path) {
  using R = Result<KeyRing>;
  if (text.size() > kMaxFileBytes) return R::Error(path + ": larger than the 4 MiB limit");
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return R::Error(YamlExceptionText(path, e));
  }
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  KeyRing ring;
  std::set<std::string> names;
  try {
    if (!root.IsMap()) Fail(path, root, "(top)", "expected a map with an `identities:` list");
    for (const auto& kv : root) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
      if (key != "identities") Fail(path, kv.first, key, "unknown field (known: identities)");
    }
    const YAML::Node list = root["identities"];
    if (!list.IsSequence()) Fail(path, list, "identities", "expected a list of identities");
    if (list.size() > kMaxIdentities)
      Fail(path, list, "identities", "more than " + std::to_string(kMaxIdentities));
    for (size_t i = 0; i < list.size(); ++i) {
      const YAML::Node e = list[i];
      const std::string at = "identities[" + std::to_string(i) + "]";
      if (!e.IsMap())
        Fail(path, e, at, "expected a map (name, role, key or key_file, token_sha256)");
      for (const auto& kv : e) {
        const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
        static const std::set<std::string> known = {"name",     "role",    "key",
                                                    "key_file", "workers", "token_sha256"};
        if (!known.count(key))
          Fail(path, kv.first, at + "." + key,
               "unknown field (known: name, role, key, key_file, token_sha256, workers)");
      }
      Identity id;
      if (!e["name"]) Fail(path, e, at + ".name", "missing");
      id.name = Scalar(path, e["name"], at + ".name");
      if (!ValidName(id.name))
        Fail(path, e["name"], at + ".name",
             "use letters, digits, '.', '-', '_' and '@' (at most 100), got '" +
                 id.name.substr(0, 100) + "'");
      if (!e["role"]) Fail(path, e, at + ".role", "missing (admin, submitter, worker or viewer)");
      const std::string role = Scalar(path, e["role"], at + ".role");
      auto parsed = ParseRole(role);
      if (!parsed)
        Fail(path, e["role"], at + ".role",
             "'" + role.substr(0, 100) + "' is not a role (admin, submitter, worker or viewer)");
      id.role = *parsed;
      if (e["key"] && e["key_file"])
        Fail(path, e["key_file"], at + ".key_file", "give key or key_file, not both");
      if (e["key"]) {
        id.public_key = Scalar(path, e["key"], at + ".key");
        if (!ValidZ85PublicKey(id.public_key))
          Fail(path, e["key"], at + ".key", "expected a public key of 40 Z85 characters");
      } else if (e["key_file"]) {
        std::filesystem::path file = Scalar(path, e["key_file"], at + ".key_file");
        if (file.is_relative()) file = dir / file;
        auto keys = LoadCurveKeys(file.string(), false);
        if (!keys.ok()) Fail(path, e["key_file"], at + ".key_file", keys.message());
        if (!keys->secret_key.empty())
          Fail(path, e["key_file"], at + ".key_file",
               "'" + file.string() + "' holds a secret key: give the public (.pub) file");
        id.public_key = keys->public_key;
        if (!ValidZ85PublicKey(id.public_key))
          Fail(path, e["key_file"], at + ".key_file", "its public key is not valid Z85");
      }
      if (e["token_sha256"]) {
        std::string digest = Scalar(path, e["token_sha256"], at + ".token_sha256");
        for (char& ch : digest)
          ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (digest.size() != 64 ||
            digest.find_first_not_of("0123456789abcdef") != std::string::npos)
          Fail(path, e["token_sha256"], at + ".token_sha256",
               "expected the token's SHA-256 as 64 hex digits (segue token makes a token and its "
               "digest)");
        id.token_sha256 = digest;
      }
      if (id.public_key.empty() && id.token_sha256.empty())
        Fail(path, e, at + ".key", "missing (give key, key_file or token_sha256)");
      if (const YAML::Node w = e["workers"]) {
        if (id.role != Role::kWorker && id.role != Role::kAdmin)
          Fail(path, w, at + ".workers", "only worker and admin identities run workers");
        if (!w.IsSequence() || w.size() == 0 || w.size() > kMaxPatterns)
          Fail(path, w, at + ".workers",
               "expected a list of 1 to " + std::to_string(kMaxPatterns) + " name patterns");
        for (const auto& p : w) {
          const std::string pattern = Scalar(path, p, at + ".workers");
          if (pattern.empty() || pattern.size() > 200)
            Fail(path, p, at + ".workers", "a pattern is 1 to 200 characters");
          id.worker_names.push_back(pattern);
        }
      } else if (id.role == Role::kWorker) {
        id.worker_names = {id.name, id.name + ".*", id.name + "-*"};
      } else if (id.role == Role::kAdmin) {
        id.worker_names = {"*"};
      }
      if (!names.insert(id.name).second)
        Fail(path, e["name"], at + ".name", "'" + id.name + "' twice");
      if (!id.public_key.empty())
        if (const Identity* other = ring.Find(id.public_key))
          Fail(path, e, at + ".key", "the same key as identity '" + other->name + "'");
      if (!id.token_sha256.empty())
        if (auto it = ring.name_by_token_.find(id.token_sha256); it != ring.name_by_token_.end())
          Fail(path, e["token_sha256"], at + ".token_sha256",
               "the same token as identity '" + it->second + "'");
      ring.Add(std::move(id));
    }
  } catch (const YamlError& e) {
    return R::Error(e.message);
  } catch (const YAML::Exception& e) {
    return R::Error(YamlExceptionText(path, e));
  }
  return ring;
}

}  // namespace segue
