#include "common/store/store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>

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

void PutBE(std::string& s, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetBE(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes && at + i < s.size(); ++i)
    v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

}  // namespace

std::string JobKey(uint64_t job) {
  std::string k;
  PutBE(k, job, 8);
  return k;
}
std::string TaskKey(uint64_t job, uint32_t index) {
  std::string k = JobKey(job);
  PutBE(k, index, 4);
  return k;
}
std::string NamedKey(uint64_t job, const std::string& name) { return JobKey(job) + name; }
uint64_t JobOfKey(const std::string& key) { return GetBE(key, 0, 8); }
uint32_t IndexOfKey(const std::string& key) { return static_cast<uint32_t>(GetBE(key, 8, 4)); }

std::string EncodeTensor(const Tensor& t) {
  std::string out = "SGT1";
  uint32_t rank = static_cast<uint32_t>(t.shape.size());
  out.append(reinterpret_cast<const char*>(&rank), 4);
  out.append(reinterpret_cast<const char*>(t.shape.data()), t.shape.size() * 8);
  out.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * 4);
  return out;
}

Result<Tensor> DecodeTensor(const std::string& b) {
  if (b.size() < 8 || b.compare(0, 4, "SGT1") != 0)
    return Result<Tensor>::Error("stored tensor has a bad header");
  uint32_t rank = 0;
  std::memcpy(&rank, b.data() + 4, 4);
  if (rank > 8 || b.size() < 8 + rank * 8)
    return Result<Tensor>::Error("stored tensor has a bad rank");
  Tensor t;
  t.shape.resize(rank);
  std::memcpy(t.shape.data(), b.data() + 8, rank * 8);
  size_t offset = 8 + rank * 8;
  int64_t n = Tensor::NumElements(t.shape);
  if (n < 0 || b.size() - offset != static_cast<size_t>(n) * 4)
    return Result<Tensor>::Error("stored tensor is truncated");
  t.data.resize(static_cast<size_t>(n));
  std::memcpy(t.data.data(), b.data() + offset, b.size() - offset);
  return t;
}

struct Store::Batch::Rep {
  struct Op {
    int kind;  // 0 put, 1 delete, 2 delete range
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
void Store::Batch::Delete(Family f, const std::string& key) {
  rep_->ops.push_back({1, f, key, {}});
}
void Store::Batch::DeleteRange(Family f, const std::string& begin, const std::string& end) {
  rep_->ops.push_back({2, f, begin, end});
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
  std::unique_ptr<rocksdb::DB> db;
  std::map<Family, rocksdb::ColumnFamilyHandle*> handles;
  std::vector<rocksdb::ColumnFamilyHandle*> owned;
  std::mutex counters_mu;
  std::map<std::string, uint64_t> counters;  // GUARDED_BY(counters_mu)
  ~Rep() {
    for (auto* h : owned) db->DestroyColumnFamilyHandle(h);
    if (db) db->Close();
  }
};

Store::Store(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::Open(const std::string& dir) {
  using R = Result<std::unique_ptr<Store>>;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return R::Error("cannot create state folder '" + dir + "': " + ec.message());
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 4;
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
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, dir, descriptors, &handles, &raw);
  if (!s.ok()) return R::Error("cannot open the state store in '" + dir + "': " + s.ToString());
  auto rep = std::make_unique<Rep>();
  rep->db.reset(raw);
  rep->owned = handles;
  for (size_t i = 0; i < handles.size(); ++i) rep->handles[kAllFamilies[i]] = handles[i];
  return R(std::unique_ptr<Store>(new Store(std::move(rep))));
}

Status Store::Write(Batch& batch) {
  rocksdb::WriteBatch wb;
  for (const auto& op : batch.rep_->ops) {
    auto* h = rep_->handles.at(op.f);
    rocksdb::Status s;
    if (op.kind == 0)
      s = wb.Put(h, op.a, op.b);
    else if (op.kind == 1)
      s = wb.Delete(h, op.a);
    else
      s = wb.DeleteRange(h, op.a, op.b);
    if (!s.ok()) return Status::Error("store: cannot build batch: " + s.ToString());
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s = rep_->db->Write(wo, &wb);
  if (!s.ok()) return Status::Error("store: write failed: " + s.ToString());
  batch.rep_->ops.clear();
  return Status::Ok();
}

Result<std::string> Store::Get(Family f, const std::string& key) {
  std::string value;
  rocksdb::Status s = rep_->db->Get(rocksdb::ReadOptions(), rep_->handles.at(f), key, &value);
  if (s.IsNotFound())
    return Result<std::string>::Error(std::string("not found in ") + FamilyName(f));
  if (!s.ok()) return Result<std::string>::Error("store: read failed: " + s.ToString());
  return value;
}

Status Store::Scan(Family f, const std::string& begin, const std::string& end,
                   const std::function<bool(const std::string&, const std::string&)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(
      rep_->db->NewIterator(rocksdb::ReadOptions(), rep_->handles.at(f)));
  for (it->Seek(begin); it->Valid(); it->Next()) {
    std::string k = it->key().ToString();
    if (!end.empty() && k >= end) break;
    if (!fn(k, it->value().ToString())) break;
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
    if (stored.ok() && stored->size() == 8) v = GetBE(*stored, 0, 8);
    it = rep_->counters.emplace(counter, v).first;
  }
  uint64_t next = ++it->second;
  batch.Put(Family::kMeta, "counter/" + counter, JobKey(next));
  return next;
}

}  // namespace segue
