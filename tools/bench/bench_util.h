// What every segue-bench measurement needs: a clock, medians, a serving thread (and a scratch
// folder: common/util/temp_dir.h).
#pragma once

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
