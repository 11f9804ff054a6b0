#include "coordinator/pools.h"

#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <signal.h>
#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>

#include "common/util/process.h"
#include "common/util/yaml_error.h"

namespace segue {
namespace {

// ---- providers -------------------------------------------------------------------------------

class Provider {
 public:
  virtual ~Provider() = default;
  // Per-worker providers launch and cancel single workers; the others set a replica count.
  virtual bool per_worker() const { return true; }
  virtual Status Launch(const PoolConfig& pool, const std::string& name) = 0;
  // Gives up on a worker that has not joined.
  virtual void Cancel(const std::string& name) = 0;
  // Whether a launched worker still runs or may still join.
  virtual bool Alive(const std::string& name, uint64_t now_ms) = 0;
  // Once a tick: let go of what ended (local: reap exited children, joined ones included).
  virtual void Reap() {}
  virtual Status SetReplicas(const PoolConfig&, int) { return Status::Ok(); }
};

class LocalProvider final : public Provider {
 public:
  explicit LocalProvider(const PoolEnvironment& env) : env_(env) {}

  Status Launch(const PoolConfig& pool, const std::string& name) override {
    std::vector<std::string> argv = {
        env_.worker_binary, "--coordinator", env_.endpoint, "--name", name, "--pool", pool.name};
    if (!env_.curve_key_file.empty()) {
      argv.insert(argv.end(),
                  {"--curve-server-key", env_.curve_key_file, "--curve-key", env_.curve_key_file});
    }
    argv.insert(argv.end(), pool.worker_args.begin(), pool.worker_args.end());
    auto child = ChildProcess::Spawn(argv, env_.log_dir + "/" + name + ".log");
    if (!child.ok()) return child.status();
    children_.emplace(name, std::move(*child));
    return Status::Ok();
  }

  void Cancel(const std::string& name) override {
    auto it = children_.find(name);
    if (it != children_.end()) it->second.Signal(SIGTERM);
  }

  bool Alive(const std::string& name, uint64_t) override {
    auto it = children_.find(name);
    return it != children_.end() && it->second.Running();
  }

  void Reap() override {
    for (auto it = children_.begin(); it != children_.end();)
      it = it->second.Running() ? std::next(it) : children_.erase(it);  // Running() reaps
  }

 private:
  const PoolEnvironment& env_;
  std::map<std::string, ChildProcess> children_;
};

class SlurmProvider final : public Provider {
 public:
  explicit SlurmProvider(const PoolEnvironment& env) : env_(env) {}

  Status Launch(const PoolConfig& pool, const std::string& name) override {
    std::string args;
    for (const auto& a : pool.worker_args) args += (args.empty() ? "" : " ") + a;
    std::vector<std::string> argv = {"sbatch", "--parsable", "--job-name=segue-" + name,
                                     "--output=" + env_.log_dir + "/" + name + "-%j.log",
                                     "--export=ALL,SEGUE_COORDINATOR=" + env_.endpoint +
                                         ",SEGUE_WORKER_NAME=" + name + ",SEGUE_POOL=" + pool.name +
                                         ",SEGUE_WORKER_BINARY=" + env_.worker_binary +
                                         ",SEGUE_WORKER_ARGS=" + args};
    argv.insert(argv.end(), pool.sbatch_args.begin(), pool.sbatch_args.end());
    argv.push_back(pool.slurm_script);
    auto out = env_.run(argv);
    if (!out.ok()) return out.status();
    std::string id = out->substr(0, out->find_first_of(";\n"));
    if (id.empty()) return Status::Error("sbatch printed no job id");
    jobs_[name] = {id, 0};
    return Status::Ok();
  }

  void Cancel(const std::string& name) override {
    auto it = jobs_.find(name);
    if (it == jobs_.end()) return;
    auto r = env_.run({"scancel", it->second.id});
    if (!r.ok()) spdlog::warn("pool: scancel {} failed: {}", it->second.id, r.message());
    jobs_.erase(it);
  }

