// FaultEnv: an Env for tests that crashes the machine on command (after LevelDB's
// fault_injection_test). Files live on the real disk, written through Env::Default(); FaultEnv
// remembers, for every file written through it, how many of its bytes a sync made durable and
// whether its name is durable (its folder synced since it was created or renamed). Crash() is the
// machine dying: from then on nothing reaches the disk (writes, syncs, removals and renames do
// nothing and report success) while whatever still holds files lets go of them. DropUnsyncedData()
// then leaves the disk as a reboot would find it: every file cut back to its durable bytes, the
// files whose names were never durable gone. Restart() makes it a working Env again, over that
// disk.
//
// The clock is the test's: it starts at a fixed time and moves only by Advance.
//
// Sync points: every file Sync and every SyncDir is one, numbered from 1 since the last Restart
// (or construction). CrashAtSync(n) crashes just before the n-th takes effect, so a test can
// crash a scripted run at each of them in turn.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/env/env.h"

namespace segue {

class FaultEnv final : public Env {
 public:
  FaultEnv() = default;

  // ---- the clock ----
  uint64_t NowMicros() override;
  uint64_t NowMillis() override;
  void Advance(uint64_t ms);

  // ---- files ----
  Result<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path, Open mode) override;
  Result<std::unique_ptr<ReadableFile>> OpenReadable(const std::string& path) override;
  Status RemoveFile(const std::string& path) override;
  Status RenameFile(const std::string& from, const std::string& to) override;
  Status CreateDirs(const std::string& path) override;
  Status RemoveAll(const std::string& path) override;
  Status SyncDir(const std::string& path) override;
  Result<std::vector<std::string>> Children(const std::string& path) override;
  bool Exists(const std::string& path) override;

  // ---- faults ----
  // Crashes just before sync point `n` (0: never).
  void CrashAtSync(uint64_t n);
  void Crash();
  bool crashed() const;
  uint64_t syncs() const;  // sync points so far (those skipped after a crash count too)
  // REQUIRES: crashed(), and nothing has files open any more.
  Status DropUnsyncedData();
  // Working again: the files as they are count as durable, sync points count from 0.
  void Restart();

  // Called by its files.
  bool BeforeSync();  // counts a sync point; false: crashed, the sync must not happen
  void Appended(const std::string& path, uint64_t bytes);
  void Synced(const std::string& path);

 private:
  struct FileState {
    uint64_t size = 0;    // bytes written
    uint64_t synced = 0;  // of which durable
    bool durable_name = false;
  };
  Env* const base_ = Env::Default();
  mutable std::mutex mu_;
  uint64_t now_ms_ = 1'700'000'000'000;     // GUARDED_BY(mu_)
  uint64_t syncs_ = 0;                      // GUARDED_BY(mu_)
  uint64_t crash_at_ = 0;                   // GUARDED_BY(mu_)
  bool crashed_ = false;                    // GUARDED_BY(mu_)
  std::map<std::string, FileState> files_;  // GUARDED_BY(mu_): files written through this Env
};

}  // namespace segue
