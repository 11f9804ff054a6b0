// segue-coordinator: owns the jobs. Accepts manifests, plans segments, hands tasks to workers,
// stores results in RocksDB, blends finished neighbours, issues encode tasks per chunk, and
// assembles the output. Single-threaded event loop: all state below is touched only by Run()
// (a second thread, the Syncer's, only syncs the store's write-ahead log).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status/status.h"
#include "coordinator/options.h"

namespace segue {

class Coordinator {
 public:
  // Opens the store, restores unfinished jobs, binds the socket.
  static Result<std::unique_ptr<Coordinator>> Create(const CoordinatorOptions& options);
  ~Coordinator();

  // Serves until `stop` becomes true.
  void Run(const std::atomic<bool>& stop);
  std::string endpoint() const;

 private:
  struct Impl;
  explicit Coordinator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace segue