  // A batch job that is neither pending nor running (failed, cancelled by someone) is gone.
  // squeue is asked at most every 10 s per job.
  bool Alive(const std::string& name, uint64_t now_ms) override {
    auto it = jobs_.find(name);
    if (it == jobs_.end()) return false;
    if (now_ms - it->second.checked_ms < 10000) return true;
    it->second.checked_ms = now_ms;
    auto r = env_.run({"squeue", "--noheader", "--jobs=" + it->second.id, "--format=%T"});
    const bool alive = r.ok() && (r->find("PENDING") != std::string::npos ||
                                  r->find("RUNNING") != std::string::npos ||
                                  r->find("CONFIGURING") != std::string::npos);
    if (!alive) jobs_.erase(it);
    return alive;
  }

 private:
  struct Job {
    std::string id;
    uint64_t checked_ms = 0;
  };
  const PoolEnvironment& env_;
  std::map<std::string, Job> jobs_;
};

class KubernetesProvider final : public Provider {
 public:
  explicit KubernetesProvider(const PoolEnvironment& env) : env_(env) {}
  bool per_worker() const override { return false; }
  Status Launch(const PoolConfig&, const std::string&) override {
    return Status::Error("kubernetes pools scale their Deployment");
  }
  void Cancel(const std::string&) override {}
  bool Alive(const std::string&, uint64_t) override { return false; }
  Status SetReplicas(const PoolConfig& pool, int n) override {
    auto r = env_.run({"kubectl", "scale", "deployment/" + pool.deployment,
                       "--replicas=" + std::to_string(n), "--namespace=" + pool.k8s_namespace});
    return r.ok() ? Status::Ok() : r.status();
  }

 private:
  const PoolEnvironment& env_;
};

std::unique_ptr<Provider> MakeProvider(const std::string& kind, const PoolEnvironment& env) {
  if (kind == "slurm") return std::make_unique<SlurmProvider>(env);
  if (kind == "kubernetes") return std::make_unique<KubernetesProvider>(env);
  return std::make_unique<LocalProvider>(env);
}

// ---- config ------------------------------------------------------------------------------------

[[noreturn]] void Fail(const std::string& file, const YAML::Node& n, const std::string& field,
                       const std::string& what) {
  FailAt(file, n, field, what);
}

bool ValidPoolName(const std::string& s) {
  return !s.empty() && s.size() <= 40 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

}  // namespace

std::vector<PoolConfig> DefaultPools() {
  PoolConfig local;
  local.name = "local";
  return {local};
}

Result<std::vector<PoolConfig>> LoadPoolsConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Result<std::vector<PoolConfig>>::Error(path + ": cannot read the file");
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > (4 << 20))
    return Result<std::vector<PoolConfig>>::Error(path + ": larger than the 4 MiB limit");
  return ParsePoolsConfig(text.str(), path);
}

