#include "worker/host_entry.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace segue {
namespace {

std::string Where(const std::string& file, const YAML::Mark& m) {
  if (m.line < 0) return file;
  return file + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

}  // namespace

Result<HostEntry> ParseHostEntry(const std::string& file, const std::string& text) {
  using R = Result<HostEntry>;
  HostEntry e;
  e.file = file;
  const std::filesystem::path path(file);
  std::string name = path.filename().string();
  const std::string suffix = kHostEntrySuffix;
  if (name.size() <= suffix.size() ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return R::Error(file + ": a host entry is named NAME" + suffix);
  e.model = name.substr(0, name.size() - suffix.size());
  e.folder = path.parent_path().empty() ? "." : path.parent_path().string();
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& ex) {
    return R::Error(Where(file, ex.mark) + ": not YAML: " + ex.msg);
  }
  if (!root.IsMap()) return R::Error(file + ": expected a map with 'command'");
  auto fail = [&](const YAML::Node& n, const std::string& field, const std::string& what) {
    return R::Error(Where(file, n.Mark()) + ": " + field + ": " + what);
  };
  const std::set<std::string> known = {
      "command",    "environment", "start_timeout_seconds", "call_timeout_seconds",
      "max_starts", "devices"};
  for (const auto& kv : root) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    if (!known.count(key))
      return fail(kv.first, key,
                  "unknown field (command, environment, start_timeout_seconds, "
                  "call_timeout_seconds, max_starts, devices)");
  }
  if (const YAML::Node devices = root["devices"]) {
    if (!devices.IsSequence() || devices.size() == 0 || devices.size() > 64)
      return fail(devices, "devices", "expected a list of 1 to 64 devices (cpu, cuda, cuda:N)");
    for (size_t i = 0; i < devices.size(); ++i) {
      const std::string d = devices[i].IsScalar() ? devices[i].Scalar() : "";
      bool ok = d == "cpu" || d == "cuda";
      if (d.rfind("cuda:", 0) == 0 && d.size() > 5 && d.size() <= 8)
        ok = d.find_first_not_of("0123456789", 5) == std::string::npos;
      if (!ok)
        return fail(devices[i], "devices[" + std::to_string(i) + "]",
                    "'" + d + "' is not a device (cpu, cuda, cuda:N)");
      e.devices.push_back(d);
    }
  }
  const YAML::Node command = root["command"];
  if (!command) return R::Error(file + ": command: missing (the host's argv, a list)");
  if (!command.IsSequence() || command.size() == 0 || command.size() > 256)
    return fail(command, "command", "expected a list of 1 to 256 strings");
  for (size_t i = 0; i < command.size(); ++i) {
    if (!command[i].IsScalar() || command[i].Scalar().empty() ||
        command[i].Scalar().find('\0') != std::string::npos)
      return fail(command[i], "command[" + std::to_string(i) + "]", "expected a non-empty string");
    e.command.push_back(command[i].Scalar());
  }
  if (const YAML::Node env = root["environment"]) {
    if (!env.IsMap()) return fail(env, "environment", "expected a map of NAME: value");
    for (const auto& kv : env) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
      const bool ok_key =
          !key.empty() && key.find('=') == std::string::npos && key.find('\0') == std::string::npos;
      if (!ok_key) return fail(kv.first, "environment", "bad variable name '" + key + "'");
      if (!kv.second.IsScalar()) return fail(kv.second, "environment." + key, "expected a string");
      e.environment.emplace_back(key, kv.second.Scalar());
    }
  }
  auto number = [&](const char* key, int lo, int hi, int scale, int* out) -> Status {
    const YAML::Node n = root[key];
    if (!n) return Status::Ok();
    long long v = 0;
    bool ok = n.IsScalar();
    if (ok) {
      std::istringstream in(n.Scalar());
      ok = static_cast<bool>(in >> v) && in.eof();
    }
    if (!ok || v < lo || v > hi) {
      return Status::Error(Where(file, n.Mark()) + ": " + key + ": expected a whole number from " +
                           std::to_string(lo) + " to " + std::to_string(hi));
    }
    *out = static_cast<int>(v) * scale;
    return Status::Ok();
  };
  for (Status s : {number("start_timeout_seconds", 1, 3600, 1000, &e.start_timeout_ms),
                   number("call_timeout_seconds", 1, 86400 / 4, 1000, &e.call_timeout_ms),
                   number("max_starts", 1, 100, 1, &e.max_starts)}) {
    if (!s.ok()) return s;
  }
  return e;
}

bool HostEntryServes(const HostEntry& entry, const std::string& device) {
  if (entry.devices.empty()) return true;
  const std::string kind = device.substr(0, device.find(':'));
  return std::find(entry.devices.begin(), entry.devices.end(), device) != entry.devices.end() ||
         std::find(entry.devices.begin(), entry.devices.end(), kind) != entry.devices.end();
}

Result<HostEntry> LoadHostEntry(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return Result<HostEntry>::Error(file + ": cannot read");
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > (1 << 20)) return Result<HostEntry>::Error(file + ": above 1 MiB");
  return ParseHostEntry(file, text.str());
}

std::vector<std::string> HostEntryNames(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (dir.empty() || !std::filesystem::is_directory(dir, ec)) return out;
  const std::string suffix = kHostEntrySuffix;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(name.substr(0, name.size() - suffix.size()));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace segue
