// A model folder's host entry: how a worker starts a model host for model NAME (docs/MODELS.md,
// "Model hosts"). DIR/NAME.host.yaml sits next to the TorchScript files DIR/NAME.pt:
//
//   command: [python3, -m, segue_host, --adapter, tinywan]   # required; run in DIR
//   environment: {PYTHONPATH: /opt/segue/worker/host}        # added to the worker's
//   start_timeout_seconds: 120                              # hello must answer within this
//   call_timeout_seconds: 600                               # any later call within this
//   max_starts: 3                                           # failed starts in a row before the
//                                                           # model is reported unavailable
//   devices: [cuda]                                         # the worker devices that serve it
//                                                           # (cpu, cuda, cuda:N; default all)
//
// Torch-free and ZeroMQ-free: parsing only.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/status/status.h"

namespace segue {

struct HostEntry {
  std::string model;   // NAME
  std::string file;    // DIR/NAME.host.yaml, for messages
  std::string folder;  // DIR: the host's working folder
  std::vector<std::string> command;
  std::vector<std::pair<std::string, std::string>> environment;
  int start_timeout_ms = 120000;
  int call_timeout_ms = 600000;
  int max_starts = 3;
  std::vector<std::string> devices = {};  // empty: every device of the worker
};

// Whether a worker slot on `device` (cpu, cuda, cuda:N) serves the entry's model: `devices`
// lists it, or lists its kind ("cuda" for any cuda:N).
bool HostEntryServes(const HostEntry& entry, const std::string& device);

constexpr const char* kHostEntrySuffix = ".host.yaml";

// Parses the text of `file` (model name and folder from its path). Errors read
// "FILE:LINE:COLUMN: FIELD: what is wrong".
Result<HostEntry> ParseHostEntry(const std::string& file, const std::string& text);

// Reads and parses `file`.
Result<HostEntry> LoadHostEntry(const std::string& file);

// The model names of `dir`'s host entries, sorted.
std::vector<std::string> HostEntryNames(const std::string& dir);

}  // namespace segue
