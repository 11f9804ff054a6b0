// Fixed-width big-endian integers in byte strings: they sort as the numbers do, which is what
// store keys need (coordinator/journal.h) and what the store's own records use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace segue {

// Appends the low `bytes` bytes of `v`, most significant first.
inline void PutBigEndian(std::string& s, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// The `bytes` bytes of `s` at `at` as a number (bytes past the end of `s` are left out).
inline uint64_t GetBigEndian(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes && at + i < s.size(); ++i)
    v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

}  // namespace segue