Result<std::vector<PoolConfig>> ParsePoolsConfig(const std::string& text, const std::string& path) {
  using R = Result<std::vector<PoolConfig>>;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return R::Error(YamlExceptionText(path, e));
  }
  std::vector<PoolConfig> pools;
  try {
    if (!root.IsMap()) Fail(path, root, "(top)", "expected a map with a `pools:` list");
    for (const auto& kv : root) {
      const std::string key = kv.first.as<std::string>();
      if (key != "pools") Fail(path, kv.first, key, "unknown field (known: pools)");
    }
    const YAML::Node list = root["pools"];
    if (list && !list.IsSequence()) Fail(path, list, "pools", "expected a list of pools");
    for (size_t i = 0; list && i < list.size(); ++i) {
      const YAML::Node p = list[i];
      const std::string at = "pools[" + std::to_string(i) + "]";
      if (!p.IsMap()) Fail(path, p, at, "expected a map");
      PoolConfig c;
      auto text = [&](const char* key) {
        const YAML::Node n = p[key];
        if (!n.IsScalar()) Fail(path, n, at + "." + key, "expected a value");
        return n.as<std::string>();
      };
      auto integer = [&](const char* key, int lo, int hi) {
        const YAML::Node n = p[key];
        int v = 0;
        try {
          v = n.as<int>();
        } catch (const YAML::Exception&) {
          Fail(path, n, at + "." + key, "expected an integer");
        }
        if (v < lo || v > hi)
          Fail(path, n, at + "." + key,
               "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
        return v;
      };
      auto strings = [&](const char* key) {
        const YAML::Node n = p[key];
        if (!n.IsSequence()) Fail(path, n, at + "." + key, "expected a list");
        std::vector<std::string> out;
        for (const auto& s : n) out.push_back(s.as<std::string>());
        return out;
      };
      for (const auto& kv : p) {
        const std::string key = kv.first.as<std::string>();
        static const std::set<std::string> known = {
            "name",     "provider",    "size",   "min",         "max",        "autoscale",
            "cooldown", "worker_args", "script", "sbatch_args", "deployment", "namespace"};
        if (!known.count(key)) Fail(path, kv.first, at + "." + key, "unknown field");
      }
      if (!p["name"]) Fail(path, p, at + ".name", "missing");
      c.name = text("name");
      if (!ValidPoolName(c.name))
        Fail(path, p["name"], at + ".name",
             "use a-z, 0-9 and '-' (at most 40), got '" + c.name + "'");
      for (const auto& other : pools) {
        if (other.name == c.name) Fail(path, p["name"], at + ".name", "'" + c.name + "' twice");
      }
      if (p["provider"]) {
        c.provider = text("provider");
        if (c.provider != "local" && c.provider != "slurm" && c.provider != "kubernetes")
          Fail(path, p["provider"], at + ".provider",
               "unsupported provider '" + c.provider + "' (supported: local, slurm, kubernetes)");
      }
      if (p["min"]) c.min = integer("min", 0, 10000);
      if (p["max"]) c.max = integer("max", 0, 10000);
      if (c.max < c.min) Fail(path, p["max"] ? p["max"] : p, at + ".max", "must be >= min");
      c.size = p["size"] ? integer("size", c.min, c.max) : c.min;
      if (p["autoscale"]) {
        const std::string a = text("autoscale");
        if (a != "true" && a != "false")
          Fail(path, p["autoscale"], at + ".autoscale", "expected true or false");
        c.autoscale = a == "true";
      }
      if (p["cooldown"]) c.cooldown_s = integer("cooldown", 0, 86400);
      if (p["worker_args"]) c.worker_args = strings("worker_args");
      if (p["script"]) c.slurm_script = text("script");
      if (p["sbatch_args"]) c.sbatch_args = strings("sbatch_args");
      if (p["deployment"]) c.deployment = text("deployment");
      if (p["namespace"]) c.k8s_namespace = text("namespace");
      pools.push_back(std::move(c));
    }
  } catch (const YamlError& e) {
    return R::Error(e.message);
  } catch (const YAML::Exception& e) {
    return R::Error(YamlExceptionText(path, e));
  }
  if (std::none_of(pools.begin(), pools.end(), [](const auto& p) { return p.name == "local"; }))
    pools.push_back(DefaultPools()[0]);
  return pools;
}

// ---- the manager -------------------------------------------------------------------------------

constexpr uint64_t kRetryS = 30;  // rest after a provider command fails

struct PoolManager::Pool {
  PoolConfig config;
  std::unique_ptr<Provider> provider;
  std::set<std::string> launched;     // launched by this coordinator and not known gone
  std::set<std::string> seen_joined;  // of those, the ones that joined at some point
  std::set<std::string> draining;     // told to drain by this pool
  uint64_t last_change_ms = 0;
  int replicas = -1;  // kubernetes: what was last set
  std::string last_change = "started";
  uint64_t retry_at_ms = 0;  // after a failed launch or scale: no provider calls before this
};

