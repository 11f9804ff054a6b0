#include "common/util/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <utility>

namespace segue {

std::string ExecutableDir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "." : p.parent_path().string();
}

Result<std::string> RunAndCapture(const std::vector<std::string>& argv, int timeout_ms) {
  using R = Result<std::string>;
  if (argv.empty()) return R::Error("run: empty command");
  std::string shown;
  for (const auto& a : argv) shown += (shown.empty() ? "" : " ") + a;
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return R::Error("run: pipe failed");
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]), close(out_pipe[1]);
    return R::Error("run: pipe failed");
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) return R::Error(std::string("run: fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    execvp(args[0], args.data());
    dprintf(2, "cannot start: %s", std::strerror(errno));
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
  fcntl(err_pipe[0], F_SETFL, O_NONBLOCK);
  std::string out, err;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  int status = 0;
  bool done = false, timed_out = false;
  while (!done) {
    for (auto [fd, dst] : {std::pair{out_pipe[0], &out}, std::pair{err_pipe[0], &err}}) {
      ssize_t n;
      while ((n = read(fd, buf, sizeof buf)) > 0) dst->append(buf, static_cast<size_t>(n));
    }
    if (waitpid(pid, &status, WNOHANG) == pid) {
      done = true;
    } else if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      done = timed_out = true;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  for (auto [fd, dst] : {std::pair{out_pipe[0], &out}, std::pair{err_pipe[0], &err}}) {
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) dst->append(buf, static_cast<size_t>(n));
    close(fd);
  }
  while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
  if (timed_out)
    return R::Error("'" + shown + "' did not finish within " + std::to_string(timeout_ms / 1000) +
                    " s");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return R::Error("'" + shown + "' failed (exit " + std::to_string(code) + ")" +
                    (err.empty() ? "" : ": " + err));
  }
  return out;
}

ChildProcess::ChildProcess(ChildProcess&& o) noexcept { *this = std::move(o); }
ChildProcess& ChildProcess::operator=(ChildProcess&& o) noexcept {
  if (this != &o) {
    if (pid_ > 0 && !reaped_) Stop();
    pid_ = o.pid_, status_ = o.status_, reaped_ = o.reaped_;
    o.pid_ = -1, o.reaped_ = true;
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !reaped_) Stop();
}

Result<ChildProcess> ChildProcess::Spawn(const std::vector<std::string>& argv,
                                         const std::string& log_file) {
  Options o;
  o.log_file = log_file;
  return Spawn(argv, o);
}

Result<ChildProcess> ChildProcess::Spawn(const std::vector<std::string>& argv,
                                         const Options& options) {
  if (argv.empty()) return Result<ChildProcess>::Error("spawn: empty command");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // The environment is made before fork: between fork and exec only async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string entry(*e);
    const std::string key = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& [k, v] : options.env) replaced |= k == key;
    if (!replaced) env_strings.push_back(entry);
  }
  for (const auto& [k, v] : options.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return Result<ChildProcess>::Error("spawn: pipe failed");
  pid_t pid = fork();
  if (pid < 0)
    return Result<ChildProcess>::Error(std::string("spawn: fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    close(err_pipe[0]);
    if (!options.log_file.empty()) {
      int fd = open(options.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
      }
    }
    if (!options.cwd.empty() && chdir(options.cwd.c_str()) != 0) {
      int e = errno;
      (void)!write(err_pipe[1], &e, sizeof e);
      _exit(127);
    }
    execvpe(args[0], args.data(), envp.data());
    int e = errno;
    (void)!write(err_pipe[1], &e, sizeof e);
    _exit(127);
  }
  close(err_pipe[1]);
  int child_errno = 0;
  ssize_t n = read(err_pipe[0], &child_errno, sizeof child_errno);
  close(err_pipe[0]);
  ChildProcess c;
  c.pid_ = pid;
  if (n == sizeof child_errno) {
    c.Wait();
    return Result<ChildProcess>::Error("cannot start '" + argv[0] +
                                       "': " + std::strerror(child_errno));
  }
  return c;
}

bool ChildProcess::Running() {
  if (pid_ <= 0 || reaped_) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    status_ = st;
    return false;
  }
  return r == 0;
}

bool ChildProcess::Signal(int sig) {
  if (!Running()) return false;
  return kill(pid_, sig) == 0;
}

int ChildProcess::Wait(int timeout_ms) {
  auto code = [this] {
    if (WIFEXITED(status_)) return WEXITSTATUS(status_);
    if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
    return -1;
  };
  if (pid_ <= 0) return -1;
  if (reaped_) return code();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    int st = 0;
    pid_t r = waitpid(pid_, &st, timeout_ms < 0 ? 0 : WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      status_ = st;
      return code();
    }
    if (r < 0) return -1;
    if (timeout_ms >= 0 && std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void ChildProcess::Stop(int grace_ms) {
  if (!Running()) return;
  kill(pid_, SIGTERM);
  if (Wait(grace_ms) == -1 && !reaped_) {
    kill(pid_, SIGKILL);
    Wait();
  }
}

}  // namespace segue
