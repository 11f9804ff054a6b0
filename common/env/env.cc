#include "common/env/env.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

namespace segue {
namespace {

std::string ErrnoText(int e) { return std::strerror(e); }

Status PosixError(const std::string& what, const std::string& path, int e) {
  return Status::Error(what + " " + path + ": " + ErrnoText(e));
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(int fd, std::string path, uint64_t size)
      : fd_(fd), path_(std::move(path)), size_(size) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) close(fd_);
  }
  Status Append(std::string_view data) override {
    while (!data.empty()) {
      const ssize_t n = write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return PosixError("cannot write", path_, n < 0 ? errno : ENOSPC);
      data.remove_prefix(static_cast<size_t>(n));
      size_ += static_cast<uint64_t>(n);
    }
    return Status::Ok();
  }
  Status Sync() override {
    if (fdatasync(fd_) != 0) return PosixError("cannot sync", path_, errno);
    return Status::Ok();
  }
  Status Close() override {
    const int fd = fd_;
    fd_ = -1;
    if (close(fd) != 0) return PosixError("cannot close", path_, errno);
    return Status::Ok();
  }
  uint64_t Size() const override { return size_; }

 private:
  int fd_;
  const std::string path_;
  uint64_t size_;  // only the writing thread changes it
};

class PosixReadableFile final : public ReadableFile {
 public:
  PosixReadableFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixReadableFile() override { close(fd_); }
  Result<size_t> Read(char* buf, size_t n) override {
    for (;;) {
      const ssize_t got = read(fd_, buf, n);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return PosixError("cannot read", path_, errno);
      return static_cast<size_t>(got);
    }
  }

 private:
  const int fd_;
  const std::string path_;
};

class PosixEnv final : public Env {
 public:
  uint64_t NowMicros() override {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
  }
  uint64_t NowMillis() override {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  }

  Result<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path, Open mode) override {
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC;
    if (mode == Open::kCreateNew) flags |= O_EXCL;
    if (mode == Open::kTruncate) flags |= O_TRUNC;
    if (mode == Open::kAppend) flags |= O_APPEND;
    const int fd = open(path.c_str(), flags, 0644);
    if (fd < 0) return PosixError("cannot create", path, errno);
    uint64_t size = 0;
    if (mode == Open::kAppend) {
      const off_t end = lseek(fd, 0, SEEK_END);
      if (end < 0) {
        const int e = errno;
        close(fd);
        return PosixError("cannot seek in", path, e);
      }
      size = static_cast<uint64_t>(end);
    }
    return std::unique_ptr<WritableFile>(new PosixWritableFile(fd, path, size));
  }

  Result<std::unique_ptr<ReadableFile>> OpenReadable(const std::string& path) override {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return PosixError("cannot open", path, errno);
    return std::unique_ptr<ReadableFile>(new PosixReadableFile(fd, path));
  }

  Status RemoveFile(const std::string& path) override {
    if (unlink(path.c_str()) != 0) return PosixError("cannot remove", path, errno);
    return Status::Ok();
  }

  Status RenameFile(const std::string& from, const std::string& to) override {
    if (rename(from.c_str(), to.c_str()) != 0)
      return Status::Error("cannot rename " + from + " to " + to + ": " + ErrnoText(errno));
    return Status::Ok();
  }

  Status CreateDirs(const std::string& path) override {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) return Status::Error("cannot create the folder " + path + ": " + ec.message());
    return Status::Ok();
  }

  Status RemoveAll(const std::string& path) override {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec) return Status::Error("cannot remove " + path + ": " + ec.message());
    return Status::Ok();
  }

  Status SyncDir(const std::string& path) override {
    const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return PosixError("cannot open", path, errno);
    const int rc = fsync(fd);
    const int e = errno;
    close(fd);
    if (rc != 0) return PosixError("cannot sync", path, e);
    return Status::Ok();
  }

  Result<std::vector<std::string>> Children(const std::string& path) override {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(path, ec))
      names.push_back(entry.path().filename().string());
    if (ec) return Status::Error("cannot list " + path + ": " + ec.message());
    return names;
  }

  bool Exists(const std::string& path) override { return access(path.c_str(), F_OK) == 0; }
};

}  // namespace

Env* Env::Default() {
  static PosixEnv* env = new PosixEnv;  // never deleted: threads may use it during exit
  return env;
}

Status WriteFile(Env* env, const std::string& path, std::string_view data) {
  auto f = env->OpenWritable(path, Env::Open::kTruncate);
  if (!f.ok()) return f.status();
  Status s = (*f)->Append(data);
  Status c = (*f)->Close();
  return s.ok() ? c : s;
}

Status WriteFileAtomically(Env* env, const std::string& path, std::string_view data, bool sync) {
  const std::string tmp = path + ".tmp";
  auto f = env->OpenWritable(tmp, Env::Open::kTruncate);
  if (!f.ok()) return f.status();
  Status s = (*f)->Append(data);
  if (s.ok() && sync) s = (*f)->Sync();
  Status c = (*f)->Close();
  if (s.ok()) s = c;
  if (s.ok()) s = env->RenameFile(tmp, path);
  if (!s.ok()) {
    (void)env->RemoveFile(tmp);
    return s;
  }
  if (sync) {
    const std::string dir = std::filesystem::path(path).parent_path().string();
    return env->SyncDir(dir.empty() ? "." : dir);
  }
  return Status::Ok();
}

Result<std::string> ReadFile(Env* env, const std::string& path) {
  auto f = env->OpenReadable(path);
  if (!f.ok()) return f.status();
  std::string out;
  char buf[1 << 16];
  for (;;) {
    auto n = (*f)->Read(buf, sizeof buf);
    if (!n.ok()) return n.status();
    if (*n == 0) return out;
    out.append(buf, *n);
  }
}

}  // namespace segue