PoolManager::PoolManager(std::vector<PoolConfig> pools, PoolEnvironment env)
    : env_(std::move(env)) {
  for (auto& c : pools) {
    auto p = std::make_unique<Pool>();
    p->provider = MakeProvider(c.provider, env_);
    p->config = std::move(c);
    pools_.push_back(std::move(p));
  }
  std::random_device rd;
  std::ostringstream salt;
  salt << std::hex << (rd() & 0xffffff);
  name_salt_ = salt.str();
}

PoolManager::~PoolManager() = default;

PoolManager::Pool* PoolManager::Find(const std::string& name) {
  for (auto& p : pools_) {
    if (p->config.name == name) return p.get();
  }
  return nullptr;
}

void PoolManager::Persist(const Pool& p) {
  if (!persist_) return;
  persist_(p.config.name, std::to_string(p.config.size) + " " + std::to_string(p.config.min) + " " +
                              std::to_string(p.config.max) + " " +
                              (p.config.autoscale ? "1" : "0"));
}

void PoolManager::Restore(const std::string& pool, const std::string& saved) {
  Pool* p = Find(pool);
  if (!p) return;
  std::istringstream in(saved);
  int size = 0, min = 0, max = 0, autoscale = 0;
  if (!(in >> size >> min >> max >> autoscale) || min < 0 || max < min || size < min || size > max)
    return;
  p->config.size = size, p->config.min = min, p->config.max = max;
  p->config.autoscale = autoscale != 0;
}

Status PoolManager::Scale(const std::string& name, int size) {
  Pool* p = Find(name);
  if (!p) return Status::Error("no pool named '" + name + "' (see segue pool ls)");
  if (size < p->config.min || size > p->config.max)
    return Status::Error("pool " + name + ": size must be between its min " +
                         std::to_string(p->config.min) + " and max " +
                         std::to_string(p->config.max) + " (segue pool autoscale sets them)");
  p->config.size = size;
  p->config.autoscale = false;  // a size set by hand stays
  p->last_change = "scaled to " + std::to_string(size) + " by an administrator";
  Persist(*p);
  return Status::Ok();
}

Status PoolManager::Autoscale(const std::string& name, bool enabled, int min, int max) {
  Pool* p = Find(name);
  if (!p) return Status::Error("no pool named '" + name + "' (see segue pool ls)");
  if (enabled && (min < 0 || max < min || max > 10000))
    return Status::Error("pool " + name + ": need 0 <= min <= max <= 10000");
  if (enabled) {
    p->config.min = min, p->config.max = max;
    p->config.size = std::clamp(p->config.size, min, max);
    p->last_change_ms = 0;  // the next tick may act at once
  }
  p->config.autoscale = enabled;
  p->last_change = enabled
                       ? "autoscale between " + std::to_string(min) + " and " + std::to_string(max)
                       : "autoscale off";
  Persist(*p);
  return Status::Ok();
}

