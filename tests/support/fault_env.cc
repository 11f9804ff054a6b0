#include "tests/support/fault_env.h"

#include <filesystem>

namespace segue {
namespace {

namespace fs = std::filesystem;

std::string ParentOf(const std::string& path) {
  const std::string parent = fs::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

// What a file opened after the crash is: nothing reaches the disk.
class LostFile final : public WritableFile {
 public:
  Status Append(std::string_view data) override {
    size_ += data.size();
    return Status::Ok();
  }
  Status Sync() override { return Status::Ok(); }
  Status Close() override { return Status::Ok(); }
  uint64_t Size() const override { return size_; }

 private:
  uint64_t size_ = 0;
};

// A file of the FaultEnv: written to the disk at once, its syncs counted and remembered.
class FaultFile final : public WritableFile {
 public:
  FaultFile(FaultEnv* env, std::string path, std::unique_ptr<WritableFile> base)
      : env_(env), path_(std::move(path)), base_(std::move(base)) {}
  Status Append(std::string_view data) override {
    if (env_->crashed()) return Status::Ok();  // a write after the crash never reaches the disk
    Status s = base_->Append(data);
    if (s.ok()) env_->Appended(path_, data.size());
    return s;
  }
  Status Sync() override {
    if (!env_->BeforeSync()) return Status::Ok();  // crashed: a sync that never happened
    Status s = base_->Sync();
    if (s.ok()) env_->Synced(path_);
    return s;
  }
  Status Close() override { return base_->Close(); }
  uint64_t Size() const override { return base_->Size(); }

 private:
  FaultEnv* const env_;
  const std::string path_;
  std::unique_ptr<WritableFile> base_;
};

}  // namespace

uint64_t FaultEnv::NowMicros() {
  std::lock_guard<std::mutex> lock(mu_);
  return now_ms_ * 1000;
}

uint64_t FaultEnv::NowMillis() {
  std::lock_guard<std::mutex> lock(mu_);
  return now_ms_;
}

void FaultEnv::Advance(uint64_t ms) {
  std::lock_guard<std::mutex> lock(mu_);
  now_ms_ += ms;
}

Result<std::unique_ptr<WritableFile>> FaultEnv::OpenWritable(const std::string& path, Open mode) {
  if (crashed()) return std::unique_ptr<WritableFile>(new LostFile);
  const bool existed = base_->Exists(path);
  uint64_t size_before = 0;
  if (existed && mode == Open::kAppend) {
    std::error_code ec;
    size_before = fs::file_size(path, ec);
  }
  auto file = base_->OpenWritable(path, mode);
  if (!file.ok()) return file.status();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = files_.find(path);
    if (it == files_.end()) {
      // A file this Env has not written counts as durable as it was.
      FileState st;
      st.size = st.synced = size_before;
      st.durable_name = existed;
      files_[path] = st;
    } else if (mode != Open::kAppend) {
      it->second.size = 0;
      it->second.synced = 0;  // emptied: what it held is not coming back
    }
  }
  return std::unique_ptr<WritableFile>(new FaultFile(this, path, std::move(*file)));
}

Result<std::unique_ptr<ReadableFile>> FaultEnv::OpenReadable(const std::string& path) {
  return base_->OpenReadable(path);
}

Status FaultEnv::RemoveFile(const std::string& path) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (crashed_) return Status::Ok();
    files_.erase(path);
  }
  return base_->RemoveFile(path);
}

Status FaultEnv::RenameFile(const std::string& from, const std::string& to) {
  std::lock_guard<std::mutex> lock(mu_);
  if (crashed_) return Status::Ok();
  Status s = base_->RenameFile(from, to);
  if (!s.ok()) return s;
  FileState st;
  if (auto it = files_.find(from); it != files_.end()) {
    st = it->second;
    files_.erase(it);
  } else {
    std::error_code ec;
    st.size = st.synced = fs::file_size(to, ec);
  }
  st.durable_name = false;  // until its folder is synced
  files_[to] = st;
  return s;
}

Status FaultEnv::CreateDirs(const std::string& path) { return base_->CreateDirs(path); }

Status FaultEnv::RemoveAll(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  if (crashed_) return Status::Ok();
  const std::string prefix = path + "/";
  for (auto it = files_.begin(); it != files_.end();) {
    it = it->first.compare(0, prefix.size(), prefix) == 0 ? files_.erase(it) : std::next(it);
  }
  return base_->RemoveAll(path);
}

Status FaultEnv::SyncDir(const std::string& path) {
  if (!BeforeSync()) return Status::Ok();
  Status s = base_->SyncDir(path);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, st] : files_) {
    if (ParentOf(name) == path) st.durable_name = true;
  }
  return s;
}

Result<std::vector<std::string>> FaultEnv::Children(const std::string& path) {
  return base_->Children(path);
}

bool FaultEnv::Exists(const std::string& path) { return base_->Exists(path); }

void FaultEnv::CrashAtSync(uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  crash_at_ = n;
}

void FaultEnv::Crash() {
  std::lock_guard<std::mutex> lock(mu_);
  crashed_ = true;
}

bool FaultEnv::crashed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return crashed_;
}

uint64_t FaultEnv::syncs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return syncs_;
}

bool FaultEnv::BeforeSync() {
  std::lock_guard<std::mutex> lock(mu_);
  ++syncs_;
  if (crash_at_ != 0 && syncs_ == crash_at_) crashed_ = true;
  return !crashed_;
}

void FaultEnv::Appended(const std::string& path, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  files_[path].size += bytes;
}

void FaultEnv::Synced(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  FileState& st = files_[path];
  st.synced = st.size;
}

Status FaultEnv::DropUnsyncedData() {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [path, st] : files_) {
    std::error_code ec;
    if (!st.durable_name) {
      fs::remove(path, ec);
    } else if (fs::exists(path, ec) && fs::file_size(path, ec) > st.synced) {
      fs::resize_file(path, st.synced, ec);
    }
    if (ec) return Status::Error("cannot drop the unsynced part of " + path + ": " + ec.message());
  }
  return Status::Ok();
}

void FaultEnv::Restart() {
  std::lock_guard<std::mutex> lock(mu_);
  files_.clear();
  crashed_ = false;
  crash_at_ = 0;
  syncs_ = 0;
}

}  // namespace segue
