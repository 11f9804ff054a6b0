// Content digests of files, for telling model weights apart (common/model/metadata.h, identity):
// fast (XXH3-128 reads at memory speed, so a 20 GB checkpoint costs seconds at worker start) and
// the same on every host, unlike a path or a modification time.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status/status.h"

namespace segue {

// "xxh3:" and the XXH3-128 of the file's bytes in 32 hex digits.
Result<std::string> DigestFile(const std::string& path);
// The same over bytes in memory.
std::string DigestBytes(std::string_view bytes);
// `n` bytes as 2n lower-case hex digits.
std::string HexOf(const unsigned char* bytes, size_t n);

}  // namespace segue
