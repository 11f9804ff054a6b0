// Child processes: how `segue render` runs a coordinator and workers on one machine, and how the
// tests start real processes. A seam for spawning, not a mock: the children are the real binaries.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "common/status/status.h"

namespace segue {

// The folder holding the running executable (/proc/self/exe): sibling binaries live there.
std::string ExecutableDir();

// Runs `argv` (argv[0] looked up in PATH) to the end, for at most `timeout_ms`, and returns what
// it printed on stdout; an error names the command, its exit status and its stderr.
Result<std::string> RunAndCapture(const std::vector<std::string>& argv, int timeout_ms = 30000);

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(ChildProcess&& o) noexcept;
  ChildProcess& operator=(ChildProcess&& o) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ~ChildProcess();  // sends SIGTERM and waits, if still running

  // Starts `argv[0]` with `argv`; stdout/stderr go to `log_file` when non-empty (appended).
  static Result<ChildProcess> Spawn(const std::vector<std::string>& argv,
                                    const std::string& log_file = "");
  struct Options {
    std::string log_file;  // stdout and stderr, appended ("": inherited)
    std::string cwd;       // "": the parent's
    std::vector<std::pair<std::string, std::string>> env;  // set on top of the parent's
  };
  // The same with a working folder and environment; argv[0] without a '/' is looked up in PATH.
  static Result<ChildProcess> Spawn(const std::vector<std::string>& argv, const Options& options);

  pid_t pid() const { return pid_; }
  bool Running();
  // Sends `sig`; returns false when the process is gone.
  bool Signal(int sig);
  // Waits up to `timeout_ms` (-1: forever); returns the exit code (128+sig when killed), or -1
  // on time-out.
  int Wait(int timeout_ms = -1);
  // SIGTERM, then SIGKILL after `grace_ms`.
  void Stop(int grace_ms = 5000);

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
};

}  // namespace segue
