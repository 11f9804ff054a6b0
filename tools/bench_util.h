// What every segue-bench measurement needs: a scratch folder, a clock, a serving thread.
#pragma once

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace segue::bench {

using Clock = std::chrono::steady_clock;

inline double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The median of several rounds' figures (the upper one of an even count): this VM's disk and
// CPU stall for whole seconds now and then, and one stalled round moves a median little.
// REQUIRES: !v.empty()
inline double Median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

// A folder under $TMPDIR (default /tmp), removed with its contents when this goes away.
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/segue-bench-XXXXXX";
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a scratch folder");
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Runs serve(stop) on a thread until this goes out of scope, when `stop` turns true and the
// thread is joined: a measurement that throws cannot leave a server running.
class ServingThread {
 public:
  explicit ServingThread(std::function<void(const std::atomic<bool>&)> serve)
      : thread_([this, serve = std::move(serve)] { serve(stop_); }) {}
  ~ServingThread() {
    stop_ = true;
    thread_.join();
  }
  ServingThread(const ServingThread&) = delete;

 private:
  std::atomic<bool> stop_{false};  // before thread_: it exists when the thread starts
  std::thread thread_;
};

}  // namespace segue::bench
