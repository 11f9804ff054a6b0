// Env: the clock and the file system as the coordinator, its store and its syncer see them
// (after LevelDB's leveldb::Env). Env::Default() is the machine's: POSIX files and the system's
// clocks. A test puts another one in its place (tests/support/fault_env.h): a clock it moves by
// hand, and files that forget every byte that was not synced when the test says the machine
// crashed. Everything those parts write, sync, rename or delete goes through an Env, and so
// does every time they read; RocksDB's own files too (coordinator/store/store.cc hands RocksDB a
// file system built on the Env). What stays outside: reading files back (both Envs keep their
// files on disk), and the files FFmpeg opens itself (assembly's output, the audio probe).
//
// Thread-safe: the store's and the syncer's threads use the Env beside the event loop.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status/status.h"

namespace segue {

// A file being written, front to back.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status Append(std::string_view data) = 0;
  // What was appended so far is durable (fdatasync). Safe against a concurrent Append from
  // another thread (RocksDB syncs its log beside the writer).
  virtual Status Sync() = 0;
  // REQUIRES: the last call. Does not sync.
  virtual Status Close() = 0;
  virtual uint64_t Size() const = 0;  // bytes appended, including what was there (kAppend)
};

// A file being read, front to back.
class ReadableFile {
 public:
  virtual ~ReadableFile() = default;
  // Reads up to `n` bytes into `buf`; 0 at the end of the file.
  virtual Result<size_t> Read(char* buf, size_t n) = 0;
};

class Env {
 public:
  virtual ~Env() = default;

  // The machine's Env. Never deleted.
  static Env* Default();

  // ---- the clock ----
  // Microseconds on a clock that only moves forward: intervals and latencies.
  virtual uint64_t NowMicros() = 0;
  // Milliseconds since the Unix epoch: what records and logs show, and worker liveness.
  virtual uint64_t NowMillis() = 0;

  // ---- files ----
  enum class Open {
    kCreateNew,  // error if the file exists
    kTruncate,   // created, or emptied if it exists
    kAppend,     // created, or written after what it holds
  };
  virtual Result<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path,
                                                             Open mode) = 0;
  virtual Result<std::unique_ptr<ReadableFile>> OpenReadable(const std::string& path) = 0;
  virtual Status RemoveFile(const std::string& path) = 0;
  // Replaces `to` if it exists. Durable once the folder is synced.
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  // The folder and its missing parents.
  virtual Status CreateDirs(const std::string& path) = 0;
  // A folder and everything in it (scratch folders); no error when it does not exist.
  virtual Status RemoveAll(const std::string& path) = 0;
  // Makes the names created, renamed or removed in folder `path` durable.
  virtual Status SyncDir(const std::string& path) = 0;
  // The names in folder `path` (without "." and "..").
  virtual Result<std::vector<std::string>> Children(const std::string& path) = 0;
  virtual bool Exists(const std::string& path) = 0;
};

// Writes `data` to `path` through a temporary sibling renamed into place, so that a reader sees
// the old file or the new one, never half of one. `sync`: the data and the rename are durable
// before it returns.
Status WriteFileAtomically(Env* env, const std::string& path, std::string_view data, bool sync);
// Writes `data` to `path` (created or emptied), unsynced.
Status WriteFile(Env* env, const std::string& path, std::string_view data);
// The whole of `path`.
Result<std::string> ReadFile(Env* env, const std::string& path);

}  // namespace segue
