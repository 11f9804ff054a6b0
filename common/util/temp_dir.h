// A scratch folder for the tests and the benchmarks: fresh, under $TMPDIR (default /tmp), and
// removed with everything in it when the TempDir goes away, unless SEGUE_KEEP_TEST_FILES is set
// (to look at what a failed test left).
#pragma once

#include <string>

namespace segue {

class TempDir {
 public:
  // Throws std::runtime_error when no folder can be made.
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace segue
