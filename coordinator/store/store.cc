#include "coordinator/store/store.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/options.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/write_batch.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>
#include <system_error>
#include <unordered_set>

#include "common/util/big_endian.h"

namespace segue {
namespace {

const char* FamilyName(Family f) {
  switch (f) {
    case Family::kJobs:
      return "jobs";
    case Family::kSegments:
      return "segments";
    case Family::kChunks:
      return "chunks";
    case Family::kLatents:
      return "latents";
    case Family::kCheckpoints:
      return "checkpoints";
    case Family::kOutputs:
      return "outputs";
    case Family::kInputs:
      return "inputs";
    case Family::kEvents:
      return "events";
    case Family::kWorkers:
      return "workers";
    case Family::kMeta:
      return "default";
  }
  return "default";
}

constexpr Family kAllFamilies[] = {
    Family::kMeta,        Family::kJobs,    Family::kSegments, Family::kChunks, Family::kLatents,
    Family::kCheckpoints, Family::kOutputs, Family::kInputs,   Family::kEvents, Family::kWorkers};

bool IsBig(Family f) {
  return f == Family::kLatents || f == Family::kCheckpoints || f == Family::kOutputs ||
         f == Family::kInputs;
}

// Big values of at least this many bytes live in value files (store.h).
constexpr size_t kFileValueBytes = 64 * 1024;
constexpr char kValueFilesFamily[] = "value_files";

// Key in the value_files family: the family's byte, then the record's key. Ranges of one family
// stay contiguous and in the same order.
std::string FileKey(Family f, const std::string& key) {
  return std::string(1, static_cast<char>(f)) + key;
}
std::string FamilyEnd(Family f) {
  return std::string(1, static_cast<char>(static_cast<int>(f) + 1));
}

// What value_files holds for a record: "SGF1", file number, size, XXH3-64 of the bytes.
struct FileRef {
  uint64_t number = 0, size = 0, hash = 0;
  std::string Encode() const {
    std::string out = "SGF1";
    PutBigEndian(out, number, 8);
    PutBigEndian(out, size, 8);
    PutBigEndian(out, hash, 8);
    return out;
  }
  static std::optional<FileRef> Decode(const std::string& v) {
    if (v.size() != 28 || v.compare(0, 4, "SGF1") != 0) return std::nullopt;
    return FileRef{GetBigEndian(v, 4, 8), GetBigEndian(v, 12, 8), GetBigEndian(v, 20, 8)};
  }
};

std::string ValuePath(const std::string& dir, uint64_t number) {
  return dir + "/" + std::to_string(number) + ".value";
}

// RocksDB counts comparisons, reads and writes per thread by default (perf level kEnableCount),
// each count a thread-local access through the shared library's __tls_get_addr: 14% of the
// coordinator's thread in `segue-bench farm`. Nothing reads those counts; turned off once per
// thread that uses the store.
void QuietPerfCounters() {
  thread_local bool quiet = false;
  if (quiet) return;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  quiet = true;
}

Status StoreError(const Status& s) { return Status::Error("store: " + s.message()); }

// Fills an empty value file from the pool (open, its name already durable), syncs its data,
// closes it and returns the bytes' XXH3-64 in `hash`. The hash is computed on another thread
// while this one waits for the disk in fdatasync, so checking values costs no time on the write
// path.
Status WriteValueFile(std::unique_ptr<WritableFile> file, const std::string& value,
                      uint64_t* hash) {
  if (Status s = file->Append(value); !s.ok()) return StoreError(s);
  auto checksum = [&value] { return XXH3_64bits(value.data(), value.size()); };
  std::future<uint64_t> digest;
  try {
    digest = std::async(std::launch::async, checksum);
  } catch (const std::system_error&) {  // no thread to be had: hash here, after the sync
  }
  Status synced = file->Sync();
  *hash = digest.valid() ? digest.get() : checksum();
  if (!synced.ok()) return StoreError(synced);
  if (Status c = file->Close(); !c.ok()) return StoreError(c);
  return Status::Ok();
}

// Reads a value file, checking size and checksum.
Result<std::string> ReadValueFile(ReadableFile& file, const std::string& path, const FileRef& ref) {
  using R = Result<std::string>;
  std::string value(ref.size, '\0');
  size_t done = 0;
  while (done < value.size()) {
    auto n = file.Read(value.data() + done, value.size() - done);
    if (!n.ok()) return StoreError(n.status());
    if (*n == 0) break;
    done += *n;
  }
  char extra;
  auto more = file.Read(&extra, 1);
  const bool longer = !more.ok() || *more > 0;
  if (done != value.size() || longer || XXH3_64bits(value.data(), value.size()) != ref.hash)
    return R::Error("store: value file " + path + " is damaged (size or checksum differs)");
  return value;
}

rocksdb::IOStatus ToIOStatus(const Status& s) {
  return s.ok() ? rocksdb::IOStatus::OK() : rocksdb::IOStatus::IOError(s.message());
}

// A file RocksDB writes, written through the Env.
class EnvWritableFile final : public rocksdb::FSWritableFile {
 public:
  explicit EnvWritableFile(std::unique_ptr<WritableFile> file) : file_(std::move(file)) {}
  using rocksdb::FSWritableFile::Append;
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions&,
                           rocksdb::IODebugContext*) override {
    return ToIOStatus(file_->Append(std::string_view(data.data(), data.size())));
  }
  rocksdb::IOStatus Close(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return ToIOStatus(file_->Close());
  }
  // Appends are written at once: nothing is buffered here.
  rocksdb::IOStatus Flush(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::OK();
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return ToIOStatus(file_->Sync());
  }
  // The syncer's thread syncs the log while the event loop appends to it (WritableFile::Sync).
  bool IsSyncThreadSafe() const override { return true; }
  uint64_t GetFileSize(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return file_->Size();
  }

