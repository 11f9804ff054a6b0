// Logging set-up shared by the binaries: spdlog to stderr, one line per event, with the
// process's role in every line so interleaved logs of a local farm stay readable.
#pragma once

#include <string>

namespace segue {

// level: trace, debug, info, warn, error. Returns false for an unknown level.
bool SetUpLogging(const std::string& role, const std::string& level);

}  // namespace segue