std::vector<std::string> PoolManager::Tick(const PoolView& view, uint64_t now_ms) {
  std::vector<std::string> drain;
  for (auto& pp : pools_) {
    Pool& p = *pp;
    p.provider->Reap();
    const PoolConfig& c = p.config;
    static const std::vector<PoolView::Worker> kNone;
    auto it = view.connected.find(c.name);
    const auto& connected = it == view.connected.end() ? kNone : it->second;
    std::set<std::string> joined;
    for (const auto& w : connected) joined.insert(w.name);
    // Forget members that are gone: exited, or joined once and left.
    for (auto m = p.launched.begin(); m != p.launched.end();) {
      if (joined.count(*m)) p.seen_joined.insert(*m);
      const bool left = p.seen_joined.count(*m) && !joined.count(*m);
      if (left || (!joined.count(*m) && !p.provider->Alive(*m, now_ms))) {
        p.seen_joined.erase(*m);
        p.draining.erase(*m);
        m = p.launched.erase(m);
      } else {
        ++m;
      }
    }
    for (auto d = p.draining.begin(); d != p.draining.end();)
      d = joined.count(*d) || p.launched.count(*d) ? std::next(d) : p.draining.erase(d);

    if (c.autoscale) {
      const int want = static_cast<int>(std::clamp<int64_t>(
          view.demand, static_cast<int64_t>(c.min), static_cast<int64_t>(c.max)));
      if (want != c.size &&
          now_ms - p.last_change_ms >= static_cast<uint64_t>(c.cooldown_s) * 1000) {
        p.last_change = "autoscaled from " + std::to_string(c.size) + " to " +
                        std::to_string(want) + " (" + std::to_string(view.demand) +
                        " tasks runnable or running)";
        spdlog::info("pool {}: {}", c.name, p.last_change);
        p.config.size = want;
        p.last_change_ms = now_ms;
        Persist(p);
      }
    }

    // Members that count toward the size: joined or on their way, not draining.
    std::set<std::string> members = joined;
    members.insert(p.launched.begin(), p.launched.end());
    for (const auto& w : connected) {
      if (w.draining) p.draining.insert(w.name);
    }
    int count = 0;
    for (const auto& m : members) count += p.draining.count(m) ? 0 : 1;

    if (count > c.size) {
      int excess = count - c.size;
      // First the ones that have not joined: nothing of theirs is lost.
      for (auto m = p.launched.begin(); excess > 0 && m != p.launched.end();) {
        if (!joined.count(*m) && p.provider->per_worker()) {
          spdlog::info("pool {}: cancelling {} (not joined yet)", c.name, *m);
          p.provider->Cancel(*m);
          p.seen_joined.erase(*m);
          m = p.launched.erase(m);
          --excess;
        } else {
          ++m;
        }
      }
      // Then idle workers, drained: they finish nothing, take nothing more, and exit.
      for (const auto& w : connected) {
        if (excess == 0) break;
        if (!w.idle || p.draining.count(w.name)) continue;
        spdlog::info("pool {}: draining idle worker {}", c.name, w.name);
        p.draining.insert(w.name);
        drain.push_back(w.name);
        --excess;
      }
    }
    if (now_ms < p.retry_at_ms) continue;  // a provider that just failed gets a rest
    if (!p.provider->per_worker()) {
      if (p.replicas != c.size && count <= c.size) {
        Status s = p.provider->SetReplicas(c, c.size);
        if (s.ok()) {
          p.replicas = c.size;
        } else {
          spdlog::error("pool {}: {} (retrying in {} s)", c.name, s.message(), kRetryS);
          p.last_change = "scaling failed: " + s.message().substr(0, 300);
          p.retry_at_ms = now_ms + kRetryS * 1000;
        }
      }
      continue;
    }
    for (int n = count; n < c.size; ++n) {
      const std::string name = c.name + "-" + name_salt_ + "-" + std::to_string(next_name_++);
      Status s = p.provider->Launch(c, name);
      if (!s.ok()) {
        spdlog::error("pool {}: cannot launch a worker: {} (retrying in {} s)", c.name, s.message(),
                      kRetryS);
        p.last_change = "launch failed: " + s.message().substr(0, 300);
        p.retry_at_ms = now_ms + kRetryS * 1000;
        break;
      }
      spdlog::info("pool {}: launched {}", c.name, name);
      p.launched.insert(name);
    }
  }
  return drain;
}

std::vector<PoolStatus> PoolManager::List(const PoolView& view) const {
  std::vector<PoolStatus> out;
  for (const auto& p : pools_) {
    PoolStatus s;
    s.config = p->config;
    s.last_change = p->last_change;
    std::set<std::string> members(p->launched.begin(), p->launched.end());
    auto it = view.connected.find(p->config.name);
    if (it != view.connected.end()) {
      for (const auto& w : it->second) {
        members.insert(w.name);
        (w.idle ? s.idle : s.busy) += 1;
      }
    }
    s.members = static_cast<int>(members.size());
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace segue