 private:
  std::unique_ptr<WritableFile> file_;
};

// A folder RocksDB syncs, through the Env.
class EnvDirectory final : public rocksdb::FSDirectory {
 public:
  EnvDirectory(Env* env, std::string path) : env_(env), path_(std::move(path)) {}
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return ToIOStatus(env_->SyncDir(path_));
  }
  rocksdb::IOStatus Close(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::OK();
  }

 private:
  Env* const env_;
  const std::string path_;
};

// RocksDB's file system on the Env: everything that changes what is on disk (writes, syncs,
// renames, deletions, new folders) goes through the Env; reads go to the disk directly, where
// every Env keeps its files.
class EnvFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  explicit EnvFileSystem(Env* env)
      : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()), env_(env) {}
  const char* Name() const override { return "SegueEnvFileSystem"; }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions&,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext*) override {
    return Open(f, Env::Open::kTruncate, r);
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions&,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext*) override {
    return Open(f, Env::Open::kAppend, r);
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                                      const rocksdb::FileOptions&,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext*) override {
    if (Status s = env_->RenameFile(old, f); !s.ok()) return ToIOStatus(s);
    return Open(f, Env::Open::kTruncate, r);
  }
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions&,
                                 std::unique_ptr<rocksdb::FSDirectory>* result,
                                 rocksdb::IODebugContext*) override {
    result->reset(new EnvDirectory(env_, name));
    return rocksdb::IOStatus::OK();
  }
  rocksdb::IOStatus DeleteFile(const std::string& f, const rocksdb::IOOptions&,
                               rocksdb::IODebugContext*) override {
    if (!env_->Exists(f)) return rocksdb::IOStatus::PathNotFound(f);
    return ToIOStatus(env_->RemoveFile(f));
  }
  rocksdb::IOStatus RenameFile(const std::string& from, const std::string& to,
                               const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return ToIOStatus(env_->RenameFile(from, to));
  }
  rocksdb::IOStatus CreateDir(const std::string& d, const rocksdb::IOOptions& o,
                              rocksdb::IODebugContext* dbg) override {
    if (env_->Exists(d)) return rocksdb::IOStatus::IOError(d + " exists");
    return CreateDirIfMissing(d, o, dbg);
  }
  rocksdb::IOStatus CreateDirIfMissing(const std::string& d, const rocksdb::IOOptions&,
                                       rocksdb::IODebugContext*) override {
    return ToIOStatus(env_->CreateDirs(d));
  }

 private:
  rocksdb::IOStatus Open(const std::string& f, Env::Open mode,
                         std::unique_ptr<rocksdb::FSWritableFile>* r) {
    auto file = env_->OpenWritable(f, mode);
    if (!file.ok()) return ToIOStatus(file.status());
    r->reset(new EnvWritableFile(std::move(*file)));
    return rocksdb::IOStatus::OK();
  }
  Env* const env_;
};
}  // namespace

