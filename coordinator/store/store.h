// The coordinator's durable state in RocksDB. The coordinator is its only writer, and its
// journal (coordinator/journal.h) the only code that knows what the records and keys mean; the
// store sees families of byte strings.
//
// Column families, one per kind of record: jobs, segments, chunks (encode task state), latents,
// checkpoints, outputs (encoded chunks), inputs (files that came with a job), events, workers
// (reserved) and meta (the default family: counters, pool settings). latents, checkpoints,
// outputs and inputs hold big values. Those of 64 KiB or more live in value files,
// DIR/values/N.value, each written once and synced; the internal column family value_files maps
// the record (family byte + key) to the file's number, size and XXH3-64. Files are never written
// again, so records may share one (Batch::Copy: a reused result costs no bytes and no sync); a
// file goes when no record names it. Smaller ones stay in RocksDB (in blob files). Why: a synced
// RocksDB write puts a value in the write-ahead log and again in a blob file when the memtable
// flushes, twice the bytes of writing it once (segue-bench store, docs/PERFORMANCE.md).
//
// Every state transition is one WriteBatch: either all of it is on disk or none of it is. A
// batch is synced as it is written (Sync::kNow) or later (Sync::kLater, made durable by the next
// SyncWal or synced write): the write-ahead log is one sequence, so a crash (of the process or
// the machine) can only lose a suffix of the kLater writes, never a write from the middle. Value
// files keep that: a batch's files and their names are synced before the batch commits, and
// files a batch no longer names are deleted once the batch is durable; a crash in between leaves
// only unnamed files, which Open deletes. Reads check size and checksum.
//
// Every file the store and RocksDB write, sync, rename or delete goes through the Env it is
// opened with (common/env/env.h), so a test can crash it and drop what was not synced.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/env/env.h"
#include "common/status/status.h"

namespace segue {

enum class Family {
  kJobs,
  kSegments,
  kChunks,
  kLatents,
  kCheckpoints,
  kOutputs,
  kInputs,
  kEvents,
  kWorkers,
  kMeta
};

class Store {
 public:
  // Files (tables, blobs) the store holds open at most; with its log, lock and manifest files,
  // what the coordinator must keep free for it.
  static constexpr int kMaxOpenFiles = 200;

  // A group of writes applied atomically by Store::Write.
  class Batch {
   public:
    Batch();
    ~Batch();
    Batch(Batch&&) noexcept;
    Batch& operator=(Batch&&) noexcept;
    void Put(Family f, const std::string& key, const std::string& value);
    void Put(Family f, const std::string& key, std::string&& value);  // takes the bytes, no copy
    void Delete(Family f, const std::string& key);
    // Makes record `to` of family `f` hold what record `from` holds when the op applies (after
    // this batch's earlier writes); absent when `from` is. A big value in a value file is not
    // copied: both records name the file, which goes when the last record naming it does.
    void Copy(Family f, const std::string& from, const std::string& to);
    void DeleteRange(Family f, const std::string& begin, const std::string& end);
    // Moves `other`'s writes to the end of this batch (they are applied after this one's).
    void Append(Batch&& other);
    bool empty() const;

   private:
    friend class Store;
    struct Rep;
    std::unique_ptr<Rep> rep_;
  };

  // Opens (creating if needed) the store in `dir`, whose files go through `env`.
  // REQUIRES: `env` outlives the store.
  static Result<std::unique_ptr<Store>> Open(const std::string& dir, Env* env = Env::Default());
  ~Store();

  // When Write makes a batch durable.
  enum class Sync {
    kNow,    // synced before Write returns (with every kLater write before it)
    kLater,  // appended to the write-ahead log's buffer in memory: a crash of the process or
             // of the machine may lose it (and every later write) until the next SyncWal
  };

  // Applies `batch` atomically. Reads see it as soon as Write returns, either way.
  Status Write(Batch& batch, Sync sync = Sync::kNow);

  // Makes every write that returned before the call durable, then deletes the value files those
  // writes no longer name. Thread-safe, also against Write: the coordinator calls it from a
  // thread of its own while its event loop goes on writing.
  Status SyncWal();

  // Returns the value, or an error whose message starts with "not found" when absent.
  Result<std::string> Get(Family f, const std::string& key);

  // Calls fn(key, value) for keys in [begin, end) in order (end empty: to the end); stops when
  // fn returns false.
  Status Scan(Family f, const std::string& begin, const std::string& end,
              const std::function<bool(const std::string&, const std::string&)>& fn);

  // Next value of a persistent counter (in meta, under "counter/NAME"); the increment is added
  // to `batch` (written with it).
  uint64_t NextId(const std::string& counter, Batch& batch);

 private:
  struct Rep;
  explicit Store(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

}  // namespace segue