struct Store::Batch::Rep {
  struct Op {
    int kind;  // 0 put, 1 delete, 2 delete range [a, b), 3 copy a to b
    Family f;
    std::string a, b;
  };
  std::vector<Op> ops;
};

Store::Batch::Batch() : rep_(std::make_unique<Rep>()) {}
Store::Batch::~Batch() = default;
Store::Batch::Batch(Batch&&) noexcept = default;
Store::Batch& Store::Batch::operator=(Batch&&) noexcept = default;
void Store::Batch::Put(Family f, const std::string& key, const std::string& value) {
  rep_->ops.push_back({0, f, key, value});
}
void Store::Batch::Put(Family f, const std::string& key, std::string&& value) {
  rep_->ops.push_back({0, f, key, std::move(value)});
}
void Store::Batch::Delete(Family f, const std::string& key) {
  rep_->ops.push_back({1, f, key, {}});
}
void Store::Batch::DeleteRange(Family f, const std::string& begin, const std::string& end) {
  rep_->ops.push_back({2, f, begin, end});
}
void Store::Batch::Copy(Family f, const std::string& from, const std::string& to) {
  rep_->ops.push_back({3, f, from, to});
}
void Store::Batch::Append(Batch&& other) {
  if (rep_->ops.empty()) {
    rep_->ops = std::move(other.rep_->ops);
  } else {
    for (auto& op : other.rep_->ops) rep_->ops.push_back(std::move(op));
  }
  other.rep_->ops.clear();
}
bool Store::Batch::empty() const { return rep_->ops.empty(); }

struct Store::Rep {
  Env* env = nullptr;
  // RocksDB's Env over `env`'s files; outlives the database (declared before it).
  std::unique_ptr<rocksdb::Env> rocksdb_env;
  std::unique_ptr<rocksdb::DB> db;
  std::map<Family, rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::ColumnFamilyHandle* files = nullptr;  // value_files
  std::vector<rocksdb::ColumnFamilyHandle*> owned;
  std::string values_dir;  // DIR/values
  // An empty value file, open, whose name is durable.
  struct PooledFile {
    uint64_t number = 0;
    std::unique_ptr<WritableFile> file;
  };
  std::mutex pool_mu;
  uint64_t next_file = 1;        // GUARDED_BY(pool_mu): number of the next value file
  std::vector<PooledFile> pool;  // GUARDED_BY(pool_mu)
  // Removes the pool's files (a refill that failed half-way). REQUIRES: pool_mu held.
  void DiscardPool() {
    for (PooledFile& p : pool) {
      (void)p.file->Close();
      (void)env->RemoveFile(ValuePath(values_dir, p.number));
    }
    pool.clear();
  }
  // Held from reading the references a batch replaces to committing it, so two batches never
  // both think they own the same old file.
  std::mutex write_mu;
  // Every reference in value_files, mirrored in memory: loaded by CollectOrphans, updated by
  // Write after each commit. Writes and reads consult it instead of RocksDB, so records without
  // a file (all but big values) cost nothing extra. A Write updates it and unlinks the files it
  // replaced in one critical section; readers open a file under it, and an open file stays
  // readable after an unlink.
  std::mutex refs_mu;
  std::map<std::string, FileRef> refs;  // GUARDED_BY(refs_mu): file key -> reference
  // How many of `refs` name each file (Batch::Copy shares files). GUARDED_BY(refs_mu)
  std::map<uint64_t, uint32_t> users;
  // Value files unnamed by Sync::kLater writes: a crash before the next sync could bring back
  // the records that name them, so they stay until SyncWal (or a synced write) makes the
  // writes durable.
  std::mutex unlink_mu;
  std::vector<uint64_t> unlink_after_sync;  // GUARDED_BY(unlink_mu)
  void Unlink(const std::vector<uint64_t>& numbers) {
    for (uint64_t n : numbers) (void)env->RemoveFile(ValuePath(values_dir, n));
  }

  // The committed reference of `fk`, if any.
  std::optional<FileRef> CommittedRef(const std::string& fk) {
    std::lock_guard<std::mutex> lock(refs_mu);
    auto it = refs.find(fk);
    if (it == refs.end()) return std::nullopt;
    return it->second;
  }
  // The value of the record `fk`, if a file holds it; nullopt if none does.
  std::optional<Result<std::string>> ReadIfFile(const std::string& fk) {
    FileRef ref;
    std::string path;
    Result<std::unique_ptr<ReadableFile>> file = Status::Error("");
    {
      std::lock_guard<std::mutex> lock(refs_mu);
      auto it = refs.find(fk);
      if (it == refs.end()) return std::nullopt;
      ref = it->second;
      path = ValuePath(values_dir, ref.number);
      file = env->OpenReadable(path);
    }
    if (!file.ok())
      return Result<std::string>::Error("store: value file " + path +
                                        " is missing: " + file.message());
    return ReadValueFile(**file, path, ref);
  }
  // The inline value of record `key` of family `f` as ops[0, i) of a batch leave it: the last
  // of them that writes it decides, else the committed one; nullopt when absent.
  // REQUIRES: write_mu held.
  template <typename Ops>
  Result<std::optional<std::string>> InlineValue(Family f, std::string key, const Ops& ops,
                                                 size_t i) {
    using R = Result<std::optional<std::string>>;
    while (i-- > 0) {
      const auto& op = ops[i];
      if (op.f != f) continue;
      if (op.kind == 2 && op.a <= key && key < op.b) return R(std::nullopt);
      if (op.kind == 3 && op.b == key)
        key = op.a;  // a copy: its source as the ops before it left it
      if (op.kind < 2 && op.a == key) return op.kind == 0 ? R(op.b) : R(std::nullopt);
    }
    std::string value;
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), handles.at(f), key, &value);
    if (s.IsNotFound()) return R(std::nullopt);
    if (!s.ok()) return R::Error("store: read failed: " + s.ToString());
    return R(std::move(value));
  }
  // Hands out an empty value file, open, whose name is already on disk. Creating files and
  // syncing their folder is paid once per kPoolRefill files rather than once per value.
  Result<PooledFile> TakeFile();
  // Deletes value files that no reference names: left by a crash between writing a file and
  // committing its batch, or between committing and unlinking the file a batch replaced.
  Status CollectOrphans();
  std::mutex counters_mu;
  std::map<std::string, uint64_t> counters;  // GUARDED_BY(counters_mu)
  ~Rep() {
    // The log's buffer goes out with a clean close (manual_wal_flush).
    if (db && db->FlushWAL(true).ok()) Unlink(unlink_after_sync);
    for (auto* h : owned) db->DestroyColumnFamilyHandle(h);
    if (db) db->Close();
  }
};

Result<Store::Rep::PooledFile> Store::Rep::TakeFile() {
  constexpr int kPoolRefill = 16;
  std::lock_guard<std::mutex> lock(pool_mu);
  if (pool.empty()) {
    for (int i = 0; i < kPoolRefill; ++i) {
      const uint64_t number = next_file++;
      auto file = env->OpenWritable(ValuePath(values_dir, number), Env::Open::kCreateNew);
      if (!file.ok()) {
        DiscardPool();
        return StoreError(file.status());
      }
      pool.push_back({number, std::move(*file)});
    }
    if (Status s = env->SyncDir(values_dir); !s.ok()) {
      DiscardPool();
      return StoreError(s);
    }
    std::reverse(pool.begin(), pool.end());  // hand out in increasing order
  }
  PooledFile taken = std::move(pool.back());
  pool.pop_back();
  return taken;
}

Status Store::Rep::CollectOrphans() {
  std::set<uint64_t> referenced;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), files));
  uint64_t highest = 0;
  std::lock_guard<std::mutex> refs_lock(refs_mu);
  refs.clear();
  users.clear();
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (auto ref = FileRef::Decode(it->value().ToString())) {
      referenced.insert(ref->number);
      highest = std::max(highest, ref->number);
      refs[it->key().ToString()] = *ref;
      ++users[ref->number];
    }
  }
  if (!it->status().ok()) return Status::Error("store: scan failed: " + it->status().ToString());
  auto names = env->Children(values_dir);
  if (!names.ok()) return StoreError(names.status());
  for (const std::string& name : *names) {
    char* end = nullptr;
    const uint64_t number = std::strtoull(name.c_str(), &end, 10);
    if (end == name.c_str() || std::string(end) != ".value") continue;  // not ours
    highest = std::max(highest, number);
    if (!referenced.count(number)) (void)env->RemoveFile(values_dir + "/" + name);
  }
  std::lock_guard<std::mutex> lock(pool_mu);
  next_file = highest + 1;
  return Status::Ok();
}

Store::Store(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::Open(const std::string& dir, Env* env) {
  using R = Result<std::unique_ptr<Store>>;
  if (Status s = env->CreateDirs(dir); !s.ok()) return R::Error("state folder: " + s.message());
  auto rep = std::make_unique<Rep>();
  rep->env = env;
  rep->rocksdb_env = rocksdb::NewCompositeEnv(std::make_shared<EnvFileSystem>(env));
  rocksdb::DBOptions db_options;
  db_options.env = rep->rocksdb_env.get();
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 4;
  // Table and blob files held open at most (RocksDB's default: all of them): part of the file
  // descriptors the coordinator keeps in reserve for its store (coordinator.cc), so that peers
  // holding connections can never leave the store without one.
  db_options.max_open_files = kMaxOpenFiles;
  // A write appends to the write-ahead log's buffer in memory; SyncWal (or a synced write)
  // writes the buffer out and syncs it. Without this, every Write made a write(2) of its own
  // into the page cache: a tenth of the coordinator's loop under load, to protect kLater writes
  // from a crash of the process that a crash of the machine loses anyway (the syncer makes them
  // durable within its interval).
  db_options.manual_wal_flush = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (Family f : kAllFamilies) {
    rocksdb::ColumnFamilyOptions cf;
    if (IsBig(f)) {
      cf.enable_blob_files = true;
      cf.min_blob_size = 4096;
      cf.enable_blob_garbage_collection = true;
    }
    descriptors.emplace_back(FamilyName(f), cf);
  }
  descriptors.emplace_back(kValueFilesFamily, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, dir, descriptors, &handles, &raw);
  if (!s.ok()) return R::Error("cannot open the state store in '" + dir + "': " + s.ToString());
  rep->db.reset(raw);
  rep->owned = handles;
  for (size_t i = 0; i + 1 < handles.size(); ++i) rep->handles[kAllFamilies[i]] = handles[i];
  rep->files = handles.back();
  rep->values_dir = dir + "/values";
  if (Status vs = env->CreateDirs(rep->values_dir); !vs.ok())
    return R::Error("state folder: " + vs.message());
  Status orphans = rep->CollectOrphans();
  if (!orphans.ok()) return R::Error(orphans.message());
  return R(std::unique_ptr<Store>(new Store(std::move(rep))));
}

Status Store::Write(Batch& batch, Sync sync) {
  QuietPerfCounters();
  auto& ops = batch.rep_->ops;
  // 1. Big values go to files first, synced, into files whose names are already synced
  //    (TakeFile): a batch that commits never names a file that is not whole on disk. (Outside
  //    the lock: files taken from the pool are private.)
  std::vector<std::optional<FileRef>> written(ops.size());
  std::vector<uint64_t> created;
  auto discard_created = [&] { rep_->Unlink(created); };
  for (size_t i = 0; i < ops.size(); ++i) {
    const auto& op = ops[i];
    if (op.kind != 0 || !IsBig(op.f) || op.b.size() < kFileValueBytes) continue;
    auto taken = rep_->TakeFile();
    if (!taken.ok()) {
      discard_created();
      return taken.status();
    }
    created.push_back(taken->number);
    FileRef ref{taken->number, op.b.size(), 0};
    Status s = WriteValueFile(std::move(taken->file), op.b, &ref.hash);
    if (!s.ok()) {
      discard_created();
      return s;
    }
    written[i] = ref;
  }
  // 2. One RocksDB batch: each big record lives either inline in its family or as a reference
  //    in value_files, never both, so a write to a big record that has a file clears it.
  std::lock_guard<std::mutex> lock(rep_->write_mu);
  std::map<std::string, std::optional<FileRef>> now;  // file key -> what this batch leaves
  // Whether `fk` has a file before the op at hand.
  auto had_file = [&](const std::string& fk) {
    if (auto it = now.find(fk); it != now.end()) return it->second.has_value();
    return rep_->CommittedRef(fk).has_value();
  };
  // A put or delete of a small record that a later put or delete of the same key in this batch
  // overrides changes nothing the batch leaves behind; leaving it out spares the memtable an
  // insert (a turn of the coordinator bumps the event counter once per event).
  std::vector<bool> superseded(ops.size(), false);
  {
    std::unordered_set<std::string_view> later[std::size(kAllFamilies)];
    for (size_t i = ops.size(); i-- > 0;) {
      const auto& op = ops[i];
      if (op.kind == 2 || IsBig(op.f)) continue;
      const std::string& written_key = op.kind == 3 ? op.b : op.a;
      superseded[i] = !later[static_cast<size_t>(op.f)].insert(written_key).second;
    }
  }
  rocksdb::WriteBatch wb;
  // Copy ops[i] whose source is inline or absent: its bytes as the ops before it leave them.
  auto copy_bytes = [&](size_t i, rocksdb::Status* s) {
    const auto& op = ops[i];
    auto value = rep_->InlineValue(op.f, op.a, ops, i);
    if (!value.ok()) {
      discard_created();
      return value.status();
    }
    auto* h = rep_->handles.at(op.f);
    *s = value->has_value() ? wb.Put(h, op.b, **value) : wb.Delete(h, op.b);
    return Status::Ok();
  };
  for (size_t i = 0; i < ops.size(); ++i) {
    const auto& op = ops[i];
    if (superseded[i]) continue;
    auto* h = rep_->handles.at(op.f);
    rocksdb::Status s;
    if (!IsBig(op.f)) {
      if (op.kind == 0) {
        s = wb.Put(h, op.a, op.b);
      } else if (op.kind == 1) {
        s = wb.Delete(h, op.a);
      } else if (op.kind == 2) {
        s = wb.DeleteRange(h, op.a, op.b);
      } else if (Status c = copy_bytes(i, &s); !c.ok()) {
        return c;
      }
    } else if (op.kind == 2) {
      const std::string from = FileKey(op.f, op.a), to = FileKey(op.f, op.b);
      bool any = false;
      {
        std::lock_guard<std::mutex> refs_lock(rep_->refs_mu);
        for (auto it = rep_->refs.lower_bound(from); it != rep_->refs.end() && it->first < to;
             ++it) {
          now.emplace(it->first, std::nullopt);
          any = true;
        }
      }
      for (auto it = now.lower_bound(from); it != now.end() && it->first < to; ++it) {
        any = any || it->second.has_value();
        it->second.reset();
      }
      s = wb.DeleteRange(h, op.a, op.b);
      if (s.ok() && any) s = wb.DeleteRange(rep_->files, from, to);
    } else if (op.kind == 3) {
      const std::string from = FileKey(op.f, op.a), to = FileKey(op.f, op.b);
      std::optional<FileRef> source;
      if (auto it = now.find(from); it != now.end())
        source = it->second;
      else
        source = rep_->CommittedRef(from);
      if (source) {  // the file is shared, not copied
        s = wb.Put(rep_->files, to, source->Encode());
        if (s.ok()) s = wb.Delete(h, op.b);
        now[to] = source;
      } else {  // inline (or absent): the bytes, as this batch leaves them so far
        const bool had = had_file(to);
        if (Status c = copy_bytes(i, &s); !c.ok()) return c;
        if (s.ok() && had) s = wb.Delete(rep_->files, to);
        now[to] = std::nullopt;
      }
    } else {
      const std::string fk = FileKey(op.f, op.a);
      const bool had = had_file(fk);
      if (written[i]) {
        s = wb.Put(rep_->files, fk, written[i]->Encode());
        if (s.ok()) s = wb.Delete(h, op.a);
        now[fk] = written[i];
      } else {
        s = op.kind == 0 ? wb.Put(h, op.a, op.b) : wb.Delete(h, op.a);
        if (s.ok() && had) s = wb.Delete(rep_->files, fk);
        now[fk] = std::nullopt;
      }
    }
    if (!s.ok()) {
      discard_created();
      return Status::Error("store: cannot build batch: " + s.ToString());
    }
  }
  // A synced write makes the unsynced ones before it durable too: their files can go after it.
  std::vector<uint64_t> unlink_now;
  if (sync == Sync::kNow) {
    std::lock_guard<std::mutex> unlink_lock(rep_->unlink_mu);
    unlink_now.swap(rep_->unlink_after_sync);
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync == Sync::kNow;
  rocksdb::Status s = rep_->db->Write(wo, &wb);
  if (!s.ok() && !unlink_now.empty()) {
    std::lock_guard<std::mutex> unlink_lock(rep_->unlink_mu);
    rep_->unlink_after_sync.insert(rep_->unlink_after_sync.end(), unlink_now.begin(),
                                   unlink_now.end());
  }
  if (!s.ok()) {
    // This batch's files stay: a write that failed at the log's sync may have reached the log
    // (and come back on the next open, naming them). Open deletes them if it did not.
    return Status::Error("store: write failed: " + s.ToString());
  }
  // 3. The index follows the commit, and files no record names any more go: this batch's own
  //    that a later write in the same batch overwrote at once, the replaced ones once the batch
  //    is durable. A crash before this leaves orphans for Open to delete. The files the batch
  //    names are counted before the ones it unnames, so a file a record keeps is never dropped.
  std::lock_guard<std::mutex> refs_lock(rep_->refs_mu);
  std::vector<uint64_t> released;
  for (const auto& [fk, ref] : now) {
    if (ref) ++rep_->users[ref->number];
  }
  for (const auto& [fk, ref] : now) {
    auto old = rep_->refs.find(fk);
    if (old != rep_->refs.end()) {
      released.push_back(old->second.number);
      rep_->refs.erase(old);
    }
    if (ref) rep_->refs[fk] = *ref;
  }
  std::vector<uint64_t> unnamed;
  for (uint64_t n : released) {
    auto u = rep_->users.find(n);
    if (u != rep_->users.end() && --u->second == 0) {
      rep_->users.erase(u);
      unnamed.push_back(n);
    }
  }
  for (uint64_t n : created) {
    if (!rep_->users.count(n)) unlink_now.push_back(n);
  }
  if (sync == Sync::kNow) {
    unlink_now.insert(unlink_now.end(), unnamed.begin(), unnamed.end());
  } else if (!unnamed.empty()) {
    std::lock_guard<std::mutex> unlink_lock(rep_->unlink_mu);
    rep_->unlink_after_sync.insert(rep_->unlink_after_sync.end(), unnamed.begin(), unnamed.end());
  }
  rep_->Unlink(unlink_now);
  ops.clear();
  return Status::Ok();
}

Status Store::SyncWal() {
  QuietPerfCounters();
  // Taken before the sync: these files were unnamed by writes that the sync below covers.
  std::vector<uint64_t> doomed;
  {
    std::lock_guard<std::mutex> lock(rep_->unlink_mu);
    doomed.swap(rep_->unlink_after_sync);
  }
  rocksdb::Status s = rep_->db->FlushWAL(/*sync=*/true);  // the log's buffer, then fsync
  if (!s.ok()) {
    std::lock_guard<std::mutex> lock(rep_->unlink_mu);
    rep_->unlink_after_sync.insert(rep_->unlink_after_sync.end(), doomed.begin(), doomed.end());
    return Status::Error("store: cannot sync the write-ahead log: " + s.ToString());
  }
  rep_->Unlink(doomed);
  return Status::Ok();
}

Result<std::string> Store::Get(Family f, const std::string& key) {
  QuietPerfCounters();
  if (IsBig(f)) {
    if (auto in_file = rep_->ReadIfFile(FileKey(f, key))) return std::move(*in_file);
  }
  std::string value;
  rocksdb::Status s = rep_->db->Get(rocksdb::ReadOptions(), rep_->handles.at(f), key, &value);
  if (s.IsNotFound())
    return Result<std::string>::Error(std::string("not found in ") + FamilyName(f));
  if (!s.ok()) return Result<std::string>::Error("store: read failed: " + s.ToString());
  return value;
}

Status Store::Scan(Family f, const std::string& begin, const std::string& end,
                   const std::function<bool(const std::string&, const std::string&)>& fn) {
  QuietPerfCounters();
  std::unique_ptr<rocksdb::Iterator> it(
      rep_->db->NewIterator(rocksdb::ReadOptions(), rep_->handles.at(f)));
  // Big families: merge the inline records with the files' records, in key order. The keys with
  // files are those of the index when the scan starts; one deleted since is skipped.
  std::vector<std::string> file_keys;
  if (IsBig(f)) {
    const std::string from = FileKey(f, begin), to = end.empty() ? FamilyEnd(f) : FileKey(f, end);
    std::lock_guard<std::mutex> lock(rep_->refs_mu);
    for (auto r = rep_->refs.lower_bound(from); r != rep_->refs.end() && r->first < to; ++r)
      file_keys.push_back(r->first);
  }
  size_t next_file = 0;
  it->Seek(begin);
  for (;;) {
    const bool inline_valid = it->Valid() && (end.empty() || it->key().ToString() < end);
    if (!inline_valid && next_file == file_keys.size()) break;
    if (next_file < file_keys.size() &&
        (!inline_valid ||
         file_keys[next_file].compare(1, std::string::npos, it->key().ToString()) < 0)) {
      const std::string& fk = file_keys[next_file++];
      auto value = rep_->ReadIfFile(fk);
      if (!value) continue;
      if (!value->ok()) return Status::Error(value->message());
      if (!fn(fk.substr(1), **value)) break;
    } else {
      if (!fn(it->key().ToString(), it->value().ToString())) break;
      it->Next();
    }
  }
  if (!it->status().ok()) return Status::Error("store: scan failed: " + it->status().ToString());
  return Status::Ok();
}

uint64_t Store::NextId(const std::string& counter, Batch& batch) {
  std::lock_guard<std::mutex> lock(rep_->counters_mu);
  auto it = rep_->counters.find(counter);
  if (it == rep_->counters.end()) {
    uint64_t v = 0;
    auto stored = Get(Family::kMeta, "counter/" + counter);
    if (stored.ok() && stored->size() == 8) v = GetBigEndian(*stored, 0, 8);
    it = rep_->counters.emplace(counter, v).first;
  }
  uint64_t next = ++it->second;
  std::string value;
  PutBigEndian(value, next, 8);
  batch.Put(Family::kMeta, "counter/" + counter, value);
  return next;
}

}  // namespace segue
